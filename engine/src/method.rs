//! [`Method`]: a loaded method — its values, planned memory, resolved kernels and delegates, and
//! its dependency graph — and the ways to execute it.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use etch_delegates::DelegateHandle;
use etch_kernels::{
    DType, DimOrder, EValue, KernelArgs, KernelContext, KernelError, PrepareFn, PreparedState, Shape, Span, Tensor,
    TensorId, TensorImpl, ValueTable,
};
use etch_scheduler::{DEFAULT_BUDGET, GraphRun, RunError, run_sequential};
use etch_schema::MethodDef;

use crate::alias::{Call, PointsTo, check_call};
use crate::config::{AUTO_REPLAN_MAX_GROWTH, ExecutionMode, MethodConfig, PlanChoice};
use crate::dag::{self, Replan};
use crate::error::{Error, ErrorKind, InstructionSite, Result};
use crate::exec::{Block, Step, StepEnv, StepError, condition, run_block_parallel, run_step};
use crate::load::{Analysis, Builder, Instructions, align_of, folded_outputs, step_shapes};
use crate::memory::{AlignedBuf, MemoryManager};
use crate::meta::MethodMeta;
use crate::program::{Program, Runtime};

/// An input or output value as the caller sees it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    None,
    Int(i64),
    Double(f64),
    Bool(bool),
    Tensor(Tensor<'a>),
    /// Strings and lists are not returned by value; the tag says which.
    Other(&'static str),
}

/// A tensor given as an input: row-major (contiguous) bytes of `dtype` and `sizes`.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub dtype: DType,
    pub sizes: &'a [usize],
    pub data: &'a [u8],
}

/// Parallel-mode state: the blocks as task graphs, and which blocks are worth running as graphs.
struct Parallel {
    blocks: Vec<Block>,
    /// Block index of each instruction index that starts a block (`usize::MAX` elsewhere).
    block_at: Vec<usize>,
    pool: Arc<rayon::ThreadPool>,
    /// Per-instruction time in ns from the warm-up executions (minimum over them).
    costs: Mutex<Vec<f64>>,
    /// Per instruction, whether it took at least [`LONG_INSTRUCTION_NS`] in the warm-up: its
    /// kernel may split over the pool even while other branches run (see `run_block_parallel`).
    /// Set once the warm-up has measured the costs.
    long: OnceLock<Vec<bool>>,
    /// Forced graphs (`always_graph`) have no inline warm-up: their first [`COST_RUNS`] graph
    /// executions time each instruction here (ns, minimum; `u64::MAX` until run), and `long`
    /// follows from them. Until then no instruction counts as long, so every kernel that starts
    /// while the other threads have chains runs on its own thread; with `long` never set,
    /// inception_v1's 3x3 branch convolutions (420 and 840 µs) ran on one thread each while the
    /// other thread idled after its branches: 1.50 ms against 1.26 for the measured policy.
    graph_costs: Vec<AtomicU64>,
    graph_cost_runs: AtomicU32,
    /// Where the warm-up executions stand (see [`Warmup`]).
    warmup: Mutex<Warmup>,
    /// Per block: a graph candidate (true) or inline in program order (false). Set after
    /// warm-up; the candidates run as graphs while `graphs_on` says so.
    as_graph: OnceLock<Vec<bool>>,
    /// Whether the candidate blocks run as graphs now (see [`Recheck`]).
    graphs_on: AtomicBool,
    /// After warm-up, with candidates: recent execution times of both choices.
    recheck: Mutex<Recheck>,
    always_graph: bool,
}

/// Instructions that took at least this long (ns, kernels on the pool) in the warm-up split their
/// kernels over the pool even while other branches of the graph run: a thread that frees up
/// joins them late and takes part of what is left. Shorter ones run on their own thread then
/// (see `exec::run_block_parallel`). Measured with graphs forced, median of 5 runs each (no
/// threshold / 30 µs / every kernel may split): inception_v1 1.572 / 1.307 / 1.315 ms (without
/// it, its 3x3 branch convolution, 470 µs on two threads and 850 on one, ran on one thread while
/// the other finished its branches and idled), wide_towers 0.370 / 0.369 / 0.373, moe 0.352 /
/// 0.352 / 0.360; mlp_towers' 10-13 µs products gained from running alone (2dee823).
const LONG_INSTRUCTION_NS: f64 = 30_000.0;

/// Executions between two that run the other way (inline instead of graphs or back) once the
/// warm-up decided.
const RECHECK_EVERY: u64 = 16;

/// How parallel mode keeps checking its inline-or-graph choice after warm-up. Conditions drift:
/// on this 2-core VM, phases of seconds to minutes in which the second core is slow made the
/// warm-up keep mlp_towers inline (both ways ~0.4 ms) in runs where graphs later took 0.18 ms
/// against 0.27 inline. So every [`RECHECK_EVERY`]th execution runs the other way, every
/// execution's time joins its choice's window of the last [`TRIAL_PAIRS`] (seeded with the warm-up
/// trials), and after each such execution the choice becomes the one [`choose_graphs`] prefers.
#[derive(Debug, Default)]
struct Recheck {
    executions: u64,
    /// `[inline, graph]` windows of recent times (ns), overwritten round-robin.
    recent_ns: [[f64; TRIAL_PAIRS as usize]; 2],
    next: [usize; 2],
}

impl Recheck {
    fn record(&mut self, graph: bool, ns: f64) {
        let kind = usize::from(graph);
        let at = self.next[kind] % TRIAL_PAIRS as usize;
        self.recent_ns[kind][at] = ns;
        self.next[kind] = at + 1;
    }
}

/// Whether candidate blocks should run as graphs, from the median times of both choices: graphs
/// must beat inline by [`GRAPH_MIN_GAIN`] to be chosen, and inline must beat graphs by as much to
/// replace them (a margin against noise either way, so the choice does not flap).
fn choose_graphs(graphs_now: bool, inline_ns: f64, graph_ns: f64) -> bool {
    if graphs_now { inline_ns > GRAPH_MIN_GAIN * graph_ns } else { graph_ns <= GRAPH_MIN_GAIN * inline_ns }
}

/// Sequential mode on a pool of two or more threads: whether an execution runs on the pool
/// (kernels spread over it, the workers kept awake) or on the caller's thread with
/// single-threaded kernels. Handing an execution to the pool and back costs 4-11 µs on this
/// 2-core VM, more than a small model gains from splitting its kernels (dispatch_chain: 7.3 µs
/// inline, 18 µs on the pool). Decided by measuring, like parallel mode's inline-or-graph choice,
/// but in pairs: an execution that switches ways pays for waking the workers (mobilenet_v2 on the
/// pool took 5 ms right after an inline execution, 2.5 ms after another on the pool), so only the
/// second of two executions the same way is recorded. The first [`TRIAL_PAIRS`] × 2 pairs
/// alternate (two inline, two on the pool); then every [`RECHECK_EVERY`]th execution starts a pair
/// the other way; after each recorded execution the choice follows the medians of the last
/// [`TRIAL_PAIRS`] recorded times of each way ([`choose_graphs`]'s margin against flapping).
/// Kernels give the same results whatever the thread count, so outputs do not depend on it.
///
/// An execution that takes over [`POOL_ALWAYS_NS`] on the pool settles it for good: the hand-off
/// is then under 2% of it, and trials and rechecks on one thread would cost more than that
/// (mobilenet_v2: 4.2 ms on one thread against 2.4 on the pool; within the first trials, half the
/// executions ran at the slow speed).
#[derive(Debug, Default)]
struct PoolChoice {
    /// Executions so far and the `[inline, pool]` windows of recorded times (parallel mode's
    /// [`Recheck`] windows, with "graph" read as "pool").
    window: Recheck,
    /// Settled on the pool for good (see above).
    large: bool,
    /// The way the previous execution ran.
    last: Option<bool>,
    on_pool: bool,
}

/// Executions of [`PoolChoice`]'s trials: pairs of two on the pool and two inline.
const POOL_TRIALS: u64 = 4 * TRIAL_PAIRS as u64;
/// A recorded execution on the pool longer than this settles [`PoolChoice`] on the pool.
const POOL_ALWAYS_NS: f64 = 500_000.0;

impl PoolChoice {
    /// Whether the next execution runs on the pool.
    fn next_on_pool(&mut self) -> bool {
        let n = self.window.executions;
        self.window.executions += 1;
        if self.large {
            true
        } else if n < POOL_TRIALS {
            (n / 2).is_multiple_of(2)
        } else if n % RECHECK_EVERY < 2 {
            !self.on_pool
        } else {
            self.on_pool
        }
    }

    /// Whether the trials are still running.
    fn in_trials(&self) -> bool {
        !self.large && self.window.executions < POOL_TRIALS
    }

    /// Records an execution's time (unless it switched ways) and updates the choice after the
    /// trials.
    fn record(&mut self, on_pool: bool, ns: f64) {
        let switched = self.last != Some(on_pool);
        self.last = Some(on_pool);
        if switched {
            return;
        }
        if on_pool && ns > POOL_ALWAYS_NS {
            self.large = true;
            self.on_pool = true;
            return;
        }
        self.window.record(on_pool, ns);
        if self.window.executions >= POOL_TRIALS {
            let [inline, pool] = self.window.recent_ns.map(median);
            self.on_pool = choose_graphs(self.on_pool, inline, pool);
        }
    }
}

/// How parallel mode decides which blocks run as graphs, by measuring rather than predicting
/// (whether overlapping branches beats spreading each kernel over the pool depends on the
/// model and the machine: transformer_layer is faster inline, mlp_towers as a graph):
/// [`COST_RUNS`] inline executions timed per instruction give the costs that make a block a
/// candidate; if some block is one, [`TRIAL_PAIRS`] pairs of executions follow, alternating
/// inline and with the candidates as graphs. The graphs stay only if their median execution beat
/// the median inline one by [`GRAPH_MIN_GAIN`] (medians, because graph times are bimodal on a
/// VM: a graph that sometimes finds the other core awake has a fast minimum and a slow typical
/// run). That first choice is then kept under review ([`Recheck`]).
#[derive(Debug, Default)]
struct Warmup {
    cost_runs: u32,
    /// Per block: a graph candidate. Set after the cost runs.
    candidate: Option<Vec<bool>>,
    /// Trials run so far: even ones inline, odd ones with the candidate graphs.
    trials: u32,
    /// Each trial's time in ns, by kind: `[inline, graph][pair]`.
    trial_ns: [[f64; TRIAL_PAIRS as usize]; 2],
}

/// The median of a few timings (the upper one of the middle two for an even count).
fn median<const N: usize>(mut times: [f64; N]) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(N / 2).copied().unwrap_or(f64::INFINITY)
}

/// Inline warm-up executions timed per instruction.
const COST_RUNS: u32 = 2;
/// Inline/graph trial pairs after the cost runs (only when some block is a candidate). Three
/// pairs decided mlp_towers either way on this VM, whose timings drift by 30%.
const TRIAL_PAIRS: u32 = 6;
/// Graphs are kept only if their median trial took at most this fraction of the median inline
/// one (a margin against timing noise: the inline path is the safe default).
const GRAPH_MIN_GAIN: f64 = 0.97;

/// A block runs as a graph only if its instructions take at least this long in total; below it,
/// handing tasks to the pool costs more than overlapping them saves (measured on `dispatch_fan`:
/// about 1 µs of scheduling per spawned task on this 2-core machine).
const MIN_GRAPH_WORK_NS: f64 = 20_000.0;

/// ... and only if it has at least this much parallelism (total work / critical path).
const MIN_GRAPH_PARALLELISM: f64 = 1.15;

struct Inner<'mem> {
    program: Program,
    name: Arc<str>,
    values: ValueTable,
    steps: Box<[Step]>,
    /// What the load derived (shared with other methods of the program loaded the same way):
    /// folded and fused constants' memory, and the kernels' prepared state, indexed by
    /// `Step::Kernel::prepared`.
    derived: Arc<crate::derived::Derived>,
    arg_pool: Box<[u32]>,
    /// Per instruction: operator name (or backend id / instruction kind) and byte offset.
    sites: Box<[(Arc<str>, usize)]>,
    delegates: Box<[Box<dyn DelegateHandle>]>,
    inputs: Box<[u32]>,
    input_set: Box<[bool]>,
    /// Per input: whether its bytes survive an execution (the placement in use gives them to no
    /// other tensor). An input that does not must be set again before the next execution.
    input_kept: Box<[bool]>,
    outputs: Box<[u32]>,
    /// Tensors a FreeCall may clear; their storage is restored before each execution.
    free_targets: Box<[TensorId]>,
    mode: ExecutionMode,
    parallel: Option<Parallel>,
    /// For kernels' intra-op parallelism (None when the runtime turns it off).
    runtime: crate::program::Runtime,
    /// Planned buffer sizes in use (the exporter's, or the re-plan's).
    planned_sizes: Vec<u64>,
    replanned: bool,
    /// Calls evaluated once at load (constant folding).
    folded: usize,
    /// Calls fused into others at load (see `fuse`).
    fused: usize,
    /// Set while a shared-access execution runs, so two can never overlap.
    busy: AtomicBool,
    /// Sequential mode: on the pool or inline (see [`PoolChoice`]).
    pool_choice: PoolChoice,
    /// Keeps planned memory alive (tensors point into it).
    _memory: MemoryManager<'mem>,
    /// Input buffers of unplanned inputs and realigned constants (tensors point into them).
    _owned: Vec<AlignedBuf>,
}

/// A method ready to execute. Inputs are copied in with [`Method::set_input`]; outputs alias the
/// method's planned memory and stay valid until the next execution.
///
/// One method runs one execution at a time (`execute` takes `&mut self`); load several methods
/// from one [`Program`] to serve requests on several threads.
pub struct Method<'mem> {
    inner: Arc<Inner<'mem>>,
}

impl std::fmt::Debug for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Method")
            .field("name", &self.inner.name)
            .field("instructions", &self.inner.steps.len())
            .field("mode", &self.inner.mode)
            .finish()
    }
}

/// Copies row-major `src` into `dst` laid out in `order`.
fn copy_into_layout(src: &[u8], shape: &Shape, order: &DimOrder, dst: &mut [u8], elem: usize) {
    if order.is_contiguous() {
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    let dst_strides = etch_kernels::shape::strides_for(shape, order);
    let src_strides = etch_kernels::shape::strides_for(shape, &DimOrder::contiguous(shape.rank()));
    for [d, s] in etch_kernels::shape::StridedIter::new(shape, [dst_strides, src_strides]) {
        let (d, s) = (d * elem, s * elem);
        if let (Some(to), Some(from)) = (dst.get_mut(d..d + elem), src.get(s..s + elem)) {
            to.copy_from_slice(from);
        }
    }
}

/// Row-major bytes of a tensor whatever its dim order (for writing outputs out).
pub fn to_contiguous_bytes(t: &Tensor<'_>) -> std::result::Result<Vec<u8>, KernelError> {
    let bytes = t.bytes()?;
    if t.dim_order().is_contiguous() {
        return Ok(bytes.to_vec());
    }
    let elem = align_of(t.dtype());
    let shape = t.shape();
    let mut out = vec![0u8; bytes.len()];
    let src_strides = t.strides();
    let dst_strides = etch_kernels::shape::strides_for(&shape, &DimOrder::contiguous(shape.rank()));
    for [d, s] in etch_kernels::shape::StridedIter::new(&shape, [dst_strides, *src_strides]) {
        let (d, s) = (d * elem, s * elem);
        if let (Some(to), Some(from)) = (out.get_mut(d..d + elem), bytes.get(s..s + elem)) {
            to.copy_from_slice(from);
        }
    }
    Ok(out)
}

/// Total planned bytes of a plan.
fn total(sizes: &[u64]) -> u64 {
    sizes.iter().sum()
}

/// Tensors that must survive an execution: those behind outputs.
fn output_tensors(
    def: &MethodDef,
    ids: &[Option<TensorId>],
    pt: &PointsTo,
    values: &[EValue],
    pool: &etch_kernels::ListPool,
) -> BTreeSet<TensorId> {
    let mut out = BTreeSet::new();
    for &o in &def.outputs {
        out.extend(pt.position_tensors(o, values, pool));
        if let Some(Some(id)) = ids.get(o as usize) {
            out.insert(pt.canonical(*id));
        }
    }
    out
}

impl<'mem> Method<'mem> {
    pub(crate) fn load(
        program: Program,
        name: &str,
        config: &MethodConfig,
        memory: Option<MemoryManager<'mem>>,
    ) -> Result<Self> {
        let shared = program.clone();
        let def = shared.method_def(name)?;
        let b = Builder { program: &shared, def, method: name.into() };

        // Values, steps and the dependency structure do not depend on placement.
        let mut ids = b.tensor_ids();
        let (mut values, pool) = b.values(&ids)?;
        let mut ins = b.instructions(&config.runtime, &values, true)?;
        let steps_before = ins.steps.iter().filter(|s| matches!(s, Step::Nop)).count();
        // Fusion changes which instruction writes which tensor, so the exporter's placement no
        // longer fits: a fused method always runs on etch's re-plan, which needs a method without
        // control flow, and a caller who asked for the exporter's plan gets no fusion.
        let can_fuse = config.runtime.fusion()
            && config.plan != PlanChoice::Exporter
            && !ins.steps.iter().any(|s| matches!(s, Step::JumpFalse { .. }));
        let fused_constants = if can_fuse {
            let first_constant = ids.iter().flatten().count();
            let pt = b.points_to(&ins, &values, &pool, &ids);
            let constants =
                crate::fuse::conv_batch_norm(&b, &mut ins, &mut values, &mut ids, &pool, &pt).ok_or_else(|| {
                    b.invalid("fused constants too large to allocate".into(), ErrorKind::MemoryAllocationFailed)
                })?;
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::conv_activation(&b, &mut ins, &values, &ids, &pool, &pt);
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::expansion_depthwise(&b, &mut ins, &values, &ids, &pool, &pt, (&constants, first_constant));
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::depthwise_projection(&b, &mut ins, &values, &ids, &pool, &pt, (&constants, first_constant));
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::residual_add(&b, &mut ins, &values, &ids, &pool, &pt, (&constants, first_constant));
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::residual_activation(&b, &mut ins, &values, &ids, &pool, &pt);
            crate::fuse::linear_weight(&b, &mut ins, &values, &pool);
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::linear_activation(&b, &mut ins, &values, &ids, &pool, &pt);
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::cat_mean(&b, &mut ins, &values, &ids, &pool, &pt);
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::hard_activations(&b, &mut ins, &values, &ids, &pool, &pt);
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::silu(&b, &mut ins, &values, &ids, &pool, &pt);
            let pt = b.points_to(&ins, &values, &pool, &ids);
            crate::fuse::lstm_cells(&b, &mut ins, &values, &ids, &pool, &pt);
            constants
        } else {
            crate::fuse::FusedConstants::default()
        };
        let fused = ins.steps.iter().filter(|s| matches!(s, Step::Nop)).count() - steps_before;
        // `pt` sees views as their base (analysis, scheduling, placement); `raw_pt` sees every
        // tensor as itself (the alias check needs exact regions).
        let pt = b.points_to(&ins, &values, &pool, &ids);
        // A kernel choice, not a fusion: it changes no tensor's writer, so any plan takes it.
        if config.runtime.fusion() {
            crate::fuse::max_pool_unread_indices(&b, &mut ins, &values, &ids, &pool, &pt);
        }
        let raw_pt = PointsTo::new(&values, &ins.moves);
        // Calls on constants only run once, here; at run time they are no-ops.
        let fold = b.foldable(&ins, &values, &pool, &pt, &ids);
        let folded_tensors = folded_outputs(&ins.steps, &fold, &ins.arg_pool, &values);
        let Instructions { steps: original_steps, arg_pool, sites, delegates, .. } = ins;
        let mut steps: Vec<Step> =
            original_steps.iter().zip(&fold).map(|(s, &f)| if f { Step::Nop } else { *s }).collect();
        let shapes = step_shapes(&steps, &arg_pool);
        let tensor_count = ids.iter().flatten().count();
        let analysis = Analysis::new(&shapes, &values, &pool, &pt, tensor_count);

        // Which memory plan.
        let replan: Option<Replan> = match (config.mode, config.plan) {
            (_, PlanChoice::Exporter) => None,
            (ExecutionMode::Sequential, PlanChoice::Auto) if fused == 0 => None,
            (mode, choice) => {
                let live = output_tensors(def, &ids, &pt, &values, &pool);
                // A sequential method runs the re-plan's order on one thread.
                let workers = match mode {
                    ExecutionMode::Sequential => 1,
                    ExecutionMode::Parallel => config.runtime.pool().current_num_threads(),
                };
                let candidate = analysis.replan(def, &ids, &live, &folded_tensors, &pt, workers);
                match (candidate, choice) {
                    (Some(r), _) if fused > 0 => Some(r),
                    (None, _) if fused > 0 => {
                        return Err(Error::Internal(format!("method '{name}': fused but cannot re-plan")));
                    }
                    (Some(r), PlanChoice::Concurrent) => Some(r),
                    (Some(r), _) if mode == ExecutionMode::Parallel => {
                        let (old, new) = (total(&def.planned_buffer_sizes), total(&r.buffer_sizes));
                        ((new as f64) <= AUTO_REPLAN_MAX_GROWTH * (old.max(1) as f64)).then_some(r)
                    }
                    _ => None,
                }
            }
        };
        let planned_sizes =
            replan.as_ref().map(|r| r.buffer_sizes.clone()).unwrap_or_else(|| def.planned_buffer_sizes.clone());

        // Planned memory: one buffer per memory_id, large enough, zeroed.
        let mut memory = match memory {
            Some(m) => m,
            None => MemoryManager::owned(&planned_sizes).ok_or_else(|| {
                b.invalid("planned memory too large to allocate".into(), ErrorKind::MemoryAllocationFailed)
            })?,
        };
        if memory.len() < planned_sizes.len() {
            return Err(Error::Memory {
                method: name.into(),
                buffer: memory.len(),
                reason: format!("missing: the plan needs {} buffers", planned_sizes.len()),
            });
        }
        for (i, &size) in planned_sizes.iter().enumerate() {
            let have = memory.buffer_len(i).unwrap_or(0);
            if (have as u64) < size {
                return Err(Error::Memory {
                    method: name.into(),
                    buffer: i,
                    reason: format!("{have} bytes, the plan needs {size}"),
                });
            }
        }
        memory.zero();
        // Data derived at load: an earlier load's, if one matches (see `derived`).
        let derived_key = crate::derived::DerivedKey {
            method: name.into(),
            kernels: std::ptr::from_ref(config.runtime.kernels()) as usize,
            fused: can_fuse,
        };
        let earlier = shared.derived_cache().get(&derived_key);
        let mut source = match &earlier {
            Some(d) => crate::derived::BufferSource::Shared { from: d, next: 0 },
            None => crate::derived::BufferSource::Fresh(Vec::new()),
        };
        let (tensors, regions, tensor_of_value, owned) =
            b.tensors(&mut memory, replan.as_ref(), &folded_tensors, fused_constants, &mut source)?;
        let fresh_buffers = match source {
            crate::derived::BufferSource::Fresh(made) => made,
            crate::derived::BufferSource::Shared { .. } => Vec::new(),
        };
        debug_assert_eq!(tensor_of_value, ids);

        // The precondition of KernelArgs::new: no call can alias a written argument.
        let writable_tensor = |t: TensorId| tensors.get(t.0 as usize).is_some_and(TensorImpl::is_writable);
        for (i, shape) in shapes.iter().enumerate() {
            if let dag::StepShape::Call { args, writable } = *shape {
                check_call(&Call { args, writable }, &raw_pt, &values, &pool, &regions, &writable_tensor)
                    .map_err(|reason| Error::InvalidInstruction { at: b.site(i, &sites[i].0), reason })?;
            }
        }
        let mut free_targets = BTreeSet::new();
        for step in steps.iter() {
            if let Step::Free { value } = step {
                free_targets.extend(raw_pt.position_tensors(*value, &values, &pool));
            }
        }
        // Inputs: tensors must be backed by memory we can copy into.
        for (k, &v) in def.inputs.iter().enumerate() {
            if let Some(&Some(t)) = tensor_of_value.get(v as usize)
                && !tensors[t.0 as usize].has_data()
                && tensors[t.0 as usize].capacity() > 0
            {
                return Err(b.invalid(format!("input {k} has no storage"), ErrorKind::InvalidProgram));
            }
        }

        // Per tensor (storage class), the others sharing its bytes in the placement in use.
        let overlaps = pt.canonical_overlaps(dag::overlaps(&regions));
        // Inputs whose bytes the placement gives to other tensors once they are read (the
        // exporter's plan does, as may the re-plan when keeping them costs too much memory).
        let input_kept: Box<[bool]> = def
            .inputs
            .iter()
            .map(|&v| {
                pt.position_tensors(v, &values, &pool)
                    .iter()
                    .all(|&t| overlaps.get(pt.canonical(t).0 as usize).is_none_or(Vec::is_empty))
            })
            .collect();

        // Parallel mode: a task graph per block, with hazard edges wherever the placement in use
        // shares bytes.
        // A sequential method with a re-plan needs the blocks too, for their order (it never runs
        // them as graphs).
        let parallel = match (config.mode, &replan) {
            (ExecutionMode::Sequential, None) => None,
            _ => {
                let mut blocks = Vec::new();
                let mut block_at = vec![usize::MAX; steps.len() + 1];
                for range in &analysis.blocks {
                    // The re-plan's block runs in the order its placement assumes; others in
                    // program order.
                    let order: Vec<u32> = match (&replan, analysis.blocks.len()) {
                        (Some(r), 1) => r.order.clone(),
                        _ => (0..(range.end - range.start) as u32).collect(),
                    };
                    let edges = analysis.block_edges_in(range, &order, &overlaps);
                    let graph = dag::block_graph(edges, range.end - range.start);
                    block_at[range.start] = blocks.len();
                    let run = GraphRun::new(&graph);
                    let instructions: Vec<usize> = order.iter().map(|&o| range.start + o as usize).collect();
                    let in_program_order = instructions.iter().copied().eq(range.start..range.end);
                    blocks.push(Block { range: *range, instructions, in_program_order, graph, run });
                }
                // Forced graphs need no measurements: decide now.
                let as_graph = if config.always_graph {
                    OnceLock::from(blocks.iter().map(|b| b.graph.len() >= 2).collect::<Vec<_>>())
                } else {
                    OnceLock::new()
                };
                Some(Parallel {
                    blocks,
                    block_at,
                    pool: config.runtime.pool(),
                    costs: Mutex::new(vec![f64::INFINITY; steps.len()]),
                    long: OnceLock::new(),
                    graph_costs: (0..steps.len()).map(|_| AtomicU64::new(u64::MAX)).collect(),
                    graph_cost_runs: AtomicU32::new(0),
                    warmup: Mutex::new(Warmup::default()),
                    as_graph,
                    graphs_on: AtomicBool::new(config.always_graph),
                    recheck: Mutex::new(Recheck::default()),
                    always_graph: config.always_graph,
                })
            }
        };

        let mut values = ValueTable::new(values, tensors, pool);
        // Folded calls write their results once, in the first load; later ones share them.
        if earlier.is_none() {
            let env =
                StepEnv { arg_pool: &arg_pool, delegates: &delegates, names: &sites, traced: false, prepared: &[] };
            let mut context = KernelContext::new();
            for (i, step) in original_steps.iter().enumerate().filter(|(i, _)| fold[*i]) {
                // SAFETY: the method is not built yet: this is the only access to `values`, and
                // the call passed the alias check as written (its outputs are private tensors).
                unsafe { run_step(i, step, &values, &env, &mut context) }.map_err(|e| {
                    let at = b.site(i, &sites[i].0);
                    match e {
                        StepError::Kernel(source) => Error::Kernel { at, source },
                        StepError::Delegate(source) => Error::Delegate { at, source },
                        StepError::Invalid(reason) => Error::InvalidInstruction { at, reason: reason.into() },
                    }
                })?;
            }
            for &t in &folded_tensors {
                if let Some(t) = values.tensor_mut(t) {
                    t.make_read_only();
                }
            }
        }
        let derived = match earlier {
            Some(d) => d,
            None => {
                let (prepared, links) = prepare_calls(&steps, &values, &arg_pool, &sites, &config.runtime)
                    .map_err(|(i, source)| Error::Kernel { at: b.site(i, &sites[i].0), source })?;
                let d = Arc::new(crate::derived::Derived { buffers: fresh_buffers, prepared, links });
                shared.derived_cache().keep(derived_key, &d);
                d
            }
        };
        for &(i, slot) in &derived.links {
            match steps.get_mut(i) {
                Some(Step::Kernel { prepared, .. }) => *prepared = slot,
                _ => {
                    return Err(Error::Internal(format!(
                        "method '{name}': prepared state for instruction {i}, not a call"
                    )));
                }
            }
        }
        let folded = fold.iter().filter(|f| **f).count();

        Ok(Method {
            inner: Arc::new(Inner {
                program,
                name: name.into(),
                values,
                steps: steps.into(),
                derived,
                arg_pool: arg_pool.into(),
                sites: sites.into(),
                delegates: delegates.into(),
                inputs: def.inputs.clone().into(),
                input_set: vec![false; def.inputs.len()].into(),
                input_kept,
                outputs: def.outputs.clone().into(),
                free_targets: free_targets.into_iter().collect(),
                mode: config.mode,
                parallel,
                runtime: config.runtime.clone(),
                planned_sizes,
                replanned: replan.is_some(),
                folded,
                fused,
                busy: AtomicBool::new(false),
                pool_choice: PoolChoice::default(),
                _memory: memory,
                _owned: owned,
            }),
        })
    }

    /// Exclusive access to the method's state. Waits while a detached `execute_async` (its future
    /// dropped before completion) is still running on the pool.
    fn inner_mut(&mut self) -> &mut Inner<'mem> {
        while Arc::get_mut(&mut self.inner).is_none() {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        // The loop above ends only when this is the sole reference.
        Arc::get_mut(&mut self.inner).unwrap_or_else(|| unreachable!())
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether this method and `other` use the same data derived at load: folded and fused
    /// constants and packed weights, made once per program, method, kernel registry and fusion
    /// setting, and shared by every method loaded that way while one of them lives.
    pub fn shares_derived_data_with(&self, other: &Method<'_>) -> bool {
        Arc::ptr_eq(&self.inner.derived, &other.inner.derived)
    }

    pub fn program(&self) -> &Program {
        &self.inner.program
    }

    pub fn method_meta(&self) -> MethodMeta<'_> {
        // The method was loaded from this program, so its definition exists.
        MethodMeta::new(self.inner.program.def().method(&self.inner.name).unwrap_or(&EMPTY_METHOD))
    }

    pub fn num_inputs(&self) -> usize {
        self.inner.inputs.len()
    }

    pub fn num_outputs(&self) -> usize {
        self.inner.outputs.len()
    }

    pub fn num_instructions(&self) -> usize {
        self.inner.steps.len()
    }

    pub fn mode(&self) -> ExecutionMode {
        self.inner.mode
    }

    /// Calls on constants that ran once at load (e.g. weight transposes) and are skipped at run time.
    pub fn folded_instructions(&self) -> usize {
        self.inner.folded
    }

    /// Calls fused into another at load (e.g. batch norms folded into the convolution before
    /// them; runtimes with [`crate::Runtime::with_fusion`] on) and skipped at run time.
    pub fn fused_instructions(&self) -> usize {
        self.inner.fused
    }

    /// Parallel mode: the instructions whose kernels split over the pool even while other
    /// branches of a graph run (their measured time reached 30 µs), in increasing
    /// order; `None` before the first executions have measured them, and for sequential mode.
    pub fn long_instructions(&self) -> Option<Vec<usize>> {
        let long = self.inner.parallel.as_ref()?.long.get()?;
        Some(long.iter().enumerate().filter(|&(_, &l)| l).map(|(i, _)| i).collect())
    }

    /// Planned buffer sizes in use, and whether they are etch's re-plan (not the exporter's).
    pub fn planned_memory(&self) -> (&[u64], bool) {
        (&self.inner.planned_sizes, self.inner.replanned)
    }

    /// Whether input `index` keeps its value across executions, so that a caller may set it once
    /// and execute again. When not (the memory plan gives its bytes to other tensors once it is
    /// read, as the exporter's plan may, as in ExecuTorch), set it before each execution: an
    /// execution without it fails with [`Error::Input`]. `None` when out of range.
    pub fn keeps_input(&self, index: usize) -> Option<bool> {
        self.inner.input_kept.get(index).copied()
    }

    /// Copies a tensor into input `index`. The dtype must match; a dynamic input may take any
    /// shape of the same rank within its planned size, a static one only its own shape.
    pub fn set_input(&mut self, index: usize, input: TensorView<'_>) -> Result<()> {
        let inner = self.inner_mut();
        let name = inner.name.clone();
        let err = |reason: String| Error::Input { method: name.to_string(), index, reason };
        let value = *inner
            .inputs
            .get(index)
            .ok_or_else(|| err(format!("out of range (the method has {} inputs)", inner.inputs.len())))?;
        let t = inner.values.value_tensor_mut(value).ok_or_else(|| err("is not a tensor input".into()))?;
        if input.dtype != t.dtype() {
            return Err(err(format!("dtype {} given, the method takes {}", input.dtype, t.dtype())));
        }
        if input.sizes.len() != t.sizes().len() {
            return Err(err(format!(
                "rank {} given ({:?}), the method takes rank {} ({:?})",
                input.sizes.len(),
                input.sizes,
                t.sizes().len(),
                t.sizes()
            )));
        }
        let numel = input.sizes.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let nbytes = numel.and_then(|n| n.checked_mul(align_of(input.dtype)));
        if nbytes != Some(input.data.len()) {
            return Err(err(format!("{} data bytes for shape {:?}", input.data.len(), input.sizes)));
        }
        t.resize(input.sizes).map_err(|_| {
            err(format!(
                "shape {:?} does not fit: the method takes {:?}{}",
                input.sizes,
                t.sizes(),
                if t.is_resizable() { " at most" } else { "" }
            ))
        })?;
        let (shape, order) = (t.shape(), *t.dim_order());
        let mut view = etch_kernels::TensorMut::new(t, index);
        let dst = view.bytes_mut().map_err(|e| err(e.to_string()))?;
        copy_into_layout(input.data, &shape, &order, dst, align_of(input.dtype));
        inner.input_set[index] = true;
        Ok(())
    }

    /// Sets a non-tensor input. ExecuTorch programs bake such inputs in at export, so the value
    /// must equal the traced one.
    pub fn set_input_scalar(&mut self, index: usize, value: Value<'_>) -> Result<()> {
        let inner = self.inner_mut();
        let name = inner.name.clone();
        let err = |reason: String| Error::Input { method: name.to_string(), index, reason };
        let v = *inner.inputs.get(index).ok_or_else(|| err("out of range".into()))?;
        let current = inner.values.get(v).ok_or_else(|| err("out of range".into()))?;
        let same = match (current, value) {
            (EValue::Int(a), Value::Int(b)) => a == b,
            (EValue::Double(a), Value::Double(b)) => a == b,
            (EValue::Bool(a), Value::Bool(b)) => a == b,
            (EValue::None, Value::None) => true,
            _ => false,
        };
        if !same {
            return Err(err(format!("{value:?} differs from the exported value {current:?}")));
        }
        inner.input_set[index] = true;
        Ok(())
    }

    /// Runs the method once, in the mode it was loaded with.
    ///
    /// Inputs stay as set for the next execution unless the memory plan gives their bytes to other
    /// tensors ([`Method::keeps_input`] says which); those must be set again first.
    pub fn execute(&mut self) -> Result<()> {
        let inner = self.inner_mut();
        inner.take_inputs()?;
        let run = |inner: &mut Inner<'mem>| match inner.mode {
            ExecutionMode::Sequential => inner.execute_sequential(true),
            ExecutionMode::Parallel => inner.execute_shared(),
        };
        let spinning_pool = inner.stay_awake_wanted();
        // Runs in program order (sequential mode, or parallel mode whose warm-up found no block
        // worth a graph): the pool or the caller's thread, as measured (see `PoolChoice`).
        let choosing = spinning_pool && (inner.mode == ExecutionMode::Sequential || inner.settled_without_graphs());
        let on_pool = if choosing { inner.pool_choice.next_on_pool() } else { spinning_pool };
        let start = Instant::now();
        let result = if on_pool {
            // On a pool worker (in place when already on one; `submit` says how the caller
            // waits and how many executions the pool takes at once), with the other workers
            // kept awake: kernels' parallel regions and graph tasks then start without waking
            // sleeping threads (see `awake`).
            inner.runtime.submitter().run_awake(&inner.runtime.keep_awake(), || run(inner))
        } else if choosing {
            inner.execute_sequential(false)
        } else {
            run(inner)
        };
        if choosing {
            inner.pool_choice.record(on_pool, start.elapsed().as_nanos() as f64);
        }
        result
    }

    /// Runs the method once on the runtime's thread pool; the future resolves when it finishes,
    /// without blocking the thread that polls it (e.g. a tokio worker). If the future is dropped
    /// early, the execution still finishes in the background, and the next call on this method
    /// waits for it.
    pub async fn execute_async(&mut self) -> Result<()>
    where
        'mem: 'static,
    {
        self.inner_mut().take_inputs()?;
        let inner = Arc::clone(&self.inner);
        let submitter = self.inner.runtime.submitter();
        let (tx, rx) = futures::channel::oneshot::channel();
        // Queued like a synchronous execution from outside the pool (see `submit`).
        submitter.submit(Box::new(move || {
            let awake = inner.stay_awake();
            let result = inner.execute_shared();
            drop(awake);
            // Release our reference before signalling, so the caller regains exclusive access.
            drop(inner);
            let _ = tx.send(result);
        }));
        rx.await.unwrap_or_else(|_| Err(Error::Internal("the execution task was lost".into())))
    }

    /// True while a method is still in its warm-up executions: in parallel mode measuring which
    /// blocks to run as graphs (see the crate docs on parallel mode); on a pool of two or more
    /// threads measuring whether executions are faster on the pool or on the caller's thread
    /// (short executions only). Those executions give correct outputs but may be slower than
    /// later ones.
    pub fn is_warming_up(&self) -> bool {
        let graphs = self.inner.parallel.as_ref().is_some_and(|p| p.as_graph.get().is_none());
        let pool = self.inner.stay_awake_wanted()
            && (self.inner.mode == ExecutionMode::Sequential || self.inner.settled_without_graphs())
            && self.inner.pool_choice.in_trials();
        graphs || pool
    }

    /// Times each instruction over `runs` sequential executions (shared-mode code path, program
    /// order) and returns the per-instruction minimum in nanoseconds. Kernels may spread over the
    /// pool as in a normal execution. The executions after the first read the inputs as the one
    /// before left them: where the memory plan does not keep an input ([`Method::keeps_input`]),
    /// the times are those of other values, and the input must be set again afterwards.
    pub fn profile_instructions(&mut self, runs: usize) -> Result<Vec<f64>> {
        self.profile(runs, true)
    }

    /// [`Method::profile_instructions`] with every kernel on the calling thread alone: the work
    /// an instruction is, for bounds such as `work / threads`.
    pub fn profile_instructions_single_threaded(&mut self, runs: usize) -> Result<Vec<f64>> {
        self.profile(runs, false)
    }

    fn profile(&mut self, runs: usize, intra_op: bool) -> Result<Vec<f64>> {
        let inner = self.inner_mut();
        inner.take_inputs()?;
        let mut costs = vec![f64::INFINITY; inner.steps.len()];
        if intra_op && inner.stay_awake_wanted() {
            // As an execution runs: on a pool worker with the others spinning, so a kernel's
            // parallel region is not timed with the wake-up of sleeping workers in it.
            let (submitter, keep_awake) = (inner.runtime.submitter(), inner.runtime.keep_awake());
            submitter.run_awake(&keep_awake, || {
                (0..runs.max(1)).try_for_each(|_| inner.run_inline_timed(&mut costs, true))
            })?;
        } else {
            for _ in 0..runs.max(1) {
                inner.run_inline_timed(&mut costs, intra_op)?;
            }
        }
        Ok(costs)
    }

    /// For parallel-mode methods: per block, its instruction range, total work under `work_costs`
    /// and critical path under `costs` (ns per instruction), and whether it runs as a graph.
    /// Pass single-threaded times as `work_costs` for the ideal bound `max(critical path, work /
    /// threads)`: work measured with kernels already spread over the pool would count the cores twice.
    pub fn parallel_profile(&self, costs: &[f64], work_costs: &[f64]) -> Vec<BlockProfile> {
        let Some(p) = &self.inner.parallel else { return Vec::new() };
        let decided = p.as_graph.get();
        p.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let c: Vec<f64> = b.instructions.iter().map(|&i| costs.get(i).copied().unwrap_or(0.0)).collect();
                let c = &c[..];
                BlockProfile {
                    start: b.range.start,
                    end: b.range.end,
                    work_ns: b.instructions.iter().map(|&i| work_costs.get(i).copied().unwrap_or(0.0)).sum(),
                    critical_path_ns: b.graph.critical_path(c),
                    edges: b.graph.edge_count(),
                    runs_as_graph: decided
                        .and_then(|d| d.get(i).copied())
                        .map(|g| g && p.graphs_on.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }

    /// Output `index`. Tensors alias planned memory: valid until the next execution.
    pub fn output(&self, index: usize) -> Result<Value<'_>> {
        let inner = &*self.inner;
        let err = |reason: String| Error::Output { method: inner.name.to_string(), index, reason };
        let v = *inner
            .outputs
            .get(index)
            .ok_or_else(|| err(format!("out of range (the method has {} outputs)", inner.outputs.len())))?;
        // An async execution still running after its future was dropped holds a clone; reading
        // outputs then would race with it.
        if Arc::strong_count(&self.inner) > 1 {
            return Err(Error::InvalidMethod {
                method: inner.name.to_string(),
                reason: "an execution is still running".into(),
                kind: ErrorKind::InvalidState,
            });
        }
        // SAFETY: we hold the only reference to the state (checked above), and `&self` excludes a
        // new execution (those need `&mut self`), so no kernel writes the table while this read
        // and the returned view live.
        let value = unsafe { inner.values.read(v) }.ok_or_else(|| err("no such value".into()))?;
        Ok(match value {
            EValue::None => Value::None,
            EValue::Int(i) => Value::Int(i),
            EValue::Double(d) => Value::Double(d),
            EValue::Bool(b) => Value::Bool(b),
            EValue::Tensor(id) => {
                // SAFETY: as above.
                let t = unsafe { inner.values.tensor_ref(id) }.ok_or_else(|| err("no such tensor".into()))?;
                Value::Tensor(Tensor::new(t, index))
            }
            other => Value::Other(other.kind_name()),
        })
    }

    /// Output `index` as a tensor.
    pub fn output_tensor(&self, index: usize) -> Result<Tensor<'_>> {
        match self.output(index)? {
            Value::Tensor(t) => Ok(t),
            other => Err(Error::Output {
                method: self.inner.name.to_string(),
                index,
                reason: format!("is {other:?}, not a tensor"),
            }),
        }
    }
}

/// One block of a parallel method, with costs.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockProfile {
    pub start: usize,
    pub end: usize,
    pub work_ns: f64,
    pub critical_path_ns: f64,
    pub edges: usize,
    /// `None` until the warm-up executions decided.
    pub runs_as_graph: Option<bool>,
}

/// Clears the busy flag when an execution ends, however it ends.
struct BusyGuard<'a>(&'a AtomicBool);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Inner<'_> {
    fn site(&self, instruction: usize) -> InstructionSite {
        let (operator, byte_offset) = self.sites.get(instruction).cloned().unwrap_or_else(|| ("?".into(), 0));
        InstructionSite { method: self.name.clone(), instruction, byte_offset, operator }
    }

    fn step_error(&self, index: usize, e: StepError) -> Error {
        let at = self.site(index);
        match e {
            StepError::Kernel(source) => Error::Kernel { at, source },
            StepError::Delegate(source) => Error::Delegate { at, source },
            StepError::Invalid(reason) => Error::InvalidInstruction { at, reason: reason.into() },
        }
    }

    /// A kernel context for steps run on the calling thread: may use the pool for intra-op work.
    fn context(&self) -> KernelContext {
        KernelContext::with_pool(self.runtime.intra_op().then(|| self.runtime.pool()))
    }

    fn env(&self) -> StepEnv<'_> {
        StepEnv {
            arg_pool: &self.arg_pool,
            delegates: &self.delegates,
            names: &self.sites,
            traced: tracing::dispatcher::has_been_set(),
            prepared: &self.derived.prepared,
        }
    }

    /// Checks that every tensor input is set, then marks those the coming execution overwrites
    /// (inputs the plan does not keep) as unset, so the next execution cannot read what is left.
    fn take_inputs(&mut self) -> Result<()> {
        for (k, (&set, &kept)) in self.input_set.iter().zip(&self.input_kept).enumerate() {
            if set {
                continue;
            }
            // Non-tensor inputs carry their exported value; only tensors must be set.
            // SAFETY: no execution runs (callers hold exclusive access), so reading is unshared.
            let v = unsafe { self.values.read(self.inputs[k]) };
            if matches!(v, Some(EValue::Tensor(_))) {
                let reason = if kept {
                    "not set"
                } else {
                    "not set (the memory plan gives this input's bytes to other tensors once it \
                     is read: set it before every execution)"
                };
                return Err(Error::Input { method: self.name.to_string(), index: k, reason: reason.into() });
            }
        }
        for (set, &kept) in self.input_set.iter_mut().zip(&self.input_kept) {
            *set &= kept;
        }
        Ok(())
    }

    /// Puts back storage that FreeCalls cleared in the previous execution.
    ///
    /// # Safety
    /// No execution may be running.
    unsafe fn restore_freed(&self) {
        for &t in self.free_targets.iter() {
            // SAFETY: no execution runs (our contract), so this is the only reference.
            if let Some(t) = unsafe { self.values.tensor_excl(t) } {
                t.restore_data();
            }
        }
    }

    fn catch(&self, f: impl FnOnce() -> Result<()>) -> Result<()> {
        match std::panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::Internal(format!("method '{}' panicked: {what}", self.name)))
            }
        }
    }

    /// The heapless path: one instruction after another, exclusive access.
    /// `pooled`: kernels may spread over the pool (else they run on this thread).
    fn execute_sequential(&mut self, pooled: bool) -> Result<()> {
        // SAFETY: `&mut self`: nothing else runs.
        unsafe { self.restore_freed() };
        let this = &*self;
        if let Some(p) = &this.parallel {
            // The re-plan's placement relies on its order: inline blocks, never graphs.
            return this.catch(|| this.run_blocks(p, &[], None, pooled));
        }
        let env = this.env();
        let mut context = if pooled { this.context() } else { KernelContext::new() };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_sequential(this.steps.len(), DEFAULT_BUDGET, |pc| {
                // SAFETY: one step at a time, with exclusive access to the method (`&mut self`).
                unsafe { run_step(pc, &this.steps[pc], &this.values, &env, &mut context) }
            })
        }));
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(RunError::Task { index, error })) => Err(self.step_error(index, error)),
            Ok(Err(RunError::BudgetExceeded { budget })) => Err(Error::InstructionBudget { at: self.site(0), budget }),
            Ok(Err(RunError::BadJump { from, to, .. })) => {
                Err(Error::InvalidInstruction { at: self.site(from), reason: format!("jump to {to} past the end") })
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::Internal(format!("method '{}' panicked: {what}", self.name)))
            }
        }
    }

    /// Keeps the pool's workers spinning until the guard drops, when executions use a pool of two
    /// or more threads (parallel mode, or kernels spread over it) and the runtime spins.
    fn stay_awake(&self) -> Option<crate::awake::Awake> {
        self.stay_awake_wanted().then(|| self.runtime.keep_awake().enter())
    }

    /// A parallel-mode method past its warm-up with no block to run as a graph.
    fn settled_without_graphs(&self) -> bool {
        self.parallel
            .as_ref()
            .is_some_and(|p| !p.always_graph && p.as_graph.get().is_some_and(|c| !c.iter().any(|&g| g)))
    }

    /// Whether executions use a pool of two or more threads that the runtime keeps spinning.
    fn stay_awake_wanted(&self) -> bool {
        let uses_pool = self.mode == ExecutionMode::Parallel || self.runtime.intra_op();
        self.runtime.spinning() && uses_pool && self.runtime.pool().current_num_threads() > 1
    }

    /// Program order on the current thread with per-instruction timing (`costs` keeps minima).
    fn run_inline_timed(&self, costs: &mut [f64], intra_op: bool) -> Result<()> {
        self.run_exclusive(|| {
            // Parallel-mode methods may run blocks in an order other than program order (the
            // re-plan's placement relies on it): time them block by block, inline.
            if let Some(p) = &self.parallel {
                return self.run_blocks(p, &[], Some(costs), intra_op);
            }
            let env = self.env();
            let mut context = if intra_op { self.context() } else { KernelContext::new() };
            let r = run_sequential(self.steps.len(), DEFAULT_BUDGET, |pc| {
                let t = Instant::now();
                // SAFETY: one step at a time; the busy flag (held by `run_exclusive`) excludes
                // other executions.
                let flow = unsafe { run_step(pc, &self.steps[pc], &self.values, &env, &mut context) };
                let ns = t.elapsed().as_nanos() as f64;
                if let Some(c) = costs.get_mut(pc) {
                    *c = c.min(ns);
                }
                flow
            });
            match r {
                Ok(()) => Ok(()),
                Err(RunError::Task { index, error }) => Err(self.step_error(index, error)),
                Err(RunError::BudgetExceeded { budget }) => Err(Error::InstructionBudget { at: self.site(0), budget }),
                Err(RunError::BadJump { from, to, .. }) => {
                    Err(Error::InvalidInstruction { at: self.site(from), reason: format!("jump to {to} past the end") })
                }
            }
        })
    }

    /// One warm-up execution of a parallel-mode method (see [`Warmup`]); the last one decides
    /// which blocks run as graphs from then on.
    fn warm_up(&self, p: &Parallel) -> Result<()> {
        let (cost_runs, trials, candidate) = match p.warmup.lock() {
            Ok(w) => (w.cost_runs, w.trials, w.candidate.clone()),
            Err(_) => (COST_RUNS, 0, None),
        };
        if cost_runs < COST_RUNS {
            let mut costs = p.costs.lock().map(|c| c.clone()).unwrap_or_default();
            self.run_inline_timed(&mut costs, true)?;
            if let Ok(mut shared) = p.costs.lock() {
                *shared = costs;
            }
        } else {
            // Alternating inline and graph trials see the same machine conditions (on a busy or
            // virtual machine these drift over seconds).
            let as_graph = match &candidate {
                Some(c) if trials % 2 == 1 => &c[..],
                _ => &[],
            };
            let started = Instant::now();
            self.run_exclusive(|| self.run_blocks(p, as_graph, None, true))?;
            let ns = started.elapsed().as_nanos() as f64;
            if let Ok(mut w) = p.warmup.lock() {
                let kind = usize::from(!as_graph.is_empty());
                let pair = (trials / 2) as usize;
                if let Some(slot) = w.trial_ns[kind].get_mut(pair) {
                    *slot = ns;
                }
            }
        }
        let Ok(mut w) = p.warmup.lock() else {
            let _ = p.as_graph.set(vec![false; p.blocks.len()]);
            return Ok(());
        };
        if w.cost_runs < COST_RUNS {
            w.cost_runs += 1;
            if w.cost_runs == COST_RUNS {
                let costs = p.costs.lock().map(|c| c.clone()).unwrap_or_default();
                let _ = p.long.set(costs.iter().map(|&c| c >= LONG_INSTRUCTION_NS).collect());
                let candidate: Vec<bool> = p
                    .blocks
                    .iter()
                    .map(|b| {
                        let c: Vec<f64> =
                            b.instructions.iter().map(|&i| costs.get(i).copied().unwrap_or(0.0)).collect();
                        let work: f64 = c.iter().sum();
                        let cp = b.graph.critical_path(&c);
                        let worth = work >= MIN_GRAPH_WORK_NS && work >= MIN_GRAPH_PARALLELISM * cp;
                        b.graph.len() >= 2 && (p.always_graph || worth)
                    })
                    .collect();
                if candidate.iter().any(|&g| g) {
                    w.candidate = Some(candidate);
                } else {
                    let _ = p.as_graph.set(candidate);
                }
            }
        } else if let Some(candidate) = w.candidate.clone() {
            w.trials += 1;
            if w.trials >= 2 * TRIAL_PAIRS {
                let [inline, graph] = w.trial_ns.map(median);
                let keep = p.always_graph || choose_graphs(false, inline, graph);
                if let Ok(mut r) = p.recheck.lock() {
                    r.recent_ns = w.trial_ns;
                }
                p.graphs_on.store(keep, Ordering::Relaxed);
                let _ = p.as_graph.set(candidate);
            }
        }
        Ok(())
    }

    /// Runs `f` as the only execution of this method (restoring freed values first).
    fn run_exclusive(&self, f: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(Error::InvalidMethod {
                method: self.name.to_string(),
                reason: "already executing".into(),
                kind: ErrorKind::InvalidState,
            });
        }
        let _guard = BusyGuard(&self.busy);
        // SAFETY: the busy flag excludes any other execution.
        unsafe { self.restore_freed() };
        self.catch(f)
    }

    /// An execution through shared access: parallel blocks on the pool, or inline blocks.
    fn execute_shared(&self) -> Result<()> {
        let Some(p) = &self.parallel else {
            // Sequential-mode method reached through execute_async: program order, shared access.
            let mut sink = vec![0f64; 0];
            return self.run_inline_timed(&mut sink, true);
        };
        // Warm-up: measure inline, then the candidate graphs (see `Warmup`).
        if p.as_graph.get().is_none() {
            return self.warm_up(p);
        }
        let candidate = p.as_graph.get().map(|v| &v[..]).unwrap_or(&[]);
        if p.always_graph && p.long.get().is_none() {
            self.run_exclusive(|| self.run_blocks_with(p, candidate, None, true, Some(&p.graph_costs)))?;
            if p.graph_cost_runs.fetch_add(1, Ordering::AcqRel) + 1 >= COST_RUNS {
                let long = p.graph_costs.iter().map(|c| {
                    let ns = c.load(Ordering::Relaxed);
                    ns != u64::MAX && ns as f64 >= LONG_INSTRUCTION_NS
                });
                let _ = p.long.set(long.collect());
            }
            return Ok(());
        }
        if p.always_graph || !candidate.iter().any(|&g| g) {
            return self.run_exclusive(|| self.run_blocks(p, candidate, None, true));
        }
        // Candidates: run them as the current choice says, every RECHECK_EVERY-th execution the
        // other way, and let the times keep the choice up to date (see `Recheck`).
        let graphs_now = p.graphs_on.load(Ordering::Relaxed);
        let probe = p
            .recheck
            .lock()
            .map(|mut r| {
                r.executions += 1;
                r.executions % RECHECK_EVERY == 0
            })
            .unwrap_or(false);
        let graph = graphs_now != probe;
        let started = Instant::now();
        self.run_exclusive(|| self.run_blocks(p, if graph { candidate } else { &[] }, None, true))?;
        let ns = started.elapsed().as_nanos() as f64;
        if let Ok(mut r) = p.recheck.lock() {
            r.record(graph, ns);
            if probe {
                let [inline, graph] = r.recent_ns.map(median);
                p.graphs_on.store(choose_graphs(graphs_now, inline, graph), Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Runs the blocks, following jumps: as graphs where `as_graph` says so, otherwise inline in
    /// the block's order, timing each instruction into `timing` if given.
    /// Kernels of inline blocks may use the pool when `intra_op` (and the runtime allows it).
    fn run_blocks(&self, p: &Parallel, as_graph: &[bool], timing: Option<&mut [f64]>, intra_op: bool) -> Result<()> {
        self.run_blocks_with(p, as_graph, timing, intra_op, None)
    }

    /// [`Inner::run_blocks`], the instructions of graphs timed into `record` if given (see
    /// `Parallel::graph_costs`).
    fn run_blocks_with(
        &self,
        p: &Parallel,
        as_graph: &[bool],
        mut timing: Option<&mut [f64]>,
        intra_op: bool,
        record: Option<&[AtomicU64]>,
    ) -> Result<()> {
        let env = self.env();
        let n = self.steps.len();
        let mut pc = 0usize;
        let mut executed = 0u64;
        let mut context = if intra_op { self.context() } else { KernelContext::new() };
        while pc < n {
            let bi = p.block_at.get(pc).copied().unwrap_or(usize::MAX);
            let Some(block) = p.blocks.get(bi) else {
                return Err(Error::Internal(format!("no block starts at instruction {pc}")));
            };
            executed += (block.range.end - block.range.start + 1) as u64;
            if executed > DEFAULT_BUDGET {
                return Err(Error::InstructionBudget { at: self.site(pc), budget: DEFAULT_BUDGET });
            }
            if as_graph.get(bi).copied().unwrap_or(false) {
                // SAFETY: the busy flag gives this execution sole access to the values; the block's
                // graph orders every conflicting pair of its instructions.
                unsafe {
                    run_block_parallel(
                        &p.pool,
                        block,
                        &self.steps,
                        &self.values,
                        &env,
                        p.long.get().map_or(&[], |l| &l[..]),
                        record,
                    )
                }
                .map_err(|(i, e)| self.step_error(i, e))?;
            } else if let Some(costs) = timing.as_deref_mut() {
                for &i in &block.instructions {
                    let t = Instant::now();
                    // SAFETY: one step at a time; the busy flag excludes other executions.
                    unsafe { run_step(i, &self.steps[i], &self.values, &env, &mut context) }
                        .map_err(|e| self.step_error(i, e))?;
                    if let Some(c) = costs.get_mut(i) {
                        *c = c.min(t.elapsed().as_nanos() as f64);
                    }
                }
            } else if block.in_program_order {
                // Untimed, in program order: the steps themselves, without the index list
                // (dispatch_chain: 500 instructions of ~16 ns, where the lookups showed).
                let steps = self.steps.get(block.range.start..block.range.end).unwrap_or_default();
                for (k, step) in steps.iter().enumerate() {
                    let i = block.range.start + k;
                    // SAFETY: one step at a time; the busy flag excludes other executions.
                    unsafe { run_step(i, step, &self.values, &env, &mut context) }
                        .map_err(|e| self.step_error(i, e))?;
                }
            } else {
                // Untimed: the clock read costs as much as a small instruction (dispatch_chain).
                for &i in &block.instructions {
                    let step = self.steps.get(i).ok_or_else(|| Error::Internal(format!("no instruction {i}")))?;
                    // SAFETY: one step at a time; the busy flag excludes other executions.
                    unsafe { run_step(i, step, &self.values, &env, &mut context) }
                        .map_err(|e| self.step_error(i, e))?;
                }
            }
            pc = match block.range.terminator {
                Some(t) => {
                    let Some(Step::JumpFalse { cond, destination }) = self.steps.get(t) else {
                        return Err(Error::Internal("block terminator is not a jump".into()));
                    };
                    // SAFETY: every task of the block finished (the scope joined them).
                    match unsafe { condition(&self.values, *cond) }.map_err(|e| self.step_error(t, e))? {
                        true => t + 1,
                        false => *destination as usize,
                    }
                }
                None => block.range.end,
            };
        }
        Ok(())
    }
}

static EMPTY_METHOD: MethodDef = MethodDef {
    name: String::new(),
    byte_offset: 0,
    values: Vec::new(),
    inputs: Vec::new(),
    outputs: Vec::new(),
    instructions: Vec::new(),
    instruction_offsets: Vec::new(),
    operators: Vec::new(),
    delegates: Vec::new(),
    planned_buffer_sizes: Vec::new(),
};

/// Runs the prepare function of every kernel call that has one (pre-packing constant weights)
/// and returns the states with, for each, the instruction it belongs to. On a pool of 2+ threads the calls are
/// prepared concurrently: packing mobilenet_v2's 14 MB of weights (mostly the kernel populating
/// fresh pages) is the largest part of its load. Fails with the first failing instruction's
/// index, as one after another would.
#[allow(clippy::type_complexity)]
fn prepare_calls(
    steps: &[Step],
    values: &ValueTable,
    arg_pool: &[u32],
    sites: &[(Arc<str>, usize)],
    runtime: &Runtime,
) -> std::result::Result<(Vec<PreparedState>, Vec<(usize, u32)>), (usize, KernelError)> {
    let kernels = runtime.kernels();
    let jobs: Vec<(usize, PrepareFn, Span)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| {
            let Step::Kernel { args, .. } = step else { return None };
            let prepare = sites.get(i).and_then(|(name, _)| kernels.get(name)).and_then(|k| k.prepare)?;
            Some((i, prepare, *args))
        })
        .collect();
    let run = |&(i, prepare, args): &(usize, PrepareFn, Span)| {
        // SAFETY: the method is not built yet, so only prepare functions access `values`, and
        // with no writable position (mask 0) none of them can write: contract 1 holds trivially,
        // contract 2 because every concurrent access is a read, contract 3 for mask 0.
        let call = unsafe { KernelArgs::new(values, crate::exec::pool_slice(arg_pool, args), 0) };
        prepare(&call).map_err(|e| (i, e))
    };
    // On the pool kernels run on, if any (asking its size does not create it).
    let states: Vec<_> = if runtime.intra_op() && runtime.pool_threads() > 1 && jobs.len() > 1 {
        use rayon::prelude::*;
        runtime.pool().install(|| jobs.par_iter().map(run).collect())
    } else {
        jobs.iter().map(run).collect()
    };
    let (mut prepared, mut links) = (Vec::new(), Vec::new());
    for (&(i, _, _), state) in jobs.iter().zip(states) {
        let Some(state) = state? else { continue };
        let slot =
            u32::try_from(prepared.len()).map_err(|_| (i, KernelError::NotImplemented("too many prepared calls")))?;
        links.push((i, slot));
        prepared.push(state);
    }
    Ok((prepared, links))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The choice needs a margin to change either way, so equal times keep whichever is in use.
    #[test]
    fn the_choice_changes_only_for_a_clear_gain() {
        assert!(!choose_graphs(false, 100.0, 100.0));
        assert!(choose_graphs(true, 100.0, 100.0));
        assert!(choose_graphs(false, 100.0, 90.0));
        assert!(!choose_graphs(false, 100.0, 98.0));
        assert!(!choose_graphs(true, 90.0, 100.0));
        assert!(choose_graphs(true, 98.0, 100.0));
    }

    /// Runs `executions` through a [`PoolChoice`] whose inline and pool executions take the
    /// given times (switching to the pool costs `switch_ns` more); returns the ways they ran.
    fn pool_choices(executions: usize, inline_ns: f64, pool_ns: f64, switch_ns: f64) -> Vec<bool> {
        let mut choice = PoolChoice::default();
        let mut ways = Vec::new();
        let mut last = None;
        for _ in 0..executions {
            let on_pool = choice.next_on_pool();
            let extra = if on_pool && last == Some(false) { switch_ns } else { 0.0 };
            choice.record(on_pool, if on_pool { pool_ns } else { inline_ns } + extra);
            ways.push(on_pool);
            last = Some(on_pool);
        }
        ways
    }

    #[test]
    fn sequential_mode_runs_where_it_measured_faster() {
        let trials = POOL_TRIALS as usize;
        // The trials alternate in pairs.
        let ways = pool_choices(trials, 10.0, 5.0, 0.0);
        assert_eq!(&ways[..8], &[true, true, false, false, true, true, false, false]);
        // Faster on the pool (mobilenet_v2): on the pool after the trials, but for the rechecks.
        let ways = pool_choices(200, 4.0, 2.5, 0.0);
        let after: Vec<bool> = ways[trials..].to_vec();
        assert!(after.iter().filter(|&&w| w).count() > after.len() * 3 / 4, "{after:?}");
        // A small model, faster inline: inline after the trials.
        let ways = pool_choices(200, 7.0, 18.0, 0.0);
        assert!(ways[trials..].iter().filter(|&&w| !w).count() > (200 - trials) * 3 / 4);
        // Switching ways is slow (waking the workers) but the pool wins in steady state: the
        // switches are not recorded, so the pool is still chosen.
        let ways = pool_choices(200, 4.0, 2.5, 3.0);
        assert!(ways[trials..].iter().filter(|&&w| w).count() > (200 - trials) * 3 / 4);
    }

    #[test]
    fn long_executions_stay_on_the_pool() {
        // mobilenet_v2 (ms): on the pool from the first recorded execution, no trials after.
        let ways = pool_choices(100, 4.2e6, 2.4e6, 0.0);
        assert!(ways.iter().all(|&w| w), "{ways:?}");
        // Even when one thread is as fast: the hand-off is negligible there.
        let ways = pool_choices(100, 0.9e6, 1.0e6, 0.0);
        assert!(ways.iter().all(|&w| w), "{ways:?}");
    }

    /// Each window keeps the latest samples of its choice: after a drift, the medians follow
    /// within half a window of new samples, and the choice flips.
    #[test]
    fn recent_times_replace_the_warm_up_ones() {
        let mut r =
            Recheck { recent_ns: [[400.0; TRIAL_PAIRS as usize], [410.0; TRIAL_PAIRS as usize]], ..Recheck::default() };
        assert!(!choose_graphs(false, median(r.recent_ns[0]), median(r.recent_ns[1])));
        for _ in 0..TRIAL_PAIRS {
            r.record(false, 270.0);
        }
        for _ in 0..TRIAL_PAIRS / 2 {
            r.record(true, 180.0);
        }
        assert_eq!(median(r.recent_ns[1]), 410.0, "half a window is not yet a majority");
        r.record(true, 180.0);
        let [inline, graph] = r.recent_ns.map(median);
        assert_eq!((inline, graph), (270.0, 180.0));
        assert!(choose_graphs(false, inline, graph));
    }
}

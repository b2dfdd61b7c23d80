//! Running instructions: one step, the sequential loop, and the parallel block executor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use etch_delegates::{DelegateError, DelegateHandle};
use etch_kernels::{
    DType, EValue, KernelArgs, KernelContext, KernelError, KernelFn, PreparedState, Span, Tensor, ValueTable,
};
use etch_scheduler::{Flow, GraphRun, TaskGraph};

use crate::dag::BlockRange;

/// One resolved instruction.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    Kernel {
        run: KernelFn,
        args: Span,
        writable: u64,
        /// Index of the call's prepared state in [`StepEnv::prepared`], or [`NOT_PREPARED`].
        prepared: u32,
    },
    Delegate {
        delegate: u32,
        args: Span,
        writable: u64,
    },
    Move {
        from: u32,
        to: u32,
    },
    JumpFalse {
        cond: u32,
        destination: u32,
    },
    Free {
        value: u32,
    },
    /// A call evaluated at load (constant folding).
    Nop,
}

/// [`Step::Kernel::prepared`] of a call without prepared state.
pub(crate) const NOT_PREPARED: u32 = u32::MAX;

/// Why one step failed.
#[derive(Debug)]
pub(crate) enum StepError {
    Kernel(KernelError),
    Delegate(DelegateError),
    Invalid(&'static str),
}

/// What a step needs besides the value table.
pub(crate) struct StepEnv<'a> {
    pub arg_pool: &'a [u32],
    pub delegates: &'a [Box<dyn DelegateHandle>],
    /// Operator names for tracing spans.
    pub names: &'a [(Arc<str>, usize)],
    /// Whether a tracing subscriber exists: checked once per execution, so that instructions pay
    /// nothing for spans nobody records.
    pub traced: bool,
    /// State the kernels' prepare functions derived at method init (pre-packed weights).
    pub prepared: &'a [PreparedState],
}

pub(crate) fn pool_slice(pool: &[u32], s: Span) -> &[u32] {
    pool.get(s.start as usize..s.start as usize + s.len as usize).unwrap_or(&[])
}

/// Runs instruction `index`.
///
/// # Safety
/// While this runs, no other thread may access the values and tensors the step reads or writes
/// (in the sense of `KernelArgs::new`'s contract 2). The sequential loop satisfies this by running
/// one step at a time; the parallel executor by the dependency graph's edges, which order every
/// pair of conflicting steps. Contract 1 of `KernelArgs::new` (no aliasing inside a call) was
/// proven at load by the alias check.
#[inline(always)]
pub(crate) unsafe fn run_step(
    index: usize,
    step: &Step,
    values: &ValueTable,
    env: &StepEnv<'_>,
    context: &mut KernelContext,
) -> Result<Flow, StepError> {
    if env.traced && !matches!(step, Step::Nop) {
        // SAFETY: our own contract, passed on unchanged.
        return unsafe { run_step_traced(index, step, values, env, context) };
    }
    // SAFETY: our own contract, passed on unchanged.
    unsafe { run_step_plain(step, values, env, context) }
}

/// [`run_step`] inside a tracing span (operator name, index; the subscriber adds thread and time).
///
/// # Safety
/// As for [`run_step`].
#[inline(never)]
unsafe fn run_step_traced(
    index: usize,
    step: &Step,
    values: &ValueTable,
    env: &StepEnv<'_>,
    context: &mut KernelContext,
) -> Result<Flow, StepError> {
    let _span =
        tracing::trace_span!("instruction", index, op = %env.names.get(index).map(|n| &*n.0).unwrap_or("?")).entered();
    // SAFETY: our own contract, passed on unchanged.
    unsafe { run_step_plain(step, values, env, context) }
}

/// [`run_step`] without tracing.
///
/// # Safety
/// As for [`run_step`].
#[inline(always)]
unsafe fn run_step_plain(
    step: &Step,
    values: &ValueTable,
    env: &StepEnv<'_>,
    context: &mut KernelContext,
) -> Result<Flow, StepError> {
    match *step {
        Step::Kernel { run, args, writable, prepared } => {
            let args = pool_slice(env.arg_pool, args);
            // SAFETY: contract 1 from the load-time alias check; contract 2 from this function's
            // own contract; contract 3 because calls with more than MAX_ARGS arguments were
            // refused at load and schemas have at most MAX_ARGS arguments.
            let mut kernel_args = unsafe { KernelArgs::new(values, args, writable) };
            if prepared != NOT_PREPARED {
                kernel_args = kernel_args.with_prepared(env.prepared.get(prepared as usize).map(|b| &**b));
            }
            run(context, &kernel_args).map_err(StepError::Kernel)?;
            Ok(Flow::Next)
        }
        Step::Delegate { delegate, args, writable } => {
            let args = pool_slice(env.arg_pool, args);
            let handle = env.delegates.get(delegate as usize).ok_or(StepError::Invalid("delegate index"))?;
            // SAFETY: as for kernel calls.
            let delegate_args = unsafe { KernelArgs::new(values, args, writable) };
            handle.execute(&delegate_args).map_err(StepError::Delegate)?;
            Ok(Flow::Next)
        }
        Step::Move { from, to } => {
            // SAFETY: this step reads `from` and writes `to`; by our contract nothing else touches
            // them now. EValues are copied, no reference into a cell is kept.
            let v = unsafe { values.read(from) }.ok_or(StepError::Invalid("move source out of range"))?;
            // SAFETY: as above.
            unsafe { values.write(to, v) };
            Ok(Flow::Next)
        }
        Step::JumpFalse { cond, destination } => {
            // SAFETY: the condition is only read; by our contract nobody writes it now.
            let c = unsafe { condition(values, cond) }?;
            Ok(if c { Flow::Next } else { Flow::Jump(destination as usize) })
        }
        Step::Nop => Ok(Flow::Next),
        Step::Free { value } => {
            // SAFETY: this step reads `value`; by our contract nobody writes it now.
            let v = unsafe { values.read(value) };
            if let Some(EValue::Tensor(id)) = v {
                // SAFETY: this step writes the tensor behind `value`; by our contract nothing else
                // accesses it now, so the exclusive reference is unique while it lives.
                if let Some(t) = unsafe { values.tensor_excl(id) } {
                    t.free_data();
                }
            }
            Ok(Flow::Next)
        }
    }
}

/// The value of a jump condition: a Bool, or a bool tensor that is true when every element is.
///
/// # Safety
/// Nobody may write `cond` or its tensor during the call.
pub(crate) unsafe fn condition(values: &ValueTable, cond: u32) -> Result<bool, StepError> {
    // SAFETY: the caller guarantees no concurrent writer.
    match unsafe { values.read(cond) } {
        Some(EValue::Bool(b)) => Ok(b),
        Some(EValue::Tensor(id)) => {
            // SAFETY: as above; only read.
            let t = unsafe { values.tensor_ref(id) }.ok_or(StepError::Invalid("condition tensor"))?;
            let t = Tensor::new(t, 0);
            if t.dtype() != DType::Bool {
                return Err(StepError::Invalid("jump condition tensor is not bool"));
            }
            Ok(t.data::<etch_kernels::Bool>().map_err(StepError::Kernel)?.iter().all(|b| b.get()))
        }
        _ => Err(StepError::Invalid("jump condition is not a Bool or bool tensor")),
    }
}

/// A block of the method as a task graph.
pub(crate) struct Block {
    pub range: BlockRange,
    /// Instruction index of each graph node; the node order is a topological order.
    pub instructions: Vec<usize>,
    /// `instructions` is `range.start..range.end` in order: inline runs walk the steps directly.
    pub in_program_order: bool,
    pub graph: TaskGraph,
    pub run: GraphRun,
}

/// Runs `block`'s graph on `pool`: roots are spawned, finishing threads continue with one ready
/// successor and spawn the rest. Returns the first failing instruction.
///
/// A kernel splits its work over the pool only when the pool has threads to spare or the
/// instruction is long (`long[index]`, from measured times): a short instruction that starts
/// while as many chains of the graph are alive (running or waiting to) as the pool has threads
/// runs its kernel on its own thread. Without that rule, each kernel of
/// mlp_towers' four concurrent towers handed half of its columns to whichever thread was between
/// two instructions, so the towers' weights were read from the other core's cache (a 256x256
/// product took 16 µs on one thread against 12.8 on the other). Kernels give the same bits
/// whatever their thread count, so the choice does not change outputs.
///
/// With `record`, each instruction's time (ns) lowers its slot to at most that (`fetch_min`): how
/// forced graphs, which skip the inline warm-up, measure which instructions are long.
///
/// # Safety
/// `values` must be accessed by nothing else while the block runs, and `block.graph` must order
/// every pair of the block's instructions that conflict (the engine's edges do).
pub(crate) unsafe fn run_block_parallel(
    pool: &rayon::ThreadPool,
    block: &Block,
    steps: &[Step],
    values: &ValueTable,
    env: &StepEnv<'_>,
    long: &[bool],
    record: Option<&[AtomicU64]>,
) -> Result<(), (usize, StepError)> {
    block.run.reset(&block.graph);
    let failure: std::sync::Mutex<Option<(usize, StepError)>> = std::sync::Mutex::new(None);
    let start = block.range.start;
    let threads = pool.current_num_threads();
    let chains = AtomicUsize::new(0);
    let task = |node: u32| -> bool {
        let Some(&index) = block.instructions.get(node as usize) else { return false };
        let Some(step) = steps.get(index) else { return false };
        let short = !long.get(index).copied().unwrap_or(false);
        let mut context = if short && chains.load(Ordering::Relaxed) >= threads {
            KernelContext::one_thread()
        } else {
            KernelContext::new()
        };
        let started = record.map(|_| std::time::Instant::now());
        // SAFETY: the graph runs this step only after every conflicting predecessor finished and
        // never concurrently with a conflicting step (our contract); the drive loop's AcqRel
        // counters order the memory effects.
        let result = unsafe { run_step(index, step, values, env, &mut context) };
        if let (Some(record), Some(started)) = (record, started)
            && let Some(slot) = record.get(index)
        {
            slot.fetch_min(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        match result {
            Ok(_) => true,
            Err(e) => {
                if let Ok(mut slot) = failure.lock() {
                    slot.get_or_insert((index, e));
                }
                false
            }
        }
    };
    let run = Run { block, task: &task, chains: &chains };
    pool.scope(|scope| {
        for &root in block.graph.roots() {
            run.spawn_drive(scope, root);
        }
    });
    match failure.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(f)) => Err(f),
        Err(_) => Err((start, StepError::Invalid("a parallel task panicked"))),
    }
}

/// What the spawned chains of one [`run_block_parallel`] share.
#[derive(Clone, Copy)]
struct Run<'s> {
    block: &'s Block,
    task: &'s (dyn Fn(u32) -> bool + Sync),
    /// Chains spawned and not yet ended (a chain is one `drive` call: a task and the successors
    /// it continues with).
    chains: &'s AtomicUsize,
}

impl<'s> Run<'s> {
    fn spawn_drive(self, scope: &rayon::Scope<'s>, node: u32) {
        self.chains.fetch_add(1, Ordering::Relaxed);
        scope.spawn(move |scope| {
            // Counted down on drop, so that a panicking task still ends its chain.
            let _ended = ChainEnded(self.chains);
            self.block.run.drive(&self.block.graph, node, self.task, &|next| self.spawn_drive(scope, next));
        });
    }
}

/// Counts a chain as ended when dropped.
struct ChainEnded<'a>(&'a AtomicUsize);

impl Drop for ChainEnded<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

//! A method as a dependency graph: what each instruction reads and writes, the straight-line blocks
//! between jumps, the edges inside each block (data and memory hazards), and a concurrency-aware
//! re-plan of planned memory.
//!
//! Edges keep every pair of conflicting accesses (write/read, read/write, write/write) in program
//! order. Resources are values (a `MoveCall` or a kernel's non-tensor return writes one), tensors
//! (metadata and bytes), and — through overlap lists — the planned bytes that the exporter's memory
//! plan shares between tensors whose lifetimes it assumed sequential.

use std::collections::BTreeSet;

use etch_kernels::{EValue, ListPool, NONE_INDEX, TensorId};
use etch_scheduler::TaskGraph;

use crate::alias::{PointsTo, Region};

/// The shape of an instruction, as far as dependencies are concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StepShape<'a> {
    /// Kernel or delegate call: value indices and the writable positions.
    Call {
        args: &'a [u32],
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
    /// A folded call: no effect at run time.
    Nop,
}

/// What one instruction reads and writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accesses {
    pub read_values: Vec<u32>,
    pub write_values: Vec<u32>,
    pub read_tensors: Vec<TensorId>,
    pub write_tensors: Vec<TensorId>,
}

impl Accesses {
    pub(crate) fn tensors(&self) -> impl Iterator<Item = TensorId> + '_ {
        self.read_tensors.iter().chain(&self.write_tensors).copied()
    }
}

/// Values a position reads besides itself: list items, and the `Int` values an `IntList` names.
fn list_items(value: u32, values: &[EValue], pool: &ListPool) -> Vec<u32> {
    match values.get(value as usize) {
        Some(EValue::IntList(s) | EValue::TensorList(s) | EValue::OptionalTensorList(s)) => {
            pool.indices(*s).iter().copied().filter(|&i| i != NONE_INDEX).collect()
        }
        _ => Vec::new(),
    }
}

pub(crate) fn accesses(step: StepShape<'_>, values: &[EValue], pool: &ListPool, pt: &PointsTo) -> Accesses {
    let mut a = Accesses::default();
    match step {
        StepShape::Call { args, writable } => {
            for (p, &v) in args.iter().enumerate() {
                let written = p < 64 && writable & (1 << p) != 0;
                let tensors = pt.position_tensors(v, values, pool);
                if written {
                    a.write_values.push(v);
                    a.write_tensors.extend(tensors);
                } else {
                    a.read_values.push(v);
                    a.read_tensors.extend(tensors);
                }
                // A list's items are values too (moves may write them; prim ops write Ints).
                a.read_values.extend(list_items(v, values, pool));
            }
        }
        StepShape::Move { from, to } => {
            a.read_values.push(from);
            a.write_values.push(to);
        }
        StepShape::JumpFalse { cond, .. } => {
            a.read_values.push(cond);
            a.read_tensors.extend(pt.position_tensors(cond, values, pool));
        }
        StepShape::Free { value } => {
            a.read_values.push(value);
            a.write_tensors.extend(pt.position_tensors(value, values, pool));
        }
        StepShape::Nop => {}
    }
    for list in [&mut a.read_values, &mut a.write_values] {
        list.sort_unstable();
        list.dedup();
    }
    for list in [&mut a.read_tensors, &mut a.write_tensors] {
        list.sort_unstable();
        list.dedup();
    }
    a
}

/// A straight-line range of instructions; `terminator` is the `JumpFalse` that ends it, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRange {
    pub start: usize,
    /// One past the last node (the terminator, if any, sits at `end`).
    pub end: usize,
    pub terminator: Option<usize>,
}

/// Splits instructions into blocks: a block starts at 0, at every jump destination and after every
/// jump; a jump ends its block.
pub(crate) fn blocks(steps: &[StepShape<'_>]) -> Vec<BlockRange> {
    let n = steps.len();
    let mut leaders = BTreeSet::from([0usize]);
    for (i, s) in steps.iter().enumerate() {
        if let StepShape::JumpFalse { destination, .. } = s {
            leaders.insert(*destination as usize);
            leaders.insert(i + 1);
        }
    }
    let leaders: Vec<usize> = leaders.into_iter().filter(|&l| l < n).collect();
    let mut out = Vec::new();
    for (k, &start) in leaders.iter().enumerate() {
        let stop = leaders.get(k + 1).copied().unwrap_or(n);
        let last = stop - 1;
        let terminator = matches!(steps.get(last), Some(StepShape::JumpFalse { .. })).then_some(last);
        out.push(BlockRange { start, end: terminator.unwrap_or(stop), terminator });
    }
    out
}

/// For each tensor, the other tensors whose planned bytes overlap its own.
pub(crate) fn overlaps(regions: &[Region]) -> Vec<Vec<TensorId>> {
    let mut by_buffer: Vec<(usize, u64, u64, u32)> = regions
        .iter()
        .enumerate()
        .filter_map(|(t, r)| match *r {
            Region::Planned { buffer, start, end } if start < end => Some((buffer, start, end, t as u32)),
            _ => None,
        })
        .collect();
    by_buffer.sort_unstable();
    let mut out = vec![Vec::new(); regions.len()];
    // Sweep: within a buffer, sorted by start, a region overlaps the following ones that start
    // before it ends.
    for i in 0..by_buffer.len() {
        let (b, _, end, t) = by_buffer[i];
        for &(b2, s2, _, t2) in &by_buffer[i + 1..] {
            if b2 != b || s2 >= end {
                break;
            }
            out[t as usize].push(TensorId(t2));
            out[t2 as usize].push(TensorId(t));
        }
    }
    out
}

/// Dependency edges among `accesses` (indices are block-relative). `overlap` lists, per tensor,
/// the tensors sharing its bytes; pass empty lists for data edges only.
pub(crate) fn edges(
    accesses: &[&Accesses],
    tensor_count: usize,
    value_count: usize,
    overlap: &[Vec<TensorId>],
) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut last_value_writer: Vec<Option<u32>> = vec![None; value_count];
    let mut value_readers: Vec<Vec<u32>> = vec![Vec::new(); value_count];
    let mut last_tensor_writer: Vec<Option<u32>> = vec![None; tensor_count];
    let mut tensor_readers: Vec<Vec<u32>> = vec![Vec::new(); tensor_count];
    let no_overlap: Vec<TensorId> = Vec::new();
    let ov = |t: TensorId| overlap.get(t.0 as usize).unwrap_or(&no_overlap);
    for (j, a) in accesses.iter().enumerate() {
        let j = j as u32;
        let mut add = |from: u32| {
            if from != j {
                out.push((from, j));
            }
        };
        for &v in &a.read_values {
            if let Some(w) = last_value_writer.get(v as usize).copied().flatten() {
                add(w);
            }
        }
        for &v in &a.write_values {
            if let Some(w) = last_value_writer.get(v as usize).copied().flatten() {
                add(w);
            }
            for &r in value_readers.get(v as usize).into_iter().flatten() {
                add(r);
            }
        }
        for &t in &a.read_tensors {
            for u in std::iter::once(t).chain(ov(t).iter().copied()) {
                if let Some(w) = last_tensor_writer.get(u.0 as usize).copied().flatten() {
                    add(w);
                }
            }
        }
        for &t in &a.write_tensors {
            for u in std::iter::once(t).chain(ov(t).iter().copied()) {
                if let Some(w) = last_tensor_writer.get(u.0 as usize).copied().flatten() {
                    add(w);
                }
                for &r in tensor_readers.get(u.0 as usize).into_iter().flatten() {
                    add(r);
                }
            }
        }
        for &v in &a.read_values {
            if let Some(r) = value_readers.get_mut(v as usize) {
                r.push(j);
            }
        }
        for &v in &a.write_values {
            if let Some(w) = last_value_writer.get_mut(v as usize) {
                *w = Some(j);
            }
            if let Some(r) = value_readers.get_mut(v as usize) {
                r.clear();
            }
        }
        for &t in &a.read_tensors {
            if let Some(r) = tensor_readers.get_mut(t.0 as usize) {
                r.push(j);
            }
        }
        for &t in &a.write_tensors {
            if let Some(w) = last_tensor_writer.get_mut(t.0 as usize) {
                *w = Some(j);
            }
            if let Some(r) = tensor_readers.get_mut(t.0 as usize) {
                r.clear();
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// One planned tensor, as the re-planner sees it.
#[derive(Debug, Clone)]
pub(crate) struct PlannedTensor {
    pub tensor: TensorId,
    pub buffer: usize,
    pub nbytes: u64,
    /// Must keep its bytes across executions or from before the first access (inputs, state).
    pub live_in: bool,
    /// Must keep its bytes after the last access (outputs, state).
    pub live_out: bool,
}

/// Bytes of a re-plan, per planned buffer, and the new offset of each planned tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replan {
    pub buffer_sizes: Vec<u64>,
    /// New offset per tensor id (None for tensors not planned).
    pub offsets: Vec<Option<u64>>,
    /// The block's instructions (block-relative) in the order of the schedule the plan assumes:
    /// a topological order in which every byte shared by two tensors is used by one before the
    /// other. Executions in this order (sequential or as a graph built in it) are correct.
    pub order: Vec<u32>,
}

/// Alignment of re-planned tensors (the exporter's own is 16).
const REPLAN_ALIGN: u64 = 16;

/// Which ready task a list schedule starts when a worker frees up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// The one with the longest remaining path ("bottom level"): the shortest makespan, but it
    /// starts every branch early, so more tensors are live at once.
    LongestPath,
    /// The first in program order: the exporter's order with a worker's worth of lookahead, so
    /// about the exporter's live tensors (moe: 0.82 of its bytes against 1.54 with the above).
    ProgramOrder,
}

/// A list schedule of `graph` on `workers` identical workers: tasks by `priority`, each on the
/// worker that frees up first. Returns `(start, finish)` per task. With
/// [`Priority::LongestPath`] its makespan is close to `max(critical path, work / workers)`;
/// tensors whose lifetimes do not overlap in it can share bytes without costing that parallelism.
pub(crate) fn list_schedule(graph: &TaskGraph, cost: &[f64], workers: usize, priority: Priority) -> Vec<(f64, f64)> {
    let n = graph.len();
    let c = |i: usize| cost.get(i).copied().unwrap_or(0.0).max(1e-9);
    // Bottom level: cost of the longest path from the task to the end.
    let mut level = vec![0f64; n];
    for i in (0..n).rev() {
        let tail = graph.successors(i as u32).iter().map(|&s| level[s as usize]).fold(0.0, f64::max);
        level[i] = c(i) + tail;
    }
    let mut remaining: Vec<u32> = (0..n).map(|i| graph.predecessor_count(i as u32)).collect();
    let mut ready_at = vec![0f64; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut free = vec![0f64; workers.max(1)];
    let mut when = vec![(0f64, 0f64); n];
    for _ in 0..n {
        // The worker that frees first takes the ready task that comes first by priority (ties:
        // program order), starting when both are available.
        let (w, &t_free) = free.iter().enumerate().fold((0, &f64::INFINITY), |b, x| if x.1 < b.1 { x } else { b });
        let Some(pos) = (0..ready.len()).max_by(|&a, &b| {
            let (ta, tb) = (ready[a], ready[b]);
            // Prefer tasks already ready when the worker frees, then the longest remaining path.
            let (ra, rb) = (ready_at[ta] <= t_free, ready_at[tb] <= t_free);
            let by_priority = match priority {
                Priority::LongestPath => level[ta].total_cmp(&level[tb]),
                Priority::ProgramOrder => std::cmp::Ordering::Equal,
            };
            ra.cmp(&rb).then(by_priority).then(tb.cmp(&ta))
        }) else {
            break;
        };
        let task = ready.swap_remove(pos);
        let start = t_free.max(ready_at[task]);
        let finish = start + c(task);
        when[task] = (start, finish);
        free[w] = finish;
        for &s in graph.successors(task as u32) {
            let s = s as usize;
            ready_at[s] = ready_at[s].max(finish);
            remaining[s] -= 1;
            if remaining[s] == 0 {
                ready.push(s);
            }
        }
    }
    when
}

/// The list schedule run backwards: every task as late as `workers` workers allow, so that the
/// makespan stays [`list_schedule`]'s with [`Priority::LongestPath`] (run on the reversed graph)
/// while each value is made just before its first reader needs it. Branches that start early
/// in a forward schedule keep their results live for the whole block; here they start late, so
/// fewer tensors are usually live at once (binary_mix: 432 bytes against 512 for the same
/// critical path; not always fewer once placed: moe 1.99x the exporter's bytes against 1.54x).
pub(crate) fn latest_schedule(graph: &TaskGraph, cost: &[f64], workers: usize) -> Vec<(f64, f64)> {
    let n = graph.len();
    // Task i of the block is task n - 1 - i of the reversed graph, whose edges point forward too.
    let flip = |i: usize| (n - 1 - i) as u32;
    let edges: Vec<(u32, u32)> =
        (0..n).flat_map(|i| graph.successors(i as u32).iter().map(move |&s| (flip(s as usize), flip(i)))).collect();
    let Ok(reversed) = TaskGraph::new(n, edges) else {
        // Unreachable for a valid graph (its edges point forward, so the flipped ones do too);
        // a forward schedule is still a valid schedule.
        return list_schedule(graph, cost, workers, Priority::LongestPath);
    };
    let reversed_cost: Vec<f64> = (0..n).map(|r| cost.get(n - 1 - r).copied().unwrap_or(0.0)).collect();
    let backwards = list_schedule(&reversed, &reversed_cost, workers, Priority::LongestPath);
    let makespan = backwards.iter().map(|w| w.1).fold(0.0, f64::max);
    (0..n).map(|i| backwards[n - 1 - i]).map(|(start, finish)| (makespan - finish, makespan - start)).collect()
}

/// Lays planned tensors out again so that two tensors share bytes only when every access of one
/// precedes every access of the other in the dependency graph (`before`: transitive
/// predecessors, data edges only), which costs no parallelism at all, or, with `by_schedule`, also
/// when in `when` (a schedule of the block, e.g. [`list_schedule`] on the pool's workers) one's
/// lifetime ends before the other's begins, which costs only parallelism that schedule does not
/// use. Greedy by size, lowest offset first, like the exporter's planner.
pub(crate) fn replan(
    planned: &[PlannedTensor],
    access_lists: &[Vec<u32>],
    before: &[Vec<u64>],
    when: &[(f64, f64)],
    by_schedule: bool,
    buffer_count: usize,
    tensor_count: usize,
) -> Replan {
    let precedes = |a: u32, b: u32| -> bool {
        before.get(b as usize).and_then(|bits| bits.get(a as usize / 64)).is_some_and(|w| w & (1 << (a % 64)) != 0)
    };
    let empty = Vec::new();
    let acc = |t: TensorId| access_lists.get(t.0 as usize).unwrap_or(&empty);
    // Lifetime of each planned tensor in the schedule.
    let span = |t: &PlannedTensor| -> (f64, f64) {
        let a = acc(t.tensor);
        let start = if t.live_in {
            f64::NEG_INFINITY
        } else {
            a.iter().map(|&i| when.get(i as usize).map_or(0.0, |w| w.0)).fold(f64::INFINITY, f64::min)
        };
        let end = if t.live_out {
            f64::INFINITY
        } else {
            a.iter().map(|&i| when.get(i as usize).map_or(0.0, |w| w.1)).fold(f64::NEG_INFINITY, f64::max)
        };
        (start, end)
    };
    let spans: Vec<(f64, f64)> = planned.iter().map(span).collect();
    // x entirely before y.
    let ordered = |xi: usize, yi: usize| -> bool {
        let (x, y) = (&planned[xi], &planned[yi]);
        if x.live_out || y.live_in {
            return false;
        }
        let x_end = spans[xi].1;
        let y_start = spans[yi].0;
        let by_graph = acc(x.tensor).iter().all(|&a| acc(y.tensor).iter().all(|&b| precedes(a, b)));
        by_graph || (by_schedule && x_end <= y_start)
    };
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by(|&a, &b| planned[b].nbytes.cmp(&planned[a].nbytes).then(a.cmp(&b)));
    let mut offsets = vec![None; tensor_count];
    let mut sizes = vec![0u64; buffer_count];
    let mut placed: Vec<(usize, u64, u64)> = Vec::new(); // (planned index, start, end)
    for &i in &order {
        let t = &planned[i];
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&(j, _, _)| planned[j].buffer == t.buffer && !(ordered(i, j) || ordered(j, i)))
            .map(|&(_, s, e)| (s, e))
            .collect();
        busy.sort_unstable();
        let mut offset = 0u64;
        for (s, e) in busy {
            if offset + t.nbytes <= s || t.nbytes == 0 {
                break;
            }
            offset = offset.max(e.next_multiple_of(REPLAN_ALIGN));
        }
        let end = offset + t.nbytes;
        placed.push((i, offset, end));
        if let Some(slot) = offsets.get_mut(t.tensor.0 as usize) {
            *slot = Some(offset);
        }
        if let Some(s) = sizes.get_mut(t.buffer) {
            *s = (*s).max(end.next_multiple_of(REPLAN_ALIGN));
        }
    }
    // Execution order: by start time in the schedule (ties: program order). Data edges and the
    // sharing above both point forward in it.
    let mut order: Vec<u32> = (0..when.len() as u32).collect();
    order.sort_by(|&a, &b| when[a as usize].0.total_cmp(&when[b as usize].0).then(a.cmp(&b)));
    Replan { buffer_sizes: sizes, offsets, order }
}

/// Builds a block's task graph (block-relative indices).
pub(crate) fn block_graph(edges: Vec<(u32, u32)>, len: usize) -> TaskGraph {
    // Edges come from `edges`, which only emits forward pairs inside the block.
    TaskGraph::new(len, edges).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(rv: &[u32], wv: &[u32], rt: &[u32], wt: &[u32]) -> Accesses {
        Accesses {
            read_values: rv.to_vec(),
            write_values: wv.to_vec(),
            read_tensors: rt.iter().map(|&t| TensorId(t)).collect(),
            write_tensors: wt.iter().map(|&t| TensorId(t)).collect(),
        }
    }

    #[test]
    fn data_and_hazard_edges() {
        // 0 writes t0; 1 reads t0 writes t1; 2 writes t2 (independent); 3 reads t1, t2.
        let a = [
            acc(&[], &[], &[], &[0]),
            acc(&[], &[], &[0], &[1]),
            acc(&[], &[], &[], &[2]),
            acc(&[], &[], &[1, 2], &[3]),
        ];
        let refs: Vec<&Accesses> = a.iter().collect();
        let e = edges(&refs, 4, 0, &[]);
        assert_eq!(e, vec![(0, 1), (1, 3), (2, 3)]);
        // If t2 shares bytes with t0 (exporter reuse), 2 must wait for 1's read of t0 and 0's write.
        let ov = vec![vec![TensorId(2)], vec![], vec![TensorId(0)], vec![]];
        let e = edges(&refs, 4, 0, &ov);
        assert!(e.contains(&(1, 2)) && e.contains(&(0, 2)), "{e:?}");
    }

    #[test]
    fn blocks_split_at_jumps() {
        let args: [u32; 0] = [];
        let call = StepShape::Call { args: &args, writable: 0 };
        let steps = [call, StepShape::JumpFalse { cond: 0, destination: 4 }, call, call, call];
        let b = blocks(&steps);
        assert_eq!(
            b,
            vec![
                BlockRange { start: 0, end: 1, terminator: Some(1) },
                BlockRange { start: 2, end: 4, terminator: None },
                BlockRange { start: 4, end: 5, terminator: None },
            ]
        );
    }

    #[test]
    fn replan_shares_only_ordered_tensors() {
        // Chain 0 → 1 → 2; tensor A used by 0, B by 1 and 2, C by 2; A before C: may share.
        let before = vec![vec![0u64], vec![0b1], vec![0b11]];
        let planned = vec![
            PlannedTensor { tensor: TensorId(0), buffer: 0, nbytes: 64, live_in: false, live_out: false },
            PlannedTensor { tensor: TensorId(1), buffer: 0, nbytes: 64, live_in: false, live_out: false },
            PlannedTensor { tensor: TensorId(2), buffer: 0, nbytes: 64, live_in: false, live_out: true },
        ];
        let lists = vec![vec![0, 1], vec![1, 2], vec![2]];
        let when = [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)];
        let r = replan(&planned, &lists, &before, &when, true, 1, 3);
        assert_eq!(r.order, vec![0, 1, 2]);
        assert_eq!(r.buffer_sizes, vec![128]);
        assert_eq!(r.offsets[0], r.offsets[2]);
        assert_ne!(r.offsets[0], r.offsets[1]);
        // With no order and overlapping lifetimes (all concurrent), nothing shares.
        let when = [(0.0, 3.0), (0.0, 3.0), (0.0, 3.0)];
        let r = replan(&planned, &lists, &vec![vec![0u64]; 3], &when, true, 1, 3);
        assert_eq!(r.buffer_sizes, vec![192]);
        // No order in the graph, but the schedule runs 0, 1, 2 one after another: the three
        // share only when the schedule may decide it.
        let when = [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)];
        let lists = vec![vec![0], vec![1], vec![2]];
        let r = replan(&planned, &lists, &vec![vec![0u64]; 3], &when, true, 1, 3);
        assert_eq!(r.buffer_sizes, vec![64]);
        let r = replan(&planned, &lists, &vec![vec![0u64]; 3], &when, false, 1, 3);
        assert_eq!(r.buffer_sizes, vec![192]);
    }

    #[test]
    fn list_schedule_uses_the_workers() {
        // Two independent chains of two tasks, then a join: two workers run the chains side by side.
        let g = TaskGraph::new(5, [(0, 1), (2, 3), (1, 4), (3, 4)]).unwrap();
        let w = list_schedule(&g, &[1.0; 5], 2, Priority::LongestPath);
        assert_eq!(w[4], (2.0, 3.0));
        assert_eq!(w[0].0, 0.0);
        assert_eq!(w[2].0, 0.0);
        // One worker: everything in sequence.
        let w = list_schedule(&g, &[1.0; 5], 1, Priority::LongestPath);
        assert_eq!(w.iter().map(|x| x.1).fold(0.0, f64::max), 5.0);
    }

    #[test]
    fn program_order_priority_follows_the_program() {
        // Tasks 0 and 1 stand alone; 2 heads the chain 2 -> 3 -> 4. One worker: the longest path
        // first starts the chain, program order starts task 0.
        let g = TaskGraph::new(5, [(2, 3), (3, 4)]).unwrap();
        let first = |p| list_schedule(&g, &[1.0; 5], 1, p).iter().position(|w| w.0 == 0.0);
        assert_eq!(first(Priority::LongestPath), Some(2));
        assert_eq!(first(Priority::ProgramOrder), Some(0));
    }

    #[test]
    fn latest_schedule_starts_side_branches_just_in_time() {
        // The chain 0 -> 2 -> 3 -> 4 and a side task 1 that only 4 reads: two workers run the
        // chain in 4 steps either way; forwards the side task starts at once, backwards just
        // before 4 needs it.
        let g = TaskGraph::new(5, [(0, 2), (2, 3), (3, 4), (1, 4)]).unwrap();
        let early = list_schedule(&g, &[1.0; 5], 2, Priority::LongestPath);
        let late = latest_schedule(&g, &[1.0; 5], 2);
        assert_eq!(early[1], (0.0, 1.0));
        assert_eq!(late[1], (2.0, 3.0));
        for w in [&early, &late] {
            assert_eq!(w.iter().map(|x| x.1).fold(0.0, f64::max), 4.0);
        }
        // Every edge is respected.
        for i in 0..5u32 {
            for &s in g.successors(i) {
                assert!(late[i as usize].1 <= late[s as usize].0, "{i} -> {s}: {late:?}");
            }
        }
    }

    #[test]
    fn overlap_lists_are_symmetric() {
        let regions = [
            Region::Planned { buffer: 0, start: 0, end: 16 },
            Region::Planned { buffer: 0, start: 8, end: 24 },
            Region::Planned { buffer: 0, start: 24, end: 32 },
            Region::Planned { buffer: 1, start: 0, end: 16 },
            Region::Constant,
        ];
        let o = overlaps(&regions);
        assert_eq!(o[0], vec![TensorId(1)]);
        assert_eq!(o[1], vec![TensorId(0)]);
        assert!(o[2].is_empty() && o[3].is_empty() && o[4].is_empty());
    }
}

//! Dependency graphs of tasks and their concurrent execution.
//!
//! A [`TaskGraph`] holds tasks `0..n` with edges that always point forward (`a < b`), so program
//! order is a topological order: running tasks one after another in index order is always valid,
//! and that is what makes parallel results identical to sequential ones.
//!
//! [`GraphRun`] executes a graph once: each task has an atomic count of unfinished predecessors.
//! A thread that finishes a task decrements its successors' counts; of the successors that become
//! ready it keeps one to run itself (the data it just produced is hot in its cache) and hands the
//! others to a spawner (a work-stealing pool in production, plain threads under loom).

use crate::sync::{AtomicBool, AtomicU32, Ordering};

/// Tasks `0..n` with forward edges, in compressed (CSR) form.
#[derive(Debug, Clone, Default)]
pub struct TaskGraph {
    /// Number of predecessors of each task.
    preds: Vec<u32>,
    /// Successors of task `i` are `succs[succ_start[i]..succ_start[i + 1]]`.
    succ_start: Vec<u32>,
    succs: Vec<u32>,
    /// Tasks without predecessors.
    roots: Vec<u32>,
}

/// An edge that points backward or past the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("edge {from} -> {to} is not a forward edge inside 0..{len}")]
pub struct BadEdge {
    pub from: u32,
    pub to: u32,
    pub len: usize,
}

impl TaskGraph {
    /// A graph of `len` tasks with these edges (duplicates are merged).
    pub fn new(len: usize, edges: impl IntoIterator<Item = (u32, u32)>) -> Result<TaskGraph, BadEdge> {
        let mut list: Vec<(u32, u32)> = Vec::new();
        for (from, to) in edges {
            if from >= to || to as usize >= len {
                return Err(BadEdge { from, to, len });
            }
            list.push((from, to));
        }
        list.sort_unstable();
        list.dedup();
        let mut preds = vec![0u32; len];
        let mut succ_start = vec![0u32; len + 1];
        for &(from, to) in &list {
            preds[to as usize] += 1;
            succ_start[from as usize + 1] += 1;
        }
        for i in 0..len {
            succ_start[i + 1] += succ_start[i];
        }
        let succs = list.iter().map(|&(_, to)| to).collect();
        let roots = (0..len as u32).filter(|&i| preds[i as usize] == 0).collect();
        Ok(TaskGraph { preds, succ_start, succs, roots })
    }

    pub fn len(&self) -> usize {
        self.preds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.preds.is_empty()
    }

    pub fn roots(&self) -> &[u32] {
        &self.roots
    }

    pub fn successors(&self, task: u32) -> &[u32] {
        let i = task as usize;
        match (self.succ_start.get(i), self.succ_start.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.succs[a as usize..b as usize],
            _ => &[],
        }
    }

    pub fn predecessor_count(&self, task: u32) -> u32 {
        self.preds.get(task as usize).copied().unwrap_or(0)
    }

    pub fn edge_count(&self) -> usize {
        self.succs.len()
    }

    /// Length of the longest path when task `i` costs `cost[i]` (missing costs count as 0).
    pub fn critical_path(&self, cost: &[f64]) -> f64 {
        let mut finish = vec![0f64; self.len()];
        let mut best = 0f64;
        // Forward edges: index order is topological.
        for i in 0..self.len() {
            let f = finish[i] + cost.get(i).copied().unwrap_or(0.0);
            best = best.max(f);
            for &s in self.successors(i as u32) {
                let slot = &mut finish[s as usize];
                *slot = slot.max(f);
            }
        }
        best
    }

    /// For each task, the set of tasks that must finish before it (transitively), as bitsets of
    /// `len` bits. Quadratic in memory: meant for method analysis at load, not for huge graphs.
    pub fn reachability(&self) -> Vec<Vec<u64>> {
        let words = self.len().div_ceil(64);
        let mut before: Vec<Vec<u64>> = vec![vec![0u64; words]; self.len()];
        for i in 0..self.len() {
            let (done, rest) = before.split_at_mut(i + 1);
            let mine = &done[i];
            for &s in self.successors(i as u32) {
                if let Some(target) = rest.get_mut(s as usize - i - 1) {
                    for (t, m) in target.iter_mut().zip(mine) {
                        *t |= m;
                    }
                    target[i / 64] |= 1 << (i % 64);
                }
            }
        }
        before
    }
}

/// The mutable state of one execution of a [`TaskGraph`]. Allocated once, reset per run.
#[derive(Debug)]
pub struct GraphRun {
    remaining: Box<[AtomicU32]>,
    failed: AtomicBool,
}

impl GraphRun {
    pub fn new(graph: &TaskGraph) -> GraphRun {
        GraphRun { remaining: graph.preds.iter().map(|&p| AtomicU32::new(p)).collect(), failed: AtomicBool::new(false) }
    }

    /// Prepares for a new run. Must not race with a run in progress; the spawner that starts the
    /// run publishes these stores to the threads that take part.
    pub fn reset(&self, graph: &TaskGraph) {
        for (r, &p) in self.remaining.iter().zip(&graph.preds) {
            r.store(p, Ordering::Relaxed);
        }
        self.failed.store(false, Ordering::Relaxed);
    }

    /// Whether a task reported failure during this run.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Runs `start` (which must be ready) and then, chain by chain, the successors it makes ready:
    /// one continues on this thread, the others go to `spawn`, which must eventually call `drive`
    /// for them. `task` returns `false` to stop the run (an error): no further tasks start.
    pub fn drive(&self, graph: &TaskGraph, start: u32, task: &dyn Fn(u32) -> bool, spawn: &dyn Fn(u32)) {
        let mut node = start;
        loop {
            if self.failed.load(Ordering::Acquire) {
                return;
            }
            if !task(node) {
                self.failed.store(true, Ordering::Release);
                return;
            }
            let mut next = None;
            for &s in graph.successors(node) {
                let Some(counter) = self.remaining.get(s as usize) else { continue };
                // AcqRel: the release half publishes what `node` wrote; the acquire half, on the
                // decrement that reaches zero, makes every predecessor's writes visible to the
                // thread that runs `s` (release sequences through the read-modify-writes).
                if counter.fetch_sub(1, Ordering::AcqRel) == 1 {
                    match next {
                        None => next = Some(s),
                        Some(_) => spawn(s),
                    }
                }
            }
            match next {
                Some(s) => node = s,
                None => return,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn diamond() -> TaskGraph {
        TaskGraph::new(4, [(0, 1), (0, 2), (1, 3), (2, 3), (0, 1)]).unwrap()
    }

    #[test]
    fn csr_and_roots() {
        let g = diamond();
        assert_eq!(g.roots(), &[0]);
        assert_eq!(g.successors(0), &[1, 2]);
        assert_eq!(g.predecessor_count(3), 2);
        assert_eq!(g.edge_count(), 4);
        assert!(TaskGraph::new(3, [(2, 1)]).is_err());
        assert!(TaskGraph::new(3, [(1, 3)]).is_err());
    }

    #[test]
    fn critical_path_and_reachability() {
        let g = diamond();
        assert_eq!(g.critical_path(&[1.0, 5.0, 2.0, 1.0]), 7.0);
        let r = g.reachability();
        assert_eq!(r[3][0] & 0b111, 0b111);
        assert_eq!(r[1][0], 0b1);
        assert_eq!(r[0][0], 0);
    }

    #[test]
    fn drive_runs_every_task_once_in_dependency_order() {
        let g = TaskGraph::new(6, [(0, 2), (1, 2), (2, 3), (2, 4), (3, 5), (4, 5)]).unwrap();
        let run = GraphRun::new(&g);
        let order = std::sync::Mutex::new(Vec::new());
        let pending = std::sync::Mutex::new(Vec::new());
        let task = |n: u32| {
            order.lock().unwrap().push(n);
            true
        };
        let spawn = |n: u32| pending.lock().unwrap().push(n);
        for &r in g.roots() {
            run.drive(&g, r, &task, &spawn);
        }
        while let Some(n) = pending.lock().unwrap().pop() {
            run.drive(&g, n, &task, &spawn);
        }
        let order = order.into_inner().unwrap();
        assert_eq!(order.len(), 6);
        let pos = |n| order.iter().position(|&x| x == n).unwrap();
        for (a, b) in [(0, 2), (1, 2), (2, 3), (2, 4), (3, 5), (4, 5)] {
            assert!(pos(a) < pos(b), "{order:?}");
        }
        // A failing task stops the run; nothing after it starts.
        run.reset(&g);
        let ran = std::sync::Mutex::new(Vec::new());
        let failing = |n: u32| {
            ran.lock().unwrap().push(n);
            n != 2
        };
        for &r in g.roots() {
            run.drive(&g, r, &failing, &|_| panic!("no spawn expected"));
        }
        assert!(run.failed());
        assert!(!ran.lock().unwrap().contains(&3));
    }
}

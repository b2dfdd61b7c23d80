//! Executes programs of tasks. Knows nothing about `.pte` files, tensors or kernels: a task is an
//! index, and the caller runs it.
//!
//! A program is a sequence of tasks 0..n. Running task `i` yields [`Flow::Next`] or
//! [`Flow::Jump`] (control flow). The sequential executor ([`run_sequential`]) is a loop with
//! jumps and an instruction budget, so a hostile program cannot loop forever.
//!
//! The concurrent executor runs the same program as a dependency graph: jumps split it into
//! straight-line blocks that run one after another; inside a block, a task becomes ready when its
//! predecessors (data and memory-hazard edges computed by the engine) have finished
//! ([`TaskGraph`], [`GraphRun`]).
//!
//! [`Admission`] bounds how many jobs (whole executions) a pool takes at once.

mod admission;
mod graph;
mod sync;

pub use admission::Admission;
pub use graph::{BadEdge, GraphRun, TaskGraph};

/// What to do after a task ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Continue with the next task.
    Next,
    /// Continue at this task index (`n` ends the program).
    Jump(usize),
}

/// Why a sequential run stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError<E> {
    /// A task failed.
    #[error("task {index}: {error}")]
    Task { index: usize, error: E },
    /// More tasks ran than the budget allows (a loop that does not end).
    #[error("ran {budget} tasks without finishing (instruction budget exceeded)")]
    BudgetExceeded { budget: u64 },
    /// A jump to an index past the end.
    #[error("task {from} jumps to {to}, past the end ({len} tasks)")]
    BadJump { from: usize, to: usize, len: usize },
}

/// ExecuTorch's cap on instructions per execution.
pub const DEFAULT_BUDGET: u64 = 10_000_000;

/// Runs tasks `0..len` in order, following jumps, until the index reaches `len`.
pub fn run_sequential<E>(
    len: usize,
    budget: u64,
    mut run_task: impl FnMut(usize) -> Result<Flow, E>,
) -> Result<(), RunError<E>> {
    let mut pc = 0usize;
    let mut steps = 0u64;
    while pc < len {
        steps += 1;
        if steps > budget {
            return Err(RunError::BudgetExceeded { budget });
        }
        match run_task(pc) {
            Ok(Flow::Next) => pc += 1,
            Ok(Flow::Jump(to)) if to <= len => pc = to,
            Ok(Flow::Jump(to)) => return Err(RunError::BadJump { from: pc, to, len }),
            Err(error) => return Err(RunError::Task { index: pc, error }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_order_and_follows_jumps() {
        let mut seen = Vec::new();
        run_sequential::<()>(5, 100, |i| {
            seen.push(i);
            Ok(if i == 1 { Flow::Jump(3) } else { Flow::Next })
        })
        .unwrap();
        assert_eq!(seen, [0, 1, 3, 4]);
    }

    #[test]
    fn endless_loops_hit_the_budget() {
        let r = run_sequential::<()>(2, 1000, |_| Ok(Flow::Jump(0)));
        assert_eq!(r, Err(RunError::BudgetExceeded { budget: 1000 }));
    }

    #[test]
    fn errors_carry_the_task_index() {
        let r = run_sequential(3, 10, |i| if i == 2 { Err("boom") } else { Ok(Flow::Next) });
        assert_eq!(r, Err(RunError::Task { index: 2, error: "boom" }));
        let r = run_sequential::<()>(3, 10, |_| Ok(Flow::Jump(7)));
        assert_eq!(r, Err(RunError::BadJump { from: 0, to: 7, len: 3 }));
    }
}

//! How a method is loaded: scheduling mode and memory plan.

use crate::program::Runtime;

/// How `execute` orders instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// One instruction after another on the calling thread; nothing allocated while running.
    #[default]
    Sequential,
    /// Independent instructions run concurrently on the runtime's thread pool. Outputs are
    /// bit-identical to sequential execution.
    Parallel,
}

/// Which placement of planned tensors a method uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlanChoice {
    /// The exporter's plan as written in the file. It reuses bytes assuming sequential order, so
    /// in parallel mode the engine adds hazard edges that keep reusing instructions in order.
    Exporter,
    /// etch's re-plan: tensors share bytes only when the dependency graph already orders them, so
    /// no parallelism is lost (costs memory; only for methods without control flow).
    Concurrent,
    /// The re-plan in parallel mode when it needs at most [`AUTO_REPLAN_MAX_GROWTH`]× the
    /// exporter's bytes and shortens the critical path; the exporter's plan otherwise.
    #[default]
    Auto,
}

/// Largest growth of planned memory `PlanChoice::Auto` accepts for the re-plan.
pub const AUTO_REPLAN_MAX_GROWTH: f64 = 1.25;

/// Everything that decides how a method loads.
#[derive(Debug, Clone, Default)]
pub struct MethodConfig {
    pub runtime: Runtime,
    pub mode: ExecutionMode,
    pub plan: PlanChoice,
    /// Parallel mode: run every block with independent instructions as a task graph, however
    /// little work it holds (normally small blocks run inline, where scheduling would cost more
    /// than it saves). For tests and experiments.
    pub always_graph: bool,
}

impl MethodConfig {
    /// Sequential execution with the given runtime and the exporter's plan.
    pub fn sequential(runtime: Runtime) -> Self {
        MethodConfig { runtime, mode: ExecutionMode::Sequential, plan: PlanChoice::Exporter, always_graph: false }
    }

    /// Parallel execution with the given runtime and the automatic plan choice.
    pub fn parallel(runtime: Runtime) -> Self {
        MethodConfig { runtime, mode: ExecutionMode::Parallel, plan: PlanChoice::Auto, always_graph: false }
    }
}

//! The `etch` command line.

pub mod bench;
pub mod inputs;
pub mod inspect;
pub mod ops;
pub mod run;
pub mod trace;
pub mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "etch", version, about = "Run ExecuTorch programs (.pte) on the CPU")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How instructions are scheduled.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One instruction after another, nothing allocated while running.
    Sequential,
    /// Independent instructions concurrently on a work-stealing pool.
    Parallel,
}

/// Memory plan for parallel mode.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Plan {
    /// The re-plan when it costs at most 1.25x the exporter's bytes.
    Auto,
    /// The exporter's plan, with hazard edges.
    Exporter,
    /// etch's concurrency-aware re-plan.
    Concurrent,
}

/// The method configuration for a mode, plan and thread count.
pub fn config(mode: Mode, plan: Plan, threads: Option<usize>) -> etch::MethodConfig {
    let runtime = match threads {
        Some(n) => etch::Runtime::global().with_threads(n),
        None => etch::Runtime::global().clone(),
    };
    // For experiments and hosts that want idle cores between runs: ETCH_NO_SPIN=1 lets pool
    // workers sleep between parallel regions (see `Runtime::with_spinning`).
    let runtime = runtime.with_spinning(std::env::var_os("ETCH_NO_SPIN").is_none());
    // ETCH_NO_PIN=1 leaves pool workers floating (see `Runtime::with_pinning`).
    let runtime = runtime.with_pinning(std::env::var_os("ETCH_NO_PIN").is_none());
    let plan = match plan {
        Plan::Auto => etch::PlanChoice::Auto,
        Plan::Exporter => etch::PlanChoice::Exporter,
        Plan::Concurrent => etch::PlanChoice::Concurrent,
    };
    match mode {
        Mode::Sequential => etch::MethodConfig { plan, ..etch::MethodConfig::sequential(runtime) },
        Mode::Parallel => etch::MethodConfig {
            plan,
            // For experiments: ETCH_ALWAYS_GRAPH=1 runs even tiny blocks as task graphs.
            always_graph: std::env::var_os("ETCH_ALWAYS_GRAPH").is_some(),
            ..etch::MethodConfig::parallel(runtime)
        },
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a method: each --inputs group is one execution on the same loaded method.
    Run {
        program: PathBuf,
        #[arg(long, default_value = "forward")]
        method: String,
        /// Comma-separated .npy files, one per method input; repeat for more executions.
        #[arg(long, action = clap::ArgAction::Append)]
        inputs: Vec<String>,
        /// Directory for run{K}_out{J}.npy.
        #[arg(long)]
        outputs: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "sequential")]
        mode: Mode,
        /// Worker threads for parallel mode (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, value_enum, default_value = "auto")]
        plan: Plan,
    },
    /// Describe a program: methods, inputs, outputs, operators, delegates, memory, segments.
    Inspect {
        program: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Time loading and executing a method.
    Bench {
        program: PathBuf,
        #[arg(long, default_value = "forward")]
        method: String,
        #[arg(long, value_enum, default_value = "sequential")]
        mode: Mode,
        /// Worker threads for parallel mode (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, value_enum, default_value = "auto")]
        plan: Plan,
        #[arg(long, default_value_t = 100)]
        iters: usize,
        /// Load the program and method this many times (each from scratch); with more than one,
        /// the reported load time is the median of the reloads, the first load shown beside it.
        #[arg(long, default_value_t = 1)]
        loads: usize,
        /// Write a Chrome/Perfetto trace of the timed runs (one span per instruction).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Throughput with N concurrent requests (each thread its own Method of the shared
        /// Program, all on one pool); a comma-separated list such as 1,2,4,8.
        #[arg(long, value_delimiter = ',')]
        concurrent: Option<Vec<usize>>,
        /// Comma-separated .npy inputs (default: deterministic inputs).
        #[arg(long, value_delimiter = ',')]
        inputs: Option<Vec<PathBuf>>,
        #[arg(long)]
        json: bool,
    },
    /// List the registered operators, one `namespace::name.overload` per line with its dtypes.
    Ops {
        /// Instead, list ExecuTorch portable operators etch does not register.
        #[arg(long)]
        missing: bool,
    },
    /// Run a BundledProgram's test cases and report each.
    Verify {
        bundled: PathBuf,
        #[arg(long, default_value_t = etch::bundled::DEFAULT_RTOL)]
        rtol: f64,
        #[arg(long, default_value_t = etch::bundled::DEFAULT_ATOL)]
        atol: f64,
    },
}

/// Splits one `--inputs a.npy,b.npy` group into paths.
pub fn input_group(group: &str) -> Vec<PathBuf> {
    group.split(',').filter(|s| !s.is_empty()).map(PathBuf::from).collect()
}

/// Loads the inputs of one execution into the method.
pub fn set_inputs(method: &mut etch::Method<'_>, files: &[PathBuf]) -> Result<(), String> {
    if files.len() != method.num_inputs() {
        return Err(format!("method '{}' takes {} inputs, {} given", method.name(), method.num_inputs(), files.len()));
    }
    for (i, path) in files.iter().enumerate() {
        let a = etch::npy::read(path)?;
        let meta = method.method_meta();
        if meta.input_tag(i) != Some(etch::Tag::Tensor) {
            return Err(format!("input {i}: non-tensor inputs cannot be given as .npy"));
        }
        method
            .set_input(i, etch::TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data })
            .map_err(|e| format!("{e} (from {})", path.display()))?;
    }
    Ok(())
}

//! etch runs ExecuTorch programs (`.pte` files from PyTorch's official exporter) on the CPU.
//!
//! ```no_run
//! use etch::{DType, Program, TensorView};
//!
//! let program = Program::load_file("tests/fixtures/programs/add_broadcast.pte")?;
//! let mut method = program.load_method("forward")?;
//! let x = [1.0f32; 24];
//! let y = [0.5f32; 3];
//! method.set_input(0, TensorView { dtype: DType::Float, sizes: &[2, 3, 4], data: bytemuck::cast_slice(&x) })?;
//! method.set_input(1, TensorView { dtype: DType::Float, sizes: &[3, 1], data: bytemuck::cast_slice(&y) })?;
//! method.execute()?;
//! let out = method.output_tensor(0)?;
//! println!("{:?} {:?}", out.sizes(), out.data::<f32>()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crates behind this facade: `etch-schema` (the file format), `etch-kernels` (tensors and
//! kernels), `etch-delegates` (the backend interface), `etch-scheduler` (execution order) and
//! `etch-engine` (Program and Method). See ARCHITECTURE.md.

pub mod npy;

pub use etch_delegates::{self as delegates, BackendInterface, BackendRegistry, DelegateError, DelegateHandle};
pub use etch_engine::bundled::{self, BundledProgram, CaseReport};
pub use etch_engine::{
    AUTO_REPLAN_MAX_GROWTH, AlignedBuf, BlockProfile, Error, ErrorKind, ExecutionMode, InstructionSite, MemoryManager,
    Method, MethodConfig, MethodMeta, PlanChoice, PlanSummary, Program, Result, Runtime, Tag, TensorInfo, TensorView,
    Value, plan_summary, to_contiguous_bytes,
};
pub use etch_kernels::{self as kernels, DType, KernelError, KernelRegistry, Tensor};
pub use etch_schema::{self as schema, FormatError};

/// The README's code blocks compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

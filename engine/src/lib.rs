//! Loading and running ExecuTorch programs.
//!
//! - [`Program`]: a verified `.pte`, shared (`Send + Sync`) by every method loaded from it.
//! - [`MethodMeta`]: inputs, outputs, planned memory of a method, without loading it.
//! - [`Method`]: a loaded method: values, planned memory ([`MemoryManager`]), resolved kernels and
//!   delegates; [`Method::execute`] runs the instruction chain.
//! - [`Runtime`]: which kernels and backends methods are loaded with.
//! - [`Error`] with ExecuTorch's [`ErrorKind`]s.
//!
//! Invariant: after [`Method`] load, `execute` never allocates on success, never panics on any
//! program the loader accepted, and runs at most 10,000,000 instructions.

mod affinity;
mod alias;
mod awake;
pub mod bundled;
mod config;
mod dag;
mod derived;
mod error;
mod exec;
mod fuse;
mod load;
mod memory;
mod meta;
mod method;
mod program;
mod submit;

pub use config::{AUTO_REPLAN_MAX_GROWTH, ExecutionMode, MethodConfig, PlanChoice};
pub use error::{Error, ErrorKind, InstructionSite, Result};
pub use load::{PlanSummary, plan_summary};
pub use memory::{AlignedBuf, BUFFER_ALIGN, MemoryManager};
pub use meta::{MethodMeta, Tag, TensorInfo};
pub use method::{BlockProfile, Method, TensorView, Value, to_contiguous_bytes};
pub use program::{Program, Runtime};

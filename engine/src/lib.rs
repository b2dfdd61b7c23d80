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

mod alias;
pub mod bundled;
mod error;
mod memory;
mod meta;
mod method;
mod program;

pub use error::{Error, ErrorKind, InstructionSite, Result};
pub use memory::{AlignedBuf, BUFFER_ALIGN, MemoryManager};
pub use meta::{MethodMeta, Tag, TensorInfo};
pub use method::{Method, TensorView, Value, to_contiguous_bytes};
pub use program::{Program, Runtime};

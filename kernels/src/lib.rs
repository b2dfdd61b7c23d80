//! Tensors, dtypes and kernels: the computational layer of etch. Knows nothing about `.pte` files.
//!
//! A tour:
//! - [`DType`] (the format's scalar type) and [`Element`], the Rust types that store elements,
//!   with PyTorch's promotion rules ([`promote_types`]).
//! - [`TensorImpl`]: shape, dim order and a pointer into memory the runtime owns (planned buffers,
//!   program constants). Kernels see tensors as [`Tensor`] (read) and [`TensorMut`] (write/resize).
//! - [`EValue`] and [`ValueTable`]: a method's values; tensors and lists by index.
//! - [`KernelArgs`]: what a kernel receives — typed accessors by schema position.
//! - [`KernelRegistry`]: `namespace::name.overload` → kernel, registered with its ATen schema
//!   ([`OpSchema`]) so the runtime knows what each call writes.
//! - [`portable`]: the reference kernels.

pub mod args;
pub mod dtype;
pub mod error;
pub mod op_schema;
pub mod optimized;
pub mod portable;
pub mod registry;
pub mod shape;
pub mod spread;
pub mod tensor;
pub mod value;

pub use args::{IntList, KernelArgs, MAX_ARGS, TensorList, TensorListMut};
pub use dtype::{Bool, COMPUTE_DTYPES, DType, Element, can_cast, promote_types};
pub use error::KernelError;
pub use half;
pub use op_schema::{OpSchema, SchemaError};
pub use registry::{KernelContext, KernelFn, KernelRegistry, OpKernel, PrepareFn, PreparedState, RegistryError};
pub use shape::{DimOrder, Shape};
pub use tensor::{Tensor, TensorImpl, TensorMut};
pub use value::{EValue, ListPool, NONE_INDEX, Scalar, Span, TensorId, ValueTable};

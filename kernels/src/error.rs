//! Errors a kernel reports. They are `Copy` and allocation-free so that a failing kernel never
//! allocates; the engine adds the instruction index and operator name.

use crate::DType;

/// Why a kernel refused its arguments. `arg` is the position in the operator's schema.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    #[error("argument {arg}: expected {expected}, found {found}")]
    ArgType { arg: usize, expected: &'static str, found: &'static str },

    #[error("argument {arg}: missing (the call has {len} arguments)")]
    MissingArg { arg: usize, len: usize },

    #[error("argument {arg}: dtype {dtype} is not supported by this operator")]
    UnsupportedDtype { arg: usize, dtype: DType },

    #[error("argument {arg}: dtype {found}, expected {expected}")]
    DtypeMismatch { arg: usize, expected: DType, found: DType },

    #[error("argument {arg}: {reason}")]
    InvalidArgument { arg: usize, reason: &'static str },

    #[error("argument {arg}: value {value} out of range {min}..={max}")]
    ValueOutOfRange { arg: usize, value: i64, min: i64, max: i64 },

    #[error("argument {arg}: index {index} out of range for a dimension of size {size}")]
    IndexOutOfRange { arg: usize, index: i64, size: usize },

    #[error("argument {arg}: shapes do not match: {reason}")]
    ShapeMismatch { arg: usize, reason: &'static str },

    #[error(
        "output {arg}: cannot resize to {elements} elements of rank {rank}: the tensor is {what} (holds {capacity} bytes, rank {current_rank})"
    )]
    Resize { arg: usize, elements: usize, rank: usize, current_rank: usize, capacity: usize, what: &'static str },

    #[error("argument {arg}: tensor has no data (never set as input, or freed)")]
    NoData { arg: usize },

    #[error("argument {arg}: the kernel may not write this argument")]
    NotWritable { arg: usize },

    #[error("argument {arg}: already borrowed by this kernel")]
    AlreadyBorrowed { arg: usize },

    #[error("argument {arg}: tensor data is not aligned for dtype {dtype}")]
    Misaligned { arg: usize, dtype: DType },

    #[error("argument {arg}: {what} overflows")]
    Overflow { arg: usize, what: &'static str },

    #[error("operator not implemented for these arguments: {0}")]
    NotImplemented(&'static str),
}

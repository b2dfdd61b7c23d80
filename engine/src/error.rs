//! etch's error type: what went wrong and where, with ExecuTorch's error kinds.

use std::sync::Arc;

use etch_delegates::DelegateError;
use etch_kernels::KernelError;
use etch_schema::FormatError;

/// ExecuTorch's error codes (`runtime/core/error.h`), so users can map etch errors onto theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorKind {
    Internal = 0x01,
    InvalidState = 0x02,
    EndOfMethod = 0x03,
    AlreadyLoaded = 0x04,
    NotSupported = 0x10,
    NotImplemented = 0x11,
    InvalidArgument = 0x12,
    InvalidType = 0x13,
    OperatorMissing = 0x14,
    RegistrationExceedingMaxKernels = 0x15,
    RegistrationAlreadyRegistered = 0x16,
    NotFound = 0x20,
    MemoryAllocationFailed = 0x21,
    AccessFailed = 0x22,
    InvalidProgram = 0x23,
    InvalidExternalData = 0x24,
    OutOfResources = 0x25,
    DelegateInvalidCompatibility = 0x30,
    DelegateMemoryAllocationFailed = 0x31,
    DelegateInvalidHandle = 0x32,
}

/// Where in a method an error arose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionSite {
    pub method: Arc<str>,
    pub instruction: usize,
    /// Byte offset of the instruction's table in the file.
    pub byte_offset: usize,
    /// `aten::add.out`, a backend id, or the instruction kind.
    pub operator: Arc<str>,
}

impl std::fmt::Display for InstructionSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "method '{}' instruction {} ({}, byte offset {})",
            self.method, self.instruction, self.operator, self.byte_offset
        )
    }
}

/// Everything that can fail in etch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },

    /// The file is not a valid program (or uses an unsupported format feature).
    #[error(transparent)]
    Format(#[from] FormatError),

    #[error("no method '{name}' in the program (it has: {available})")]
    MethodNotFound { name: String, available: String },

    #[error("{at}: operator '{operator}' is not registered")]
    OperatorMissing { at: InstructionSite, operator: String },

    #[error("{at}: backend '{backend}' is not registered or not available")]
    BackendMissing { at: InstructionSite, backend: String },

    /// A method that parsed but cannot run as written: wrong argument counts or kinds, writes to
    /// constants, overlapping outputs, unsupported value kinds.
    #[error("{at}: {reason}")]
    InvalidInstruction { at: InstructionSite, reason: String },

    /// A method-level problem outside any instruction.
    #[error("method '{method}': {reason}")]
    InvalidMethod { method: String, reason: String, kind: ErrorKind },

    #[error("{at}: {source}")]
    Kernel { at: InstructionSite, source: KernelError },

    #[error("{at}: {source}")]
    Delegate { at: InstructionSite, source: DelegateError },

    #[error("{at}: ran {budget} instructions without finishing")]
    InstructionBudget { at: InstructionSite, budget: u64 },

    /// A bad input given to `set_input`: index, dtype, shape.
    #[error("method '{method}' input {index}: {reason}")]
    Input { method: String, index: usize, reason: String },

    /// Output access: index out of range or not a tensor.
    #[error("method '{method}' output {index}: {reason}")]
    Output { method: String, index: usize, reason: String },

    /// Caller-provided planned memory that does not fit the method's plan.
    #[error("method '{method}' planned buffer {buffer}: {reason}")]
    Memory { method: String, buffer: usize, reason: String },

    /// A bug in etch (for example a kernel that panicked); please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The ExecuTorch error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::AccessFailed,
            Error::Format(e) if e.is_unsupported() => ErrorKind::NotSupported,
            Error::Format(_) => ErrorKind::InvalidProgram,
            Error::MethodNotFound { .. } => ErrorKind::NotFound,
            Error::OperatorMissing { .. } => ErrorKind::OperatorMissing,
            Error::BackendMissing { .. } => ErrorKind::NotFound,
            Error::InvalidInstruction { .. } => ErrorKind::InvalidProgram,
            Error::InvalidMethod { kind, .. } => *kind,
            Error::Kernel { source, .. } => match source {
                KernelError::NotImplemented(_) => ErrorKind::NotImplemented,
                KernelError::UnsupportedDtype { .. } | KernelError::DtypeMismatch { .. } => ErrorKind::InvalidType,
                KernelError::ArgType { .. } => ErrorKind::InvalidType,
                _ => ErrorKind::InvalidArgument,
            },
            Error::Delegate { source, .. } => match source {
                DelegateError::InvalidCompatibility(_) => ErrorKind::DelegateInvalidCompatibility,
                DelegateError::MemoryAllocationFailed(_) => ErrorKind::DelegateMemoryAllocationFailed,
                DelegateError::InvalidHandle(_) => ErrorKind::DelegateInvalidHandle,
                DelegateError::NotSupported(_) => ErrorKind::NotSupported,
                _ => ErrorKind::InvalidArgument,
            },
            Error::InstructionBudget { .. } => ErrorKind::InvalidState,
            Error::Input { .. } => ErrorKind::InvalidArgument,
            Error::Output { .. } => ErrorKind::InvalidArgument,
            Error::Memory { .. } => ErrorKind::MemoryAllocationFailed,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

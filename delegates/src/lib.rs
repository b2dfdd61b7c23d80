//! Backends (delegates): subgraphs that an exporter handed to a backend such as XNNPACK run
//! through this interface, as in ExecuTorch's `runtime/backend/interface.h`.
//!
//! A backend is registered under its id (`BackendDelegate.id` in the program, e.g.
//! `XnnpackBackend`). At method load the engine calls [`BackendInterface::init`] with the processed
//! blob and compile specs and keeps the returned [`DelegateHandle`]; every `DelegateCall`
//! instruction then calls [`DelegateHandle::execute`] with the call's arguments (inputs, then
//! outputs). Dropping the handle is ExecuTorch's `destroy`.
//!
//! Registries are values, not global tables: build one, then share it (`Arc`) between programs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use etch_kernels::KernelArgs as DelegateArgs;
use etch_kernels::KernelError;

mod test_backend;
pub use test_backend::ElementwiseTestBackend;

/// One compile spec: a key and opaque bytes.
#[derive(Debug, Clone, Copy)]
pub struct CompileSpec<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
}

/// Read access to the program's named data (XNNPACK keeps its weights there).
pub trait NamedData {
    /// The blob stored under `key`.
    fn get(&self, key: &str) -> Option<&[u8]>;
}

/// No named data.
impl NamedData for () {
    fn get(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

/// What a backend sees at init besides its blob.
pub struct InitContext<'a> {
    pub method_name: &'a str,
    pub named_data: &'a dyn NamedData,
}

impl fmt::Debug for InitContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitContext").field("method_name", &self.method_name).finish()
    }
}

/// Errors of backends, with ExecuTorch's delegate error kinds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegateError {
    /// The blob was made for another backend or version (`DelegateInvalidCompatibility`).
    #[error("blob is not compatible with this backend: {0}")]
    InvalidCompatibility(String),
    /// `DelegateMemoryAllocationFailed`.
    #[error("backend could not allocate memory: {0}")]
    MemoryAllocationFailed(String),
    /// `DelegateInvalidHandle`.
    #[error("invalid delegate handle: {0}")]
    InvalidHandle(String),
    /// The blob or the call's arguments are malformed (`InvalidProgram` / `InvalidArgument`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The blob uses something this backend does not implement (`NotSupported`).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// Reading or writing an argument failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// A backend: turns processed blobs into executable handles.
pub trait BackendInterface: Send + Sync {
    /// Whether the backend can run on this machine.
    fn is_available(&self) -> bool;

    /// Prepares a delegate for execution (ExecuTorch's `init`). The blob is borrowed from the
    /// program; the handle copies what it needs.
    fn init(
        &self,
        ctx: &InitContext<'_>,
        processed: &[u8],
        compile_specs: &[CompileSpec<'_>],
    ) -> Result<Box<dyn DelegateHandle>, DelegateError>;
}

/// An initialised delegate. `Send + Sync`: the engine may run calls of one method on several
/// threads, and calls of one handle one after another from different threads.
pub trait DelegateHandle: Send + Sync {
    /// How many trailing arguments of a call are outputs, if the backend knows. With `None` the
    /// engine treats every tensor argument as written (safe, but it serialises more).
    fn num_outputs(&self) -> Option<usize> {
        None
    }

    /// Runs the delegate on the call's arguments (inputs first, then outputs).
    fn execute(&self, args: &DelegateArgs<'_>) -> Result<(), DelegateError>;
}

/// Backend id → backend.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    backends: BTreeMap<String, Arc<dyn BackendInterface>>,
}

impl fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.backends.keys()).finish()
    }
}

/// A second registration under the same id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend '{0}' is already registered")]
pub struct AlreadyRegistered(pub String);

impl BackendRegistry {
    pub fn new() -> Self {
        BackendRegistry::default()
    }

    /// Registers `backend` under `id`.
    pub fn register(&mut self, id: &str, backend: Arc<dyn BackendInterface>) -> Result<(), AlreadyRegistered> {
        if self.backends.contains_key(id) {
            return Err(AlreadyRegistered(id.to_string()));
        }
        self.backends.insert(id.to_string(), backend);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn BackendInterface>> {
        self.backends.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.backends.keys().map(String::as_str)
    }
}

//! The kernel registry: operator name + overload → kernel. A registry is a value built before
//! programs load (not a global table), so custom operators register the same way as etch's own and
//! different methods may use different kernel sets.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::args::KernelArgs;
use crate::error::KernelError;
use crate::op_schema::{OpSchema, SchemaError};

/// Per-call context a kernel may use. Carries nothing yet; scratch memory and the thread pool
/// arrive here so that kernel signatures need not change.
#[derive(Debug, Default)]
pub struct KernelContext {
    _private: (),
}

impl KernelContext {
    pub fn new() -> Self {
        KernelContext::default()
    }
}

/// A kernel: reads its arguments, writes its outputs.
pub type KernelFn = fn(&mut KernelContext, &KernelArgs<'_>) -> Result<(), KernelError>;

/// A registered operator implementation.
#[derive(Debug, Clone)]
pub struct OpKernel {
    pub schema: Arc<OpSchema>,
    pub run: KernelFn,
    /// The dtypes the kernel accepts, for listings (`etch ops`).
    pub dtypes: &'static [crate::DType],
    /// Same inputs always give the same outputs and nothing else changes: a call whose inputs are
    /// all constants may be evaluated once at load (constant folding).
    pub pure: bool,
}

/// Why a registration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("operator '{0}' is already registered")]
    AlreadyRegistered(String),
}

/// Operator name → kernel.
#[derive(Debug, Clone, Default)]
pub struct KernelRegistry {
    kernels: BTreeMap<String, OpKernel>,
}

impl KernelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        KernelRegistry::default()
    }

    /// A registry with etch's portable kernels.
    pub fn portable() -> Self {
        let mut r = KernelRegistry::new();
        crate::portable::register_all(&mut r);
        r
    }

    /// Registers `run` under the operator named by `schema` (ATen schema syntax).
    pub fn register(
        &mut self,
        schema: &str,
        dtypes: &'static [crate::DType],
        run: KernelFn,
    ) -> Result<(), RegistryError> {
        self.insert(schema, dtypes, run, false, false)
    }

    /// Registers a kernel that is a pure function of its inputs (see [`OpKernel::pure`]); etch may
    /// then evaluate calls on constant inputs once, at load.
    pub fn register_pure(
        &mut self,
        schema: &str,
        dtypes: &'static [crate::DType],
        run: KernelFn,
    ) -> Result<(), RegistryError> {
        self.insert(schema, dtypes, run, true, false)
    }

    fn insert(
        &mut self,
        schema: &str,
        dtypes: &'static [crate::DType],
        run: KernelFn,
        pure: bool,
        replace: bool,
    ) -> Result<(), RegistryError> {
        let schema = OpSchema::parse(schema)?;
        if !replace && self.kernels.contains_key(&schema.qualified_name) {
            return Err(RegistryError::AlreadyRegistered(schema.qualified_name));
        }
        self.kernels.insert(schema.qualified_name.clone(), OpKernel { schema: Arc::new(schema), run, dtypes, pure });
        Ok(())
    }

    /// Registers, replacing any kernel of the same name (to override a portable kernel).
    pub fn register_or_replace(
        &mut self,
        schema: &str,
        dtypes: &'static [crate::DType],
        run: KernelFn,
    ) -> Result<(), RegistryError> {
        self.insert(schema, dtypes, run, false, true)
    }

    /// The kernel for `name.overload` (or `name` alone when the overload is empty).
    pub fn get(&self, qualified_name: &str) -> Option<&OpKernel> {
        self.kernels.get(qualified_name)
    }

    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// Registered operators in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OpKernel)> {
        self.kernels.iter().map(|(k, v)| (k.as_str(), v))
    }
}

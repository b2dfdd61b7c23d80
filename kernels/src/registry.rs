//! The kernel registry: operator name + overload → kernel. A registry is a value built before
//! programs load (not a global table), so custom operators register the same way as etch's own and
//! different methods may use different kernel sets.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::args::KernelArgs;
use crate::error::KernelError;
use crate::op_schema::{OpSchema, SchemaError};

thread_local! {
    /// Each thread's scratch memory, lent to the [`KernelContext`]s created on it and given back
    /// when they drop: kernels reuse it across executions, so it is allocated (and grown) only by
    /// the first calls that need it, on each thread.
    static THREAD_SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Per-call context a kernel may use: the thread pool for intra-op parallelism (the same pool the
/// inter-op scheduler uses, so the two never oversubscribe the cores) and scratch memory.
///
/// Scratch memory ([`KernelContext::with_scratch_f32`]) is the one place kernels may allocate: the
/// portable kernels never ask for it (so `Runtime::portable` executes without allocating), the
/// optimized ones do (im2col buffers, packed weights). The buffer belongs to the thread, not the
/// context, so the engine's per-execution contexts reuse it: an optimized method allocates on its
/// first execution (per thread that runs kernels) and then only if a larger buffer is needed.
#[derive(Debug, Default)]
pub struct KernelContext {
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// Kernels run on the calling thread even on a pool thread (a task of a parallel region that
    /// already covers the pool).
    one_thread: bool,
    /// The thread's scratch buffer while this context holds it (empty otherwise).
    scratch: Vec<f32>,
}

impl Drop for KernelContext {
    fn drop(&mut self) {
        if self.scratch.capacity() == 0 {
            return;
        }
        let mine = std::mem::take(&mut self.scratch);
        // Keep the larger buffer for the thread (another context may have taken one meanwhile).
        // `try_with` fails only while the thread is shutting down: then the buffer is just freed.
        let _ = THREAD_SCRATCH.try_with(|cell| {
            let theirs = cell.take();
            cell.set(if theirs.capacity() > mine.capacity() { theirs } else { mine });
        });
    }
}

impl KernelContext {
    /// A context without a pool: kernels run on the calling thread (or, if that is a pool
    /// thread, may use its pool).
    pub fn new() -> Self {
        KernelContext::default()
    }

    /// A context whose kernels may spread work over `pool`.
    pub fn with_pool(pool: Option<std::sync::Arc<rayon::ThreadPool>>) -> Self {
        KernelContext { pool, one_thread: false, scratch: Vec::new() }
    }

    /// A context whose kernels run on the calling thread alone, pool thread or not: for the
    /// tasks of a parallel region, whose kernels would otherwise split again.
    pub fn one_thread() -> Self {
        KernelContext { pool: None, one_thread: true, scratch: Vec::new() }
    }

    /// Threads a kernel may use: the pool it would run in, or 1.
    pub fn threads(&self) -> usize {
        if self.one_thread {
            1
        } else if rayon::current_thread_index().is_some() {
            rayon::current_num_threads()
        } else {
            self.pool.as_ref().map_or(1, |p| p.current_num_threads())
        }
    }

    /// Runs `f` so that rayon calls inside it (`join`, parallel iterators, a GEMM's threads) use
    /// etch's pool: directly when already on a pool thread, through `install` otherwise.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) if rayon::current_thread_index().is_none() => pool.install(f),
            _ => f(),
        }
    }

    /// Runs `f` with `len` elements of scratch memory (contents unspecified: write before reading)
    /// and this context (for [`install`](Self::install) and [`threads`](Self::threads)). The
    /// memory is the thread's reusable buffer, grown if needed; `None` when it cannot be allocated.
    pub fn with_scratch_f32<R>(&mut self, len: usize, f: impl FnOnce(&mut [f32], &KernelContext) -> R) -> Option<R> {
        if self.scratch.len() < len {
            if self.scratch.capacity() == 0 {
                self.scratch = THREAD_SCRATCH.try_with(|cell| cell.take()).unwrap_or_default();
            }
            if self.scratch.len() < len {
                let extra = len - self.scratch.len();
                self.scratch.try_reserve_exact(extra).ok()?;
                self.scratch.resize(len, 0.0);
            }
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = f(scratch.get_mut(..len)?, self);
        self.scratch = scratch;
        Some(result)
    }
}

/// A kernel: reads its arguments, writes its outputs.
pub type KernelFn = fn(&mut KernelContext, &KernelArgs<'_>) -> Result<(), KernelError>;

/// State a kernel derives once per call site, at method init, from the call's constant arguments
/// (pre-packed weights, say); the kernel reads it back with [`KernelArgs::prepared`] on every
/// execution. Only constant tensors ([`crate::Tensor::is_constant`]) hold their data when this
/// runs; `None` means nothing to keep. Runs outside `execute`, so it may allocate.
pub type PrepareFn = fn(&KernelArgs<'_>) -> Result<Option<PreparedState>, KernelError>;

/// What a [`PrepareFn`] keeps for one call site.
pub type PreparedState = Box<dyn core::any::Any + Send + Sync>;

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
    /// Load-time preparation per call site (see [`PrepareFn`]).
    pub prepare: Option<PrepareFn>,
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

    /// A registry with etch's portable kernels: the reference, allocation-free set.
    pub fn portable() -> Self {
        let mut r = KernelRegistry::new();
        crate::portable::register_all(&mut r);
        r
    }

    /// The portable kernels with the optimized ones in place of theirs where they exist (like
    /// ExecuTorch's `kernels/optimized`). Optimized kernels may allocate scratch memory and use the
    /// pool; they fall back to the portable code for cases they do not cover.
    pub fn optimized() -> Self {
        let mut r = KernelRegistry::portable();
        crate::optimized::register_all(&mut r);
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
        self.kernels.insert(
            schema.qualified_name.clone(),
            OpKernel { schema: Arc::new(schema), run, dtypes, pure, prepare: None },
        );
        Ok(())
    }

    /// Registers a pure kernel, replacing any of the same name (optimized over portable).
    pub(crate) fn replace_pure(
        &mut self,
        schema: &str,
        dtypes: &'static [crate::DType],
        run: KernelFn,
    ) -> Result<(), RegistryError> {
        self.insert(schema, dtypes, run, true, true)
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

    /// Gives the registered operator `qualified_name` a load-time preparation step; false when no
    /// such operator is registered.
    pub fn set_prepare(&mut self, qualified_name: &str, prepare: PrepareFn) -> bool {
        self.kernels.get_mut(qualified_name).map(|k| k.prepare = Some(prepare)).is_some()
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

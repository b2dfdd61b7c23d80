//! [`Program`]: a loaded, verified `.pte`, shared by every method loaded from it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use etch_delegates::BackendRegistry;
use etch_kernels::KernelRegistry;
use etch_schema::{MethodDef, ProgramDef, parse_program};

use crate::config::{MethodConfig, PlanChoice};
use crate::error::{Error, Result};
use crate::memory::{AlignedBuf, MemoryManager};
use crate::meta::MethodMeta;
use crate::method::Method;

/// Where a program's bytes live. Constant tensors point straight into them.
enum Bytes {
    Aligned(AlignedBuf),
    Static(&'static [u8]),
    Mapped(memmap2::Mmap),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Aligned(b) => b.as_slice(),
            Bytes::Static(s) => s,
            Bytes::Mapped(m) => m,
        }
    }
}

struct ProgramInner {
    bytes: Bytes,
    def: ProgramDef,
    /// What its methods derived at load, shared between them (see `derived`).
    derived: crate::derived::DerivedCache,
}

/// A verified program. Cheap to clone (shared), `Send + Sync`: many methods, on many threads, may
/// be loaded from one `Program` and run at once.
///
/// Loading checks the whole file once (header, flatbuffer, every index, size and offset); methods
/// then build from the checked model without touching the flatbuffer again.
#[derive(Clone)]
pub struct Program {
    inner: Arc<ProgramInner>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("bytes", &self.bytes().len())
            .field("methods", &self.method_names().collect::<Vec<_>>())
            .finish()
    }
}

impl Program {
    fn new(bytes: Bytes) -> Result<Program> {
        let def = parse_program(bytes.as_slice())?;
        Ok(Program { inner: Arc::new(ProgramInner { bytes, def, derived: Default::default() }) })
    }

    pub(crate) fn derived_cache(&self) -> &crate::derived::DerivedCache {
        &self.inner.derived
    }

    /// Loads from a copy of `bytes` (into 64-byte aligned memory, so constants can be used in place).
    pub fn from_bytes(bytes: &[u8]) -> Result<Program> {
        let buf = AlignedBuf::copy_of(bytes).ok_or_else(|| Error::Internal("program too large".into()))?;
        Program::new(Bytes::Aligned(buf))
    }

    /// Loads from bytes that live forever (e.g. `include_bytes!`), without copying.
    pub fn from_static(bytes: &'static [u8]) -> Result<Program> {
        Program::new(Bytes::Static(bytes))
    }

    /// Reads a file into aligned memory and loads it.
    pub fn load_file(path: impl AsRef<Path>) -> Result<Program> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.display().to_string(), source };
        // Read straight into aligned memory: one copy, no intermediate Vec.
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let len = usize::try_from(len).map_err(|_| Error::Internal("file too large".into()))?;
        let mut buf = AlignedBuf::for_writing(len).ok_or_else(|| Error::Internal("file too large".into()))?;
        file.read_exact(buf.as_mut_slice()).map_err(io)?;
        Program::new(Bytes::Aligned(buf))
    }

    /// Maps a file into memory and loads it without copying.
    ///
    /// # Safety
    /// The file must not be modified or truncated while the program (or any method loaded from
    /// it) is alive: the program reads constants straight from the mapping, and a changed file
    /// would change or remove memory under it.
    pub unsafe fn map_file(path: impl AsRef<Path>) -> Result<Program> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the caller promises the file stays unchanged while the mapping lives.
        // Populated: the pages are mapped in one call instead of one fault each (faults are
        // expensive, especially in VMs, and load reads every constant anyway when it fuses or
        // pre-packs weights).
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(io)?;
        Program::new(Bytes::Mapped(map))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.inner.bytes.as_slice()
    }

    /// The checked model of the file.
    pub fn def(&self) -> &ProgramDef {
        &self.inner.def
    }

    pub fn num_methods(&self) -> usize {
        self.inner.def.methods.len()
    }

    pub fn method_names(&self) -> impl Iterator<Item = &str> {
        self.inner.def.methods.iter().map(|m| m.name.as_str())
    }

    pub(crate) fn method_def(&self, name: &str) -> Result<&MethodDef> {
        self.inner.def.method(name).ok_or_else(|| Error::MethodNotFound {
            name: name.to_string(),
            available: self.method_names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Inputs, outputs, planned memory and operators of a method, without loading it.
    pub fn method_meta(&self, name: &str) -> Result<MethodMeta<'_>> {
        Ok(MethodMeta::new(self.method_def(name)?))
    }

    /// Loads a method with etch's default runtime (portable kernels, built-in backends) and planned
    /// memory that etch allocates.
    pub fn load_method(&self, name: &str) -> Result<Method<'static>> {
        self.load_method_with(name, Runtime::global(), None)
    }

    /// Loads a method with a chosen runtime and, optionally, caller-provided planned memory
    /// (sequential mode, the exporter's memory plan).
    pub fn load_method_with<'a>(
        &self,
        name: &str,
        runtime: &Runtime,
        memory: Option<MemoryManager<'a>>,
    ) -> Result<Method<'a>> {
        // Caller-provided buffers are sized for the exporter's plan; otherwise etch may choose
        // (a fused method runs on its own plan).
        let plan = if memory.is_some() { PlanChoice::Exporter } else { PlanChoice::Auto };
        let config = MethodConfig { plan, ..MethodConfig::sequential(runtime.clone()) };
        Method::load(self.clone(), name, &config, memory)
    }

    /// Loads a method with full control: runtime, execution mode (sequential or parallel) and
    /// memory plan. With caller-provided memory, each buffer must fit the chosen plan
    /// ([`Program::plan_summary`] tells the sizes).
    pub fn load_method_configured<'a>(
        &self,
        name: &str,
        config: &MethodConfig,
        memory: Option<MemoryManager<'a>>,
    ) -> Result<Method<'a>> {
        Method::load(self.clone(), name, config, memory)
    }
}

/// The kernels and backends methods are loaded with, and the thread pool parallel methods run on.
/// Registries are values (not global tables), built before loading and shared. Clones share the
/// registries and the pool.
#[derive(Clone)]
pub struct Runtime {
    kernels: Arc<KernelRegistry>,
    backends: Arc<BackendRegistry>,
    /// Whether kernels may spread single operators over the pool (intra-op parallelism).
    intra_op: bool,
    /// Whether methods fuse operators at load (see `fuse`): faster, rounds differently.
    fusion: bool,
    /// Whether pool workers spin while executions run and shortly after (see `awake`).
    spinning: bool,
    /// Whether the pool's workers are pinned one per CPU (see `affinity`).
    pinning: bool,
    threads: usize,
    pool: Arc<OnceLock<Arc<rayon::ThreadPool>>>,
    awake: Arc<OnceLock<Arc<crate::awake::KeepAwake>>>,
    submit: Arc<OnceLock<Arc<crate::submit::Submitter>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("kernels", &self.kernels.len())
            .field("backends", &self.backends)
            .field("threads", &self.threads)
            .finish()
    }
}

impl Runtime {
    pub fn new(kernels: KernelRegistry, backends: BackendRegistry) -> Runtime {
        Runtime {
            kernels: Arc::new(kernels),
            backends: Arc::new(backends),
            intra_op: true,
            fusion: false,
            spinning: true,
            pinning: true,
            threads: 0,
            pool: Arc::default(),
            awake: Arc::default(),
            submit: Arc::default(),
        }
    }

    /// The same runtime with intra-op parallelism on or off (off: kernels never use other threads,
    /// and sequential methods never start the pool).
    pub fn with_intra_op(&self, on: bool) -> Runtime {
        Runtime { intra_op: on, ..self.clone() }
    }

    pub fn intra_op(&self) -> bool {
        self.intra_op
    }

    /// The same runtime with load-time fusion on or off. Fusion folds inference batch norms into
    /// the convolutions before them, as XNNPACK and ONNX Runtime do: less memory traffic, results
    /// within float rounding of the program as written rather than bit-identical to it.
    pub fn with_fusion(&self, on: bool) -> Runtime {
        Runtime { fusion: on, ..self.clone() }
    }

    pub fn fusion(&self) -> bool {
        self.fusion
    }

    /// The same runtime with its pool's workers spinning during executions (and for half a
    /// millisecond after) or not. On, as in XNNPACK's thread pool and ONNX Runtime's default:
    /// parallel regions start without waking sleeping threads (about 90 µs each on a VM), at the
    /// cost of busy cores while a method runs. Off for hosts that need idle cores between requests.
    pub fn with_spinning(&self, on: bool) -> Runtime {
        Runtime { spinning: on, ..self.clone() }
    }

    pub fn spinning(&self) -> bool {
        self.spinning
    }

    /// The same runtime with its pool's workers pinned one per CPU or floating. On (the default),
    /// when the pool has at most as many threads as the process may use CPUs: left floating, the
    /// scheduler put both workers of a 2-thread pool on one CPU for most of a run. Off for hosts
    /// that pin their own threads. A different setting gets a pool of its own.
    pub fn with_pinning(&self, on: bool) -> Runtime {
        if on == self.pinning {
            return self.clone();
        }
        Runtime { pinning: on, pool: Arc::default(), awake: Arc::default(), submit: Arc::default(), ..self.clone() }
    }

    pub fn pinning(&self) -> bool {
        self.pinning
    }

    /// The same registries with a pool of `threads` worker threads (0: one per core).
    pub fn with_threads(&self, threads: usize) -> Runtime {
        Runtime { threads, pool: Arc::default(), awake: Arc::default(), submit: Arc::default(), ..self.clone() }
    }

    /// Worker threads of the pool (after it was created, the actual number).
    pub fn threads(&self) -> usize {
        match self.pool.get() {
            Some(p) => p.current_num_threads(),
            None => self.threads,
        }
    }

    /// Threads the pool has or will have when created: the configured number, or one per core.
    pub(crate) fn pool_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        }
    }

    /// The work-stealing pool shared by every parallel method loaded with this runtime (and its
    /// clones): one pool for inter-op and, later, intra-op work, so concurrent requests never
    /// oversubscribe the cores. Created on first use.
    pub fn pool(&self) -> Arc<rayon::ThreadPool> {
        self.pool
            .get_or_init(|| {
                let threads = self.pool_threads();
                // One CPU per worker when there are enough (see `affinity`).
                let cpus = crate::affinity::allowed_cpus();
                let pin = self.pinning && threads > 1 && threads <= cpus.len();
                let build = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("etch-worker-{i}"))
                    .start_handler(move |i| {
                        if let Some(&cpu) = cpus.get(i).filter(|_| pin) {
                            crate::affinity::pin_current_thread(cpu);
                        }
                    })
                    .build();
                // Building a pool fails only if threads cannot be spawned; fall back to one thread,
                // and if even that fails there is nothing sensible left to do.
                Arc::new(
                    build
                        .or_else(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
                        .unwrap_or_else(|e| panic!("cannot start a thread: {e}")),
                )
            })
            .clone()
    }

    /// Keeps the pool's workers from falling asleep while executions run (see `awake`).
    pub(crate) fn keep_awake(&self) -> Arc<crate::awake::KeepAwake> {
        self.awake.get_or_init(|| crate::awake::KeepAwake::new(self.pool())).clone()
    }

    /// Hands executions to the pool from outside it (see `submit`).
    pub(crate) fn submitter(&self) -> Arc<crate::submit::Submitter> {
        self.submit.get_or_init(|| crate::submit::Submitter::new(self.pool())).clone()
    }

    /// Portable kernels only, single-threaded operators: the reference configuration, and the
    /// heapless one (sequential execution allocates nothing).
    pub fn portable() -> Runtime {
        Runtime::new(KernelRegistry::portable(), BackendRegistry::new()).with_intra_op(false)
    }

    /// Optimized kernels over the portable ones, with intra-op parallelism on the pool and
    /// load-time fusion.
    pub fn optimized() -> Runtime {
        Runtime::new(KernelRegistry::optimized(), BackendRegistry::new()).with_fusion(true)
    }

    /// A process-wide [`Runtime::optimized`], built on first use: what `Program::load_method` uses.
    pub fn global() -> &'static Runtime {
        static GLOBAL: OnceLock<Runtime> = OnceLock::new();
        GLOBAL.get_or_init(Runtime::optimized)
    }

    pub fn kernels(&self) -> &KernelRegistry {
        &self.kernels
    }

    pub fn backends(&self) -> &BackendRegistry {
        &self.backends
    }
}

impl Default for Runtime {
    /// A clone of [`Runtime::global`].
    fn default() -> Self {
        Runtime::global().clone()
    }
}

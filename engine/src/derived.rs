//! Data a method derives from its program at load and never writes afterwards, shared by the
//! methods of one [`Program`](crate::Program) loaded the same way.
//!
//! What it holds: results of calls on constants (constant folding, e.g. a transposed weight),
//! constants made by fusion (batch norm folded into a convolution), aligned copies of misaligned
//! constants, and the kernels' prepared state (packed weights). Why share: a server runs one
//! program with a Method per request thread. With a copy each, mlp_towers' 3 MB of transposed
//! weights came eight times over with eight requests at once, more than the cache holds; the
//! GEMM tiles then took four times the CPU time per execution (`perf record`), and throughput
//! fell to a quarter of that with four requests. mobilenet_v2 has 14 MB of packed weights.
//!
//! What must match for two loads to share: the method, the kernel registry (folding runs its
//! kernels, and prepared state is theirs), and whether the method was fused. Given those, loading
//! is deterministic: the same calls are folded and prepared, in the same order, so the buffers
//! are made in the same order and a later load takes them by position (checking each length).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use etch_kernels::PreparedState;

use crate::memory::AlignedBuf;

/// Which loads may share (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DerivedKey {
    pub method: Box<str>,
    /// Address of the kernel registry. Unique while a method loaded with it is alive, which is
    /// as long as the cache entry can be upgraded (methods hold their runtime, and with it the
    /// registry).
    pub kernels: usize,
    pub fused: bool,
}

/// One method's derived data (see the module docs).
#[derive(Default)]
pub(crate) struct Derived {
    /// In the order the load made them.
    pub buffers: Vec<AlignedBuf>,
    /// Prepared state, indexed by `Step::Kernel::prepared`.
    pub prepared: Vec<PreparedState>,
    /// (instruction, index into `prepared`) for every call with prepared state.
    pub links: Vec<(usize, u32)>,
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Derived").field("buffers", &self.buffers.len()).field("prepared", &self.prepared.len()).finish()
    }
}

/// A program's derived data per key, held weakly: it lives as long as some method uses it.
#[derive(Default)]
pub(crate) struct DerivedCache {
    entries: Mutex<HashMap<DerivedKey, Weak<Derived>>>,
}

impl DerivedCache {
    pub(crate) fn get(&self, key: &DerivedKey) -> Option<Arc<Derived>> {
        self.lock().get(key).and_then(Weak::upgrade)
    }

    /// Keeps `derived` for later loads (a concurrent load of the same key may have kept its own
    /// first: either serves).
    pub(crate) fn keep(&self, key: DerivedKey, derived: &Arc<Derived>) {
        let mut entries = self.lock();
        entries.retain(|_, d| d.strong_count() > 0);
        entries.entry(key).or_insert_with(|| Arc::downgrade(derived));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DerivedKey, Weak<Derived>>> {
        // A map of weak pointers is valid whatever a panicking holder did.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hands out a load's derived buffers: new ones for a first load, or the earlier load's in the
/// same order.
pub(crate) enum BufferSource<'a> {
    Fresh(Vec<AlignedBuf>),
    Shared { from: &'a Derived, next: usize },
}

impl BufferSource<'_> {
    /// A buffer of `len` bytes: `make` makes a fresh one; a shared one must have that length
    /// (`None` otherwise, or when the earlier load made fewer). Returns its address.
    pub(crate) fn take(&mut self, len: usize, make: impl FnOnce() -> Option<AlignedBuf>) -> Option<*mut u8> {
        match self {
            BufferSource::Fresh(made) => {
                let mut buf = make()?;
                let p = buf.as_mut_ptr();
                // Moving the buffer into the list does not move its memory.
                made.push(buf);
                Some(p)
            }
            BufferSource::Shared { from, next } => {
                let buf = from.buffers.get(*next).filter(|b| b.len() == len)?;
                *next += 1;
                // Read-only use: the tensor made over it is not writable.
                Some(buf.as_ptr().cast_mut())
            }
        }
    }

    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, BufferSource::Shared { .. })
    }
}

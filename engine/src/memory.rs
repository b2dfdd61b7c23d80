//! Memory the engine hands to tensors: 64-byte aligned owned buffers, and the planned buffers of a
//! method ([`MemoryManager`]), owned or provided by the caller.

use std::marker::PhantomData;

use bytemuck::{Pod, Zeroable};

/// Alignment of every buffer etch allocates: a cache line, enough for any dtype and AVX-512.
pub const BUFFER_ALIGN: usize = 64;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; BUFFER_ALIGN]);

/// A zero-initialised buffer aligned to [`BUFFER_ALIGN`].
pub struct AlignedBuf {
    storage: Storage,
    len: usize,
}

/// Buffers from [`MAP_MIN`] bytes up are anonymous mappings: page aligned and zeroed by the OS
/// page by page on first touch, so loading a method neither writes its planned memory (the
/// allocator's aligned `alloc_zeroed` memsets) nor faults it in. Smaller ones are heap blocks.
enum Storage {
    Heap(Vec<Line>),
    Mapped(memmap2::MmapMut),
}

/// Size from which [`AlignedBuf`] maps memory instead of using the heap.
const MAP_MIN: usize = 1 << 20;

/// A transparent huge page (x86-64 and most aarch64 kernels): buffers to be written at once from
/// this size up ask for them (on Linux).
const HUGE_PAGE: usize = 2 << 20;

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

impl AlignedBuf {
    /// `len` zero bytes, or `None` if the allocation size overflows.
    pub fn zeroed(len: usize) -> Option<AlignedBuf> {
        AlignedBuf::allocate(len, false)
    }

    /// Like [`AlignedBuf::zeroed`], for a buffer the caller fills right away: a large one has its
    /// pages mapped in one call rather than faulted in one by one as they are written.
    pub fn for_writing(len: usize) -> Option<AlignedBuf> {
        AlignedBuf::allocate(len, true)
    }

    fn allocate(len: usize, populate: bool) -> Option<AlignedBuf> {
        if len >= MAP_MIN {
            // Transparent huge pages for large buffers written right away (first-touch faults of
            // 4 KiB pages cost about 1.5 us each in a VM: most of loading mobilenet_v2's weights),
            // prefaulted in one call; where either advice is refused, pages fault in on first
            // write as usual. Other buffers written right away are populated by the mapping.
            let huge = cfg!(target_os = "linux") && populate && len >= HUGE_PAGE;
            let mut options = memmap2::MmapOptions::new();
            options.len(len);
            if populate && !huge {
                options.populate();
            }
            let map = options.map_anon().ok()?;
            #[cfg(target_os = "linux")]
            if huge {
                let _ = map.advise(memmap2::Advice::HugePage);
                let _ = map.advise(memmap2::Advice::PopulateWrite);
            }
            return Some(AlignedBuf { storage: Storage::Mapped(map), len });
        }
        let lines = len.checked_add(BUFFER_ALIGN - 1)? / BUFFER_ALIGN;
        // Fails (instead of aborting) when the size cannot be allocated.
        let v: Vec<Line> = bytemuck::allocation::try_zeroed_vec(lines).ok()?;
        Some(AlignedBuf { storage: Storage::Heap(v), len })
    }

    /// A copy of `bytes`.
    pub fn copy_of(bytes: &[u8]) -> Option<AlignedBuf> {
        let mut b = AlignedBuf::for_writing(bytes.len())?;
        b.as_mut_slice().copy_from_slice(bytes);
        Some(b)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.storage {
            Storage::Heap(lines) => &bytemuck::cast_slice(lines)[..self.len],
            Storage::Mapped(map) => &map[..self.len],
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.storage {
            Storage::Heap(lines) => &mut bytemuck::cast_slice_mut(lines)[..self.len],
            Storage::Mapped(map) => &mut map[..self.len],
        }
    }

    /// Base pointer for read-only tensors (see [`AlignedBuf::as_mut_ptr`]).
    pub(crate) fn as_ptr(&self) -> *const u8 {
        match &self.storage {
            Storage::Heap(lines) => lines.as_ptr().cast(),
            Storage::Mapped(map) => map.as_ptr(),
        }
    }

    /// Base pointer for tensors. Neither the heap block nor the mapping moves when the
    /// `AlignedBuf` moves.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        match &mut self.storage {
            Storage::Heap(lines) => lines.as_mut_ptr().cast(),
            Storage::Mapped(map) => map.as_mut_ptr(),
        }
    }
}

/// One planned buffer (memory_id `i + 1`).
enum Planned<'a> {
    Owned(AlignedBuf),
    /// Caller memory: base pointer and length of a `&'a mut [u8]` the manager holds exclusively.
    Borrowed {
        ptr: *mut u8,
        len: usize,
        _life: PhantomData<&'a mut [u8]>,
    },
}

/// The planned buffers of one method: one per `memory_id`, sized by the program's memory plan
/// (`non_const_buffer_sizes[1..]`).
///
/// Either etch allocates them ([`MemoryManager::owned`], what [`crate::Program::load_method`]
/// does) or the caller provides them ([`MemoryManager::from_buffers`]), for example from a static
/// arena on a microcontroller. Buffers are zeroed at method load.
pub struct MemoryManager<'a> {
    buffers: Vec<Planned<'a>>,
}

// SAFETY: the manager owns its buffers, or holds the only `&'a mut` to the caller's, so moving it
// to another thread moves exclusive access along with it.
unsafe impl Send for MemoryManager<'_> {}
// SAFETY: the manager exposes no access through `&self` except sizes.
unsafe impl Sync for MemoryManager<'_> {}

impl std::fmt::Debug for MemoryManager<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.buffers.iter().map(|b| b.len())).finish()
    }
}

impl Planned<'_> {
    fn len(&self) -> usize {
        match self {
            Planned::Owned(b) => b.len(),
            Planned::Borrowed { len, .. } => *len,
        }
    }
}

impl MemoryManager<'static> {
    /// Allocates zeroed buffers of these sizes. `None` if a size does not fit in memory.
    pub fn owned(sizes: &[u64]) -> Option<MemoryManager<'static>> {
        let mut buffers = Vec::with_capacity(sizes.len());
        for &s in sizes {
            buffers.push(Planned::Owned(AlignedBuf::zeroed(usize::try_from(s).ok()?)?));
        }
        Some(MemoryManager { buffers })
    }
}

impl<'a> MemoryManager<'a> {
    /// Uses caller memory: `buffers[i]` serves memory_id `i + 1`. Each must be at least the
    /// planned size; etch checks sizes and alignment at method load.
    pub fn from_buffers(buffers: Vec<&'a mut [u8]>) -> MemoryManager<'a> {
        MemoryManager {
            buffers: buffers
                .into_iter()
                .map(|b| Planned::Borrowed { ptr: b.as_mut_ptr(), len: b.len(), _life: PhantomData })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// Size in bytes of buffer `i`.
    pub fn buffer_len(&self, i: usize) -> Option<usize> {
        self.buffers.get(i).map(Planned::len)
    }

    /// Base pointer and length of buffer `i`, for placing tensors.
    pub(crate) fn base(&mut self, i: usize) -> Option<(*mut u8, usize)> {
        Some(match self.buffers.get_mut(i)? {
            Planned::Owned(b) => (b.as_mut_ptr(), b.len()),
            Planned::Borrowed { ptr, len, .. } => (*ptr, *len),
        })
    }

    /// Zeroes every buffer (state of a fresh method).
    pub(crate) fn zero(&mut self) {
        for b in &mut self.buffers {
            match b {
                // Allocated zeroed by `owned`, and a manager serves one method load (the method
                // keeps it): writing zeros again would only fault in every page at load.
                Planned::Owned(_) => {}
                Planned::Borrowed { ptr, len, .. } => {
                    // SAFETY: `ptr`/`len` come from a `&'a mut [u8]` this manager holds exclusively
                    // for 'a, and no tensor view is alive while the method is being (re)initialised.
                    unsafe { std::ptr::write_bytes(*ptr, 0, *len) };
                }
            }
        }
    }
}

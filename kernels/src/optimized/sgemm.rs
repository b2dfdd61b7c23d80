//! etch's own f32 GEMM: `C[M, N] (= or +=) A[M, K] · B[K, N]`, with the left operand packed ahead
//! of time and an epilogue (per-row or per-column bias, clamp) applied while the results are still
//! in registers.
//!
//! Why not a crate: the `gemm` crate runs only its AVX2 microkernel on stable Rust (its AVX-512 path
//! needs the `nightly` feature, which no longer builds), reaching ~57 GFLOP/s on one core of this
//! machine against a peak near 130; and no crate takes pre-packed weights with a fused bias + clamp
//! epilogue, which is what convolution and linear layers need (the bias and the activation would
//! otherwise be separate passes over the output). AVX-512 intrinsics are stable since Rust 1.89.
//!
//! Layout and blocking (BLIS-style, mirrored for row-major C):
//! - `A` is packed ([`pack_lhs`]) into panels of [`MR`] rows, k-major inside a panel (element
//!   `(i, k)` of panel `p` at `p * MR * K + k * MR + i`), zero-padded to whole panels, so constant
//!   weights are packed once at load and every K block of a panel is contiguous.
//! - `B` is read where it lies when its rows are contiguous (`B[k, j..j + NR]` one run), else a
//!   `KC × NR` strip is packed into a stack buffer first.
//! - The microkernel computes an `MR × NR` tile (`NR` = [`NR`] columns, two AVX-512 registers per
//!   row: 24 accumulators of the 32 registers) over a block of [`KC`] reductions; the panel of `A`
//!   (`MR × KC`) stays in L1 while the strips of the `KC × NC` block of `B` stream from L2.
//! - The epilogue runs after the last K block only; earlier blocks store partial sums in `C`.
//!
//! Every element of `C` is summed in the same order (K ascending, block by block) whatever the
//! thread split, so results do not depend on the number of threads.
//!
//! Microkernels: AVX-512F, AVX2+FMA and portable (autovectorized) code, chosen once per process
//! from the CPU's features (tests force each).

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use crate::error::KernelError;
use crate::registry::KernelContext;

/// Rows of a packed panel of `A` (and of a microkernel tile).
pub const MR: usize = 12;
/// Columns of a microkernel tile (two AVX-512 registers).
pub const NR: usize = 32;
/// Reductions per block: the `MR × KC` panel of `A` plus a `KC`-row strip of `B` stay in L1.
pub const KC: usize = 256;
/// Reductions per block when `A` is a single panel (matrix-vector-like products, e.g. a batch-1
/// linear layer): each block reads `B` as this many row streams, few enough for the hardware
/// prefetchers to follow (with [`KC`] rows at once they do not, and the loads wait on memory).
pub const KC_ONE_PANEL: usize = 32;
/// Columns per block of `B`: a `KC × NC` block (1 MiB) stays in L2 while every panel of `A` passes.
pub const NC: usize = 1024;
/// Up to this many bytes of B's rows (for one range of columns), a product goes through A panel
/// by panel over the whole reduction (see `Job::run`): a quarter of a 1 MiB L2.
pub const PANEL_OUTER_MAX_B_BYTES: usize = 256 << 10;
/// Below this many multiply-adds a product runs on the calling thread: handing work to the pool
/// costs a few microseconds. Measured with `etch bench --threads 2` (sequential mode), 2^21
/// against 2^18: mlp_towers 0.130 against 0.085-0.089 ms, inception_block 0.186 against 0.149,
/// transformer_layer 0.056 against 0.053; mobilenet_v2 within its noise (3.3-4.9 ms either way).
/// (With workers asleep between kernels, before they were kept spinning, 2^19 had been slower.)
/// 2^16 against 2^18 (this and the direct convolutions' threshold), alternating, three pairs:
/// mobilenet_v2_w050 0.172-0.174 against 0.165-0.168 ms, squeezenet1_1, resnet18_narrow,
/// transformer_layer, mlp_towers and inception_block unchanged within their noise.
pub const PARALLEL_MIN_MACS: usize = 1 << 16;
/// Multiply-adds per task of a large product on the pool (tens of microseconds). A thread that
/// finishes a task while another still runs one waits for it at the end of the product, and a
/// thread coming free from another branch of the graph joins only for the tasks not yet taken:
/// traced on inception_v1 in parallel mode, a 3x3 convolution's product in four tasks of
/// 160-200 µs left one core waiting 184 µs for the task the other had joined for last.
const TASK_MACS: usize = 1 << 21;
/// At most this many tasks per thread (each task reads all of the packed `A`, or of `B` when the
/// panels are split, again).
const MAX_TASKS_PER_THREAD: usize = 16;
/// Elements of B (1 MiB of f32) from which a product of at most [`MR`] rows splits over the pool.
pub const PARALLEL_MIN_STREAMED: usize = 1 << 18;
/// Up to this many bytes of packed `A`, a product whose `C` fits the L2 caches goes strip by
/// strip of `B` (see [`strips_outer`]): a core's L1 data cache (32 KiB on Zen 4).
pub const STRIPS_OUTER_MAX_A_BYTES: usize = 32 << 10;
/// Up to this many bytes of `C` per thread, a product with a small `A` goes strip by strip of `B`:
/// a core's L2 (1 MiB on Zen 4).
pub const STRIPS_OUTER_MAX_C_BYTES: usize = 1 << 20;

/// Whether a product runs strip by strip of `B`, each strip (the whole reduction, one block) read
/// once into L1 and every panel of `A` passed over it, rather than panel by panel over a block of
/// `B` in L2 (which reads each tile's rows of `B` from L2 again for every panel). Only when all of
/// `A` stays in L1 beside the strip, and only when each thread's share of `C` fits its L2: a strip
/// writes a little of every row of `C`, as many write streams as rows, which the caches absorb but
/// memory does not.
/// Measured on mobilenet_v2's expansions (exported as single layers, `etch bench`, medians of
/// alternating runs): 24->144 channels at 56x56 (1.8 MB of `C`), two threads 0.205 -> 0.149 ms
/// (one thread, where `C` is past the bound: 0.278 either order); 32->192 at 28x28, two threads
/// 0.089 -> 0.062 ms, one 0.112 -> 0.109; 16->96 at 112x112 (4.8 MB of `C`, past the L2s) one
/// thread 0.76 -> 1.13 ms strip by strip, hence the bound on `C`.
fn strips_outer(m: usize, k: usize, n: usize, threads: usize) -> bool {
    #[cfg(test)]
    if !STRIPS_OUTER_ENABLED.with(|e| e.get()) {
        return false;
    }
    let a_bytes = m.saturating_mul(k).saturating_mul(4);
    let c_bytes_per_thread = m.saturating_mul(n).saturating_mul(4) / threads.max(1);
    // One reduction block, so that a strip is B's whole reduction.
    KBlocks::new(m, k).count == 1
        && a_bytes <= STRIPS_OUTER_MAX_A_BYTES
        && c_bytes_per_thread <= STRIPS_OUTER_MAX_C_BYTES
}

/// Up to this many columns of `C` (the pixels of a convolution on a 2x2 or 1x1 map, a
/// matrix-vector product) the AVX-512 kernel turns the tile around: a panel's rows in the lanes
/// and each column of `B` broadcast, instead of 16-column registers mostly masked off (4 of 32
/// lanes at 2x2). Each element is still summed in the same order, so results are bit-identical.
pub const NARROW_COLS: usize = 8;

/// A read-only strided f32 matrix: element `(i, j)` at `data[i * row + j * col]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub col: usize,
}

/// A matrix whose rows lie in one slice in groups of `taps.len()`, each group `group` elements
/// after the previous: row `g * taps.len() + t` is the run of columns starting at
/// `data[g * group + taps[t]]`. A stride-1 convolution's im2col matrix is this over a zero-padded
/// copy of its input (see `conv::padded_gemm`): row `(ci, ky, kx)` is input plane `ci` read from
/// an offset that depends on the tap only, so the matrix needs no copy.
#[derive(Clone, Copy, Debug)]
pub struct TapRows<'a> {
    pub data: &'a [f32],
    pub group: usize,
    pub taps: &'a [usize],
}

/// The right operand of a product.
#[derive(Clone, Copy, Debug)]
enum Rhs<'a> {
    Strided(MatRef<'a>),
    Taps(TapRows<'a>),
}

/// A writable strided f32 matrix: element `(i, j)` at `data[i * row + j * col]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub row: usize,
    pub col: usize,
}

/// A bias added in the epilogue.
#[derive(Clone, Copy, Debug, Default)]
pub enum Bias<'a> {
    #[default]
    None,
    /// `bias[i]` added to row `i` (convolutions: `C[out_channel, pixel]`).
    Row(&'a [f32]),
    /// `bias[j]` added to column `j` (linear layers with `C[batch, out_feature]`).
    Col(&'a [f32]),
}

/// What happens to each result before it is stored:
/// `C = clamp(A·B + bias (+ C_old) (+ residual), min, max)`.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    pub bias: Bias<'a>,
    /// Add the product onto the existing `C` (beta = 1) instead of overwriting it.
    pub accumulate: bool,
    /// A matrix of `C`'s shape added to the biased product (a residual connection's other
    /// branch): `(A·B + bias) + R`, the sum an `add` after the product computes, so fusing it
    /// rounds as the two calls do. Not with `accumulate`.
    pub residual: Option<MatRef<'a>>,
    pub min: f32,
    pub max: f32,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Epilogue { bias: Bias::None, accumulate: false, residual: None, min: f32::NEG_INFINITY, max: f32::INFINITY }
    }
}

impl<'a> Epilogue<'a> {
    /// Overwrite `C` with the plain product.
    pub fn store() -> Self {
        Epilogue::default()
    }

    pub fn with_bias(self, bias: Bias<'a>) -> Self {
        Epilogue { bias, ..self }
    }

    pub fn accumulating(self) -> Self {
        Epilogue { accumulate: true, ..self }
    }

    pub fn clamped(self, min: f32, max: f32) -> Self {
        Epilogue { min, max, ..self }
    }

    pub fn with_residual(self, residual: MatRef<'a>) -> Self {
        Epilogue { residual: Some(residual), ..self }
    }
}

/// The microkernel families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The fastest family this CPU runs (detected once).
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Kernel::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    return Kernel::Avx2;
                }
            }
            Kernel::Portable
        })
    }

    /// Every family this CPU runs (for tests and benchmarks).
    pub fn supported() -> Vec<Kernel> {
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                all.push(Kernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Kernel::Avx512);
            }
        }
        all
    }
}

/// Elements [`pack_lhs`] writes for an `m × k` matrix (`None` on overflow).
pub fn packed_lhs_len(m: usize, k: usize) -> Option<usize> {
    m.div_ceil(MR).checked_mul(MR)?.checked_mul(k)
}

/// Largest element offset an `rows × cols` view with strides `(row, col)` touches, if it fits.
fn max_offset(rows: usize, cols: usize, row: usize, col: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(row)?.checked_add((cols - 1).checked_mul(col)?)
}

/// Whether every element of an `rows × cols` view lies inside a slice of `len` elements.
fn fits(len: usize, rows: usize, cols: usize, row: usize, col: usize) -> bool {
    rows == 0 || cols == 0 || max_offset(rows, cols, row, col).is_some_and(|o| o < len)
}

fn bad(arg: usize, reason: &'static str) -> KernelError {
    KernelError::ShapeMismatch { arg, reason }
}

/// Whether a [`TapRows`] matrix of `k` rows and `n` columns lies inside its slice.
fn taps_fit(b: TapRows<'_>, k: usize, n: usize) -> bool {
    let ntaps = b.taps.len();
    if k == 0 || n == 0 {
        return true;
    }
    if ntaps == 0 || !k.is_multiple_of(ntaps) {
        return false;
    }
    let last_group = (k / ntaps - 1).checked_mul(b.group);
    let widest = b.taps.iter().max().and_then(|&t| t.checked_add(n));
    last_group.zip(widest).and_then(|(g, w)| g.checked_add(w)).is_some_and(|end| end <= b.data.len())
}

/// Packs the `m × k` matrix `a` into `dst` (panel layout in the module docs), each element times
/// `scale`. `dst` must hold at least [`packed_lhs_len`] elements; `arg` names `a` in errors.
pub fn pack_lhs(m: usize, k: usize, a: MatRef<'_>, scale: f32, dst: &mut [f32], arg: usize) -> Result<(), KernelError> {
    let len = packed_lhs_len(m, k).ok_or(bad(arg, "matrix too large"))?;
    if !fits(a.data.len(), m, k, a.row, a.col) {
        return Err(bad(arg, "matrix view outside its tensor"));
    }
    let dst = dst.get_mut(..len).ok_or(bad(arg, "packing buffer too small"))?;
    if k == 0 {
        return Ok(());
    }
    for (panel, out) in dst.chunks_exact_mut(MR * k).enumerate() {
        let i0 = panel * MR;
        let rows = (m - i0).min(MR);
        if a.col == 1 {
            // Rows contiguous: PACK_STEPS columns of the panel's rows at a time into a fixed-size
            // block (rows past `rows` zero), written out transposed. Fixed sizes leave no bounds
            // checks in the transpose; element by element, packing was an eighth of
            // transformer_layer's time (16-row activations packed for every product).
            let row = |i: usize| {
                let start = (i0 + i) * a.row;
                &a.data[start..start + k]
            };
            let full = k - k % PACK_STEPS;
            #[cfg(target_arch = "x86_64")]
            {
                let rows: [&[f32]; MR] = std::array::from_fn(|i| if i < rows { row(i) } else { &[] });
                // SAFETY: SSE is part of the x86-64 baseline, so every x86-64 CPU has it.
                unsafe { pack_steps_sse(&rows, full, scale, &mut out[..full * MR]) };
            }
            #[cfg(not(target_arch = "x86_64"))]
            let mut block = [[0f32; PACK_STEPS]; MR];
            #[cfg(not(target_arch = "x86_64"))]
            for (step, dst) in out[..full * MR].chunks_exact_mut(PACK_STEPS * MR).enumerate() {
                let k0 = step * PACK_STEPS;
                for (i, b) in block.iter_mut().enumerate().take(rows) {
                    b.copy_from_slice(&row(i)[k0..k0 + PACK_STEPS]);
                }
                for (kk, d) in dst.chunks_exact_mut(MR).enumerate() {
                    for (d, b) in d.iter_mut().zip(&block) {
                        *d = b[kk] * scale;
                    }
                }
            }
            for kk in full..k {
                for (i, d) in out[kk * MR..kk * MR + MR].iter_mut().enumerate() {
                    *d = if i < rows { row(i)[kk] * scale } else { 0.0 };
                }
            }
        } else {
            for (kk, dst) in out.chunks_exact_mut(MR).enumerate() {
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = if i < rows { a.data[(i0 + i) * a.row + kk * a.col] * scale } else { 0.0 };
                }
            }
        }
    }
    Ok(())
}

/// Columns [`pack_lhs`] transposes at a time.
const PACK_STEPS: usize = 16;

/// [`pack_lhs`]'s full column steps for one panel of contiguous rows: `rows[i]` is row `i` (empty
/// past the matrix's last row: zeros), at least `full` long; column `kk < full` goes to
/// `out[kk * MR..kk * MR + MR]`, each element times `scale` — the generic loop's values, moved
/// by 4x4 transposes in SSE registers (baseline on x86-64) instead of one element at a time:
/// packing a 16-row activation was a tenth of bert_encoder's time, its products' per-call cost.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse")]
fn pack_steps_sse(rows: &[&[f32]; MR], full: usize, scale: f32, out: &mut [f32]) {
    use std::arch::x86_64::*;
    const _: () = assert!(MR.is_multiple_of(4) && PACK_STEPS.is_multiple_of(4));
    let scale = _mm_set1_ps(scale);
    let zero = [0f32; 4];
    for (step, dst) in out.chunks_exact_mut(PACK_STEPS * MR).enumerate().take(full / PACK_STEPS) {
        for g in 0..MR / 4 {
            for c in 0..PACK_STEPS / 4 {
                let k0 = step * PACK_STEPS + 4 * c;
                let load = |j: usize| {
                    let piece = rows[4 * g + j].get(k0..k0 + 4).unwrap_or(&zero);
                    // SAFETY: `piece` holds 4 readable floats (a row's columns or `zero`).
                    unsafe { _mm_loadu_ps(piece.as_ptr()) }
                };
                let (r0, r1, r2, r3) = (load(0), load(1), load(2), load(3));
                let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
                let (t2, t3) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
                let columns =
                    [_mm_movelh_ps(t0, t1), _mm_movehl_ps(t1, t0), _mm_movelh_ps(t2, t3), _mm_movehl_ps(t3, t2)];
                for (q, column) in columns.into_iter().enumerate() {
                    let at = (4 * c + q) * MR + 4 * g;
                    let (slot, scaled) = (&mut dst[at..at + 4], _mm_mul_ps(column, scale));
                    // SAFETY: `slot` holds 4 writable floats.
                    unsafe { _mm_storeu_ps(slot.as_mut_ptr(), scaled) };
                }
            }
        }
    }
}

/// A packed left operand: `m × k` in panels (see [`pack_lhs`]).
#[derive(Clone, Copy, Debug)]
pub struct PackedLhs<'a> {
    pub data: &'a [f32],
    pub m: usize,
    pub k: usize,
}

/// An unpacked left operand: `m × k`, row `i` the `k` contiguous elements from `data[i * row]`
/// (a linear layer's activations, one token per row). [`sgemm_rows`] reads it in place.
#[derive(Clone, Copy, Debug)]
pub struct RowsLhs<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub m: usize,
    pub k: usize,
}

/// The left operand of a product: packed into panels ([`pack_lhs`]) or rows read in place.
#[derive(Clone, Copy)]
enum Lhs<'a> {
    Packed(PackedLhs<'a>),
    Rows(RowsLhs<'a>),
}

impl Lhs<'_> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Lhs::Packed(a) => (a.m, a.k),
            Lhs::Rows(a) => (a.m, a.k),
        }
    }
}

/// Whether [`sgemm_rows`] runs on this CPU (its microkernel is AVX-512's).
pub fn rows_lhs_available() -> bool {
    Kernel::best() == Kernel::Avx512
}

/// [`sgemm`] with `A` read where it lies ([`RowsLhs`]) instead of packed: for products whose
/// `A` changes every call (activations), where packing it costs as much as a good part of a
/// small product (a ninth of bert_encoder's time went to [`pack_lhs`]) and no less than the
/// packed panels save on a large one (see `linalg::gemm_f32`). Each
/// element of `C` is the same chain of multiply-adds as [`sgemm`]'s over `A` packed with scale
/// 1, so the two give bit-identical results. Errors when [`rows_lhs_available`] is false.
pub fn sgemm_rows(
    ctx: &KernelContext,
    n: usize,
    a: RowsLhs<'_>,
    b: MatRef<'_>,
    c: MatMut<'_>,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    product(Kernel::best(), ctx.threads(), ctx, n, Lhs::Rows(a), Rhs::Strided(b), c, epilogue, arg)
}

/// `C = epilogue(A · B)` for a packed `A` (`m × k`), `B` (`k × n`) and `C` (`m × n`), on the
/// caller's pool when the product is large enough. `arg` names `C` in errors about it (and
/// `arg + 1`... are not used: views outside their slices are reported against `C`'s argument,
/// since callers build all three from checked tensors).
pub fn sgemm(
    ctx: &KernelContext,
    n: usize,
    a: PackedLhs<'_>,
    b: MatRef<'_>,
    c: MatMut<'_>,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    sgemm_with(Kernel::best(), ctx.threads(), ctx, n, a, b, c, epilogue, arg)
}

/// [`sgemm`] with `B` given as [`TapRows`] (`a.k` rows: a whole number of groups). The AVX-512
/// kernel walks the rows in place ([`TapWalk`]); the others get each strip of `B` copied into L1
/// first. Either way the results are, bit for bit, those of the same `B` copied into a matrix.
pub fn sgemm_taps(
    ctx: &KernelContext,
    n: usize,
    a: PackedLhs<'_>,
    b: TapRows<'_>,
    c: MatMut<'_>,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    product(Kernel::best(), ctx.threads(), ctx, n, Lhs::Packed(a), Rhs::Taps(b), c, epilogue, arg)
}

/// [`sgemm`] with the microkernel family and the thread budget chosen by the caller (tests,
/// benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with(
    kernel: Kernel,
    threads: usize,
    ctx: &KernelContext,
    n: usize,
    a: PackedLhs<'_>,
    b: MatRef<'_>,
    c: MatMut<'_>,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    product(kernel, threads, ctx, n, Lhs::Packed(a), Rhs::Strided(b), c, epilogue, arg)
}

/// A matrix (`rows` × `cols`, element `(i, j)` at `i * row + j * col`) whose columns the tasks of
/// one parallel region fill, each its own range, through [`sgemm_columns_one_thread`]: a
/// convolution's output, split by pixels, whose rows (channels) each task writes a part of.
pub struct SharedColumns<'a> {
    c: CView,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: the pointer comes from a `&'a mut [f32]` held for `'a`; through a shared reference only
// `sgemm_columns_one_thread` writes, at columns its callers promise no other task writes at the
// same time.
unsafe impl Sync for SharedColumns<'_> {}

impl<'a> SharedColumns<'a> {
    /// `c`'s elements, to be written by column ranges.
    pub fn new(c: MatMut<'a>) -> Self {
        SharedColumns { c: CView::of(c), _borrow: std::marker::PhantomData }
    }

    /// Copies `rows` rows of `cols.len()` elements, row `i` from `src[i * src_row..]`, into
    /// columns `cols` of rows `0..rows` (a task's products computed into scratch first).
    ///
    /// # Safety
    /// As [`sgemm_columns_one_thread`]: no other call writes any of these columns meanwhile.
    pub unsafe fn write_columns(
        &self,
        rows: usize,
        cols: std::ops::Range<usize>,
        src: &[f32],
        src_row: usize,
        arg: usize,
    ) -> Result<(), KernelError> {
        let outside = KernelError::ShapeMismatch { arg, reason: "matrix view outside its tensor" };
        let width = cols.end.checked_sub(cols.start).ok_or(outside)?;
        if width == 0 {
            return Ok(());
        }
        for i in 0..rows {
            let from = src.get(i * src_row..).and_then(|s| s.get(..width)).ok_or(outside)?;
            let at = |j: usize| {
                let at = i.checked_mul(self.c.row)?.checked_add(cols.start.checked_add(j)?.checked_mul(self.c.col)?)?;
                (at < self.c.len).then_some(at)
            };
            if self.c.col == 1 {
                let (Some(first), Some(_)) = (at(0), at(width - 1)) else { return Err(outside) };
                let to = self.c.ptr.wrapping_add(first);
                // SAFETY: elements `first..first + width` lie inside the borrowed slice (its first
                // and last were checked against `len`, and with `col == 1` the run is contiguous);
                // `src` is another slice (a shared borrow cannot overlap the exclusive borrow this
                // view holds); the caller guarantees no other task writes these columns.
                unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), to, width) };
            } else {
                for (j, &v) in from.iter().enumerate() {
                    let at = at(j).ok_or(outside)?;
                    let to = self.c.ptr.wrapping_add(at);
                    // SAFETY: `at < len`: inside the borrowed slice; the caller guarantees no
                    // other task writes this column.
                    unsafe { to.write(v) };
                }
            }
        }
        Ok(())
    }
}

/// [`sgemm`] on the calling thread into columns `cols` of `c` (the product's `n` is
/// `cols.len()`, column `j` of B going to column `cols.start + j` of `c`).
///
/// # Safety
/// No other call writes any of these columns of `c` while this one runs (tasks of one region
/// take disjoint column ranges).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_columns_one_thread(
    ctx: &KernelContext,
    a: PackedLhs<'_>,
    b: MatRef<'_>,
    c: &SharedColumns<'_>,
    cols: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    // SAFETY: this function's contract.
    unsafe { columns_one_thread(ctx, a, Rhs::Strided(b), c, cols, epilogue, arg) }
}

/// [`sgemm_columns_one_thread`] with `B` given as [`TapRows`] (see [`sgemm_taps`]).
///
/// # Safety
/// As [`sgemm_columns_one_thread`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_taps_columns_one_thread(
    ctx: &KernelContext,
    a: PackedLhs<'_>,
    b: TapRows<'_>,
    c: &SharedColumns<'_>,
    cols: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    // SAFETY: this function's contract.
    unsafe { columns_one_thread(ctx, a, Rhs::Taps(b), c, cols, epilogue, arg) }
}

/// # Safety
/// As [`sgemm_columns_one_thread`].
#[allow(clippy::too_many_arguments)]
unsafe fn columns_one_thread(
    ctx: &KernelContext,
    a: PackedLhs<'_>,
    b: Rhs<'_>,
    c: &SharedColumns<'_>,
    cols: std::ops::Range<usize>,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    if matches!(epilogue.bias, Bias::Col(_)) || cols.end < cols.start {
        return Err(bad(arg, "column range of a shared output"));
    }
    let c = &c.c;
    let Some(first) = cols.start.checked_mul(c.col).filter(|&f| f <= c.len) else {
        return Err(bad(arg, "matrix view outside its tensor"));
    };
    // The view from column `cols.start` on; `product` checks the product's reach against `len`.
    // `first <= len`: the pointer stays inside (or one past) the borrowed slice.
    let view = CView { ptr: c.ptr.wrapping_add(first), len: c.len - first, row: c.row, col: c.col };
    // The residual is indexed like `c`: the same columns of it.
    let mut epilogue = *epilogue;
    if let Some(r) = epilogue.residual.as_mut() {
        r.data = cols
            .start
            .checked_mul(r.col)
            .and_then(|f| r.data.get(f..))
            .ok_or(bad(arg, "residual outside its tensor"))?;
    }
    let epilogue = &epilogue;
    // SAFETY: `view` covers elements of the slice `c` borrows exclusively for `'a` (from `first`
    // to its end); the caller guarantees that no other call writes these columns meanwhile, and
    // with one thread this call writes no others (the product's columns are `cols`).
    unsafe { product_into(Kernel::best(), 1, ctx, cols.len(), Lhs::Packed(a), b, view, epilogue, arg) }
}

/// Where a product writes C: `len` elements from `ptr`, element `(i, j)` at `i * row + j * col`.
struct CView {
    ptr: *mut f32,
    len: usize,
    row: usize,
    col: usize,
}

impl CView {
    /// The elements `c` borrows.
    fn of(c: MatMut<'_>) -> CView {
        CView { ptr: c.data.as_mut_ptr(), len: c.data.len(), row: c.row, col: c.col }
    }
}

#[allow(clippy::too_many_arguments)]
fn product(
    kernel: Kernel,
    threads: usize,
    ctx: &KernelContext,
    n: usize,
    a: Lhs<'_>,
    b: Rhs<'_>,
    c: MatMut<'_>,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    // SAFETY: the view is exactly the slice `c` borrows exclusively for this call.
    unsafe { product_into(kernel, threads, ctx, n, a, b, CView::of(c), epilogue, arg) }
}

/// # Safety
/// The `c.len` elements from `c.ptr` are writable, and no one else reads or writes those this
/// product reaches (`(i, j)` for `i < a.m`, `j < n`) while it runs.
#[allow(clippy::too_many_arguments)]
unsafe fn product_into(
    kernel: Kernel,
    threads: usize,
    ctx: &KernelContext,
    n: usize,
    a: Lhs<'_>,
    b: Rhs<'_>,
    c: CView,
    epilogue: &Epilogue<'_>,
    arg: usize,
) -> Result<(), KernelError> {
    let (m, k) = a.shape();
    // Every access below stays inside these slices: checked here, once, for the SAFETY comments.
    let (a_data, a_row) = match a {
        Lhs::Packed(a) => {
            if packed_lhs_len(m, k).is_none_or(|len| a.data.len() < len) {
                return Err(bad(arg, "packed matrix shorter than its shape"));
            }
            (a.data, 0)
        }
        Lhs::Rows(a) => {
            if kernel != Kernel::Avx512 {
                return Err(KernelError::NotImplemented("an unpacked left operand without AVX-512"));
            }
            // A zero row stride is a packed operand's marker: one row needs no stride, any.
            if !fits(a.data.len(), m, k, a.row, 1) {
                return Err(bad(arg, "matrix view outside its tensor"));
            }
            (a.data, a.row.max(1))
        }
    };
    let b_fits = match b {
        Rhs::Strided(b) => fits(b.data.len(), k, n, b.row, b.col),
        Rhs::Taps(b) => taps_fit(b, k, n),
    };
    if !b_fits || !fits(c.len, m, n, c.row, c.col) {
        return Err(bad(arg, "matrix view outside its tensor"));
    }
    if let Some(r) = epilogue.residual {
        if !fits(r.data.len(), m, n, r.row, r.col) {
            return Err(bad(arg, "residual outside its tensor"));
        }
        if epilogue.accumulate {
            return Err(bad(arg, "a residual with an accumulating product"));
        }
    }
    let (b_data, b_row, b_col, b_taps) = match b {
        Rhs::Strided(b) => (b.data, b.row, b.col, None),
        Rhs::Taps(b) => (b.data, 0, 1, Some((b.taps.as_ptr(), b.taps.len(), b.group))),
    };
    match epilogue.bias {
        Bias::Row(bias) if bias.len() < m => return Err(bad(arg, "bias shorter than the rows")),
        Bias::Col(bias) if bias.len() < n => return Err(bad(arg, "bias shorter than the columns")),
        _ => {}
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    // Distinct (row, col) pairs must address distinct elements of C, or parallel stores would race
    // (and sequential ones overwrite): zero strides are only fine along a dimension of size 1.
    if (m > 1 && c.row == 0) || (n > 1 && c.col == 0) {
        return Err(bad(arg, "output view with a zero stride"));
    }
    let job = Job {
        kernel,
        // The narrow kernel reads B where it lies, with strides.
        narrow: narrow_kernel(kernel) && b_taps.is_none() && a_row == 0,
        m,
        k,
        a: a_data.as_ptr(),
        a_row,
        b: b_data.as_ptr(),
        b_row,
        b_col,
        b_taps,
        c: SendPtr(c.ptr),
        c_row: c.row,
        c_col: c.col,
        // With a residual, the clamp waits for it (see `Job::add_residual`).
        epilogue: match epilogue.residual {
            Some(_) => Epilogue { min: f32::NEG_INFINITY, max: f32::INFINITY, residual: None, ..*epilogue },
            None => *epilogue,
        },
        residual: epilogue.residual.map(|r| JobResidual {
            data: r.data.as_ptr(),
            row: r.row,
            col: r.col,
            min: epilogue.min,
            max: epilogue.max,
        }),
        residual_in_tiles: kernel == Kernel::Avx512
            && c.col == 1
            && epilogue.residual.is_some_and(|r| r.col == 1)
            && epilogue.min == f32::NEG_INFINITY
            && epilogue.max == f32::INFINITY,
        strips_outer: b_col == 1 && b_taps.is_none() && strips_outer(m, k, n, threads),
    };
    let panels = m.div_ceil(MR);
    let macs = m.saturating_mul(n).saturating_mul(k.max(1));
    // A product with few rows (a batch-1 linear layer) is bound by reading B, which two cores do
    // faster than one: it splits from a smaller size.
    let streams_b = m <= MR && k.saturating_mul(n) >= PARALLEL_MIN_STREAMED;
    if threads <= 1 || (macs < PARALLEL_MIN_MACS && !streams_b) {
        job.run(0..panels, 0..n);
        return Ok(());
    }
    // Split the columns when there are enough whole strips for every thread, else the panels.
    // Twice as many tasks as threads lets the pool balance when another branch holds a core, and
    // large products are cut finer still (see [`TASK_MACS`]).
    // A whole number of tasks per thread: mobilenet_v2's stem in five tasks left one thread
    // idle for the fifth (73 µs of its 200).
    let tasks = (threads * 2).max(macs / TASK_MACS).min(threads * MAX_TASKS_PER_THREAD).next_multiple_of(threads);
    let strips = n.div_ceil(NR);
    let job = &job;
    if strips >= tasks {
        crate::spread::for_each_task(ctx, tasks, |t| {
            let (s0, s1) = (strips * t / tasks, strips * (t + 1) / tasks);
            job.run(0..panels, s0 * NR..(s1 * NR).min(n));
            Ok(())
        })
    } else {
        let tasks = tasks.min(panels);
        crate::spread::for_each_task(ctx, tasks, |t| {
            job.run(panels * t / tasks..panels * (t + 1) / tasks, 0..n);
            Ok(())
        })
    }
}

/// A raw output pointer that may cross threads: tasks write disjoint elements (see `sgemm_with`).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the pointer is only dereferenced for elements of C, which distinct tasks never share.
unsafe impl Send for SendPtr {}
// SAFETY: as above; shared references to the job only read the pointer value.
unsafe impl Sync for SendPtr {}

/// One product with all views checked (the constructor's contract): for `i < m`, `j < n`,
/// `kk < k`: `a[p * MR * k + kk * MR + r]` for every panel `p < ceil(m / MR)` and `r < MR`
/// (or, when `a_row` is not zero, `a[i * a_row + kk]`),
/// `b[kk * b_row + j * b_col]` (or its [`TapRows`] element, see `b_taps`) and `c[i * c_row + j * c_col]` are inside their slices; `c` is
/// exclusively borrowed for the duration and distinct `(i, j)` address distinct elements.
struct Job<'a> {
    kernel: Kernel,
    /// The narrow kernel is available (AVX-512): the last columns of a range run it (see
    /// [`narrow_tail`]).
    narrow: bool,
    m: usize,
    k: usize,
    a: *const f32,
    /// Zero: `a` is packed in panels. Otherwise A's row stride, its rows read in place (the
    /// AVX-512 kernel only; the narrow kernel is off).
    a_row: usize,
    b: *const f32,
    b_row: usize,
    b_col: usize,
    /// B as [`TapRows`] (`b_row`, `b_col` unused): the taps (`ntaps` readable entries) and the
    /// group stride; `b[g * group + taps[t] + j]` is inside B for `g * ntaps + t < k`, `j < n`.
    b_taps: Option<(*const usize, usize, usize)>,
    c: SendPtr,
    c_row: usize,
    c_col: usize,
    /// The microkernels' epilogue: without the residual, and without the clamp when there is
    /// one.
    epilogue: Epilogue<'a>,
    residual: Option<JobResidual>,
    /// The AVX-512 tile kernel adds the residual as it stores (dense `C` and residual rows, no
    /// clamp); the narrow kernel's columns still get it afterwards.
    residual_in_tiles: bool,
    /// Tiles go strip by strip of B, every panel of A over each (see [`strips_outer`]), instead of
    /// panel by panel.
    strips_outer: bool,
}

/// A [`Job`]'s residual `R` (element `(i, j)` at `data[i * row + j * col]`, inside its slice for
/// `i < m`, `j < n`) and the clamp after it, which each task applies to its part of `C` right
/// after computing it, while it is in cache (where the tile kernel does not, see
/// `Job::residual_in_tiles`).
#[derive(Clone, Copy)]
struct JobResidual {
    data: *const f32,
    row: usize,
    col: usize,
    min: f32,
    max: f32,
}

// SAFETY: the raw pointers point into slices borrowed for the job's lifetime (read-only for `a`,
// `b` and the residual); writes through `c` go to disjoint elements per task.
unsafe impl Sync for Job<'_> {}

/// One microkernel call: an `rows × cols` tile (`rows <= MR`, `1 <= cols <= NR`) over `kc`
/// reductions. Contract (upheld by `Job::run`): `a[kk * MR + r]` readable for `kk < kc`,
/// `r < MR` (or, when `a_row` is not zero, `a[r * a_row + kk]` for `r < rows`);
/// `b[kk * ldb + j]` readable for `kk < kc`, `j < cols`; `c[r * ldc + j]` readable and
/// writable for `r < rows`, `j < cols`, not aliased; `row_bias[r]` readable for `r < rows` when
/// not null; `col_bias[j]` readable for `j < cols` when not null; `residual` as documented there.
#[derive(Clone, Copy)]
struct Tile {
    a: *const f32,
    /// Zero: `a` is a packed panel. Otherwise the rows' stride (AVX-512 kernel only).
    a_row: usize,
    b: *const f32,
    ldb: usize,
    /// When set, B's rows are [`TapRows`] read in place (AVX-512 kernel only): row `kk` of the
    /// tile at `b + walk.row(kk)` instead of `b + kk * ldb`, with the same readable columns.
    walk: Option<TapWalk>,
    c: *mut f32,
    ldc: usize,
    kc: usize,
    rows: usize,
    cols: usize,
    /// Start from the stored `C` (later K blocks, or accumulating) instead of zero.
    load_c: bool,
    /// Apply bias and clamp (last K block).
    finish: bool,
    row_bias: *const f32,
    col_bias: *const f32,
    /// When not null (AVX-512 kernel only, with `finish`): `residual[r * ldr + j]`, readable for
    /// `r < rows`, `j < cols`, added after the bias and before the clamp.
    residual: *const f32,
    ldr: usize,
    min: f32,
    max: f32,
}

/// Where the rows of a [`TapRows`] B lie, walked in order from one reduction step: group `g`,
/// tap `t` (`t < ntaps`; `taps` has `ntaps` readable entries).
#[derive(Clone, Copy)]
struct TapWalk {
    taps: *const usize,
    ntaps: usize,
    group: usize,
    g: usize,
    t: usize,
}

impl TapWalk {
    /// The walk from reduction step `k0`.
    fn at((taps, ntaps, group): (*const usize, usize, usize), k0: usize) -> TapWalk {
        TapWalk { taps, ntaps, group, g: k0 / ntaps, t: k0 % ntaps }
    }

    /// The offset of the current row, then steps to the next one.
    ///
    /// # Safety
    /// `self.t < self.ntaps` (kept by construction and by this method).
    #[inline(always)]
    unsafe fn next_row(&mut self) -> usize {
        // SAFETY: t < ntaps (caller).
        let at = self.g * self.group + unsafe { self.taps.wrapping_add(self.t).read() };
        self.t += 1;
        if self.t == self.ntaps {
            (self.g, self.t) = (self.g + 1, 0);
        }
        at
    }
}

/// Whether the narrow kernel is available: on AVX-512.
fn narrow_kernel(kernel: Kernel) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        #[cfg(test)]
        let enabled = NARROW_ENABLED.with(|e| e.get());
        #[cfg(not(test))]
        let enabled = true;
        kernel == Kernel::Avx512 && enabled
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kernel;
        false
    }
}

/// How many of `cols` columns (the last ones) the narrow kernel computes when it is available:
/// the tile kernel pays for a whole register of 16 columns however few of them are used, the
/// narrow kernel per column. So whatever is left after the full strips of `NR` and at most one
/// strip of 16 goes to the narrow kernel when it is at most [`NARROW_COLS`] columns: on a 7x7
/// map (49 = 32 + 16 + 1) the tile kernel alone used 49 of 64 lanes, on 14x14 (196 = 6 × 32 + 4)
/// 196 of 224.
fn narrow_tail(cols: usize) -> usize {
    let rest = cols % NR;
    let rest = if rest > NR / 2 { rest - NR / 2 } else { rest };
    if rest <= NARROW_COLS { rest } else { 0 }
}

#[cfg(test)]
thread_local! {
    /// Tests turn the narrow kernel off to compare it with the tile kernel.
    static NARROW_ENABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
    /// Tests turn the strip-by-strip order off to compare it with the panel-by-panel one.
    static STRIPS_OUTER_ENABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

impl Job<'_> {
    /// Computes panels `panels` (of `MR` rows) × columns `cols` of `C`, residual included.
    fn run(&self, panels: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        self.run_product(panels.clone(), cols.clone());
        if self.residual_in_tiles {
            // Only the narrow kernel's columns (see `run_product`) are left.
            let tail = if self.narrow { narrow_tail(cols.len()) } else { 0 };
            self.add_residual(panels, cols.end - tail..cols.end);
        } else {
            self.add_residual(panels, cols);
        }
    }

    /// `C = clamp(C + R)` over panels `panels` × columns `cols`, when there is a residual.
    fn add_residual(&self, panels: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        let Some(JobResidual { data: r, row: r_row, col: r_col, min, max }) = self.residual else { return };
        let rows = (panels.start * MR).min(self.m)..(panels.end * MR).min(self.m);
        for i in rows {
            if self.c_col == 1 && r_col == 1 {
                // SAFETY: row i < m, columns cols (j < n) of C are inside its slice (Job contract)
                // and this task alone touches these elements of C.
                let c = unsafe {
                    std::slice::from_raw_parts_mut(self.c.0.wrapping_add(i * self.c_row + cols.start), cols.len())
                };
                // SAFETY: the same elements of R, inside its slice (checked by `product_into`); R
                // is not C (the caller's borrows: R shared, C exclusive).
                let r = unsafe { std::slice::from_raw_parts(r.wrapping_add(i * r_row + cols.start), cols.len()) };
                for (c, &r) in c.iter_mut().zip(r) {
                    *c = clamp(*c + r, min, max);
                }
            } else {
                for j in cols.clone() {
                    let c = self.c.0.wrapping_add(i * self.c_row + j * self.c_col);
                    // SAFETY: as above, element by element.
                    let old = unsafe { c.read() };
                    // SAFETY: as above.
                    let r = unsafe { r.wrapping_add(i * r_row + j * r_col).read() };
                    // SAFETY: as above.
                    unsafe { c.write(clamp(old + r, min, max)) };
                }
            }
        }
    }

    /// [`Job::run`] without the residual.
    fn run_product(&self, panels: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        #[cfg(target_arch = "x86_64")]
        if self.narrow {
            let tail = narrow_tail(cols.len());
            if tail > 0 {
                // Two panels at a time through both kernels, so that the narrow kernel finds
                // them in cache (weights read once per inference come from memory).
                let split = cols.end - tail;
                if split == cols.start {
                    self.run_narrow(panels, cols);
                    return;
                }
                for p in panels.clone().step_by(2) {
                    let pair = p..(p + 2).min(panels.end);
                    if split > cols.start {
                        self.run_tiles(pair.clone(), cols.start..split);
                    }
                    self.run_narrow(pair, split..cols.end);
                }
                return;
            }
        }
        self.run_tiles(panels, cols);
    }

    /// [`Job::run`] with the tile kernel only.
    fn run_tiles(&self, panels: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        let mut c_tile = [0f32; MR * NR];
        let blocks = KBlocks::new(self.m, self.k);
        for jc in cols.clone().step_by(NC) {
            let jc_end = (jc + NC).min(cols.end);
            if self.b_col != 1 || (self.b_taps.is_some() && self.kernel != Kernel::Avx512) {
                // Strided B, or tap rows for a kernel that does not walk them: each strip of B
                // packed into L1 across the panels of A.
                // Uninitialised: the tiles read only the elements packed for them (rows < kc,
                // columns < width: Tile contract), and zeroing 32 KiB cost as much as packing a
                // small product's whole B.
                let mut b_strip = [MaybeUninit::<f32>::uninit(); KC * NR];
                for kb in 0..blocks.count {
                    let (k0, kc) = blocks.range(kb);
                    for j0 in (jc..jc_end).step_by(NR) {
                        let width = (jc_end - j0).min(NR);
                        if let Some(taps) = self.b_taps {
                            self.pack_tap_rows(taps, k0, kc, j0, width, &mut b_strip);
                        } else {
                            for kk in 0..kc {
                                let row = &mut b_strip[kk * NR..kk * NR + width];
                                let src = self.b.wrapping_add((k0 + kk) * self.b_row + j0 * self.b_col);
                                for (j, d) in row.iter_mut().enumerate() {
                                    // SAFETY: (k0 + kk, j0 + j) is inside B (Job contract).
                                    d.write(unsafe { src.wrapping_add(j * self.b_col).read() });
                                }
                            }
                        }
                        for p in panels.clone() {
                            let b = b_strip.as_ptr().cast::<f32>();
                            self.tile(p, j0, jc_end, &blocks, kb, (b, NR, None), &mut c_tile);
                        }
                    }
                }
            } else if self.strips_outer {
                // Each strip of B (one block: the whole reduction) is read once, into L1, and
                // every panel of A (all of them in L1 too) passes over it.
                for j0 in (jc..jc_end).step_by(NR) {
                    let b = self.b.wrapping_add(j0);
                    for p in panels.clone() {
                        self.tile(p, j0, jc_end, &blocks, 0, (b, self.b_row, None), &mut c_tile);
                    }
                }
            } else if self.k.saturating_mul(jc_end - jc).saturating_mul(4) <= PANEL_OUTER_MAX_B_BYTES {
                // All of B's rows for these columns stay in L2: go through A panel by panel, each
                // over the whole reduction, so that A (the weights, often out of cache when each
                // layer's are read once per inference) streams in memory order, which the
                // microkernel's prefetches follow.
                for p in panels.clone() {
                    for kb in 0..blocks.count {
                        self.strips(p, jc, jc_end, &blocks, kb, &mut c_tile);
                    }
                }
            } else {
                // A block of B's rows stays hot in L2 across the panels.
                for kb in 0..blocks.count {
                    for p in panels.clone() {
                        self.strips(p, jc, jc_end, &blocks, kb, &mut c_tile);
                    }
                }
            }
        }
    }

    /// Copies rows `k0..k0 + kc`, columns `j0..j0 + width` (`width <= NR`) of a [`TapRows`] B
    /// into `strip` (`NR` apart).
    fn pack_tap_rows(
        &self,
        taps: (*const usize, usize, usize),
        k0: usize,
        kc: usize,
        j0: usize,
        width: usize,
        strip: &mut [MaybeUninit<f32>; KC * NR],
    ) {
        let mut walk = TapWalk::at(taps, k0);
        for row in strip.chunks_exact_mut(NR).take(kc) {
            // SAFETY: the walk keeps its tap index in range (TapWalk::next_row).
            let at = unsafe { walk.next_row() };
            // Row k0 + kk < k of B, which holds columns j0..j0 + width <= n (Job contract).
            let src = self.b.wrapping_add(at + j0);
            if width == NR {
                // SAFETY: NR columns of that row; `[f32; NR]` has no alignment beyond f32's.
                // A fixed-size copy is a few vector moves, a variable one a call.
                let full = unsafe { src.cast::<[f32; NR]>().read_unaligned() };
                for (d, v) in row.iter_mut().zip(full) {
                    d.write(v);
                }
            } else {
                for (j, d) in row.iter_mut().take(width).enumerate() {
                    // SAFETY: column j0 + j < j0 + width of that row.
                    d.write(unsafe { src.wrapping_add(j).read() });
                }
            }
        }
    }

    /// Panel `p` of A (in L1) across the strips of a directly read B (streaming from L2), over
    /// reduction block `kb`.
    fn strips(&self, p: usize, jc: usize, jc_end: usize, blocks: &KBlocks, kb: usize, c_tile: &mut [f32; MR * NR]) {
        let (k0, _) = blocks.range(kb);
        let walk = self.b_taps.map(|taps| TapWalk::at(taps, k0));
        for j0 in (jc..jc_end).step_by(NR) {
            let b = match walk {
                Some(_) => self.b.wrapping_add(j0),
                None => self.b.wrapping_add(k0 * self.b_row + j0),
            };
            self.tile(p, j0, jc_end, blocks, kb, (b, self.b_row, walk), c_tile);
        }
    }

    /// One microkernel call: panel `p` × the strip of columns from `j0` (at most `NR`, ending
    /// by `jc_end`) over reduction block `kb`, with `b` pointing at that block's first row of the
    /// strip (`ldb` apart), or, with a walk, at the strip's first column (rows where the walk
    /// says).
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        p: usize,
        j0: usize,
        jc_end: usize,
        blocks: &KBlocks,
        kb: usize,
        (b, ldb, walk): (*const f32, usize, Option<TapWalk>),
        c_tile: &mut [f32; MR * NR],
    ) {
        let (k0, kc) = blocks.range(kb);
        let load_c = kb > 0 || self.epilogue.accumulate;
        let finish = kb + 1 == blocks.count;
        let (row_bias, col_bias) = match self.epilogue.bias {
            Bias::None => (std::ptr::null(), std::ptr::null()),
            Bias::Row(b) => (b.as_ptr(), std::ptr::null()),
            Bias::Col(b) => (std::ptr::null(), b.as_ptr()),
        };
        let i0 = p * MR;
        let rows = (self.m - i0).min(MR);
        let width = (jc_end - j0).min(NR);
        let a = match self.a_row {
            0 => self.a.wrapping_add(p * MR * self.k + k0 * MR),
            row => self.a.wrapping_add(i0 * row + k0),
        };
        let c_at = self.c.0.wrapping_add(i0 * self.c_row + j0 * self.c_col);
        let mut t = Tile {
            a,
            a_row: self.a_row,
            b,
            ldb,
            walk,
            c: c_at,
            ldc: self.c_row,
            kc,
            rows,
            cols: width,
            load_c,
            finish,
            row_bias: if row_bias.is_null() { row_bias } else { row_bias.wrapping_add(i0) },
            col_bias: if col_bias.is_null() { col_bias } else { col_bias.wrapping_add(j0) },
            residual: match self.residual {
                Some(r) if self.residual_in_tiles && finish => r.data.wrapping_add(i0 * r.row + j0),
                _ => std::ptr::null(),
            },
            ldr: self.residual.map_or(0, |r| r.row),
            min: self.epilogue.min,
            max: self.epilogue.max,
        };
        if self.c_col == 1 {
            run_tile(self.kernel, &t);
            return;
        }
        // Strided C: compute into a dense tile, then scatter.
        if load_c {
            for r in 0..rows {
                for j in 0..width {
                    // SAFETY: (i0 + r, j0 + j) is inside C (Job contract).
                    c_tile[r * NR + j] = unsafe { c_at.wrapping_add(r * self.c_row + j * self.c_col).read() };
                }
            }
        }
        t.c = c_tile.as_mut_ptr();
        t.ldc = NR;
        run_tile(self.kernel, &t);
        for r in 0..rows {
            for j in 0..width {
                let v = c_tile[r * NR + j];
                // SAFETY: as above; this task owns the element.
                unsafe { c_at.wrapping_add(r * self.c_row + j * self.c_col).write(v) };
            }
        }
    }
}

/// The reduction of a product split into blocks of at most `KC` steps (`KC_ONE_PANEL` when A
/// is a single panel), so that a block of A's panel and of B's strip fit in L1.
struct KBlocks {
    k: usize,
    max: usize,
    count: usize,
}

impl KBlocks {
    fn new(m: usize, k: usize) -> KBlocks {
        let max = if m <= MR { KC_ONE_PANEL } else { KC };
        KBlocks { k, max, count: k.div_ceil(max).max(1) }
    }

    /// Block `kb`'s first step and length.
    fn range(&self, kb: usize) -> (usize, usize) {
        let k0 = kb * self.max;
        (k0, (self.k - k0).min(self.max))
    }
}

#[cfg(target_arch = "x86_64")]
impl Job<'_> {
    /// The narrow kernel over panels `panels` × columns `cols` (at most [`NARROW_COLS`]), up to
    /// four panels per call, the whole reduction at once (`B` is `k × cols`, small).
    fn run_narrow(&self, panels: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        let width = cols.len();
        if width == 0 {
            return;
        }
        let (row_bias, col_bias) = match self.epilogue.bias {
            Bias::None => (std::ptr::null(), std::ptr::null()),
            Bias::Row(b) => (b.as_ptr(), std::ptr::null()),
            Bias::Col(b) => (std::ptr::null(), b.as_ptr().wrapping_add(cols.start)),
        };
        // Panels per call: 4 × at most 4 columns or 2 × up to 8 keep 16 accumulators in flight;
        // 8 (2 × 4, a 2x2 map's convolution) left the kernel waiting on the multiply-adds'
        // latency.
        let group = if width <= 4 { 4 } else { 2 };
        let mut p = panels.start;
        while p < panels.end {
            let count = (panels.end - p).min(group);
            let i0 = p * MR;
            let rows = (self.m - i0).min(count * MR);
            let t = x86::Narrow {
                a: self.a.wrapping_add(p * MR * self.k),
                panel: MR * self.k,
                b: self.b.wrapping_add(cols.start * self.b_col),
                b_row: self.b_row,
                b_col: self.b_col,
                c: self.c.0.wrapping_add(i0 * self.c_row + cols.start * self.c_col),
                c_row: self.c_row,
                c_col: self.c_col,
                k: self.k,
                rows,
                cols: width,
                accumulate: self.epilogue.accumulate,
                row_bias: if row_bias.is_null() { row_bias } else { row_bias.wrapping_add(i0) },
                col_bias,
                min: self.epilogue.min,
                max: self.epilogue.max,
            };
            x86::dispatch_narrow(&t, count);
            p += count;
        }
    }
}

fn run_tile(kernel: Kernel, t: &Tile) {
    // Rows of A in place only reach the AVX-512 kernel (`product_into` refuses them otherwise).
    debug_assert!(t.a_row == 0 || kernel == Kernel::Avx512);
    match kernel {
        Kernel::Portable => tile_portable(t),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only chosen (or offered to tests) when the CPU has AVX2 and FMA; the
        // tile's pointers satisfy the `Tile` contract (upheld by `Job::run`).
        Kernel::Avx2 => unsafe { x86::tile_avx2(t) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => x86::dispatch_avx512(t),
    }
}

/// The portable microkernel: fixed-size loops the compiler vectorizes.
fn tile_portable(t: &Tile) {
    let mut acc = [[0f32; NR]; MR];
    if t.load_c {
        for (r, acc) in acc.iter_mut().enumerate().take(t.rows) {
            for (j, v) in acc.iter_mut().enumerate().take(t.cols) {
                // SAFETY: r < rows, j < cols (Tile contract).
                *v = unsafe { t.c.wrapping_add(r * t.ldc + j).read() };
            }
        }
    }
    let mut b_row = [0f32; NR];
    for kk in 0..t.kc {
        for (j, v) in b_row.iter_mut().enumerate().take(t.cols) {
            // SAFETY: kk < kc, j < cols (Tile contract).
            *v = unsafe { t.b.wrapping_add(kk * t.ldb + j).read() };
        }
        let mut a_col = [0f32; MR];
        for (r, v) in a_col.iter_mut().enumerate() {
            // SAFETY: kk < kc, r < MR (Tile contract).
            *v = unsafe { t.a.wrapping_add(kk * MR + r).read() };
        }
        for (acc, &a) in acc.iter_mut().zip(&a_col) {
            for (v, &b) in acc.iter_mut().zip(&b_row) {
                *v = madd(a, b, *v);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate().take(t.rows) {
        for (j, &v) in acc.iter().enumerate().take(t.cols) {
            let mut v = v;
            if t.finish {
                if !t.row_bias.is_null() {
                    // SAFETY: r < rows (Tile contract).
                    v += unsafe { t.row_bias.wrapping_add(r).read() };
                }
                if !t.col_bias.is_null() {
                    // SAFETY: j < cols (Tile contract).
                    v += unsafe { t.col_bias.wrapping_add(j).read() };
                }
                v = clamp(v, t.min, t.max);
            }
            // SAFETY: r < rows, j < cols (Tile contract).
            unsafe { t.c.wrapping_add(r * t.ldc + j).write(v) };
        }
    }
}

/// `a * b + c`, fused where that is one instruction (elsewhere `mul_add` is a library call).
#[inline(always)]
fn madd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(any(target_arch = "aarch64", target_feature = "fma")) { a.mul_add(b, c) } else { a * b + c }
}

/// `v` limited to `[min, max]`; NaN stays NaN (as PyTorch's clamp and hardtanh).
#[inline(always)]
pub fn clamp(v: f32, min: f32, max: f32) -> f32 {
    // Two independent selects (not an else-if chain) so that loops over it vectorize.
    let v = if v < min { min } else { v };
    if v > max { max } else { v }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MR, Tile};

    /// How many reduction steps ahead the tile kernel prefetches its panel of A.
    const PREFETCH_STEPS: usize = 64;
    /// Rows of A read in place: every this many reduction steps (a cache line of each row)...
    const ROW_PREFETCH_EVERY: usize = 16;
    /// ... each row is prefetched this many elements ahead.
    const ROW_PREFETCH_AHEAD: usize = 64;

    /// The AVX-512 microkernel instantiated for the tile's rows (a panel's last rows and
    /// matrix-vector products compute no padding rows) and registers per row.
    pub(super) fn dispatch_avx512(t: &Tile) {
        macro_rules! by_rows {
            ($($r:literal)*) => {
                match (t.rows, t.cols > 16) {
                    $(
                        // SAFETY: `Avx512` is only chosen (or offered to tests) when the CPU has
                        // AVX-512F; the tile satisfies the `Tile` contract (upheld by
                        // `Job::run`), with `rows == R` and `cols <= 16 * NV`.
                        ($r, true) => unsafe { tile_avx512::<$r, 2>(t) },
                        // SAFETY: as above.
                        ($r, false) => unsafe { tile_avx512::<$r, 1>(t) },
                    )*
                    _ => {}
                }
            };
        }
        by_rows!(1 2 3 4 5 6 7 8 9 10 11 12);
    }

    /// The AVX-512 microkernel: `R <= MR` rows × `NV` registers of 16 columns, the last register
    /// masked to the tile's width.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `t` satisfies the `Tile` contract with `t.rows == R` and
    /// `t.cols <= 16 * NV`.
    // Index loops over the constant-size accumulator arrays: the form that keeps them in registers.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_avx512<const R: usize, const NV: usize>(t: &Tile) {
        let masks: [__mmask16; NV] = std::array::from_fn(|v| {
            let lanes = t.cols.saturating_sub(v * 16).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        });
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        if t.load_c {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (v, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: masked lanes are columns < cols of row r < rows (Tile contract);
                    // masked-off lanes are not accessed.
                    *acc = unsafe { _mm512_maskz_loadu_ps(masks[v], t.c.wrapping_add(r * t.ldc + v * 16)) };
                }
            }
        }
        let mut acc = if t.a_row == 0 {
            // SAFETY: the contract of `reduce_avx512` is this function's.
            unsafe { reduce_avx512::<R, NV, false>(acc, t, masks) }
        } else {
            // SAFETY: as above; `t.a_row != 0` means rows in place (Tile contract).
            unsafe { reduce_avx512::<R, NV, true>(acc, t, masks) }
        };
        // Index loops, as in `reduce_avx512`: iterators over the accumulators took their
        // addresses and sent every one through the stack before its store (24 reloads were a
        // tenth of a 24-deep product's tile samples).
        if t.finish {
            if !t.row_bias.is_null() {
                for r in 0..R {
                    // SAFETY: r < rows (Tile contract).
                    let bias = _mm512_set1_ps(unsafe { t.row_bias.wrapping_add(r).read() });
                    for v in 0..NV {
                        acc[r][v] = _mm512_add_ps(acc[r][v], bias);
                    }
                }
            }
            if !t.col_bias.is_null() {
                let bias: [__m512; NV] = std::array::from_fn(|v| {
                    // SAFETY: columns < cols (Tile contract), masked.
                    unsafe { _mm512_maskz_loadu_ps(masks[v], t.col_bias.wrapping_add(v * 16)) }
                });
                for r in 0..R {
                    for v in 0..NV {
                        acc[r][v] = _mm512_add_ps(acc[r][v], bias[v]);
                    }
                }
            }
            if !t.residual.is_null() {
                for r in 0..R {
                    for v in 0..NV {
                        // SAFETY: columns < cols of row r < rows of the residual (Tile
                        // contract), masked.
                        let add =
                            unsafe { _mm512_maskz_loadu_ps(masks[v], t.residual.wrapping_add(r * t.ldr + v * 16)) };
                        acc[r][v] = _mm512_add_ps(acc[r][v], add);
                    }
                }
            }
            if t.min > f32::NEG_INFINITY || t.max < f32::INFINITY {
                let (lo, hi) = (_mm512_set1_ps(t.min), _mm512_set1_ps(t.max));
                for r in 0..R {
                    for v in 0..NV {
                        // max/min return their second operand when either is NaN: NaN
                        // propagates.
                        acc[r][v] = _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r][v]));
                    }
                }
            }
        }
        for r in 0..R {
            for v in 0..NV {
                // SAFETY: columns < cols of row r < rows (Tile contract), masked.
                unsafe { _mm512_mask_storeu_ps(t.c.wrapping_add(r * t.ldc + v * 16), masks[v], acc[r][v]) };
            }
        }
    }

    /// The reduction loop of [`tile_avx512`], on accumulators passed by value: a local array
    /// whose address never escapes, so the compiler keeps it in registers (an array shared with
    /// the loads and stores around the loop was written back to the stack after every
    /// multiply-add, halving the speed). With `ROWS`, A's rows are read in place (`t.a_row`
    /// apart, see `sgemm_rows`) instead of from a packed panel: the same multiply-adds in the
    /// same order, each row's value broadcast from where it lies.
    ///
    /// # Safety
    /// As [`tile_avx512`]; with `ROWS`, `t.a_row != 0` and `t.a[r * t.a_row + kk]` readable for
    /// `r < R`, `kk < t.kc`.
    // Index loops over the constant-size arrays: the form measured to keep them in registers.
    #[allow(clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce_avx512<const R: usize, const NV: usize, const ROWS: bool>(
        mut acc: [[__m512; NV]; R],
        t: &Tile,
        masks: [__mmask16; NV],
    ) -> [[__m512; NV]; R] {
        let (mut a, mut b) = (t.a, t.b);
        let mut walk = t.walk;
        // Where row r's element of the current k lies, relative to `a`.
        let (a_row, a_step) = if ROWS { (t.a_row, 1) } else { (1, MR) };
        for kk in 0..t.kc {
            if !ROWS {
                // A panel streams from L3 when each layer's weights are read once per inference
                // (the hardware prefetcher lost 40% on mobilenet_v2's 7x7 pointwise layers):
                // fetch it PREFETCH_STEPS reduction steps ahead. A prefetch never faults.
                _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(MR * PREFETCH_STEPS).cast());
            } else if kk % ROW_PREFETCH_EVERY == 0 {
                // Rows in place: each a cache line at a time, a few lines ahead (without, a
                // 197x384x1536 product took 2.64 ms instead of packed panels' 2.29).
                for r in 0..R {
                    _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(r * a_row + ROW_PREFETCH_AHEAD).cast());
                }
            }
            let b = match walk.as_mut() {
                // SAFETY: the walk keeps its tap index in range (TapWalk::next_row).
                Some(walk) => t.b.wrapping_add(unsafe { walk.next_row() }),
                None => {
                    let row = b;
                    b = b.wrapping_add(t.ldb);
                    row
                }
            };
            let mut bv = [_mm512_setzero_ps(); NV];
            for v in 0..NV {
                // SAFETY: columns < cols of the current row of B (Tile contract), masked.
                bv[v] = unsafe { _mm512_maskz_loadu_ps(masks[v], b.wrapping_add(v * 16)) };
            }
            for r in 0..R {
                // SAFETY: element r < MR of the current k of the panel (Tile contract), or row
                // r < R of A at the current k (this function's contract, with ROWS).
                let av = _mm512_set1_ps(unsafe { a.wrapping_add(r * a_row).read() });
                for v in 0..NV {
                    acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
                }
            }
            a = a.wrapping_add(a_step);
        }
        acc
    }

    /// One call of the narrow kernel: `rows` rows (one to four panels of `A`, `rows <= 4 * MR`)
    /// × `cols` columns (`1 <= cols <= NARROW_COLS`) of `C` over the whole reduction. Contract
    /// (upheld by `Job::run_narrow`): `a[q * panel + kk * MR + r]` readable for `kk < k`,
    /// `r < MR` and each panel `q` the rows reach; `b[kk * b_row + j * b_col]` readable for
    /// `kk < k`, `j < cols`; `c[i * c_row + j * c_col]` readable and writable for `i < rows`,
    /// `j < cols`, not aliased; `row_bias[i]` readable for `i < rows` and `col_bias[j]` for
    /// `j < cols` when not null.
    pub(super) struct Narrow {
        pub a: *const f32,
        pub panel: usize,
        pub b: *const f32,
        pub b_row: usize,
        pub b_col: usize,
        pub c: *mut f32,
        pub c_row: usize,
        pub c_col: usize,
        pub k: usize,
        pub rows: usize,
        pub cols: usize,
        pub accumulate: bool,
        pub row_bias: *const f32,
        pub col_bias: *const f32,
        pub min: f32,
        pub max: f32,
    }

    /// The narrow kernel instantiated for the call's columns and panels.
    pub(super) fn dispatch_narrow(t: &Narrow, panels: usize) {
        macro_rules! by_cols {
            ($($c:literal)*) => {
                match (t.cols, panels) {
                    $(
                        // SAFETY: the narrow kernel runs only when `Kernel::Avx512` was chosen,
                        // i.e. the CPU has AVX-512F; `t` satisfies the `Narrow` contract (upheld
                        // by `Job::run_narrow`) with `cols == C` and rows in `panels` panels.
                        ($c, 4) => unsafe { narrow_avx512::<$c, 4>(t) },
                        // SAFETY: as above, three panels.
                        ($c, 3) => unsafe { narrow_avx512::<$c, 3>(t) },
                        // SAFETY: as above, two panels.
                        ($c, 2) => unsafe { narrow_avx512::<$c, 2>(t) },
                        // SAFETY: as above, one panel.
                        ($c, 1) => unsafe { narrow_avx512::<$c, 1>(t) },
                    )*
                    _ => {}
                }
            };
        }
        by_cols!(1 2 3 4 5 6 7 8);
    }

    /// `C` columns in registers, a panel's `MR` rows in the lanes: per reduction step, one load of
    /// each panel and one broadcast per column. Each element is the same chain of multiply-adds
    /// in K order as in [`tile_avx512`], then the same epilogue, so results are bit-identical.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `t` satisfies the `Narrow` contract with `t.cols == C` and
    /// `t.rows > (P - 1) * MR`.
    // Index loops over the constant-size arrays: the form measured to keep them in registers.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    unsafe fn narrow_avx512<const C: usize, const P: usize>(t: &Narrow) {
        let panel_mask: __mmask16 = (1 << MR) - 1;
        let rows_in = |q: usize| t.rows.saturating_sub(q * MR).min(MR);
        let mut acc = [[_mm512_setzero_ps(); C]; P];
        let mut lanes = [0f32; 16];
        if t.accumulate {
            for q in 0..P {
                for j in 0..C {
                    for r in 0..rows_in(q) {
                        // SAFETY: row q * MR + r < rows, column j < cols (Narrow contract).
                        lanes[r] = unsafe { t.c.wrapping_add((q * MR + r) * t.c_row + j * t.c_col).read() };
                    }
                    // SAFETY: `lanes` holds 16 floats.
                    acc[q][j] = unsafe { _mm512_loadu_ps(lanes.as_ptr()) };
                }
            }
        }
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.k {
            let mut av = [_mm512_setzero_ps(); P];
            for q in 0..P {
                // Each panel streams from memory as in the tile kernel. A prefetch never faults.
                _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(q * t.panel + MR * PREFETCH_STEPS).cast());
                // SAFETY: the MR elements of the current k of panel q (Narrow contract).
                av[q] = unsafe { _mm512_maskz_loadu_ps(panel_mask, a.wrapping_add(q * t.panel)) };
            }
            for j in 0..C {
                // SAFETY: column j < cols of the current row of B (Narrow contract).
                let bv = _mm512_set1_ps(unsafe { b.wrapping_add(j * t.b_col).read() });
                for q in 0..P {
                    acc[q][j] = _mm512_fmadd_ps(av[q], bv, acc[q][j]);
                }
            }
            a = a.wrapping_add(MR);
            b = b.wrapping_add(t.b_row);
        }
        for q in 0..P {
            let rows = rows_in(q);
            let mask = ((1u32 << rows) - 1) as __mmask16;
            if !t.row_bias.is_null() {
                // SAFETY: rows < rows of the call (Narrow contract), masked.
                let bias = unsafe { _mm512_maskz_loadu_ps(mask, t.row_bias.wrapping_add(q * MR)) };
                for j in 0..C {
                    acc[q][j] = _mm512_add_ps(acc[q][j], bias);
                }
            }
            for j in 0..C {
                let mut v = acc[q][j];
                if !t.col_bias.is_null() {
                    // SAFETY: j < cols (Narrow contract).
                    v = _mm512_add_ps(v, _mm512_set1_ps(unsafe { t.col_bias.wrapping_add(j).read() }));
                }
                if t.min > f32::NEG_INFINITY || t.max < f32::INFINITY {
                    // max/min return their second operand when either is NaN: NaN propagates.
                    v = _mm512_min_ps(_mm512_set1_ps(t.max), _mm512_max_ps(_mm512_set1_ps(t.min), v));
                }
                // SAFETY: `lanes` holds 16 floats.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
                for (r, &v) in lanes.iter().enumerate().take(rows) {
                    // SAFETY: row q * MR + r < rows, column j < cols (Narrow contract).
                    unsafe { t.c.wrapping_add((q * MR + r) * t.c_row + j * t.c_col).write(v) };
                }
            }
        }
    }

    /// Rows of the AVX2 microkernel (12 accumulators of the 16 registers).
    const ROWS2: usize = 6;

    /// Lane mask for `_mm256_maskload_ps`: the first `lanes` lanes.
    #[target_feature(enable = "avx2")]
    fn lane_mask(lanes: usize) -> __m256i {
        let n = lanes.min(8) as i32;
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// The AVX2 microkernel: the tile as `MR / 6` row halves × `NR / 16` column halves of 6 rows ×
    /// two registers of 8 columns.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `t` satisfies the `Tile` contract.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(t: &Tile) {
        for r0 in (0..t.rows).step_by(ROWS2) {
            for j0 in (0..t.cols).step_by(16) {
                // SAFETY: a sub-tile of `t` satisfies the contract for its rows and columns.
                unsafe { sub_tile_avx2(t, r0, j0) };
            }
        }
    }

    /// The reduction loop of [`sub_tile_avx2`] on accumulators passed by value (see
    /// `reduce_avx512`).
    ///
    /// # Safety
    /// As [`sub_tile_avx2`].
    // Index loops over the constant-size arrays: the form measured to keep them in registers.
    #[allow(clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn reduce_avx2(
        mut acc: [[__m256; 2]; ROWS2],
        t: &Tile,
        r0: usize,
        j0: usize,
        masks: [__m256i; 2],
    ) -> [[__m256; 2]; ROWS2] {
        let (mut a, mut b) = (t.a.wrapping_add(r0), t.b.wrapping_add(j0));
        for _ in 0..t.kc {
            // As in the AVX-512 kernel. A prefetch never faults.
            _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(MR * PREFETCH_STEPS).cast());
            // SAFETY: columns < cols of the current row of B (Tile contract), masked.
            let b0 = unsafe { _mm256_maskload_ps(b, masks[0]) };
            // SAFETY: as above.
            let b1 = unsafe { _mm256_maskload_ps(b.wrapping_add(8), masks[1]) };
            for r in 0..ROWS2 {
                // SAFETY: r0 + r < MR: element of the current k of the panel (Tile contract).
                let av = _mm256_set1_ps(unsafe { a.wrapping_add(r).read() });
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
            a = a.wrapping_add(MR);
            b = b.wrapping_add(t.ldb);
        }
        acc
    }

    /// # Safety
    /// As [`tile_avx2`], with `r0 < t.rows`, `j0 < t.cols`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sub_tile_avx2(t: &Tile, r0: usize, j0: usize) {
        let rows = (t.rows - r0).min(ROWS2);
        let cols = t.cols - j0;
        let masks = [lane_mask(cols), lane_mask(cols.saturating_sub(8))];
        let c = t.c.wrapping_add(r0 * t.ldc + j0);
        let mut acc = [[_mm256_setzero_ps(); 2]; ROWS2];
        if t.load_c {
            for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                for (v, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: masked lanes are columns < cols of a row < rows (Tile contract).
                    *acc = unsafe { _mm256_maskload_ps(c.wrapping_add(r * t.ldc + v * 8), masks[v]) };
                }
            }
        }
        // SAFETY: the contract of `reduce_avx2` is this function's.
        let mut acc = unsafe { reduce_avx2(acc, t, r0, j0, masks) };
        if t.finish {
            if !t.row_bias.is_null() {
                for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                    // SAFETY: r0 + r < rows (Tile contract).
                    let bias = _mm256_set1_ps(unsafe { t.row_bias.wrapping_add(r0 + r).read() });
                    for acc in acc.iter_mut() {
                        *acc = _mm256_add_ps(*acc, bias);
                    }
                }
            }
            if !t.col_bias.is_null() {
                let at = t.col_bias.wrapping_add(j0);
                // SAFETY: columns < cols (Tile contract), masked.
                let bias0 = unsafe { _mm256_maskload_ps(at, masks[0]) };
                // SAFETY: as above.
                let bias1 = unsafe { _mm256_maskload_ps(at.wrapping_add(8), masks[1]) };
                for acc in acc.iter_mut() {
                    acc[0] = _mm256_add_ps(acc[0], bias0);
                    acc[1] = _mm256_add_ps(acc[1], bias1);
                }
            }
            if t.min > f32::NEG_INFINITY || t.max < f32::INFINITY {
                let (lo, hi) = (_mm256_set1_ps(t.min), _mm256_set1_ps(t.max));
                for acc in acc.iter_mut().flatten() {
                    // max/min return their second operand when either is NaN: NaN propagates.
                    *acc = _mm256_min_ps(hi, _mm256_max_ps(lo, *acc));
                }
            }
        }
        for (r, acc) in acc.iter().enumerate().take(rows) {
            for (v, &acc) in acc.iter().enumerate() {
                // SAFETY: masked lanes are columns < cols of a row < rows (Tile contract).
                unsafe { _mm256_maskstore_ps(c.wrapping_add(r * t.ldc + v * 8), masks[v], acc) };
            }
        }
    }
}

/// Benchmark helpers (feature `bench-support`): the `gemm` crate on the same product, and the
/// core's measured multiply-add peak. Not a stable API.
#[cfg(feature = "bench-support")]
pub mod bench_support {
    /// `c = a · b` through the `gemm` crate (row-major, contiguous), on one thread or rayon's.
    pub fn gemm_crate(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32], threads: usize) {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "gemm_crate: short slices");
        let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        // SAFETY: the asserts above keep every element gemm touches (row-major, contiguous strides)
        // inside the slices; `c` is exclusively borrowed.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            )
        }
    }

    /// Single-core f32 peak in GFLOP/s: a loop of independent AVX-512 (else AVX2) multiply-adds.
    pub fn fma_peak_gflops() -> f64 {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F (checked just above).
                return unsafe { peak_avx512() };
            }
        }
        0.0
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn peak_avx512() -> f64 {
        use std::arch::x86_64::*;
        // Enough independent chains to fill both FMA pipes through their latency, few enough to
        // stay in registers: with 16 the compiler kept three on the stack, and the loop measured
        // 120 GFLOP/s on a Zen 5 core whose GEMM reaches 215 (12 chains: 236).
        const CHAINS: usize = 12;
        const ITERS: usize = 2_000_000;
        // The best of several short runs: the machine is shared, a run may lose its core.
        let mut best = f64::MAX;
        for _ in 0..20 {
            let mut acc = [_mm512_set1_ps(0.0); CHAINS];
            let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            let start = std::time::Instant::now();
            for _ in 0..ITERS {
                for acc in acc.iter_mut() {
                    *acc = _mm512_fmadd_ps(*acc, x, y);
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
            let sum: f32 = acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum();
            std::hint::black_box(sum);
        }
        (ITERS * CHAINS * 16 * 2) as f64 / best / 1e9
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) (shared by the kernels' tests).
    pub(crate) fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Strides of an `rows × cols` matrix, row-major or transposed in memory.
    fn layout(rows: usize, cols: usize, transposed: bool) -> (usize, usize) {
        if transposed { (1, rows) } else { (cols, 1) }
    }

    struct Case {
        m: usize,
        n: usize,
        k: usize,
        a_t: bool,
        b_t: bool,
        c_t: bool,
    }

    impl Case {
        /// Runs one product with `kernel` on `threads` and checks it against a naive loop in f64.
        fn check(&self, kernel: Kernel, threads: usize, epilogue_kind: usize) -> Vec<f32> {
            let Case { m, n, k, a_t, b_t, c_t } = *self;
            let a = noise(m * k, 1);
            let b = noise(k * n, 2);
            let c0 = noise(m * n, 3);
            let row_bias = noise(m, 4);
            let col_bias = noise(n, 5);
            let (ar, ac) = layout(m, k, a_t);
            let (br, bc) = layout(k, n, b_t);
            let (cr, cc) = layout(m, n, c_t);
            let bias = match epilogue_kind % 3 {
                0 => Bias::None,
                1 => Bias::Row(&row_bias),
                _ => Bias::Col(&col_bias),
            };
            let accumulate = epilogue_kind / 3 % 2 == 1;
            let (lo, hi) = if epilogue_kind / 6 == 1 { (-0.5, 0.75) } else { (f32::NEG_INFINITY, f32::INFINITY) };
            let epi = Epilogue { bias, accumulate, residual: None, min: lo, max: hi };
            let mut packed = vec![f32::NAN; packed_lhs_len(m, k).unwrap()];
            pack_lhs(m, k, MatRef { data: &a, row: ar, col: ac }, 1.0, &mut packed, 0).unwrap();
            let mut c = c0.clone();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let ctx = KernelContext::with_pool(Some(std::sync::Arc::new(pool)));
            sgemm_with(
                kernel,
                threads,
                &ctx,
                n,
                PackedLhs { data: &packed, m, k },
                MatRef { data: &b, row: br, col: bc },
                MatMut { data: &mut c, row: cr, col: cc },
                &epi,
                0,
            )
            .unwrap();
            for i in 0..m {
                for j in 0..n {
                    let mut want = 0f64;
                    for kk in 0..k {
                        want += a[i * ar + kk * ac] as f64 * b[kk * br + j * bc] as f64;
                    }
                    if accumulate {
                        want += c0[i * cr + j * cc] as f64;
                    }
                    match bias {
                        Bias::Row(r) => want += r[i] as f64,
                        Bias::Col(r) => want += r[j] as f64,
                        Bias::None => {}
                    }
                    let want = want.clamp(lo as f64, hi as f64);
                    let got = c[i * cr + j * cc] as f64;
                    let tol = 1e-5 * (k as f64 + 2.0);
                    assert!(
                        (got - want).abs() <= tol,
                        "{kernel:?} m={m} n={n} k={k} epi={epilogue_kind} at ({i},{j}): {got} vs {want}"
                    );
                }
            }
            c
        }
    }

    const SIZES: &[usize] = &[1, 2, 15, 17, 31, 33, 63, 100];

    /// Packing contiguous rows (transposed in blocks) gives the panels that packing the same
    /// matrix through its strides gives (element by element), scale included.
    #[test]
    fn packing_contiguous_rows_matches_strided() {
        for &m in SIZES {
            for &k in SIZES {
                let a = noise(m * k, 3);
                // The same matrix stored column-major.
                let mut t = vec![0f32; m * k];
                for i in 0..m {
                    for kk in 0..k {
                        t[kk * m + i] = a[i * k + kk];
                    }
                }
                let len = packed_lhs_len(m, k).unwrap();
                let (mut rows, mut cols) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                pack_lhs(m, k, MatRef { data: &a, row: k, col: 1 }, 0.5, &mut rows, 0).unwrap();
                pack_lhs(m, k, MatRef { data: &t, row: 1, col: m }, 0.5, &mut cols, 0).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&rows), bits(&cols), "m={m} k={k}");
            }
        }
    }

    /// `sgemm_taps` gives the bits of `sgemm` on the same matrix copied out, with every kernel
    /// (AVX-512 reads the rows in place, the others pack them) and reduction blocks that start
    /// in the middle of a group of taps (9 × 40 = 360 rows: blocks of 256 then 104).
    #[test]
    fn tap_rows_match_the_same_matrix_copied() {
        let taps = [0usize, 1, 2, 19, 20, 21, 38, 39, 40];
        for kernel in Kernel::supported() {
            for &(m, n, groups, ntaps) in &[(5, 20, 3, 9), (16, 70, 40, 9), (30, 300, 2, 4), (13, 1, 7, 1)] {
                let taps = &taps[..ntaps];
                let group = 700;
                let data = noise(groups * group, 7);
                let k = groups * ntaps;
                let mut b = vec![0f32; k * n];
                for (kk, row) in b.chunks_exact_mut(n.max(1)).enumerate() {
                    let at = kk / ntaps * group + taps[kk % ntaps];
                    row.copy_from_slice(&data[at..at + n]);
                }
                let a = noise(m * k, 8);
                let mut packed = vec![0f32; packed_lhs_len(m, k).unwrap()];
                pack_lhs(m, k, MatRef { data: &a, row: k, col: 1 }, 1.0, &mut packed, 0).unwrap();
                let lhs = PackedLhs { data: &packed, m, k };
                let bias = noise(m, 9);
                let epi = Epilogue::store().with_bias(Bias::Row(&bias)).clamped(-0.5, 0.5);
                for threads in [1, 2] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let ctx = KernelContext::with_pool(Some(std::sync::Arc::new(pool)));
                    let (mut want, mut got) = (vec![0f32; m * n], vec![1f32; m * n]);
                    let copied = MatRef { data: &b, row: n, col: 1 };
                    let want_view = MatMut { data: &mut want, row: n, col: 1 };
                    sgemm_with(kernel, threads, &ctx, n, lhs, copied, want_view, &epi, 0).unwrap();
                    let rows = Rhs::Taps(TapRows { data: &data, group, taps });
                    let got_view = MatMut { data: &mut got, row: n, col: 1 };
                    product(kernel, threads, &ctx, n, Lhs::Packed(lhs), rows, got_view, &epi, 0).unwrap();
                    assert!(
                        want.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{kernel:?} m={m} n={n} k={k} threads={threads}"
                    );
                }
            }
        }
    }

    #[test]
    fn tap_rows_outside_their_slice_are_errors() {
        let data = vec![0f32; 100];
        let packed = vec![0f32; packed_lhs_len(2, 4).unwrap()];
        let lhs = PackedLhs { data: &packed, m: 2, k: 4 };
        let ctx = KernelContext::new();
        let mut c = vec![0f32; 2 * 10];
        // Two groups of two taps, 60 apart: the second group's last tap reads 60 + 35 + 10 > 100.
        let rows = TapRows { data: &data, group: 60, taps: &[0, 35] };
        let c_view = MatMut { data: &mut c, row: 10, col: 1 };
        assert!(sgemm_taps(&ctx, 10, lhs, rows, c_view, &Epilogue::store(), 0).is_err());
        // Rows that are not a whole number of groups.
        let rows = TapRows { data: &data, group: 10, taps: &[0, 1, 2] };
        let c_view = MatMut { data: &mut c, row: 10, col: 1 };
        assert!(sgemm_taps(&ctx, 10, lhs, rows, c_view, &Epilogue::store(), 0).is_err());
        let rows = TapRows { data: &data, group: 10, taps: &[0, 20] };
        let c_view = MatMut { data: &mut c, row: 10, col: 1 };
        assert!(sgemm_taps(&ctx, 10, lhs, rows, c_view, &Epilogue::store(), 0).is_ok());
    }

    #[test]
    fn every_kernel_matches_naive_loops() {
        for kernel in Kernel::supported() {
            for &m in SIZES {
                for &n in SIZES {
                    for &k in &[0, 1, 3, 17, 100] {
                        let case = Case { m, n, k, a_t: false, b_t: false, c_t: false };
                        case.check(kernel, 1, (m + n + k) % 12);
                    }
                }
            }
        }
    }

    #[test]
    fn every_epilogue_and_layout() {
        for kernel in Kernel::supported() {
            for epi in 0..12 {
                for (a_t, b_t, c_t) in
                    [(false, false, false), (true, false, false), (false, true, false), (true, true, true)]
                {
                    Case { m: 29, n: 45, k: 37, a_t, b_t, c_t }.check(kernel, 1, epi);
                }
            }
        }
    }

    #[test]
    fn long_reductions_and_wide_blocks() {
        // Several K blocks (the epilogue after the last only) and several N blocks.
        for kernel in Kernel::supported() {
            Case { m: 13, n: NC + 40, k: 2 * KC + 7, a_t: false, b_t: false, c_t: false }.check(kernel, 1, 7);
            Case { m: 25, n: 70, k: KC + 1, a_t: false, b_t: true, c_t: true }.check(kernel, 1, 11);
        }
    }

    #[test]
    fn narrow_kernel_is_bit_identical_to_the_tile_kernel() {
        if !Kernel::supported().contains(&Kernel::best()) || !narrow_kernel(Kernel::best()) {
            return; // No AVX-512 here: the narrow kernel never runs.
        }
        let mut compared = 0;
        // Narrow products, and wider ones whose last columns run the narrow kernel (49 = 32 +
        // 16 + 1, 196 = 6 * 32 + 4, 58 = 32 + 16 + 8; 41 and 70 have none).
        for n in (1..=NARROW_COLS).chain([41, 49, 58, 70, 196]) {
            for &m in &[1, 11, 12, 13, 24, 25, 37, 100] {
                for &k in &[0, 1, 40, 300] {
                    for (epi, (b_t, c_t)) in [(false, false), (true, false), (false, true)].into_iter().enumerate() {
                        let epi = (epi * 5 + m + n + k) % 12;
                        let case = Case { m, n, k, a_t: false, b_t, c_t };
                        let narrow = case.check(Kernel::best(), 1, epi);
                        NARROW_ENABLED.with(|e| e.set(false));
                        let tile = case.check(Kernel::best(), 1, epi);
                        NARROW_ENABLED.with(|e| e.set(true));
                        let split = case.check(Kernel::best(), 3, epi);
                        assert!(
                            narrow.iter().zip(&tile).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "m={m} n={n} k={k} epi={epi}"
                        );
                        assert_eq!(narrow, split);
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 0);
    }

    /// `A` read in place (`sgemm_rows`) gives the packed path's results bit for bit: odd shapes,
    /// several reduction blocks (`k > KC`), every epilogue, `B` and `C` transposed or not, one
    /// thread and two; and a left operand shorter than its shape is an error, not a read past it.
    #[test]
    fn rows_in_place_are_bit_identical_to_packed_rows() {
        if !rows_lhs_available() {
            return;
        }
        let mut compared = 0;
        for (m, n, k) in [(16, 64, 64), (13, 70, 17), (1, 40, 300), (25, 9, KC + 3), (40, 130, 5)] {
            for (b_t, c_t) in [(false, false), (true, false), (false, true)] {
                for threads in [1, 2] {
                    for epi in 0..12 {
                        let (a, b, c0) = (noise(m * k, 1), noise(k * n, 2), noise(m * n, 3));
                        let col_bias = noise(n, 5);
                        let (br, bc) = layout(k, n, b_t);
                        let (cr, cc) = layout(m, n, c_t);
                        let bias = if epi % 2 == 0 { Bias::None } else { Bias::Col(&col_bias) };
                        let (lo, hi) = if epi / 6 == 1 { (-0.5, 0.75) } else { (f32::NEG_INFINITY, f32::INFINITY) };
                        let epi = Epilogue { bias, accumulate: epi / 3 % 2 == 1, residual: None, min: lo, max: hi };
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                        let ctx = KernelContext::with_pool(Some(std::sync::Arc::new(pool)));
                        let rhs = MatRef { data: &b, row: br, col: bc };
                        let mut packed = vec![f32::NAN; packed_lhs_len(m, k).unwrap()];
                        pack_lhs(m, k, MatRef { data: &a, row: k, col: 1 }, 1.0, &mut packed, 0).unwrap();
                        let mut want = c0.clone();
                        let dst = MatMut { data: &mut want, row: cr, col: cc };
                        sgemm(&ctx, n, PackedLhs { data: &packed, m, k }, rhs, dst, &epi, 0).unwrap();
                        let mut got = c0.clone();
                        let dst = MatMut { data: &mut got, row: cr, col: cc };
                        sgemm_rows(&ctx, n, RowsLhs { data: &a, row: k, m, k }, rhs, dst, &epi, 0).unwrap();
                        assert!(
                            got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "m={m} n={n} k={k} b_t={b_t} c_t={c_t} threads={threads}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 0);
        let (a, b, mut c) = (noise(4 * 8, 1), noise(8 * 8, 2), vec![0f32; 4 * 8]);
        let short = RowsLhs { data: &a[..31], row: 8, m: 4, k: 8 };
        let rhs = MatRef { data: &b, row: 8, col: 1 };
        let dst = MatMut { data: &mut c, row: 8, col: 1 };
        assert!(sgemm_rows(&KernelContext::new(), 8, short, rhs, dst, &Epilogue::store(), 0).is_err());
    }

    /// Products small enough to go strip by strip of B (all of A in L1, C in L2) give the
    /// results of the panel-by-panel order bit for bit, on one thread and on several (columns
    /// split), B's rows contiguous or not (only contiguous ones take that order).
    #[test]
    fn strips_outer_is_bit_identical_to_panels_outer() {
        let mut compared = 0;
        for kernel in Kernel::supported() {
            for (m, n, k) in [(100, 300, 24), (13, 70, 17), (144, NC + 45, 16), (25, 49, 100)] {
                assert!(strips_outer(m, k, n, 1), "m={m} n={n} k={k} takes the order under test");
                for b_t in [false, true] {
                    let case = Case { m, n, k, a_t: false, b_t, c_t: false };
                    for threads in [1, 2] {
                        let epi = (m + n + threads) % 12;
                        let strips = case.check(kernel, threads, epi);
                        STRIPS_OUTER_ENABLED.with(|e| e.set(false));
                        let panels = case.check(kernel, threads, epi);
                        STRIPS_OUTER_ENABLED.with(|e| e.set(true));
                        assert!(
                            strips.iter().zip(&panels).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{kernel:?} m={m} n={n} k={k} b_t={b_t} threads={threads}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 0);
    }

    #[test]
    fn threads_give_identical_results() {
        for kernel in Kernel::supported() {
            // Split by columns (in more tasks than threads: TASK_MACS), then by panels (also in
            // more tasks); a batch-1 linear layer (one row, B large enough to split below the
            // multiply-add threshold).
            for (m, n, k) in [(64, 1000, 300), (300, 40, 300), (400, 64, 400), (1, 1000, 300)] {
                for b_t in [false, true] {
                    let case = Case { m, n, k, a_t: false, b_t, c_t: false };
                    let one = case.check(kernel, 1, 10);
                    let two = case.check(kernel, 2, 10);
                    let three = case.check(kernel, 3, 10);
                    assert_eq!(one, two);
                    assert_eq!(one, three);
                }
            }
        }
    }

    #[test]
    fn nan_propagates_through_the_clamp() {
        for kernel in Kernel::supported() {
            let packed = {
                let mut p = vec![0.0; packed_lhs_len(1, 1).unwrap()];
                pack_lhs(1, 1, MatRef { data: &[f32::NAN], row: 1, col: 1 }, 1.0, &mut p, 0).unwrap();
                p
            };
            let mut c = [0.0f32; 3];
            let ctx = KernelContext::new();
            let epi = Epilogue::store().clamped(0.0, 6.0);
            let a = PackedLhs { data: &packed, m: 1, k: 1 };
            let b = MatRef { data: &[1.0, 2.0, 3.0], row: 3, col: 1 };
            sgemm_with(kernel, 1, &ctx, 3, a, b, MatMut { data: &mut c, row: 3, col: 1 }, &epi, 0).unwrap();
            assert!(c.iter().all(|v| v.is_nan()), "{kernel:?}: {c:?}");
        }
    }

    #[test]
    fn views_outside_their_slices_are_errors() {
        let ctx = KernelContext::new();
        let packed = vec![0.0; packed_lhs_len(4, 4).unwrap()];
        let a = PackedLhs { data: &packed, m: 4, k: 4 };
        let b = [0.0; 16];
        let mut c = [0.0; 15];
        let r = sgemm(
            &ctx,
            4,
            a,
            MatRef { data: &b, row: 4, col: 1 },
            MatMut { data: &mut c, row: 4, col: 1 },
            &Epilogue::store(),
            3,
        );
        assert!(matches!(r, Err(KernelError::ShapeMismatch { arg: 3, .. })));
        let mut c = [0.0; 16];
        let short = PackedLhs { data: &packed[..10], m: 4, k: 4 };
        let r = sgemm(
            &ctx,
            4,
            short,
            MatRef { data: &b, row: 4, col: 1 },
            MatMut { data: &mut c, row: 4, col: 1 },
            &Epilogue::store(),
            3,
        );
        assert!(r.is_err());
        let r = sgemm(
            &ctx,
            4,
            a,
            MatRef { data: &b, row: 4, col: 1 },
            MatMut { data: &mut c, row: 0, col: 1 },
            &Epilogue::store(),
            3,
        );
        assert!(r.is_err());
        assert!(pack_lhs(4, 4, MatRef { data: &b[..15], row: 4, col: 1 }, 1.0, &mut [0.0; 48], 0).is_err());
    }
}

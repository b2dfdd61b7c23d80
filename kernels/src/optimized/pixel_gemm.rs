//! Convolutions on small maps as a GEMM with the *pixels* as rows:
//! `out[co, p] = bias[co] + Σ_k W[co, k] · X[k, p]` computed as tiles of [`PIXELS`] pixels ×
//! [`STRIP`] output channels, the channels in the vector lanes, transposed as they are stored.
//!
//! Why: [`sgemm`](super::sgemm) puts the pixels in the lanes (`C[co, p]` row by row). On a map of
//! a few pixels (squeezenet's and regnet's 3x3, mobilenet_v3's 2x2) one register of 16 lanes
//! holds them all, half empty, and each multiply-add needs a broadcast of its own: 13 loads per
//! 12 multiply-adds. Here a reduction step loads three registers of weights and broadcasts one
//! value per pixel for 21 multiply-adds, and every lane holds a channel.
//!
//! Each output is the same chain of fused multiply-adds in reduction order, from zero, then the
//! bias, then the clamp, as in `sgemm`'s tile kernel: the two paths give bit-identical results
//! (tested), so choosing between them is a matter of speed only. Tried on larger maps and not
//! kept: mobilenet_v2's 7x7 and 14x14 pointwise layers ran 5-30% slower this way than through
//! `sgemm` (whose strips are full there), the transposing store costing most where the
//! reduction is short.
//!
//! The weights are packed once, at method init, into strips of [`STRIP`] output channels,
//! reduction-major (`packed[s·K·STRIP + k·STRIP + j] = W[s·STRIP + j, k]`, zero past the last
//! channel). AVX-512 only: [`available`] says whether this CPU runs it.

use crate::error::KernelError;
use crate::registry::KernelContext;

/// Pixels (GEMM rows) per tile.
pub const PIXELS: usize = 7;
/// Output channels per packed strip: three AVX-512 registers, 21 accumulators per tile (four
/// registers, 28 accumulators, left too few registers: the compiler spilled).
pub const STRIP: usize = 48;
/// Most output pixels for which [`preferred`] picks this kernel.
pub const MAX_PIXELS: usize = 16;
/// Multiply-adds from which a product splits over the pool.
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// Whether this CPU runs the kernel (AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::sgemm::Kernel::best() == super::sgemm::Kernel::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a convolution with `pixels` output positions and `channels` output channels (per
/// group) runs faster here than through `sgemm`: few pixels, enough channels to fill the lanes.
pub fn preferred(pixels: usize, channels: usize) -> bool {
    (1..=MAX_PIXELS).contains(&pixels) && channels >= 32 && available()
}

/// Elements [`pack`] writes for `channels × reduction` weights (`None` on overflow).
pub fn packed_len(channels: usize, reduction: usize) -> Option<usize> {
    channels.div_ceil(STRIP).checked_mul(STRIP)?.checked_mul(reduction)
}

/// Packs `channels × reduction` weights: `weight(co, k)` gives element `(co, k)`. `dst` holds
/// [`packed_len`] elements (an error names `arg` otherwise).
pub fn pack(
    channels: usize,
    reduction: usize,
    dst: &mut [f32],
    arg: usize,
    mut weight: impl FnMut(usize, usize) -> Result<f32, KernelError>,
) -> Result<(), KernelError> {
    let len = packed_len(channels, reduction).ok_or(bad(arg, "packed weights too large"))?;
    let dst = dst.get_mut(..len).ok_or(bad(arg, "packed weights shorter than their shape"))?;
    for (s, strip) in dst.chunks_exact_mut((STRIP * reduction).max(1)).enumerate() {
        // Channel by channel: each a contiguous run of the weights in the usual layouts.
        for j in 0..STRIP {
            let co = s * STRIP + j;
            for (k, v) in strip.iter_mut().skip(j).step_by(STRIP).enumerate().take(reduction) {
                *v = if co < channels { weight(co, k)? } else { 0.0 };
            }
        }
    }
    Ok(())
}

fn bad(arg: usize, reason: &'static str) -> KernelError {
    KernelError::ShapeMismatch { arg, reason }
}

/// One product: `out[co · out_row + p] = clamp(bias[co] + Σ_k W[co, k] · x[k · x_row + p])` for
/// `co < channels`, `p < pixels`.
pub struct Product<'a> {
    /// [`pack`]ed weights of `channels × reduction`.
    pub packed: &'a [f32],
    pub channels: usize,
    pub reduction: usize,
    pub pixels: usize,
    /// Input rows (one per reduction index), `x_row` apart, pixels contiguous.
    pub x: &'a [f32],
    pub x_row: usize,
    pub bias: Option<&'a [f32]>,
    pub min: f32,
    pub max: f32,
    /// Output rows (one per channel), `out_row` apart, pixels contiguous.
    pub out: &'a mut [f32],
    pub out_row: usize,
}

/// Runs `p` over `ctx`'s pool; errors (naming `arg`) when a slice is shorter than the shapes say
/// or the CPU lacks AVX-512.
pub fn run(ctx: &KernelContext, p: Product<'_>, arg: usize) -> Result<(), KernelError> {
    let (m, k, n) = (p.channels, p.reduction, p.pixels);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let span = |rows: usize, row: usize| (rows - 1).checked_mul(row).and_then(|v| v.checked_add(n));
    let fits = packed_len(m, k).is_some_and(|len| p.packed.len() >= len)
        && (k == 0 || span(k, p.x_row).is_some_and(|len| p.x.len() >= len))
        && span(m, p.out_row).is_some_and(|len| p.out.len() >= len)
        && p.bias.is_none_or(|b| b.len() >= m)
        // Distinct channels must write distinct elements, or parallel tasks would race.
        && (m == 1 || p.out_row >= n);
    if !fits {
        return Err(bad(arg, "pixel-rows product outside its tensors"));
    }
    if !available() {
        return Err(KernelError::NotImplemented("pixel-rows product without AVX-512"));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let job = x86::Job {
            packed: p.packed.as_ptr(),
            k,
            m,
            n,
            x: p.x.as_ptr(),
            x_row: p.x_row,
            bias: p.bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            min: p.min,
            max: p.max,
            out: x86::SendPtr(p.out.as_mut_ptr()),
            out_row: p.out_row,
        };
        let strips = m.div_ceil(STRIP);
        let panels = n.div_ceil(PIXELS);
        let threads = ctx.threads().min(strips);
        if threads <= 1 || m.saturating_mul(n).saturating_mul(k) < PARALLEL_MIN_MACS {
            // SAFETY: the slices hold every element the job reaches (checked above, see `Job`'s
            // contract); AVX-512F is available (checked above); nothing else writes `out`.
            unsafe { job.run(0..strips, 0..panels) };
            return Ok(());
        }
        // Runs of whole strips, about two per thread.
        let tasks = (threads * 2).min(strips);
        let job = &job;
        crate::spread::for_each_task(ctx, tasks, |t| {
            // SAFETY: as above; tasks write disjoint channels.
            unsafe { job.run(strips * t / tasks..strips * (t + 1) / tasks, 0..panels) };
            Ok(())
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ctx;
        Err(KernelError::NotImplemented("pixel-rows product without AVX-512"))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{PIXELS, STRIP};

    /// Reduction steps ahead that the weights are prefetched.
    const PREFETCH_STEPS: usize = 8;

    /// A raw output pointer that may cross threads: tasks write disjoint elements.
    #[derive(Clone, Copy)]
    pub(super) struct SendPtr(pub *mut f32);
    // SAFETY: only used to write disjoint elements from the tasks of one `run` call, which
    // outlives them (`for_each_task` returns after every task finished).
    unsafe impl Send for SendPtr {}
    // SAFETY: as above.
    unsafe impl Sync for SendPtr {}

    /// A checked product (see `run`). Contract: `packed[s·k·STRIP + kk·STRIP + j]` readable for
    /// `s < ceil(m / STRIP)`, `kk < k`, `j < STRIP`; `x[kk·x_row + p]` readable for `kk < k`,
    /// `p < n`; `out[co·out_row + p]` writable for `co < m`, `p < n`, distinct for distinct
    /// `(co, p)`; `bias[co]` readable for `co < m` unless null.
    pub(super) struct Job {
        pub packed: *const f32,
        pub k: usize,
        pub m: usize,
        pub n: usize,
        pub x: *const f32,
        pub x_row: usize,
        pub bias: *const f32,
        pub min: f32,
        pub max: f32,
        pub out: SendPtr,
        pub out_row: usize,
    }

    // SAFETY: the pointers are read, or written at disjoint elements, under `Job`'s contract.
    unsafe impl Sync for Job {}

    impl Job {
        /// Strips `strips` × panels (of `PIXELS` pixels) `panels`.
        ///
        /// # Safety
        /// The CPU supports AVX-512F; `self` satisfies `Job`'s contract; `strips` and `panels`
        /// lie within `ceil(m / STRIP)` and `ceil(n / PIXELS)`; no other thread writes these
        /// outputs meanwhile.
        pub(super) unsafe fn run(&self, strips: std::ops::Range<usize>, panels: std::ops::Range<usize>) {
            for s in strips {
                let co = s * STRIP;
                let cols = (self.m - co).min(STRIP);
                for p in panels.clone() {
                    let p0 = p * PIXELS;
                    let tile = Tile {
                        w: self.packed.wrapping_add(s * self.k * STRIP),
                        x: self.x.wrapping_add(p0),
                        bias: if self.bias.is_null() { self.bias } else { self.bias.wrapping_add(co) },
                        out: self.out.0.wrapping_add(co * self.out_row + p0),
                        cols,
                        rows: (self.n - p0).min(PIXELS),
                    };
                    // SAFETY: the tile's pixels and channels lie inside the product (above), as
                    // `tile_avx512`'s contract asks; AVX-512F per this function's contract.
                    unsafe { self.tile(&tile) };
                }
            }
        }

        /// # Safety
        /// As [`tile_avx512`], for any `t.rows <= PIXELS`.
        #[target_feature(enable = "avx512f")]
        unsafe fn tile(&self, t: &Tile) {
            macro_rules! dispatch {
                ($($r:literal)*) => {
                    match (t.rows, t.cols.div_ceil(16)) {
                        $(
                            // SAFETY: rows == R, cols <= 16 · V; the rest is this function's
                            // contract.
                            ($r, 1) => unsafe { tile_avx512::<$r, 1>(self, t) },
                            // SAFETY: as above.
                            ($r, 2) => unsafe { tile_avx512::<$r, 2>(self, t) },
                            // SAFETY: as above.
                            ($r, 3) => unsafe { tile_avx512::<$r, 3>(self, t) },
                        )*
                        _ => {}
                    }
                };
            }
            dispatch!(1 2 3 4 5 6 7);
        }
    }

    /// One tile: `rows` pixels from `x`, `cols` channels from `w` (a strip), written at `out`.
    pub(super) struct Tile {
        w: *const f32,
        x: *const f32,
        bias: *const f32,
        out: *mut f32,
        cols: usize,
        rows: usize,
    }

    /// `R` pixels × `V` registers of 16 channels (the last one masked to `t.cols`).
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `t.rows == R`, `1 <= t.cols <= 16 · V <= STRIP`;
    /// `t.w[kk·STRIP + j]` readable for `kk < job.k`, `j < STRIP`; `t.x[kk·job.x_row + r]`
    /// readable for `kk < job.k`, `r < R`; `t.out[c·job.out_row + r]` writable for `c < t.cols`,
    /// `r < R`; `t.bias[c]` readable for `c < t.cols` unless null.
    // Index loops over the constant-size arrays keep them in registers.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_avx512<const R: usize, const V: usize>(job: &Job, t: &Tile) {
        let masks: [__mmask16; V] = std::array::from_fn(|v| {
            let lanes = t.cols.saturating_sub(v * 16).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        });
        // SAFETY: this function's contract is reduce's.
        let mut acc = unsafe { reduce::<R, V>(job, t) };
        if !t.bias.is_null() {
            for v in 0..V {
                // SAFETY: lanes < t.cols, masked (contract).
                let bias = unsafe { _mm512_maskz_loadu_ps(masks[v], t.bias.wrapping_add(v * 16)) };
                for r in 0..R {
                    acc[r][v] = _mm512_add_ps(acc[r][v], bias);
                }
            }
        }
        if job.min > f32::NEG_INFINITY || job.max < f32::INFINITY {
            let (lo, hi) = (_mm512_set1_ps(job.min), _mm512_set1_ps(job.max));
            for acc in acc.iter_mut().flatten() {
                // max/min return their second operand when either is NaN: NaN propagates.
                *acc = _mm512_min_ps(hi, _mm512_max_ps(lo, *acc));
            }
        }
        // Transposed store: each channel's R pixels are contiguous in the output.
        let mut tile = [[0f32; STRIP]; PIXELS];
        for r in 0..R {
            for v in 0..V {
                let at = tile[r].as_mut_ptr().wrapping_add(v * 16);
                // SAFETY: 16 floats at (r, 16·v), with 16·v + 16 <= STRIP (V <= 3).
                unsafe { _mm512_storeu_ps(at, acc[r][v]) };
            }
        }
        for c in 0..t.cols {
            let row = t.out.wrapping_add(c * job.out_row);
            for r in 0..R {
                let at = row.wrapping_add(r);
                // SAFETY: c < t.cols, r < R (contract).
                unsafe { at.write(tile[r][c]) };
            }
        }
    }

    /// The reduction: `acc[r][v]` lane `j` = Σ_k x[k, r] · w[k, 16v + j], fused multiply-adds in
    /// k order from zero (as `sgemm`'s tile kernel).
    ///
    /// # Safety
    /// As [`tile_avx512`].
    #[allow(clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce<const R: usize, const V: usize>(job: &Job, t: &Tile) -> [[__m512; V]; R] {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let (mut x, mut w) = (t.x, t.w);
        for _ in 0..job.k {
            // Each layer's weights stream from L3 (read once per inference): fetch them
            // PREFETCH_STEPS steps ahead, as sgemm does its packed panels. Prefetches never fault.
            for v in 0..V {
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(STRIP * PREFETCH_STEPS + v * 16).cast());
            }
            let b: [__m512; V] = std::array::from_fn(|v| {
                let at = w.wrapping_add(v * 16);
                // SAFETY: 16·V <= STRIP floats of the strip's row kk (contract).
                unsafe { _mm512_loadu_ps(at) }
            });
            for r in 0..R {
                let at = x.wrapping_add(r);
                // SAFETY: pixel r < R of input row kk (contract).
                let a = _mm512_set1_ps(unsafe { at.read() });
                for v in 0..V {
                    acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
                }
            }
            x = x.wrapping_add(job.x_row);
            w = w.wrapping_add(STRIP);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimized::sgemm::tests::noise;
    use crate::optimized::sgemm::{self, Bias, Epilogue, MatMut, MatRef, PackedLhs};

    /// Bit for bit `sgemm`'s results (same multiply-add chains, bias, clamp), on one thread and
    /// on a pool, across tile rests (pixels not a multiple of 7, channels not of 48 or 16),
    /// reductions, strided input and output rows, with and without a bias and a clamp. A
    /// mutant that adds the bias before the reduction, or transposes the store wrongly, fails.
    #[test]
    fn matches_sgemm_bit_for_bit() {
        if !available() {
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        for (m, k, n) in
            [(32, 9, 9), (100, 64, 16), (48, 1, 1), (17, 300, 7), (256, 576, 9), (53, 33, 15), (96, 128, 4)]
        {
            let (x_row, out_row) = (n + 3, n + 5);
            let w = noise(m * k, 1);
            let x = noise(k * x_row, 2);
            let bias = noise(m, 3);
            for (with_bias, (min, max)) in [(false, (f32::NEG_INFINITY, f32::INFINITY)), (true, (-0.25, 0.5))] {
                let bias = with_bias.then_some(&bias[..]);
                let mut panels = vec![0.0; sgemm::packed_lhs_len(m, k).expect("len")];
                sgemm::pack_lhs(m, k, MatRef { data: &w, row: k, col: 1 }, 1.0, &mut panels, 0).expect("pack");
                let mut want = vec![f32::NAN; m * out_row];
                let epilogue = Epilogue::store().with_bias(bias.map_or(Bias::None, Bias::Row)).clamped(min, max);
                let ctx = KernelContext::new();
                let lhs = PackedLhs { data: &panels, m, k };
                let dst = MatMut { data: &mut want, row: out_row, col: 1 };
                sgemm::sgemm(&ctx, n, lhs, MatRef { data: &x, row: x_row, col: 1 }, dst, &epilogue, 0).expect("sgemm");
                let mut packed = vec![f32::NAN; packed_len(m, k).expect("len")];
                pack(m, k, &mut packed, 0, |co, kk| Ok(w[co * k + kk])).expect("pack");
                for threads in [1, 2] {
                    let mut got = vec![f32::NAN; m * out_row];
                    let product = Product {
                        packed: &packed,
                        channels: m,
                        reduction: k,
                        pixels: n,
                        x: &x,
                        x_row,
                        bias,
                        min,
                        max,
                        out: &mut got,
                        out_row,
                    };
                    if threads == 1 {
                        run(&ctx, product, 0).expect("run");
                    } else {
                        pool.install(|| run(&KernelContext::new(), product, 0)).expect("run");
                    }
                    for co in 0..m {
                        for p in 0..out_row {
                            let (g, w) = (got[co * out_row + p], want[co * out_row + p]);
                            if p < n {
                                assert_eq!(g.to_bits(), w.to_bits(), "m {m} k {k} n {n} ({co}, {p}) {threads} threads");
                            } else {
                                assert!(g.is_nan(), "wrote outside the product at ({co}, {p})");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Slices shorter than the shapes say are refused, not read past.
    #[test]
    fn short_slices_are_refused() {
        let (m, k, n) = (48, 8, 9);
        let packed = vec![0.0; packed_len(m, k).expect("len")];
        let x = vec![0.0; k * n];
        let mut out = vec![0.0; m * n];
        let ctx = KernelContext::new();
        let try_run = |packed: &[f32], x: &[f32], out: &mut [f32], out_row: usize| {
            let p = Product {
                packed,
                channels: m,
                reduction: k,
                pixels: n,
                x,
                x_row: n,
                bias: None,
                min: f32::NEG_INFINITY,
                max: f32::INFINITY,
                out,
                out_row,
            };
            run(&ctx, p, 0)
        };
        let (lp, lx, lo) = (packed.len(), x.len(), out.len());
        assert!(try_run(&packed[..lp - 1], &x, &mut out, n).is_err());
        assert!(try_run(&packed, &x[..lx - 1], &mut out, n).is_err());
        assert!(try_run(&packed, &x, &mut out[..lo - 1], n).is_err());
        // Output rows closer than a row of pixels would overlap.
        assert!(try_run(&packed, &x, &mut out, n - 1).is_err());
        assert_eq!(try_run(&packed, &x, &mut out, n).is_ok(), available());
    }
}

//! Fast `max_pool2d_with_indices` for contiguous (NCHW) f32 tensors on AVX-512: 16 output
//! columns per register, each window tap one masked load ([`super::masked_rows`]: the masks
//! leave out padding), the maximum and its flat index updated
//! with PyTorch's rule (a greater value or a NaN replaces the maximum; a window's first tap in
//! the input is its index until then). Everything else, and every invalid call, goes to the
//! portable kernel, which stays the reference and reports the errors.

use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::portable::pool::PoolWindow;
use crate::portable::spatial::Dims5;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};

use super::masked_rows::{self, available};

/// Widest window the per-chunk column table covers.
const MAX_KERNEL_WIDTH: usize = 16;

/// The checked geometry of one plane.
#[derive(Debug, Clone, Copy)]
struct PoolPlane {
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
}

/// `aten::max_pool2d_with_indices.out(Tensor self, int[2] kernel_size, int[2] stride=[],
/// int[2] padding=0, int[2] dilation=1, bool ceil_mode=False, *, Tensor(a!) out,
/// Tensor(b!) indices) -> (Tensor(a!), Tensor(b!))`
pub fn max_pool2d_with_indices_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    match fast_max_pool(ctx, args, true) {
        Some(Ok(())) => Ok(()),
        // Not covered (or a window with no tap in the input): the reference computes everything.
        _ => portable::pool::max_pool2d_with_indices_out(ctx, args),
    }
}

/// `aten::max_pool2d_with_indices.out` whose `indices` output nobody reads (the engine's fusion
/// puts it in place of the call when so; `max_pool2d` exports that way): the fast path leaves
/// `indices` unwritten, which is half the work. Calls it does not cover run the full kernel.
pub fn max_pool2d_values_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    match fast_max_pool(ctx, args, false) {
        Some(Ok(())) => Ok(()),
        _ => portable::pool::max_pool2d_with_indices_out(ctx, args),
    }
}

/// Output elements from which the planes of one call spread over the pool. From 2^14 to 2^12
/// once the pool's workers were pinned and kept spinning (squeezenet's 64 planes of 15x15 took
/// 13 µs each on one thread): `etch bench --threads 2`, three alternating runs, squeezenet1_1
/// 0.270-0.271 → 0.258-0.268 ms, googlenet_narrow 0.206-0.221 → 0.202-0.210.
const PARALLEL_MIN_OUTPUTS: usize = 1 << 12;

/// `None` when the call is not one the fast path covers (nothing is written then, or all of it
/// is rewritten by the portable kernel). `with_indices: false` leaves `indices` unwritten.
fn fast_max_pool(ctx: &KernelContext, args: &KernelArgs<'_>, with_indices: bool) -> Option<Result<(), KernelError>> {
    if !available() {
        return None;
    }
    let x = args.tensor(0).ok()?;
    if x.dtype() != DType::Float || x.dim() != 4 || !x.dim_order().is_contiguous() {
        return None;
    }
    let window = PoolWindow::read(args, 1, Some(4)).ok()?;
    let ceil = args.bool(5).ok()?;
    let xs = x.sizes();
    let xd = Dims5::new(xs, x.strides(), 2, true);
    let [out_height, out_width] = window.output_size(&xd, ceil).ok()?;
    let size = |v: i64| usize::try_from(v).ok();
    let plane = PoolPlane {
        height: xs[2],
        width: xs[3],
        out_height,
        out_width,
        kernel: [size(window.kernel[0])?, size(window.kernel[1])?],
        stride: [size(window.stride[0])?, size(window.stride[1])?],
        padding: [size(window.padding[0])?, size(window.padding[1])?],
    };
    // Indices are computed in i32 lanes: the plane (and every position a window reaches) must fit.
    let reach_w = (out_width - 1).checked_mul(plane.stride[1])?.checked_add(plane.kernel[1])?.checked_add(32)?;
    let reach_h = (out_height - 1).checked_mul(plane.stride[0])?.checked_add(plane.kernel[0])?;
    let fits = |v: usize| v < (i32::MAX as usize) / 2;
    if window.dilation != [1, 1]
        || plane.kernel[1] > MAX_KERNEL_WIDTH
        || !(1..=2).contains(&plane.stride[1])
        || !fits(xs[2].checked_mul(xs[3])?)
        || !fits(reach_w)
        || !fits(reach_h.checked_mul(xs[3])?)
    {
        return None;
    }
    let mut out = args.tensor_mut(6).ok()?;
    let mut indices = args.tensor_mut(7).ok()?;
    if out.dtype() != DType::Float || indices.dtype() != DType::Long {
        return None;
    }
    let shape = [xs[0], xs[1], out_height, out_width];
    out.resize(&shape).ok()?;
    indices.resize(&shape).ok()?;
    if !out.dim_order().is_contiguous() || !indices.dim_order().is_contiguous() {
        return None;
    }
    let planes = xs[0] * xs[1];
    let (plane_in, plane_out) = (xs[2] * xs[3], out_height * out_width);
    let xdata = x.data::<f32>().ok()?.get(..planes * plane_in)?;
    let odata = out.data_mut::<f32>().ok()?.get_mut(..planes * plane_out)?;
    let idata = indices.data_mut::<i64>().ok()?.get_mut(..planes * plane_out)?;
    // Every plane is independent: on a pool, contiguous runs of planes per task.
    let small = SmallPlane::new(&plane);
    let one = |((x, o), i): ((&[f32], &mut [f32]), &mut [i64])| match &small {
        Some(small) => small.pool(x, o, i, with_indices),
        None => max_pool_plane(&plane, x, o, i, with_indices),
    };
    let all_covered = if ctx.threads() > 1 && planes > 1 && odata.len() >= PARALLEL_MIN_OUTPUTS {
        use rayon::prelude::*;
        let chunk = planes.div_ceil(ctx.threads() * 2);
        ctx.install(|| {
            xdata
                .par_chunks(plane_in * chunk)
                .zip(odata.par_chunks_mut(plane_out * chunk))
                .zip(idata.par_chunks_mut(plane_out * chunk))
                .all(|((x, o), i)| {
                    x.chunks_exact(plane_in)
                        .zip(o.chunks_exact_mut(plane_out))
                        .zip(i.chunks_exact_mut(plane_out))
                        .all(one)
                })
        })
    } else {
        xdata
            .chunks_exact(plane_in)
            .zip(odata.chunks_exact_mut(plane_out))
            .zip(idata.chunks_exact_mut(plane_out))
            .all(one)
    };
    all_covered.then_some(Ok(()))
}

/// A plane of at most 64 elements whose outputs fit one register (googlenet's 4x4 and 2x2 maps,
/// where the row kernel took 60 ns a plane on 16 outputs; squeezenet's 7x7 onto 3x3, 60 ns too):
/// the plane is loaded into two registers (four above 32 elements) and each tap is one
/// permutation of them (two and a blend), through a table of input positions per output lane
/// built once per call.
struct SmallPlane {
    plane: usize,
    outputs: usize,
    /// Per tap (kernel rows, then columns: PyTorch's order, which decides ties), the input
    /// position each output lane reads (0 where it reads padding) and the lanes that read inside.
    positions: [[i32; 16]; SMALL_TAPS],
    inside: [u16; SMALL_TAPS],
    /// Per tap, the lanes whose position is 32 or more (in the upper two registers).
    upper: [u16; SMALL_TAPS],
    taps: usize,
}

/// Most taps of a [`SmallPlane`] window (7x7).
const SMALL_TAPS: usize = 49;

impl SmallPlane {
    fn new(g: &PoolPlane) -> Option<SmallPlane> {
        let plane = g.height * g.width;
        let outputs = g.out_height * g.out_width;
        let taps = g.kernel[0] * g.kernel[1];
        if !available() || plane > 64 || outputs > 16 || taps > SMALL_TAPS {
            return None;
        }
        let mut small = SmallPlane {
            plane,
            outputs,
            positions: [[0; 16]; SMALL_TAPS],
            inside: [0; SMALL_TAPS],
            upper: [0; SMALL_TAPS],
            taps,
        };
        for t in 0..taps {
            let (ky, kx) = (t / g.kernel[1], t % g.kernel[1]);
            for lane in 0..outputs {
                let (oy, ox) = (lane / g.out_width, lane % g.out_width);
                let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                if (0..g.height as isize).contains(&iy) && (0..g.width as isize).contains(&ix) {
                    let position = iy * g.width as isize + ix;
                    small.positions[t][lane] = position as i32;
                    small.inside[t] |= 1 << lane;
                    if position >= 32 {
                        small.upper[t] |= 1 << lane;
                    }
                }
            }
        }
        Some(small)
    }

    /// One plane; `false` as [`max_pool_plane`].
    fn pool(&self, x: &[f32], out: &mut [f32], indices: &mut [i64], with_indices: bool) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            if !available() || x.len() < self.plane || out.len() < self.outputs || indices.len() < self.outputs {
                return false;
            }
            match (with_indices, self.plane > 32) {
                // SAFETY: AVX-512F is available and the slice lengths were checked just above;
                // WIDE exactly when the plane has more than 32 elements.
                (true, false) => unsafe { self.pool_avx512::<true, false>(x, out, indices) },
                // SAFETY: as above.
                (true, true) => unsafe { self.pool_avx512::<true, true>(x, out, indices) },
                // SAFETY: as above.
                (false, false) => unsafe { self.pool_avx512::<false, false>(x, out, indices) },
                // SAFETY: as above.
                (false, true) => unsafe { self.pool_avx512::<false, true>(x, out, indices) },
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, out, indices, with_indices);
            false
        }
    }

    /// # Safety
    /// AVX-512F is available; `x` holds `plane` elements, `out` and `indices` `outputs`;
    /// `WIDE` when the plane has more than 32 elements.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn pool_avx512<const INDICES: bool, const WIDE: bool>(
        &self,
        x: &[f32],
        out: &mut [f32],
        indices: &mut [i64],
    ) -> bool {
        use masked_rows::bit_range;
        use std::arch::x86_64::*;
        // Register r holds elements 16r..16r + 16 of the plane, zero past its end.
        let load = |r: usize| {
            let mask = bit_range(0, self.plane.saturating_sub(16 * r).min(16) as isize) as u16;
            // SAFETY: the enabled lanes are elements 16r..min(plane, 16r + 16) of x
            // (plane <= x.len()); a masked-off lane is never accessed.
            unsafe { _mm512_maskz_loadu_ps(mask, x.as_ptr().wrapping_add(16 * r)) }
        };
        let (low, high) = (load(0), load(1));
        let (upper_low, upper_high) = if WIDE { (load(2), load(3)) } else { (low, high) };
        let mut best = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut best_index = _mm512_set1_epi32(-1);
        let mut seen = 0u16;
        for ((positions, &inside), &upper) in self.positions.iter().zip(&self.inside).zip(&self.upper).take(self.taps) {
            if inside == 0 {
                continue;
            }
            // SAFETY: `positions` is 16 readable i32s (an unaligned load).
            let position = unsafe { _mm512_loadu_si512(positions.as_ptr().cast()) };
            // Bit 4 of a position picks the high register of a pair, bit 5 the pair.
            let mut v = _mm512_permutex2var_ps(low, position, high);
            if WIDE {
                v = _mm512_mask_mov_ps(v, upper, _mm512_permutex2var_ps(upper_low, position, upper_high));
            }
            let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            // As in `plane_avx512`: a lane's first tap inside is its index even when not greater.
            let update = inside & (greater | nan | !seen);
            seen |= inside;
            best = _mm512_mask_mov_ps(best, update, v);
            if INDICES {
                best_index = _mm512_mask_mov_epi32(best_index, update, position);
            }
        }
        let out_mask = bit_range(0, self.outputs as isize) as u16;
        if !seen & out_mask != 0 {
            return false;
        }
        // SAFETY: the enabled lanes are out[0..outputs] (checked by the caller).
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr(), out_mask, best) };
        if INDICES {
            let low = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(best_index));
            let high = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(best_index));
            // SAFETY: lanes 0..min(outputs, 8): indices[0..8], inside the `outputs` checked.
            unsafe { _mm512_mask_storeu_epi64(indices.as_mut_ptr(), out_mask as u8, low) };
            // SAFETY: lanes 8..outputs: indices[8..outputs] (none when outputs <= 8).
            unsafe { _mm512_mask_storeu_epi64(indices.as_mut_ptr().wrapping_add(8), (out_mask >> 8) as u8, high) };
        }
        true
    }
}

/// One plane; `false` if some window has no tap inside the input (the portable kernel's rule
/// for those is kept by letting it redo the call). The caller checked AVX-512 ([`available`]),
/// the slice lengths and that every index fits an `i32`.
fn max_pool_plane(g: &PoolPlane, x: &[f32], out: &mut [f32], indices: &mut [i64], with_indices: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !available()
            || x.len() < g.height * g.width
            || out.len() < g.out_height * g.out_width
            || indices.len() < out.len()
        {
            return false;
        }
        // SAFETY (each block below): AVX-512F is available (checked just above), all these
        // functions require of the CPU; the slice lengths they rely on were checked just above.
        if with_indices {
            // SAFETY: as above.
            return unsafe { plane_avx512::<true>(g, x, out, indices) };
        }
        // SAFETY: as above.
        if unsafe { has_nan(&x[..g.height * g.width]) } {
            // SAFETY: as above.
            return unsafe { plane_avx512::<false>(g, x, out, indices) };
        }
        // SAFETY: as above.
        unsafe { plane_values_avx512(g, x, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, x, out, indices, with_indices);
        false
    }
}

/// Per kernel column, for the chunk of `n <= 16` output columns from `ox0`: its load, and the
/// output lanes whose input column is inside the row. Entries past the kernel width are unused.
#[cfg(target_arch = "x86_64")]
fn column_table(g: &PoolPlane, ox0: usize, n: usize) -> [(masked_rows::ColumnLoad, u16); MAX_KERNEL_WIDTH] {
    use masked_rows::{ColumnLoad, bit_range};
    let sw = g.stride[1] as isize;
    let width = g.width as isize;
    let mut columns = [(ColumnLoad::default(), 0u16); MAX_KERNEL_WIDTH];
    for (kx, column) in columns.iter_mut().enumerate().take(g.kernel[1]) {
        let load = ColumnLoad::new(ox0, n, kx, [sw, 1, g.padding[1] as isize], width);
        let first = load.first;
        let lo = ((-first).max(0) as usize).div_ceil(sw as usize) as isize;
        let hi = (((width - first).max(0) as usize).div_ceil(sw as usize) as isize).min(n as isize);
        *column = (load, bit_range(lo, hi) as u16);
    }
    columns
}

/// Whether any element is a NaN.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn has_nan(x: &[f32]) -> bool {
    use std::arch::x86_64::*;
    let (chunks, tail) = x.as_chunks::<16>();
    let mut any = 0u16;
    for chunk in chunks {
        // SAFETY: `chunk` is 16 readable f32s (an unaligned load).
        let v = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
        any |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    }
    any != 0 || tail.iter().any(|v| v.is_nan())
}

/// The values of one plane without NaNs (the caller checked): each window's maximum as PyTorch
/// picks it (a later tap replaces the maximum only when greater, so of equal values, +0.0 and
/// -0.0, the first stays), as one `max` per tap: `max(v, best)` is `v > best ? v : best`. Inputs
/// outside the row load as -inf, which never replaces anything. `false` (nothing meaningful
/// written) if a window has no tap inside the input.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn plane_values_avx512(g: &PoolPlane, x: &[f32], out: &mut [f32]) -> bool {
    use masked_rows::{LANES, bit_range};
    use std::arch::x86_64::*;
    let sw = g.stride[1] as isize;
    let (height, width) = (g.height as isize, g.width as isize);
    let fill = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut ox0 = 0;
    while ox0 < g.out_width {
        let n = (g.out_width - ox0).min(LANES);
        let out_mask = bit_range(0, n as isize) as u16;
        let table = column_table(g, ox0, n);
        let columns = &table[..g.kernel[1]];
        // Output lanes with some kernel column inside the row.
        let covered = columns.iter().fold(0u16, |m, &(_, lanes)| m | lanes);
        if covered & out_mask != out_mask {
            return false;
        }
        for oy in 0..g.out_height {
            let y0 = (oy * g.stride[0]) as isize - g.padding[0] as isize;
            let (ky0, ky1) = ((-y0).max(0) as usize, ((height - y0).max(0) as usize).min(g.kernel[0]));
            if ky0 >= ky1 {
                return false;
            }
            let mut best = fill;
            for ky in ky0..ky1 {
                let row = y0 + ky as isize;
                for &(load, _) in columns {
                    // SAFETY: 0 <= row < height, and the enabled elements of `load` lie inside
                    // the row (`ColumnLoad::new`), so every element read is inside the plane
                    // (x.len() >= height * width, checked by the caller).
                    let v = unsafe { masked_rows::load_window_or(x, row * width, load, sw == 2, fill) };
                    best = _mm512_max_ps(v, best);
                }
            }
            let at = oy * g.out_width + ox0;
            debug_assert!(at + n <= out.len());
            // SAFETY: oy < out_height and ox0 + n <= out_width, so the n enabled lanes write
            // out[at..at + n], inside the out_height * out_width elements the caller checked.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(at), out_mask, best) };
        }
        ox0 += LANES;
    }
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn plane_avx512<const INDICES: bool>(g: &PoolPlane, x: &[f32], out: &mut [f32], indices: &mut [i64]) -> bool {
    use masked_rows::{LANES, bit_range};
    use std::arch::x86_64::*;
    let sw = g.stride[1] as isize;
    let (height, width) = (g.height as isize, g.width as isize);
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let lane_columns = _mm512_mullo_epi32(lane, _mm512_set1_epi32(sw as i32));
    let unset = _mm512_set1_epi32(-1);
    // Per chunk of 16 output columns: each kernel column's load, and the output lanes whose
    // input column is inside the row.
    let mut ox0 = 0;
    while ox0 < g.out_width {
        let n = (g.out_width - ox0).min(LANES);
        let out_mask = bit_range(0, n as isize) as u16;
        let table = column_table(g, ox0, n);
        let columns = &table[..g.kernel[1]];
        for oy in 0..g.out_height {
            let y0 = (oy * g.stride[0]) as isize - g.padding[0] as isize;
            let mut best = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut best_index = unset;
            // Lanes that have seen a tap inside the input.
            let mut seen = 0u16;
            for ky in 0..g.kernel[0] {
                let iy = y0 + ky as isize;
                if iy < 0 || iy >= height {
                    continue;
                }
                for &(load, lane_mask) in columns {
                    // SAFETY: 0 <= iy < height, and the enabled elements of `load` lie inside
                    // the row (`ColumnLoad::new`), so every element read is inside the plane
                    // (x.len() >= height * width, checked by the caller).
                    let v = unsafe { masked_rows::load_window(x, iy * width, load, sw == 2) };
                    let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    // A lane's first tap is its index even when not greater (-inf, say); for the
                    // values alone, keeping -inf is the same.
                    let first_tap = !seen;
                    let update = lane_mask & (greater | nan | first_tap);
                    seen |= lane_mask;
                    best = _mm512_mask_mov_ps(best, update, v);
                    if INDICES {
                        let position =
                            _mm512_add_epi32(lane_columns, _mm512_set1_epi32((iy * width + load.first) as i32));
                        best_index = _mm512_mask_mov_epi32(best_index, update, position);
                    }
                }
            }
            if !seen & out_mask != 0 {
                return false;
            }
            let at = oy * g.out_width + ox0;
            debug_assert!(at + n <= out.len() && at + n <= indices.len());
            // SAFETY: oy < out_height and ox0 + n <= out_width, so the n enabled lanes write
            // out[at..at + n], inside the out_height * out_width elements the caller checked.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(at), out_mask, best) };
            if !INDICES {
                continue;
            }
            let low = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(best_index));
            let high = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(best_index));
            // SAFETY: lanes 0..8 of the n enabled ones: indices[at..at + min(n, 8)], inside the
            // out_height * out_width elements the caller checked `indices` holds.
            unsafe { _mm512_mask_storeu_epi64(indices.as_mut_ptr().wrapping_add(at), out_mask as u8, low) };
            // SAFETY: lanes 8..n: indices[at + 8..at + n] (none when n <= 8), inside as above.
            unsafe { _mm512_mask_storeu_epi64(indices.as_mut_ptr().wrapping_add(at + 8), (out_mask >> 8) as u8, high) };
        }
        ox0 += LANES;
    }
    true
}

pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [DType], KernelFn)] = &[(
        "aten::max_pool2d_with_indices.out(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False, *, Tensor(a!) out, Tensor(b!) indices) -> (Tensor(a!), Tensor(b!))",
        crate::portable::elementwise::REAL_DTYPES,
        max_pool2d_with_indices_out,
    )];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::Call;

    /// Deterministic values in [-1, 1), with NaN and -inf sprinkled in when asked, else runs of
    /// negative values around signed zeros.
    fn values(n: usize, seed: u64, specials: bool) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
                match i % 37 {
                    5 if specials => f32::NAN,
                    11 if specials => f32::NEG_INFINITY,
                    // Without NaNs: windows whose maximum is a zero of either sign, where the
                    // first of equal values must stay.
                    17 | 19 if !specials => -0.0,
                    18 if !specials => 0.0,
                    12..=24 if !specials => -v.abs(),
                    _ => v,
                }
            })
            .collect()
    }

    /// The call's outputs, or `None` when the kernel rejected it.
    fn run(
        kernel: KernelFn,
        x: [usize; 4],
        k: i64,
        s: i64,
        p: i64,
        ceil: bool,
        specials: bool,
    ) -> Option<(Vec<f32>, Vec<i64>)> {
        let data = values(x.iter().product(), 7, specials);
        let (r, mut done) = Call::new()
            .tensor(&x, &data)
            .ints(&[k, k])
            .ints(&[s, s])
            .ints(&[p, p])
            .ints(&[1, 1])
            .bool(ceil)
            .out(DType::Float, &[1, 1, 1, 1], 1 << 16)
            .out(DType::Long, &[1, 1, 1, 1], 1 << 16)
            .run(kernel);
        r.ok()?;
        Some((done.tensor::<f32>(6).1, done.tensor::<i64>(7).1))
    }

    #[test]
    fn fast_path_covers_inception_pooling() {
        if !available() {
            return;
        }
        let covered = |kernel: KernelFn| {
            let (r, _) = Call::new()
                .tensor(&[1, 32, 32, 32], &values(32 * 32 * 32, 1, false))
                .ints(&[3, 3])
                .ints(&[1, 1])
                .ints(&[1, 1])
                .ints(&[1, 1])
                .bool(false)
                .out(DType::Float, &[1, 1, 1, 1], 1 << 16)
                .out(DType::Long, &[1, 1, 1, 1], 1 << 16)
                .run(kernel);
            r
        };
        // The fast path alone (no portable fallback) completes the call.
        let fast: KernelFn =
            |ctx, args| fast_max_pool(ctx, args, true).unwrap_or(Err(KernelError::NotImplemented("not covered")));
        assert!(covered(fast).is_ok());
    }

    #[test]
    fn matches_portable() {
        let mut checked = 0;
        // The last seven through `SmallPlane` where the outputs fit one register (planes of
        // more than 32 elements in four registers: 7x7, 8x8, 7x9).
        let shapes = [
            [1, 32, 32, 32],
            [1, 2, 40, 37],
            [1, 1, 1, 1],
            [1, 4, 5, 17],
            [1, 3, 4, 4],
            [2, 5, 2, 2],
            [1, 2, 5, 6],
            [1, 2, 4, 8],
            [1, 3, 7, 7],
            [1, 2, 8, 8],
            [2, 3, 7, 9],
        ];
        for x in shapes {
            for (k, s, p) in [(3, 1, 1), (3, 2, 1), (2, 2, 0), (3, 2, 0), (5, 1, 2), (1, 1, 0)] {
                for ceil in [false, true] {
                    for specials in [false, true] {
                        let want = run(portable::pool::max_pool2d_with_indices_out, x, k, s, p, ceil, specials);
                        // On one thread and with the planes spread over a pool.
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
                        let kernels: [KernelFn; 2] = [max_pool2d_with_indices_out, max_pool2d_values_out];
                        for (kernel, threads) in kernels.into_iter().flat_map(|k| [(k, 1), (k, 2)]) {
                            let got = match threads {
                                1 => run(kernel, x, k, s, p, ceil, specials),
                                _ => pool.install(|| run(kernel, x, k, s, p, ceil, specials)),
                            };
                            let what = format!("{x:?} k{k} s{s} p{p} ceil {ceil} threads {threads}");
                            // Invalid calls (a window larger than the input) fail on both.
                            let (Some(want), Some(got)) = (&want, &got) else {
                                assert_eq!(want.is_some(), got.is_some(), "{what}");
                                continue;
                            };
                            checked += 1;
                            if std::ptr::fn_addr_eq(kernel, max_pool2d_with_indices_out as KernelFn) {
                                assert_eq!(got.1, want.1, "indices {what}");
                            }
                            // Bit for bit, NaN payloads included (the same tap's NaN wins).
                            let same = got.0.iter().zip(&want.0).all(|(a, b)| a.to_bits() == b.to_bits());
                            assert!(same && got.0.len() == want.0.len(), "values {what}");
                        }
                    }
                }
            }
        }
        assert!(checked > 400, "only {checked} valid cases");
    }
}

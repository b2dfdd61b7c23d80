//! Depthwise convolution of one contiguous (NCHW) f32 plane with AVX-512, read straight from the
//! input ([`super::masked_rows`]): 16 output columns per register, each kernel tap one masked
//! load, no padded copy of the input; that copy, and the per-plane set-up around it, dominated
//! small planes (7x7, 14x14) in the portable-SIMD band kernel of [`super::conv`], which stays the
//! path for other CPUs and strides.
//!
//! Covered: column stride 1 or 2, any row stride, kernel width up to [`MAX_KERNEL_WIDTH`], any
//! dilation and padding. The taps are applied in the order of the portable kernel (row-major over
//! the kernel, starting from the bias) with fused multiply-adds, like the band kernel.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::masked_rows::ColumnLoad;
use super::masked_rows::{self, LANES};

/// Output rows computed together: independent accumulators hide the multiply-add latency.
const ROWS: usize = 4;
/// Output rows of a 3x3 stride-1 kernel computed together where that many are interior: four
/// chains of nine dependent multiply-adds left the FMA units waiting on small planes (14x14: 34
/// -> 27 µs for 384 planes). At stride 2 the row loads' permutes then spill registers (112x112:
/// 190 -> 330 µs), so stride 2 keeps four.
const WIDE_ROWS: usize = 8;
/// Widest kernel the per-chunk load table covers.
pub const MAX_KERNEL_WIDTH: usize = 16;

/// The geometry of one plane, in elements; [`PlaneGeometry::direct`] checks it once per call.
#[derive(Debug, Clone, Copy)]
pub struct PlaneGeometry {
    pub height: usize,
    pub width: usize,
    pub out_height: usize,
    pub out_width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    /// Every output is clamped to `[min, max]` (infinite bounds: no activation).
    pub min: f32,
    pub max: f32,
}

/// A [`PlaneGeometry`] this kernel covers, on a CPU with AVX-512: all its index arithmetic fits
/// `isize`. Made by [`PlaneGeometry::direct`].
#[derive(Debug, Clone, Copy)]
pub struct DirectPlane(PlaneGeometry);

impl PlaneGeometry {
    /// The geometry as a [`DirectPlane`], or `None` when this kernel does not cover it or the CPU
    /// lacks AVX-512.
    pub fn direct(self) -> Option<DirectPlane> {
        let [kh, kw] = self.kernel;
        let fits = |v: usize| isize::try_from(v).is_ok();
        let supported = (1..=2).contains(&self.stride[1])
            && kw <= MAX_KERNEL_WIDTH
            && kh >= 1
            && kw >= 1
            && [self.height, self.width, self.out_height, self.out_width].iter().all(|&v| v >= 1)
            && self.height.checked_mul(self.width).is_some_and(fits)
            && self.out_height.checked_mul(self.out_width).is_some_and(fits)
            // Largest input column and row an output reaches, plus a 32-lane window.
            && span(self.out_width, self.stride[1], kw, self.dilation[1]).is_some_and(|s| fits(s + 2 * LANES))
            && span(self.out_height, self.stride[0], kh, self.dilation[0]).is_some_and(fits)
            && fits(self.padding[0])
            && fits(self.padding[1]);
        (supported && masked_rows::available()).then_some(DirectPlane(self))
    }
}

/// Input extent `outputs` outputs read along one axis (`None` on overflow).
fn span(outputs: usize, stride: usize, kernel: usize, dilation: usize) -> Option<usize> {
    (outputs - 1).checked_mul(stride)?.checked_add((kernel - 1).checked_mul(dilation)?)?.checked_add(1)
}

impl DirectPlane {
    /// One output plane from one input plane: `out[oy][ox] = bias + Σ taps[ky][kx] · x[iy][ix]`
    /// over the taps inside the input, then clamped. `None` (nothing written) when the slices are
    /// shorter than the geometry needs.
    pub fn run(&self, x: &[f32], taps: &[f32], bias: f32, out: &mut [f32]) -> Option<()> {
        let g = &self.0;
        if x.len() < g.height * g.width
            || out.len() < g.out_height * g.out_width
            || taps.len() < g.kernel[0] * g.kernel[1]
        {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a DirectPlane exists only where AVX-512F is available (`direct`), all
            // `plane_avx512` requires of the CPU; the slice lengths were checked just above.
            unsafe { plane_avx512(g, x, taps, bias, out) };
            Some(())
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn plane_avx512(g: &PlaneGeometry, x: &[f32], taps: &[f32], bias: f32, out: &mut [f32]) {
    // Preconditions from `DirectPlane::run`: geometry supported (all index arithmetic below fits
    // `isize`), `x` holds the `height * width` plane, `out` the `out_height * out_width` one,
    // `taps` all `kh * kw` weights.
    let kw = g.kernel[1];
    let column = [g.stride[1] as isize, g.dilation[1] as isize, g.padding[1] as isize];
    let width = g.width as isize;
    let mut ox0 = 0;
    while ox0 < g.out_width {
        let n = (g.out_width - ox0).min(LANES);
        let mut loads = [ColumnLoad::default(); MAX_KERNEL_WIDTH];
        for (kx, load) in loads.iter_mut().enumerate().take(kw) {
            *load = ColumnLoad::new(ox0, n, kx, column, width);
        }
        match kw {
            3 => column_chunk::<3>(g, x, taps, bias, &loads[..3], (ox0, n), out),
            _ => column_chunk::<0>(g, x, taps, bias, &loads[..kw], (ox0, n), out),
        }
        ox0 += LANES;
    }
}

/// Every output row of the chunk of `n` columns from `ox0`: [`ROWS`] at a time where every
/// kernel row of all of them is inside the input (no per-row tests), one at a time elsewhere.
/// `KW` is the kernel width when it is a compile-time constant (the tap loop unrolls), 0 for any.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn column_chunk<const KW: usize>(
    g: &PlaneGeometry,
    x: &[f32],
    taps: &[f32],
    bias: f32,
    loads: &[ColumnLoad],
    (ox0, n): (usize, usize),
    out: &mut [f32],
) {
    // Output rows whose whole window is inside the input: oy * sh >= ph and
    // oy * sh - ph + (kh - 1) * dh < height.
    let [sh, dh, ph] = [g.stride[0], g.dilation[0], g.padding[0]];
    let reach = (g.kernel[0] - 1) * dh;
    let interior_from = ph.div_ceil(sh);
    let interior_to = if g.height + ph > reach { (g.height + ph - reach - 1) / sh + 1 } else { 0 };
    let interior_to = interior_to.min(g.out_height);
    let mut oy = 0;
    let plain_3x3 = KW == 3 && g.kernel[0] == 3 && g.dilation[0] == 1 && g.stride[0] <= 2;
    if plain_3x3 {
        // Blocks of rows, the border ones skipping the kernel rows outside the input: the
        // general one-row-at-a-time path took the top and bottom rows (two of a 14x14 plane's
        // fourteen) at several times the cost of a row in a block.
        let rows = if g.stride[0] == 1 { WIDE_ROWS } else { ROWS };
        while oy < g.out_height {
            let r = (g.out_height - oy).min(rows);
            let at = (oy, ox0, n);
            let interior = oy >= interior_from && oy + r <= interior_to;
            macro_rules! block {
                ($($n:literal)*) => {
                    match (g.stride[0], r, interior) {
                        $(
                            (1, $n, true) => rows_3x3::<1, $n, false>(g, x, taps, bias, loads, at, out),
                            (1, $n, false) => rows_3x3::<1, $n, true>(g, x, taps, bias, loads, at, out),
                        )*
                        // Stride 2: fewer variants (more of them made the interior blocks
                        // slower, 112x112: 164 -> 193 µs); short blocks are border ones.
                        (_, ROWS, true) => rows_3x3::<2, ROWS, false>(g, x, taps, bias, loads, at, out),
                        (_, ROWS, false) => rows_3x3::<2, ROWS, true>(g, x, taps, bias, loads, at, out),
                        (_, 1, _) => rows_3x3::<2, 1, true>(g, x, taps, bias, loads, at, out),
                        (_, 2, _) => rows_3x3::<2, 2, true>(g, x, taps, bias, loads, at, out),
                        (_, 3, _) => rows_3x3::<2, 3, true>(g, x, taps, bias, loads, at, out),
                        _ => {}
                    }
                };
            }
            block!(1 2 3 4 5 6 7 8);
            oy += r;
        }
        return;
    }
    while oy < g.out_height {
        if oy >= interior_from && oy + ROWS <= interior_to {
            chunk_rows::<ROWS, KW, true>(g, x, taps, bias, loads, (oy, ox0, n), out);
            oy += ROWS;
        } else {
            chunk_rows::<1, KW, false>(g, x, taps, bias, loads, (oy, ox0, n), out);
            oy += 1;
        }
    }
}

/// `R` output rows of a 3x3 kernel (row stride `SH`, no row dilation), interior ones unless
/// `CHECKED` (then kernel rows outside the input read as zeros): each input
/// row vector is loaded once and used by every output row whose window covers it (up to three),
/// with the nine taps held in registers — about half a load per multiply-add instead of one, and
/// little else per multiply-add (the general loop spent more instructions on addresses than on
/// arithmetic).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn rows_3x3<const SH: usize, const R: usize, const CHECKED: bool>(
    g: &PlaneGeometry,
    x: &[f32],
    taps: &[f32],
    bias: f32,
    loads: &[ColumnLoad],
    (oy, ox0, n): (usize, usize, usize),
    out: &mut [f32],
) {
    let Some(loads) = loads.first_chunk::<3>() else { return };
    let Some(taps) = taps.first_chunk::<9>() else { return };
    let t: [__m512; 9] = std::array::from_fn(|i| _mm512_set1_ps(taps[i]));
    let width = g.width as isize;
    let top = (oy * SH) as isize - g.padding[0] as isize;
    let mut acc = [_mm512_set1_ps(bias); R];
    // Input rows top + j; output row r reads rows r * SH + ky.
    for j in 0..(R - 1) * SH + 3 {
        let iy = top + j as isize;
        // A kernel row outside the input reads as zeros, like the padding columns (`load`'s
        // mask): a branch here instead kept the compiler from unrolling the loop.
        let inside = !CHECKED || (iy >= 0 && iy < g.height as isize);
        for (kx, &load) in loads.iter().enumerate() {
            let load = if inside { load } else { ColumnLoad { mask: 0, ..load } };
            // SAFETY: every element the mask enables is inside the plane `DirectPlane::run`
            // checked `x` holds: the mask is empty for a row outside the input, and for a row
            // inside (0 <= iy < height: tested when CHECKED, else the caller checked these
            // output rows are interior) it enables elements inside the row only
            // (`ColumnLoad::new`).
            let v = unsafe { masked_rows::load_window(x, iy * width, load, g.stride[1] == 2) };
            for (r, acc) in acc.iter_mut().enumerate() {
                // Kernel row of output row r that reads input row j (constant after unrolling).
                if j >= r * SH && j - r * SH < 3 {
                    let ky = j - r * SH;
                    *acc = _mm512_fmadd_ps(t[ky * 3 + kx], v, *acc);
                }
            }
        }
    }
    store_rows(g, &acc, (oy, ox0, n), out);
}

/// `R` output rows from `oy` of the chunk of `n` columns from `ox0`. `INTERIOR`: the caller
/// checked that every kernel row of these output rows is inside the input.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn chunk_rows<const R: usize, const KW: usize, const INTERIOR: bool>(
    g: &PlaneGeometry,
    x: &[f32],
    taps: &[f32],
    bias: f32,
    loads: &[ColumnLoad],
    (oy, ox0, n): (usize, usize, usize),
    out: &mut [f32],
) {
    let [kh, kw] = g.kernel;
    let kw = if KW == 0 { kw } else { KW };
    let loads = &loads[..kw];
    let (sh, dh, ph) = (g.stride[0] as isize, g.dilation[0] as isize, g.padding[0] as isize);
    let (height, width) = (g.height as isize, g.width as isize);
    let taps = &taps[..kh * kw];
    let mut acc = [_mm512_set1_ps(bias); R];
    for ky in 0..kh {
        for (kx, &load) in loads.iter().enumerate() {
            let tap = _mm512_set1_ps(taps[ky * kw + kx]);
            for (r, acc) in acc.iter_mut().enumerate() {
                let iy = (oy + r) as isize * sh + ky as isize * dh - ph;
                if !INTERIOR && (iy < 0 || iy >= height) {
                    continue;
                }
                debug_assert!((0..height).contains(&iy));
                // SAFETY: 0 <= iy < height (tested above, or by the caller for INTERIOR rows),
                // and the enabled elements of `load` lie inside the row (`ColumnLoad::new`), so
                // every element read is inside the plane `DirectPlane::run` checked `x` holds.
                let v = unsafe { masked_rows::load_window(x, iy * width, load, g.stride[1] == 2) };
                *acc = _mm512_fmadd_ps(tap, v, *acc);
            }
        }
    }
    store_rows(g, &acc, (oy, ox0, n), out);
}

/// Clamps the accumulators of output rows `oy..oy + R` and stores their `n` columns from `ox0`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn store_rows<const R: usize>(
    g: &PlaneGeometry,
    acc: &[__m512; R],
    (oy, ox0, n): (usize, usize, usize),
    out: &mut [f32],
) {
    let (min, max) = (_mm512_set1_ps(g.min), _mm512_set1_ps(g.max));
    let out_mask = masked_rows::bit_range(0, n as isize) as u16;
    for (r, acc) in acc.iter().enumerate() {
        // max(min, v) then min(max, v): the second operand (v) wins on NaN, like sgemm::clamp.
        let v = _mm512_min_ps(max, _mm512_max_ps(min, *acc));
        let at = (oy + r) * g.out_width + ox0;
        debug_assert!(at + n <= out.len());
        // SAFETY: oy + r < out_height and ox0 + n <= out_width, so the n enabled lanes write
        // out[(oy + r) * out_width + ox0 ..][..n], inside the out_height * out_width elements
        // `DirectPlane::run` checked `out` holds.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(at), out_mask, v) };
    }
}

// ---------------------------------------------------------------------------------------------
// Small stride-1 planes, flattened.

/// Most taps a [`FlatPlane`] covers.
pub const FLAT_MAX_TAPS: usize = 64;
/// Most (vector, tap) masks a [`FlatPlane`] keeps.
const FLAT_MAX_MASKS: usize = 1024;
/// Widest output rows a [`FlatPlane`] takes: the row kernel leaves more than half its lanes idle
/// on narrower rows (7x7 planes), and is faster on wider ones (14x14: 48-50 µs against 66-75 for
/// 384 planes in `cargo bench --bench conv`).
const FLAT_MAX_WIDTH: usize = LANES / 2;
/// Planes [`FlatPlane::run`] computes together, sharing each mask.
pub const FLAT_PLANES: usize = 4;
/// Accumulators of one block (vectors × planes): independent multiply-add chains hide their
/// latency; 16 leave registers for the weights.
const FLAT_ACCUMULATORS: usize = 16;

/// A small plane at stride 1 whose output rows are as wide as its input rows, computed as one
/// flat run of outputs: output `p` reads input `p + offset(tap)`, and a mask per (vector of 16
/// outputs, tap) leaves out the padding, so rows narrower than a register waste no lanes and
/// every vector of the plane is an independent accumulator. The row kernel spends most of a 7x7
/// plane on partly filled registers and on multiply-add chains that wait on each other.
///
/// Taps apply in the portable kernel's order (row-major, from the bias) with fused multiply-adds;
/// a tap outside the input leaves the accumulator as it is, as the portable kernel skips it.
#[derive(Debug, Clone)]
pub struct FlatPlane {
    plane_in: usize,
    plane_out: usize,
    vectors: usize,
    taps: usize,
    /// Input offset of each tap from the output position, in elements.
    offsets: [isize; FLAT_MAX_TAPS],
    /// `masks[v * taps + t]`: the outputs of vector `v` whose input through tap `t` is inside.
    masks: [u16; FLAT_MAX_MASKS],
    min: f32,
    max: f32,
}

impl FlatPlane {
    /// The flat form of `g`, or `None` when it does not apply (stride other than 1, output rows
    /// narrower or wider than the input's, too many masks) or the CPU lacks AVX-512.
    pub fn new(g: &PlaneGeometry) -> Option<FlatPlane> {
        let [kh, kw] = g.kernel;
        let taps = kh.checked_mul(kw)?;
        let plane_out = g.out_height.checked_mul(g.out_width)?;
        let vectors = plane_out.div_ceil(LANES);
        let applies = g.stride == [1, 1]
            && g.out_width == g.width
            && g.out_width <= FLAT_MAX_WIDTH
            && (1..=FLAT_MAX_TAPS).contains(&taps)
            && vectors >= 1
            && vectors.checked_mul(taps)? <= FLAT_MAX_MASKS
            && g.height >= 1
            && masked_rows::available();
        if !applies {
            return None;
        }
        let plane_in = g.height.checked_mul(g.width)?;
        let signed = |v: usize| isize::try_from(v).ok();
        let (height, width) = (signed(g.height)?, signed(g.width)?);
        isize::try_from(plane_in).ok()?;
        let mut flat = FlatPlane {
            plane_in,
            plane_out,
            vectors,
            taps,
            offsets: [0; FLAT_MAX_TAPS],
            masks: [0; FLAT_MAX_MASKS],
            min: g.min,
            max: g.max,
        };
        for ky in 0..kh {
            let dy = signed(ky)?.checked_mul(signed(g.dilation[0])?)?.checked_sub(signed(g.padding[0])?)?;
            for kx in 0..kw {
                let dx = signed(kx)?.checked_mul(signed(g.dilation[1])?)?.checked_sub(signed(g.padding[1])?)?;
                let tap = ky * kw + kx;
                flat.offsets[tap] = dy.checked_mul(width)?.checked_add(dx)?;
                for v in 0..vectors {
                    let mut mask = 0u16;
                    for lane in 0..LANES {
                        let p = v * LANES + lane;
                        if p >= plane_out {
                            break;
                        }
                        let (oy, ox) = (signed(p / g.width)?, signed(p % g.width)?);
                        let (iy, ix) = (oy.checked_add(dy)?, ox.checked_add(dx)?);
                        if (0..height).contains(&iy) && (0..width).contains(&ix) {
                            mask |= 1 << lane;
                        }
                    }
                    flat.masks[v * taps + tap] = mask;
                }
            }
        }
        Some(flat)
    }

    /// `C` output planes from their input planes, taps and biases, as [`DirectPlane::run`] for
    /// each: `C` = [`FLAT_PLANES`] shares each mask among the planes and keeps more multiply-adds
    /// in flight than one small plane has. `None` (nothing written) when a slice is shorter than
    /// the geometry needs.
    pub fn run<const C: usize>(
        &self,
        x: [&[f32]; C],
        taps: [&[f32]; C],
        bias: [f32; C],
        out: [&mut [f32]; C],
    ) -> Option<()> {
        let fits = x.iter().all(|x| x.len() >= self.plane_in)
            && taps.iter().all(|t| t.len() >= self.taps)
            && out.iter().all(|o| o.len() >= self.plane_out);
        if !fits || !(C == 1 || C == FLAT_PLANES) {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a FlatPlane exists only where AVX-512F is available (`new`), all
            // `flat_avx512` requires of the CPU; the slice lengths were checked just above.
            unsafe { flat_avx512(self, x, taps, bias, out) };
            Some(())
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn flat_avx512<const C: usize>(
    f: &FlatPlane,
    x: [&[f32]; C],
    taps: [&[f32]; C],
    bias: [f32; C],
    mut out: [&mut [f32]; C],
) {
    // Up to 16 accumulators: blocks of 16 / C vectors.
    let block = (FLAT_ACCUMULATORS / C).max(1);
    let mut v0 = 0;
    while v0 < f.vectors {
        let n = (f.vectors - v0).min(block);
        let (x, t, o) = (&x, &taps, &mut out);
        match n {
            8.. => flat_block::<8, C>(f, x, t, bias, v0, o),
            7 => flat_block::<7, C>(f, x, t, bias, v0, o),
            6 => flat_block::<6, C>(f, x, t, bias, v0, o),
            5 => flat_block::<5, C>(f, x, t, bias, v0, o),
            4 => flat_block::<4, C>(f, x, t, bias, v0, o),
            3 => flat_block::<3, C>(f, x, t, bias, v0, o),
            2 => flat_block::<2, C>(f, x, t, bias, v0, o),
            _ => flat_block::<1, C>(f, x, t, bias, v0, o),
        }
        v0 += n.min(8);
    }
}

/// Output vectors `v0..v0 + B` of `C` flat planes. Preconditions (from `FlatPlane::run`):
/// `v0 + B <= vectors`; every `x` holds an input plane, every `out` an output plane, every
/// `taps` all taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
// The loops index the accumulators across (plane, vector) in the other order than they nest.
#[allow(clippy::needless_range_loop)]
fn flat_block<const B: usize, const C: usize>(
    f: &FlatPlane,
    x: &[&[f32]; C],
    taps: &[&[f32]; C],
    bias: [f32; C],
    v0: usize,
    out: &mut [&mut [f32]; C],
) {
    let mut acc: [[__m512; B]; C] = std::array::from_fn(|c| [_mm512_set1_ps(bias[c]); B]);
    for (tap, &offset) in f.offsets.iter().enumerate().take(f.taps) {
        let weight: [__m512; C] = std::array::from_fn(|c| _mm512_set1_ps(taps[c][tap]));
        for i in 0..B {
            let v = v0 + i;
            let mask = f.masks[v * f.taps + tap];
            for c in 0..C {
                let at = x[c].as_ptr().wrapping_offset((v * LANES) as isize + offset);
                // SAFETY: lane `l` is enabled only when output p = v * 16 + l < plane_out and its
                // input (oy + dy, ox + dx) is inside the plane (`FlatPlane::new`); since output
                // rows are as wide as input rows, that input is element p + offset =
                // (oy + dy) * width + (ox + dx) < plane_in <= x[c].len(). Disabled lanes are not
                // accessed.
                let input = unsafe { _mm512_maskz_loadu_ps(mask, at) };
                acc[c][i] = _mm512_mask3_fmadd_ps(weight[c], input, acc[c][i], mask);
            }
        }
    }
    let (min, max) = (_mm512_set1_ps(f.min), _mm512_set1_ps(f.max));
    for (acc, out) in acc.iter().zip(out.iter_mut()) {
        for (i, acc) in acc.iter().enumerate() {
            let first = (v0 + i) * LANES;
            // max(min, v) then min(max, v): the second operand (v) wins on NaN, like sgemm::clamp.
            let v = _mm512_min_ps(max, _mm512_max_ps(min, *acc));
            let mask = masked_rows::bit_range(0, (f.plane_out - first) as isize) as u16;
            // SAFETY: the enabled lanes write out[first..plane_out] at most, inside the plane_out
            // elements `FlatPlane::run` checked `out` holds.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(first), mask, v) };
        }
    }
}

//! Depthwise convolution at stride 2 of contiguous (NCHW) f32 planes with AVX-512, through zero-padded
//! phase planes: each input plane is first split into its four phases (even and odd rows × even
//! and odd columns), each with the zero rows and columns its taps read as padding, so that every
//! kernel tap becomes a read at stride 1 from one phase. The outputs are then computed as one flat
//! run over the phase rows (`row` elements apart, a few more than the output width): output
//! `(oy, ox)` at flat position `oy · row + ox` reads position `+ offset(tap)` of the phase buffer,
//! with neither masks nor permutes; the positions between output rows are computed and dropped
//! when stored (each vector's outputs compressed into place).
//!
//! The row kernel ([`super::depthwise_avx512`]) deinterleaves every tap's loads with permutes at
//! stride 2 and leaves lanes idle on narrow rows: mobilenet_v2's stride-2 layers ran at 12-36
//! GFLOP/s there against 60-90 at stride 1.
//!
//! Taps apply in the portable kernel's order (row-major over the kernel, from the bias) with
//! fused multiply-adds; a tap in the padding adds `w · 0`, as the row kernel's zero-masked loads
//! do.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::depthwise_avx512::{FLAT_MAX_TAPS, PlaneGeometry};
use super::masked_rows::{self, LANES};

/// Widest output rows this kernel takes. On wider rows the row kernel, reading the input in
/// place, stays faster (`cargo bench --bench conv`, one thread: 192 planes 28x28 → 14x14, 23 µs
/// against 26-28 this way; larger planes further behind, the split's extra pass over the input
/// costing more than its permutes save); onto 7x7 and 8x8 this is faster (576 planes 14x14 → 7x7,
/// 3x3: 45 → 33 µs; 240 planes 16x16 → 8x8, 5x5: 50 → 22-25 µs).
const MAX_OUT_WIDTH: usize = LANES / 2;
/// Most output vectors (of 16 positions, padding columns included) a plane may have: the store
/// table's size (1 MiB of outputs).
const MAX_VECTORS: usize = 1 << 14;
/// Accumulators of one block of a plane computed alone (vectors).
const ACCUMULATORS: usize = 12;
/// Accumulators of one block of planes computed together (vectors × planes).
const ACCUMULATORS_GROUPED: usize = 16;
/// Planes computed together when a plane has few vectors ([`PhasedPlane::planes_together`]).
pub const PHASED_PLANES: usize = 4;

/// Where one vector of flat positions goes: the lanes that are outputs (`mask`) and the output
/// index of the first of them (`at`).
#[derive(Debug, Clone, Copy)]
struct Store {
    mask: u16,
    at: u32,
}

/// A stride-2 depthwise plane geometry split into phases (see the module docs).
#[derive(Debug, Clone)]
pub struct PhasedPlane {
    height: usize,
    width: usize,
    plane_out: usize,
    /// Elements per phase row, and rows per phase plane.
    row: usize,
    rows: usize,
    /// Zero rows and columns before the data of each phase plane.
    lead: [usize; 2],
    phase_len: usize,
    /// Elements of one plane's phase buffer, with the slack the last vector reads past the
    /// data.
    buffer_len: usize,
    taps: usize,
    offsets: [usize; FLAT_MAX_TAPS],
    stores: Vec<Store>,
    min: f32,
    max: f32,
}

impl PhasedPlane {
    /// The phased form of `g`, or `None` when it does not apply (a stride other than 2 × 2,
    /// more than [`FLAT_MAX_TAPS`] taps, too many vectors) or the CPU lacks AVX-512.
    pub fn new(g: &PlaneGeometry) -> Option<PhasedPlane> {
        let [kh, kw] = g.kernel;
        let taps = kh.checked_mul(kw)?;
        let applies = g.stride == [2, 2]
            && g.out_width <= MAX_OUT_WIDTH
            && (1..=FLAT_MAX_TAPS).contains(&taps)
            && [g.height, g.width, g.out_height, g.out_width].iter().all(|&v| v >= 1)
            && masked_rows::available();
        if !applies {
            return None;
        }
        // Per axis: tap k reads input 2·o + e(k), e(k) = k·d - p: phase e mod 2, phase position
        // o + floor(e / 2). The lead covers the most negative shift.
        let shifts = |a: usize, k: usize| -> Option<(usize, i64)> {
            let e = i64::try_from(k.checked_mul(g.dilation[a])?).ok()? - i64::try_from(g.padding[a]).ok()?;
            Some((e.rem_euclid(2) as usize, e.div_euclid(2)))
        };
        let lead = |a: usize, kernel: usize| -> Option<(usize, usize)> {
            let lo = shifts(a, 0)?.1.min(0);
            let hi = shifts(a, kernel - 1)?.1;
            Some((usize::try_from(-lo).ok()?, usize::try_from(hi - lo).ok()?))
        };
        let ((lead_y, reach_y), (lead_x, reach_x)) = (lead(0, kh)?, lead(1, kw)?);
        // A valid output's reads stay inside its phase row (a read past the row would land in the
        // next row's data), and every input element has its place.
        let row = g.out_width.checked_add(reach_x)?.max(lead_x.checked_add(g.width.div_ceil(2))?);
        let rows = g.out_height.checked_add(reach_y)?.max(lead_y.checked_add(g.height.div_ceil(2))?);
        let phase_len = row.checked_mul(rows)?;
        let flat_out = g.out_height.checked_mul(row)?;
        let vectors = flat_out.div_ceil(LANES);
        if vectors > MAX_VECTORS {
            return None;
        }
        let mut offsets = [0usize; FLAT_MAX_TAPS];
        for ky in 0..kh {
            let (py, sy) = shifts(0, ky)?;
            let sy = usize::try_from(sy.checked_add(lead_y as i64)?).ok()?;
            for kx in 0..kw {
                let (px, sx) = shifts(1, kx)?;
                let sx = usize::try_from(sx.checked_add(lead_x as i64)?).ok()?;
                offsets[ky * kw + kx] =
                    (py * 2 + px).checked_mul(phase_len)?.checked_add(sy.checked_mul(row)?)?.checked_add(sx)?;
            }
        }
        let max_offset = offsets[..taps].iter().copied().max()?;
        let buffer_len = max_offset.checked_add(vectors.checked_mul(LANES)?)?.max(phase_len.checked_mul(4)?);
        let plane_out = g.out_height.checked_mul(g.out_width)?;
        u32::try_from(plane_out).ok()?;
        let stores = (0..vectors)
            .map(|v| {
                let first = v * LANES;
                let mut mask = 0u16;
                for lane in 0..LANES {
                    let f = first + lane;
                    if f < flat_out && f % row < g.out_width {
                        mask |= 1 << lane;
                    }
                }
                let (oy, ox) = (first / row, (first % row).min(g.out_width));
                Store { mask, at: (oy * g.out_width + ox) as u32 }
            })
            .collect();
        Some(PhasedPlane {
            height: g.height,
            width: g.width,
            plane_out,
            row,
            rows,
            lead: [lead_y, lead_x],
            phase_len,
            buffer_len,
            taps,
            offsets,
            stores,
            min: g.min,
            max: g.max,
        })
    }

    /// Elements of one plane's phase buffer, which [`PhasedPlane::run`] takes zeroed before its
    /// first use; the padding it holds stays zero from plane to plane.
    pub fn buffer_len(&self) -> usize {
        self.buffer_len
    }

    /// How many planes to compute together: [`PHASED_PLANES`] share each store mask and keep
    /// more multiply-adds in flight than a plane of few vectors has; larger planes one at a time
    /// (their phase buffers stay in L1 and L2).
    pub fn planes_together(&self) -> usize {
        if self.stores.len() <= ACCUMULATORS_GROUPED / PHASED_PLANES { PHASED_PLANES } else { 1 }
    }

    /// `C` output planes from their input planes, taps and biases; `buffers` are the planes'
    /// phase buffers ([`PhasedPlane::buffer_len`] each, zeroed before their first use with this
    /// geometry). `None` (nothing written) when a slice is shorter than the geometry needs.
    pub fn run<const C: usize>(
        &self,
        x: [&[f32]; C],
        taps: [&[f32]; C],
        bias: [f32; C],
        buffers: [&mut [f32]; C],
        out: [&mut [f32]; C],
    ) -> Option<()> {
        let plane_in = self.height.checked_mul(self.width)?;
        let fits = x.iter().all(|x| x.len() >= plane_in)
            && taps.iter().all(|t| t.len() >= self.taps)
            && buffers.iter().all(|b| b.len() >= self.buffer_len)
            && out.iter().all(|o| o.len() >= self.plane_out);
        if !fits || !(C == 1 || C == PHASED_PLANES) {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a PhasedPlane exists only where AVX-512F is available (`new`), all
            // `phased_avx512` requires of the CPU; the slice lengths were checked above.
            unsafe { phased_avx512(self, x, buffers, taps, bias, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, taps, bias, buffers, out);
            None
        }
    }

    /// Copies input plane `x` into its phase planes in `buffer` (padding left as it is): each
    /// row's even elements to phase row `(py, 0)`, its odd ones to `(py, 1)`, with two permutes
    /// per 32 elements.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn split(&self, x: &[f32], buffer: &mut [f32]) -> Option<()> {
        let [lead_y, lead_x] = self.lead;
        let width = self.width;
        let end = self.height;
        // Checked once for all rows: the input plane read, and the phase buffer written (row `r
        // < rows` of phase `p < 4`, columns `lead_x + ..ceil(width / 2) <= row`, `new`).
        if x.len() < end.checked_mul(width)? || buffer.len() < 4 * self.phase_len {
            return None;
        }
        let even_lanes = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd_lanes = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let (full, rest) = (width / 32, width % 32);
        let load_lo = masked_rows::bit_range(0, rest as isize) as u16;
        let load_hi = (masked_rows::bit_range(16, rest as isize) >> 16) as u16;
        let store_even = masked_rows::bit_range(0, rest.div_ceil(2) as isize) as u16;
        let store_odd = masked_rows::bit_range(0, (rest / 2) as isize) as u16;
        for iy in 0..end {
            let (py, r) = (iy % 2, iy / 2 + lead_y);
            debug_assert!(r < self.rows && lead_x + width.div_ceil(2) <= self.row);
            let src = x.as_ptr().wrapping_add(iy * width);
            let even = buffer.as_mut_ptr().wrapping_add(py * 2 * self.phase_len + r * self.row + lead_x);
            let odd = even.wrapping_add(self.phase_len);
            for k in 0..full {
                let (src, at) = (src.wrapping_add(32 * k), 16 * k);
                // SAFETY: (this load and the three accesses below) input elements iy · width +
                // 32k .. + 32 <= end · width <= x.len(); phase row elements lead_x + 16k .. + 16
                // <= lead_x + ceil(width / 2) <= row, of row r = iy / 2 + lead_y < rows of a
                // phase plane (both bounds from `new`), inside the 4 · phase_len <= buffer.len()
                // elements (checked above).
                let a = unsafe { _mm512_loadu_ps(src) };
                // SAFETY: as above.
                let b = unsafe { _mm512_loadu_ps(src.wrapping_add(16)) };
                let (e, o) = (_mm512_permutex2var_ps(a, even_lanes, b), _mm512_permutex2var_ps(a, odd_lanes, b));
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(even.wrapping_add(at), e) };
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(odd.wrapping_add(at), o) };
            }
            if rest > 0 {
                let (src, at) = (src.wrapping_add(32 * full), 16 * full);
                // SAFETY: (this load and the three accesses below) as in the loop, with only the
                // row's last `rest` inputs read and their ceil(rest / 2) and rest / 2 phase
                // elements written (the masks).
                let a = unsafe { _mm512_maskz_loadu_ps(load_lo, src) };
                // SAFETY: as above.
                let b = if load_hi != 0 { unsafe { _mm512_maskz_loadu_ps(load_hi, src.wrapping_add(16)) } } else { a };
                let (e, o) = (_mm512_permutex2var_ps(a, even_lanes, b), _mm512_permutex2var_ps(a, odd_lanes, b));
                // SAFETY: as above.
                unsafe { _mm512_mask_storeu_ps(even.wrapping_add(at), store_even, e) };
                // SAFETY: as above.
                unsafe { _mm512_mask_storeu_ps(odd.wrapping_add(at), store_odd, o) };
            }
        }
        Some(())
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn phased_avx512<const C: usize>(
    p: &PhasedPlane,
    x: [&[f32]; C],
    mut buffers: [&mut [f32]; C],
    taps: [&[f32]; C],
    bias: [f32; C],
    mut out: [&mut [f32]; C],
) -> Option<()> {
    let block = if C == 1 { ACCUMULATORS } else { (ACCUMULATORS_GROUPED / C).max(1) };
    let vectors = p.stores.len();
    for (x, buffer) in x.iter().zip(buffers.iter_mut()) {
        p.split(x, buffer)?;
    }
    let b = buffers.each_ref().map(|b| &**b);
    let mut v0 = 0;
    while v0 < vectors {
        let n = (vectors - v0).min(block);
        let (b, t, o) = (&b, &taps, &mut out);
        match n {
            12.. => phased_block::<12, C>(p, b, t, bias, v0, o),
            11 => phased_block::<11, C>(p, b, t, bias, v0, o),
            10 => phased_block::<10, C>(p, b, t, bias, v0, o),
            9 => phased_block::<9, C>(p, b, t, bias, v0, o),
            8 => phased_block::<8, C>(p, b, t, bias, v0, o),
            7 => phased_block::<7, C>(p, b, t, bias, v0, o),
            6 => phased_block::<6, C>(p, b, t, bias, v0, o),
            5 => phased_block::<5, C>(p, b, t, bias, v0, o),
            4 => phased_block::<4, C>(p, b, t, bias, v0, o),
            3 => phased_block::<3, C>(p, b, t, bias, v0, o),
            2 => phased_block::<2, C>(p, b, t, bias, v0, o),
            _ => phased_block::<1, C>(p, b, t, bias, v0, o),
        }
        v0 += n.min(12);
    }
    Some(())
}

/// Vectors `v0..v0 + B` of `C` planes. Preconditions (from `PhasedPlane::run`): `v0 + B <=
/// vectors`; every buffer holds `buffer_len` elements, every `out` an output plane, every `taps`
/// all taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
// The loops index the accumulators across (plane, vector) in the other order than they nest.
#[allow(clippy::needless_range_loop)]
fn phased_block<const B: usize, const C: usize>(
    p: &PhasedPlane,
    buffers: &[&[f32]; C],
    taps: &[&[f32]; C],
    bias: [f32; C],
    v0: usize,
    out: &mut [&mut [f32]; C],
) {
    let mut acc: [[__m512; B]; C] = std::array::from_fn(|c| [_mm512_set1_ps(bias[c]); B]);
    for (tap, &offset) in p.offsets.iter().enumerate().take(p.taps) {
        let weight: [__m512; C] = std::array::from_fn(|c| _mm512_set1_ps(taps[c][tap]));
        for i in 0..B {
            for c in 0..C {
                let at = buffers[c].as_ptr().wrapping_add((v0 + i) * LANES + offset);
                // SAFETY: (v0 + i) · 16 + 15 + offset <= vectors · 16 - 1 + max_offset <
                // buffer_len <= buffers[c].len() (`PhasedPlane::new`, `run`).
                let input = unsafe { _mm512_loadu_ps(at) };
                acc[c][i] = _mm512_fmadd_ps(weight[c], input, acc[c][i]);
            }
        }
    }
    let (min, max) = (_mm512_set1_ps(p.min), _mm512_set1_ps(p.max));
    for (acc, out) in acc.iter().zip(out.iter_mut()) {
        for (i, acc) in acc.iter().enumerate() {
            let store = p.stores[v0 + i];
            // max(min, v) then min(max, v): the second operand (v) wins on NaN, like sgemm::clamp.
            let v = _mm512_min_ps(max, _mm512_max_ps(min, *acc));
            let packed = _mm512_maskz_compress_ps(store.mask, v);
            let count = store.mask.count_ones() as usize;
            let lanes = masked_rows::bit_range(0, count as isize) as u16;
            // SAFETY: the `count` outputs of this vector are outputs at + 0..count of the plane
            // (its output positions in order, `PhasedPlane::new`), so at + count <= plane_out <=
            // out.len() (`run`); disabled lanes are not written.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(store.at as usize), lanes, packed) };
        }
    }
}

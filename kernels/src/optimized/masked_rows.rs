//! Masked AVX-512 access to the rows of a contiguous f32 plane, shared by the window kernels
//! (depthwise convolution, max pooling): 16 outputs per register, each reading one input per
//! kernel column at column stride 1 or 2. The mask of a load leaves out the inputs outside the
//! row (padding), which are then neither read nor counted, so no padded copy of the plane is made.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Outputs per register.
pub const LANES: usize = 16;

/// Whether this CPU has AVX-512F, which every function here needs.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Bits `lo..hi` of a `u32` (empty when `hi <= lo`): the lanes of a masked load or store.
pub fn bit_range(lo: isize, hi: isize) -> u32 {
    let (lo, hi) = (lo.clamp(0, 32) as u32, hi.clamp(0, 32) as u32);
    if hi <= lo {
        return 0;
    }
    let upto = |n: u32| if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
    upto(hi) & !upto(lo)
}

/// What a chunk of `n <= 16` outputs reads through one kernel column: the input column of its
/// first output (`first`, may be negative) and, of the window `first + t` (t < 16 at stride 1,
/// t < 32 at stride 2), the elements inside the row that the outputs use (`mask`).
#[derive(Clone, Copy, Default, Debug)]
pub struct ColumnLoad {
    pub first: isize,
    pub mask: u32,
}

impl ColumnLoad {
    /// The load of kernel column `kx` for the chunk of `n` outputs from column `ox0`, with column
    /// stride `stride` (1 or 2), dilation and padding, in a row of `width` inputs. The caller
    /// keeps the arithmetic inside `isize`.
    pub fn new(ox0: usize, n: usize, kx: usize, [stride, dilation, padding]: [isize; 3], width: isize) -> ColumnLoad {
        let first = ox0 as isize * stride + kx as isize * dilation - padding;
        // Window elements t the outputs read are j * stride for j < n.
        let used = (n as isize - 1) * stride + 1;
        ColumnLoad { first, mask: bit_range(-first, (width - first).min(used)) }
    }
}

/// The 16 inputs of `load` in the row starting at element `row` of `x`: at column stride 1 the
/// window itself, at stride 2 its even elements; zero where the mask leaves an element out.
///
/// # Safety
/// The CPU has AVX-512F, and every element the mask enables, `x[row + load.first + t]`, is in
/// bounds: `0 <= row + load.first + t < x.len()`. Elements left out are not accessed (the
/// pointer to them is only formed with wrapping arithmetic).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn load_window(x: &[f32], row: isize, load: ColumnLoad, stride_two: bool) -> __m512 {
    let at = x.as_ptr().wrapping_offset(row + load.first);
    if !stride_two {
        // SAFETY: the caller guarantees the enabled elements t < 16 are inside `x`.
        return unsafe { _mm512_maskz_loadu_ps(load.mask as u16, at) };
    }
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    // SAFETY: as above, for window elements 0..16 (low mask half).
    let lo = unsafe { _mm512_maskz_loadu_ps(load.mask as u16, at) };
    // SAFETY: as above, for window elements 16..32 (high mask half).
    let hi = unsafe { _mm512_maskz_loadu_ps((load.mask >> 16) as u16, at.wrapping_add(16)) };
    _mm512_permutex2var_ps(lo, even, hi)
}

/// [`load_window`] with `fill` instead of zero where the mask leaves an element out.
///
/// # Safety
/// As for [`load_window`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn load_window_or(x: &[f32], row: isize, load: ColumnLoad, stride_two: bool, fill: __m512) -> __m512 {
    let at = x.as_ptr().wrapping_offset(row + load.first);
    if !stride_two {
        // SAFETY: the caller guarantees the enabled elements t < 16 are inside `x`.
        return unsafe { _mm512_mask_loadu_ps(fill, load.mask as u16, at) };
    }
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    // SAFETY: as above, for window elements 0..16 (low mask half).
    let lo = unsafe { _mm512_mask_loadu_ps(fill, load.mask as u16, at) };
    // SAFETY: as above, for window elements 16..32 (high mask half).
    let hi = unsafe { _mm512_mask_loadu_ps(fill, (load.mask >> 16) as u16, at.wrapping_add(16)) };
    _mm512_permutex2var_ps(lo, even, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_ranges() {
        assert_eq!(bit_range(0, 16), 0xffff);
        assert_eq!(bit_range(1, 3), 0b110);
        assert_eq!(bit_range(-4, 2), 0b11);
        assert_eq!(bit_range(5, 2), 0);
        assert_eq!(bit_range(0, 40), u32::MAX);
        assert_eq!(bit_range(31, 32), 1 << 31);
    }
}

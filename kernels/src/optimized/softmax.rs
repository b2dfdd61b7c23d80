//! Softmax of contiguous float32 rows along the last dimension: the portable kernel's arithmetic
//! (f64; the maximum, the sum of exponentials in element order, then each exponential over the
//! sum, so results are bit-identical), on slices, with each exponential computed once (rows up to
//! [`ROW_ON_STACK`] long keep them on the stack). The portable kernel computes every exponential
//! twice through strided iterators: transformer_layer's 64 rows of 16 took 19 µs. Everything
//! else goes to the portable kernel, which also reports the errors.

use super::contiguous;
use super::elementwise::exp_nonpositive;
use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};

/// Longest row whose exponentials are kept (on the stack) between the sum and the division.
const ROW_ON_STACK: usize = 256;

/// `aten::_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out)`
pub fn softmax_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    match fast_softmax(args) {
        Some(result) => result,
        None => portable::softmax::softmax_out(ctx, args),
    }
}

/// The fast case, or `None` (nothing borrowed mutably yet) for the portable kernel.
fn fast_softmax(args: &KernelArgs<'_>) -> Option<Result<(), KernelError>> {
    if !contiguous(args, 0, DType::Float) || !contiguous(args, 3, DType::Float) || args.bool(2).ok()? {
        return None;
    }
    let x = args.tensor(0).ok()?;
    let dim = crate::shape::wrap_dim(args.int(1).ok()?, x.dim())?;
    let row = *x.sizes().last()?;
    if dim + 1 != x.dim() || row == 0 || row > ROW_ON_STACK {
        return None;
    }
    Some((|| {
        let mut out = args.tensor_mut(3)?;
        out.resize(x.sizes())?;
        let src = x.data::<f32>()?;
        let dst = out.data_mut::<f32>()?;
        let short = KernelError::ShapeMismatch { arg: 3, reason: "output too small" };
        let dst = dst.get_mut(..src.len()).ok_or(short)?;
        softmax_dispatch(src, dst, row);
        Ok(())
    })())
}

/// Softmax of each `row`-long run of `src` into `dst`: the maximum subtracted, `e^(x - max)` in
/// f32 ([`exp_nonpositive`], exactly 0 below -87 where f32 underflows anyway, NaN kept), the sum
/// in f64, each output `e / sum` rounded once. The portable kernel evaluates every exponential in
/// f64 through the C library: 5 ns per element, bert_encoder's largest kernels.
#[inline(always)]
fn softmax_rows(src: &[f32], dst: &mut [f32], row: usize) {
    let mut exps = [0f32; ROW_ON_STACK];
    for (xs, os) in src.chunks_exact(row).zip(dst.chunks_exact_mut(row)) {
        // Eight independent lanes for the max and the sum: one serial chain of dependent
        // additions per row cost more than the exponentials on short rows (transformer_layer's
        // attention rows are 16 long).
        let mut maxes = [f32::NEG_INFINITY; 8];
        for chunk in xs.chunks(8) {
            for (m, &v) in maxes.iter_mut().zip(chunk) {
                *m = m.max(v);
            }
        }
        let max = maxes.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let exps = &mut exps[..row];
        for (e, &v) in exps.iter_mut().zip(xs) {
            let d = v - max;
            let x = if d < -87.0 { 0.0 } else { exp_nonpositive(d) };
            *e = if d.is_nan() { f32::NAN } else { x };
        }
        let mut sums = [0f64; 8];
        for chunk in exps.chunks(8) {
            for (s, &e) in sums.iter_mut().zip(chunk) {
                *s += f64::from(e);
            }
        }
        let sum: f64 = sums.iter().sum();
        // One rounding of the reciprocal and one of the product: within 2 ulp of the quotient.
        let scale = (1.0 / sum) as f32;
        for (o, &e) in os.iter_mut().zip(exps.iter()) {
            *o = e * scale;
        }
    }
}

/// [`softmax_rows`] compiled for AVX2 and FMA (the same operations, so the same results).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_rows_avx2(src: &[f32], dst: &mut [f32], row: usize) {
    softmax_rows(src, dst, row);
}

/// Rows of at most this many elements take [`softmax_short_rows_avx512`] where it runs.
const SHORT_ROW: usize = 16;

/// [`softmax_rows`] for rows of at most [`SHORT_ROW`] elements (attention over a few positions:
/// bert_encoder's 16), each row in one AVX-512 register: a masked load (padding at -inf), the
/// max across lanes, [`exp_nonpositive`]'s operations on the lanes, the f64 sum of the two halves,
/// one masked store. The general loop's per-chunk steps cost more than the arithmetic on such
/// rows (1.8 µs for 64 rows of 16). Same steps per element as [`softmax_rows`]; the max and the
/// sum are taken in another order (within the kernel's tolerance of the portable kernel, not
/// bit-identical to the general loop).
///
/// # Safety
/// The CPU must support AVX-512F; `row` must be in `1..=SHORT_ROW`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_short_rows_avx512(src: &[f32], dst: &mut [f32], row: usize) {
    use std::arch::x86_64::*;
    let mask: __mmask16 = ((1u32 << row) - 1) as __mmask16;
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    for (xs, os) in src.chunks_exact(row).zip(dst.chunks_exact_mut(row)) {
        // SAFETY: `xs` holds `row` floats; lanes past it are masked off (not read).
        let x = unsafe { _mm512_mask_loadu_ps(neg_inf, mask, xs.as_ptr()) };
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(x));
        let d = _mm512_sub_ps(x, max);
        let e = exp_nonpositive_avx512(d);
        // `d < -87` gives 0, NaN stays NaN (as in `softmax_rows`), padding lanes give 0.
        let e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(d, _mm512_set1_ps(-87.0)), e);
        let e = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(d, d), d);
        let e = _mm512_maskz_mov_ps(mask, e);
        let low = _mm512_cvtps_pd(_mm512_castps512_ps256(e));
        let high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(e))));
        let sum = _mm512_reduce_add_pd(_mm512_add_pd(low, high));
        let scaled = _mm512_mul_ps(e, _mm512_set1_ps((1.0 / sum) as f32));
        // SAFETY: `os` holds `row` floats; lanes past it are masked off (not written).
        unsafe { _mm512_mask_storeu_ps(os.as_mut_ptr(), mask, scaled) };
    }
}

/// [`exp_nonpositive`] on 16 lanes: the same operations in the same order (fused multiply-adds
/// with the same constants), so each lane equals the scalar function's result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_nonpositive_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use super::elementwise::exp_constants::*;
    use std::arch::x86_64::*;
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
    let shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(core::f32::consts::LOG2_E), _mm512_set1_ps(ROUND));
    let n = _mm512_sub_ps(shifted, _mm512_set1_ps(ROUND));
    let minus_n = _mm512_sub_ps(_mm512_setzero_ps(), n);
    let r = _mm512_fmadd_ps(minus_n, _mm512_set1_ps(LN2_LO), _mm512_fmadd_ps(minus_n, _mm512_set1_ps(LN2_HI), x));
    let mut p = _mm512_fmadd_ps(r, _mm512_set1_ps(TAYLOR_6), _mm512_set1_ps(TAYLOR_5));
    for c in TAYLOR_4_TO_0 {
        p = _mm512_fmadd_ps(r, p, _mm512_set1_ps(c));
    }
    let n_bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(ROUND.to_bits() as i32));
    let two_n = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n_bits, _mm512_set1_epi32(127))));
    _mm512_mul_ps(p, two_n)
}

fn softmax_dispatch(src: &[f32], dst: &mut [f32], row: usize) {
    #[cfg(target_arch = "x86_64")]
    if (1..=SHORT_ROW).contains(&row) && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (detected just above); `row` is in range.
        return unsafe { softmax_short_rows_avx512(src, dst, row) };
    }
    #[cfg(target_arch = "x86_64")]
    {
        // The standard library caches the detection.
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (detected just above).
            return unsafe { softmax_rows_avx2(src, dst, row) };
        }
    }
    softmax_rows(src, dst, row);
}

/// Registers the optimized softmax.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [DType], KernelFn)] = &[(
        "aten::_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out) -> Tensor(a!)",
        crate::portable::elementwise::FLOAT_DTYPES,
        softmax_out,
    )];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::Call;

    /// Within 2e-6 (relative; subnormal results may be 0) of the portable kernel (f64 throughout)
    /// on rows of 1 to 256 (with -inf entries, as masked attention has), any leading shape, negative dims;
    /// NaN rows stay NaN; other dims and longer rows go to the portable kernel (bit for bit).
    #[test]
    fn softmax_matches_portable() {
        // (sizes, dim, scale of the values: 300 makes exp overflow without the max subtracted)
        let cases: &[(&[usize], i64, f32)] = &[
            (&[1, 4, 16, 16], -1, 1.0),
            (&[3, 7], 1, 1.0),
            (&[5], 0, 1.0),
            (&[2, 256], -1, 1.0),
            (&[2, 300], 1, 1.0),
            (&[4, 6, 5], 1, 1.0),
            (&[3, 16], -1, 300.0),
            (&[2, 3, 16], -1, 30.0),
            (&[9, 1], -1, 1.0),
            (&[4, 13], -1, 50.0),
            (&[4, 33], -1, 30.0),
        ];
        for &(sizes, dim, scale) in cases {
            let n: usize = sizes.iter().product();
            let mut data: Vec<f32> = (0..n).map(|i| (((i * 7919) % 1009) as f32 / 97.0 - 5.0) * scale).collect();
            for i in (0..n).step_by(5) {
                data[i] = f32::NEG_INFINITY;
            }
            if n > 40 {
                data[40] = f32::NAN;
            }
            let run = |kernel: KernelFn| {
                let (r, mut done) =
                    Call::new().tensor(sizes, &data).int(dim).bool(false).out(DType::Float, sizes, n).run(kernel);
                r.unwrap_or_else(|e| panic!("{sizes:?} dim {dim}: {e}"));
                done.tensor::<f32>(3)
            };
            let (got_sizes, got) = run(softmax_out);
            let (want_sizes, want) = run(portable::softmax::softmax_out);
            assert_eq!(got_sizes, want_sizes);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                // Below f32's normal range the fast path gives 0 where f64 rounds to a subnormal.
                let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 2e-6 * w.abs() + f32::MIN_POSITIVE;
                assert!(ok, "{sizes:?} dim {dim} at {i}: {g} vs portable {w}");
            }
        }
    }
}

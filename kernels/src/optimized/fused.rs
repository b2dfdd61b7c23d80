//! Kernels for calls the engine fuses at load (`engine/src/fuse.rs`), registered under no
//! operator name: the engine puts them in place of a convolution whose output only an activation
//! reads, or whose weights a batch norm scales. Positions 0..=9 are those of
//! `aten::convolution.out` (the out tensor being the last fused call's), so the convolution's
//! prepared state applies unchanged. A scaled convolution has its weight scale at
//! [`SCALE`](super::conv::SCALE); a fused hardtanh has its bounds in the last two positions.
//!
//! [`linear`] takes the place of an `aten::addmm.out` whose `mat2` was the transpose of a constant
//! weight: same positions, with the weight itself at `mat2`.
//!
//! [`hardswish`] and [`hardsigmoid`] take the place of the chains the exporter writes for
//! `nn.Hardswish` and `nn.Hardsigmoid`: `div(mul(x, clamp(clamp(add(x, a), lo), hi)), d)` (without
//! the `mul` for hardsigmoid), `a` and `d` one-element tensors (3 and 6). Positions: `x`, `a`,
//! the two clamps' bounds (`lo1, hi1, lo2, hi2`, each a scalar or None), `d`, `out`.

use super::conv::convolution_clamped;
use super::elementwise::{clamp_like_portable, map_f32};
use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::registry::KernelContext;

/// The bounds of a fused hardtanh: the call's last two arguments.
fn hardtanh_bounds(args: &KernelArgs<'_>) -> Result<(f32, f32), KernelError> {
    let at = args.len().checked_sub(2).ok_or(KernelError::MissingArg { arg: 10, len: args.len() })?;
    Ok((hardtanh_bound(args, at)?, hardtanh_bound(args, at + 1)?))
}

/// One bound of a fused hardtanh, the scalar at `arg`; NaN bounds are refused (the engine does
/// not fuse them).
pub(crate) fn hardtanh_bound(args: &KernelArgs<'_>, arg: usize) -> Result<f32, KernelError> {
    let v = args.scalar(arg)?.to_f64() as f32;
    if v.is_nan() {
        return Err(KernelError::NotImplemented("fused hardtanh with a NaN bound"));
    }
    Ok(v)
}

/// Convolution then `hardtanh(min, max)` (ReLU6 in MobileNets).
pub fn convolution_hardtanh(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (min, max) = hardtanh_bounds(args)?;
    convolution_clamped(ctx, args, min, max)
}

/// Convolution then ReLU.
pub fn convolution_relu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    convolution_clamped(ctx, args, 0.0, f32::INFINITY)
}

/// Convolution with a batch norm folded in (weights scaled per output channel).
pub fn convolution_scaled(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::conv::convolution_scaled(ctx, args, f32::NEG_INFINITY, f32::INFINITY)
}

/// Scaled convolution then `hardtanh(min, max)`.
pub fn convolution_scaled_hardtanh(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (min, max) = hardtanh_bounds(args)?;
    super::conv::convolution_scaled(ctx, args, min, max)
}

/// Scaled convolution then ReLU.
pub fn convolution_scaled_relu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::conv::convolution_scaled(ctx, args, 0.0, f32::INFINITY)
}

/// `aten::addmm.out` reading `mat2` as the transpose of the `[p, k]` weight at its position: a
/// linear layer `x @ Wᵀ + b` without the transposed copy of `W`.
pub fn linear(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::linalg::addmm_weight_transposed(ctx, args)
}

/// One element of a one-element float32 tensor argument.
fn scalar_tensor(args: &KernelArgs<'_>, arg: usize) -> Result<f32, KernelError> {
    let t = args.tensor(arg)?;
    if t.dtype() != DType::Float || t.numel() != 1 {
        return Err(KernelError::ShapeMismatch { arg, reason: "fused activation expects a one-element float tensor" });
    }
    t.data::<f32>()?.first().copied().ok_or(KernelError::ShapeMismatch { arg, reason: "empty storage" })
}

/// A clamp bound (absent: unbounded); NaN bounds are refused at load.
fn bound(args: &KernelArgs<'_>, arg: usize, absent: f32) -> Result<f32, KernelError> {
    let v = args.opt_scalar(arg)?.map_or(absent, |s| s.to_f64() as f32);
    if v.is_nan() {
        return Err(KernelError::NotImplemented("fused clamp with a NaN bound"));
    }
    Ok(v)
}

/// The fused chain: each step rounds as the unfused kernel does (`x + a`, the two clamps, `x · t`,
/// `t / d`), so results are bit-identical to running the chain.
fn hard_activation<const MUL: bool>(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, d) = (scalar_tensor(args, 1)?, scalar_tensor(args, 6)?);
    let (lo1, hi1) = (bound(args, 2, f32::NEG_INFINITY)?, bound(args, 3, f32::INFINITY)?);
    let (lo2, hi2) = (bound(args, 4, f32::NEG_INFINITY)?, bound(args, 5, f32::INFINITY)?);
    let f = move |x: f32| {
        let t = clamp_like_portable(clamp_like_portable(x + a, lo1, hi1), lo2, hi2);
        (if MUL { x * t } else { t }) / d
    };
    // `map_f32` covers float32 tensors with `out` laid out as `x`; the load-time check guarantees
    // both, so `None` means a broken invariant.
    map_f32(ctx, args, 7, f).unwrap_or(Err(KernelError::NotImplemented("fused activation on this layout")))
}

/// `x · sigmoid(x)` (`nn.SiLU`, exported as `mul(x, sigmoid(x))`): positions `x`, `out`.
/// Bit-identical to the two optimized kernels one after another.
pub fn silu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    // The load-time check guarantees float32 tensors of one layout: `None` is a broken invariant.
    super::elementwise::silu_f32(ctx, args, 1).unwrap_or(Err(KernelError::NotImplemented("fused SiLU on this layout")))
}

/// `x · clamp(x + a) / d` (`nn.Hardswish`).
pub fn hardswish(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    hard_activation::<true>(ctx, args)
}

/// `clamp(x + a) / d` (`nn.Hardsigmoid`).
pub fn hardsigmoid(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    hard_activation::<false>(ctx, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KernelFn;
    use crate::portable;
    use crate::portable::test_support::Call;

    /// Fused SiLU against the optimized sigmoid then mul, bit for bit, below and above the fast
    /// elementwise size, with signed zeros, infinities, NaN and values past the exponential's range.
    #[test]
    fn silu_matches_sigmoid_then_mul_bit_for_bit() {
        for n in [7, 5000] {
            let x: Vec<f32> = (0..n)
                .map(|i| match i % 40 {
                    0 => f32::INFINITY,
                    1 => f32::NEG_INFINITY,
                    2 => -0.0,
                    3 => f32::NAN,
                    4 => -100.0,
                    _ => (i as f32 - n as f32 / 2.0) * 0.0173,
                })
                .collect();
            let shape = [n];
            let sig = Call::new()
                .tensor(&shape, &x)
                .out(DType::Float, &shape, n)
                .run_f32(super::super::elementwise::sigmoid_out, 1);
            let want = Call::new()
                .tensor(&shape, &x)
                .tensor(&shape, &sig)
                .out(DType::Float, &shape, n)
                .run_f32(super::super::elementwise::mul_out, 2);
            let got = Call::new().tensor(&shape, &x).out(DType::Float, &shape, n).run_f32(silu, 1);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{g} vs {w}");
            }
        }
    }

    /// The fused chains against the portable kernels run one after another, bit for bit, on
    /// values around the clamp bounds, signed zeros, infinities and a tensor below the fast
    /// elementwise size.
    #[test]
    fn hard_activations_match_the_chain_bit_for_bit() {
        for n in [5, 300] {
            let x: Vec<f32> = (0..n)
                .map(|i| match i % 50 {
                    0 => f32::INFINITY,
                    1 => f32::NEG_INFINITY,
                    2 => -0.0,
                    _ => (i as f32 - n as f32 / 2.0) * 0.0731,
                })
                .collect();
            let shape = [n];
            let unary = |input: &[f32], lo: Option<f64>, hi: Option<f64>| {
                let c = Call::new().tensor(&shape, input).opt_double(lo).opt_double(hi);
                c.out(DType::Float, &shape, n).run_f32(portable::activation::clamp_out, 3)
            };
            let binary = |a: &[f32], b: &[f32], b_shape: &[usize], kernel: KernelFn, alpha: bool| {
                let c = Call::new().tensor(&shape, a).tensor(b_shape, b);
                let c = if alpha { c.int(1) } else { c };
                c.out(DType::Float, &shape, n).run_f32(kernel, if alpha { 3 } else { 2 })
            };
            let t1 = binary(&x, &[3.0], &[], portable::binary::add_out, true);
            let t3 = unary(&unary(&t1, Some(0.0), None), None, Some(6.0));
            let t4 = binary(&x, &t3, &shape, portable::binary::mul_out, false);
            let swish = binary(&t4, &[6.0], &[], portable::binary::div_out, false);
            let sigmoid = binary(&t3, &[6.0], &[], portable::binary::div_out, false);
            for (kernel, want) in [(hardswish as KernelFn, swish), (hardsigmoid as KernelFn, sigmoid)] {
                let call = Call::new()
                    .tensor(&shape, &x)
                    .tensor(&[], &[3.0f32])
                    .int(0)
                    .none()
                    .none()
                    .int(6)
                    .tensor(&[], &[6.0f32])
                    .out(DType::Float, &shape, n);
                let got = call.run_f32(kernel, 7);
                let same = got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()));
                assert!(same && got.len() == want.len(), "n={n}: {got:?} vs {want:?}");
            }
        }
    }
}

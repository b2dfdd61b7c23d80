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
//!
//! [`lstm_cell`] takes the place of the ten calls `nn.LSTM` exports per time step after its gate
//! pre-activations: positions `gates`, `c`, `c_out`, `h_out`.

use super::conv::convolution_clamped;
use super::elementwise::{clamp_like_portable, map_f32, sigmoid_dispatch, tanh_dispatch};
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

/// `aten::addmm.out` then ReLU: the arguments of `addmm.out`, `out` the ReLU's output.
pub fn addmm_relu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::linalg::addmm_clamped(ctx, args, false, 0.0, f32::INFINITY)
}

/// [`linear`] then ReLU: the arguments of `addmm.out` with the weight untransposed, `out` the
/// ReLU's output.
pub fn linear_relu(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::linalg::addmm_clamped(ctx, args, true, 0.0, f32::INFINITY)
}

/// `aten::cat.out` then `aten::mean.out` over its result: see [`super::reduce::mean_of_cat`].
pub fn mean_of_cat(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    super::reduce::mean_of_cat(ctx, args)
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

/// Gate elements [`lstm_cell`] evaluates at a time (stack buffers of this size).
const LSTM_CHUNK: usize = 64;

/// One LSTM time step after its gate pre-activations, as `nn.LSTM` exports it:
/// `split_with_sizes_copy(gates, [H; 4], -1)` into `i, f, g, o`, then `sigmoid(i)`, `sigmoid(f)`,
/// `tanh(g)`, `sigmoid(o)`, `c_out = sigmoid(f) · c + sigmoid(i) · tanh(g)`,
/// `h_out = sigmoid(o) · tanh(c_out)`. Positions: `gates` (`[.., 4H]`), `c`, `c_out`, `h_out`
/// (`[.., H]`), all contiguous float32 (the engine checks at load). The sigmoids and tanhs are the
/// optimized kernels' slice functions and the products and sum single IEEE operations, so results
/// are bit-identical to the ten calls; per LSTM step those were ten dispatches on 32-element
/// tensors, most of the step's time.
pub fn lstm_cell(_ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (gates, c) = (args.tensor(0)?, args.tensor(1)?);
    let hidden = c.sizes().last().copied().unwrap_or(1);
    let rows = c.numel().checked_div(hidden).unwrap_or(0);
    let layout = KernelError::ShapeMismatch { arg: 0, reason: "LSTM gates must be [.., 4H] for a state [.., H]" };
    if gates.sizes().last().copied() != hidden.checked_mul(4) || gates.numel() != c.numel().saturating_mul(4) {
        return Err(layout);
    }
    let sizes = c.sizes();
    let (g, c) = (gates.data::<f32>()?, c.data::<f32>()?);
    let mut c_out = args.tensor_mut(2)?;
    c_out.resize(sizes)?;
    let mut h_out = args.tensor_mut(3)?;
    h_out.resize(sizes)?;
    let (c_new, h_new) = (c_out.data_mut::<f32>()?, h_out.data_mut::<f32>()?);
    if c.len() != rows * hidden || c_new.len() != c.len() || h_new.len() != c.len() || g.len() != 4 * c.len() {
        return Err(layout);
    }
    let [mut i, mut f, mut t, mut o, mut tc] = [[0f32; LSTM_CHUNK]; 5];
    for r in 0..rows {
        let row_gates = &g[4 * hidden * r..4 * hidden * (r + 1)];
        for j0 in (0..hidden).step_by(LSTM_CHUNK) {
            let n = LSTM_CHUNK.min(hidden - j0);
            let gate = |k: usize| &row_gates[k * hidden + j0..k * hidden + j0 + n];
            sigmoid_dispatch::<false>(gate(0), &mut i[..n]);
            sigmoid_dispatch::<false>(gate(1), &mut f[..n]);
            tanh_dispatch(gate(2), &mut t[..n]);
            sigmoid_dispatch::<false>(gate(3), &mut o[..n]);
            let at = r * hidden + j0;
            let (c_prev, c_next) = (&c[at..at + n], &mut c_new[at..at + n]);
            for k in 0..n {
                c_next[k] = f[k] * c_prev[k] + i[k] * t[k];
            }
            tanh_dispatch(c_next, &mut tc[..n]);
            for (h, (o, tc)) in h_new[at..at + n].iter_mut().zip(o.iter().zip(&tc)) {
                *h = o * tc;
            }
        }
    }
    Ok(())
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

    /// The fused LSTM step against the optimized kernels the exporter's ten calls run (the split is
    /// a copy), bit for bit, for hidden sizes below, at and above the chunk and a lane multiple,
    /// one and several rows, with gate values past the exponential's range, signed zeros and NaN.
    #[test]
    fn lstm_cell_matches_the_ten_calls_bit_for_bit() {
        use super::super::elementwise::{add_out, mul_out, sigmoid_out, tanh_out};
        for (rows, hidden) in [(1, 32), (1, 5), (3, 70), (2, 64), (1, 129)] {
            let value = |i: usize, scale: f32| match i % 97 {
                0 => -0.0,
                1 => 40.0,
                2 => -95.0,
                3 if scale > 1.0 => f32::NAN,
                _ => ((i * 7919) % 1013) as f32 / 1013.0 * scale - scale / 2.0,
            };
            let gates: Vec<f32> = (0..rows * 4 * hidden).map(|i| value(i, 9.0)).collect();
            let c: Vec<f32> = (0..rows * hidden).map(|i| value(i + 13, 3.0)).collect();
            let shape = [rows, 1, hidden];
            let n = rows * hidden;
            let piece = |k: usize| -> Vec<f32> {
                (0..rows).flat_map(|r| gates[r * 4 * hidden + k * hidden..][..hidden].to_vec()).collect()
            };
            let unary = |x: &[f32], kernel: KernelFn| {
                Call::new().tensor(&shape, x).out(DType::Float, &shape, n).run_f32(kernel, 1)
            };
            let mul = |a: &[f32], b: &[f32]| {
                Call::new().tensor(&shape, a).tensor(&shape, b).out(DType::Float, &shape, n).run_f32(mul_out, 2)
            };
            let (i, f) = (unary(&piece(0), sigmoid_out), unary(&piece(1), sigmoid_out));
            let (g, o) = (unary(&piece(2), tanh_out), unary(&piece(3), sigmoid_out));
            let (fc, ig) = (mul(&f, &c), mul(&i, &g));
            let c_want = Call::new()
                .tensor(&shape, &fc)
                .tensor(&shape, &ig)
                .int(1)
                .out(DType::Float, &shape, n)
                .run_f32(add_out, 3);
            let h_want = mul(&o, &unary(&c_want, tanh_out));
            let (result, mut done) = Call::new()
                .tensor(&[rows, 1, 4 * hidden], &gates)
                .tensor(&shape, &c)
                .out(DType::Float, &shape, n)
                .out(DType::Float, &shape, n)
                .run(lstm_cell);
            result.unwrap();
            let same = |got: &[f32], want: &[f32]| {
                got.len() == want.len()
                    && got.iter().zip(want).all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()))
            };
            assert!(same(&done.tensor::<f32>(2).1, &c_want), "c_out, {rows} rows of {hidden}");
            assert!(same(&done.tensor::<f32>(3).1, &h_want), "h_out, {rows} rows of {hidden}");
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

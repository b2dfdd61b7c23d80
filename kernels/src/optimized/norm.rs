//! Layer norm of contiguous float32 rows: the portable kernel's arithmetic (f64, mean then the
//! centred sum of squares), on slices instead of its strided iterators and run-time dtype reads,
//! with each sum over eight partial sums (so it vectorizes; the portable kernel adds in element
//! order, one dependent f64 add per element). The f64 sums differ from the portable kernel's in
//! the last bits at most, which the f32 results almost never show. Everything else goes to the
//! portable kernel, which also reports the errors.

use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};

use super::contiguous;

/// `aten::native_layer_norm.out(Tensor input, SymInt[] normalized_shape, Tensor? weight,
/// Tensor? bias, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2)
/// -> (Tensor(a!), Tensor(b!), Tensor(c!))`
pub fn native_layer_norm_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    match fast_layer_norm(args) {
        Some(result) => result,
        None => portable::norm::native_layer_norm_out(ctx, args),
    }
}

/// `Σ f(x)` in f64 over eight interleaved partial sums (lane `i % 8`, then the lanes in order).
#[inline(always)]
fn sum8(xs: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let (body, rest) = xs.as_chunks::<8>();
    for chunk in body {
        for (acc, &v) in lanes.iter_mut().zip(chunk) {
            *acc += f(f64::from(v));
        }
    }
    for (acc, &v) in lanes.iter_mut().zip(rest) {
        *acc += f(f64::from(v));
    }
    lanes.iter().sum()
}

/// The fast case, or `None` (nothing borrowed mutably yet) for the portable kernel.
fn fast_layer_norm(args: &KernelArgs<'_>) -> Option<Result<(), KernelError>> {
    if ![0, 5, 6, 7].iter().all(|&a| contiguous(args, a, DType::Float)) {
        return None;
    }
    let x = args.tensor(0).ok()?;
    let normalized = args.int_list(1).ok()?.to_shape().ok()?;
    let eps = args.double(4).ok()?;
    let k = normalized.rank();
    if k == 0 || k > x.dim() || x.sizes()[x.dim() - k..] != normalized[..] {
        return None;
    }
    let row = normalized.numel()?;
    let param = |arg: usize| -> Option<Option<&[f32]>> {
        match args.opt_tensor(arg).ok()? {
            None => Some(None),
            Some(t) => {
                let ok = t.sizes() == &normalized[..] && t.dtype() == DType::Float && t.dim_order().is_contiguous();
                if ok { Some(Some(t.data::<f32>().ok()?.get(..row)?)) } else { None }
            }
        }
    };
    let (weight, bias) = (param(2)?, param(3)?);
    if row == 0 {
        return None;
    }
    let axis = x.dim() - k;
    Some((|| {
        let mut out = args.tensor_mut(5)?;
        let mut mean_out = args.tensor_mut(6)?;
        let mut rstd_out = args.tensor_mut(7)?;
        let mut stats_shape = x.shape();
        stats_shape.as_mut_slice()[axis..].fill(1);
        out.resize(x.sizes())?;
        mean_out.resize(&stats_shape)?;
        rstd_out.resize(&stats_shape)?;
        let short = |arg: usize| KernelError::ShapeMismatch { arg, reason: "tensor data shorter than its shape" };
        let rows = x.numel() / row;
        let xs = x.data::<f32>()?.get(..rows * row).ok_or(short(0))?;
        let o = out.data_mut::<f32>()?.get_mut(..rows * row).ok_or(short(5))?;
        let means = mean_out.data_mut::<f32>()?.get_mut(..rows).ok_or(short(6))?;
        let rstds = rstd_out.data_mut::<f32>()?.get_mut(..rows).ok_or(short(7))?;
        let rows = Rows { xs, out: o, means, rstds, row, eps, weight, bias };
        layer_norm_rows(rows);
        Ok(())
    })())
}

/// One layer norm's rows, checked: `xs` and `out` hold whole rows of `row` elements, `means` and
/// `rstds` one value per row, `weight` and `bias` `row` elements each.
struct Rows<'a> {
    xs: &'a [f32],
    out: &'a mut [f32],
    means: &'a mut [f32],
    rstds: &'a mut [f32],
    row: usize,
    eps: f64,
    weight: Option<&'a [f32]>,
    bias: Option<&'a [f32]>,
}

widest_simd! {
    /// Normalizes `rows` on the widest SIMD level this CPU has. Every level computes the same
    /// operations in the same order (the partial sums fixed by `sum8`), so the results are the
    /// same bits; AVX-512 runs the f64 arithmetic eight lanes wide instead of SSE2's two
    /// (transformer_layer's two layer norms of 16 rows of 64 took 1.2 µs each).
    fn layer_norm_rows(rows: Rows<'_>) => layer_norm_rows_with
}

#[inline(always)]
fn layer_norm_rows_with(rows: Rows<'_>) {
    let Rows { xs, out: o, means, rstds, row, eps, weight, bias } = rows;
    let n = row as f64;
    for (((xr, or), m), r) in xs.chunks_exact(row).zip(o.chunks_exact_mut(row)).zip(means).zip(rstds) {
        let mean = sum8(xr, |v| v) / n;
        let var = sum8(xr, |v| (v - mean) * (v - mean)) / n;
        // Not `max`: a NaN variance (a row holding inf or NaN) must stay NaN.
        let var = if var < 0.0 { 0.0 } else { var };
        let rstd = 1.0 / (var + eps).sqrt();
        *m = mean as f32;
        *r = rstd as f32;
        // One loop per case, so that each vectorizes (optional parameters looked up per
        // element took 1.8 µs for transformer_layer's 16 rows of 64). In f64 like the
        // statistics: rows far from zero lose digits in `x - mean` in f32.
        let norm = |v: f32| (f64::from(v) - mean) * rstd;
        match (weight, bias) {
            (Some(w), Some(b)) => {
                for (((dst, &v), &w), &b) in or.iter_mut().zip(xr).zip(w).zip(b) {
                    *dst = (norm(v) * f64::from(w) + f64::from(b)) as f32;
                }
            }
            (Some(w), None) => {
                for ((dst, &v), &w) in or.iter_mut().zip(xr).zip(w) {
                    *dst = (norm(v) * f64::from(w)) as f32;
                }
            }
            (None, Some(b)) => {
                for ((dst, &v), &b) in or.iter_mut().zip(xr).zip(b) {
                    *dst = (norm(v) + f64::from(b)) as f32;
                }
            }
            (None, None) => {
                for (dst, &v) in or.iter_mut().zip(xr) {
                    *dst = norm(v) as f32;
                }
            }
        }
    }
}

/// `aten::_native_batch_norm_legit_no_training.out` (inference batch norm, the form a batch norm
/// takes when no convolution precedes it to fold into: densenet's normalise-then-convolve
/// layers, and every batch norm of a model exported channels-last, which the engine does not
/// fold) on f32 tensors, contiguous or (4-D, input and output alike) channels-last; anything else
/// to the portable kernel.
pub fn batch_norm_no_training_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    match fast_batch_norm(args) {
        Some(result) => result,
        None => portable::norm::native_batch_norm_legit_no_training_out(ctx, args),
    }
}

/// Channels whose batch norm coefficients a channels-last batch norm keeps at a time (4 KiB of
/// stack); most layers have at most this many, mobilenet_v2's widest 1280 (five passes).
const CHANNEL_BLOCK: usize = 256;

/// The fast case, or `None` (nothing borrowed mutably yet) for the portable kernel.
fn fast_batch_norm(args: &KernelArgs<'_>) -> Option<Result<(), KernelError>> {
    let x = args.tensor(0).ok()?;
    // Channels innermost: `[N, H, W, C]` in memory, each pixel's channels one run.
    let channels_last = x.dim() == 4
        && x.dtype() == DType::Float
        && x.dim_order().is_channels_last()
        && args.tensor_dtype(7).is_ok_and(|d| d == DType::Float)
        && args.tensor_dim_order(7).is_ok_and(|o| o.is_channels_last());
    if !channels_last && (!contiguous(args, 0, DType::Float) || !contiguous(args, 7, DType::Float)) {
        return None;
    }
    if x.dim() < 2 {
        return None;
    }
    let channels = x.sizes()[1];
    let per_channel = |arg: usize, optional: bool| -> Option<Option<&[f32]>> {
        match args.opt_tensor(arg).ok()? {
            None if optional => Some(None),
            Some(t) if t.dim() == 1 && t.sizes()[0] == channels && t.dtype() == DType::Float => {
                Some(Some(t.data::<f32>().ok()?.get(..channels)?))
            }
            _ => None,
        }
    };
    let (weight, bias) = (per_channel(1, true)?, per_channel(2, true)?);
    let (mean, var) = (per_channel(3, false)??, per_channel(4, false)??);
    let eps = args.double(6).ok()?;
    if args.tensor_dtype(8).ok()? != DType::Float || args.tensor_dtype(9).ok()? != DType::Float {
        return None;
    }
    let batch = x.sizes()[0];
    let plane: usize = x.sizes()[2..].iter().product();
    Some((|| {
        let mut out = args.tensor_mut(7)?;
        out.resize(x.sizes())?;
        // Inference returns empty statistics.
        args.tensor_mut(8)?.resize(&[0])?;
        args.tensor_mut(9)?.resize(&[0])?;
        let short = |arg: usize| KernelError::ShapeMismatch { arg, reason: "tensor data shorter than its shape" };
        let len = batch.checked_mul(channels).and_then(|l| l.checked_mul(plane)).ok_or(short(0))?;
        let xs = x.data::<f32>()?.get(..len).ok_or(short(0))?;
        let os = out.data_mut::<f32>()?.get_mut(..len).ok_or(short(7))?;
        if plane == 0 || channels == 0 {
            return Ok(());
        }
        // The portable kernel's arithmetic, so the results are its bits: `x * alpha + beta` in
        // f64 (PyTorch's form), here in loops that vectorize.
        let coefficients = |ch: usize| {
            let invstd = 1.0 / (f64::from(var[ch]) + eps).sqrt();
            let alpha = invstd * weight.map_or(1.0, |w| f64::from(w[ch]));
            (alpha, bias.map_or(0.0, |b| f64::from(b[ch])) - f64::from(mean[ch]) * alpha)
        };
        if channels_last {
            // Each pixel's channels are one run: the coefficients of up to CHANNEL_BLOCK channels
            // at a time, on the stack (nothing allocated while a method runs), across every pixel.
            for c0 in (0..channels).step_by(CHANNEL_BLOCK) {
                let run = c0..(c0 + CHANNEL_BLOCK).min(channels);
                let mut alpha = [0f64; CHANNEL_BLOCK];
                let mut beta = [0f64; CHANNEL_BLOCK];
                for ((a, b), ch) in alpha.iter_mut().zip(beta.iter_mut()).zip(run.clone()) {
                    (*a, *b) = coefficients(ch);
                }
                for (xp, op) in xs.chunks_exact(channels).zip(os.chunks_exact_mut(channels)) {
                    let (xp, op) = (&xp[run.clone()], &mut op[run.clone()]);
                    for (((o, &v), &a), &b) in op.iter_mut().zip(xp).zip(&alpha).zip(&beta) {
                        *o = (f64::from(v) * a + b) as f32;
                    }
                }
            }
            return Ok(());
        }
        for (i, (xp, op)) in xs.chunks_exact(plane).zip(os.chunks_exact_mut(plane)).enumerate() {
            let (alpha, beta) = coefficients(i % channels);
            for (o, &v) in op.iter_mut().zip(xp) {
                *o = (f64::from(v) * alpha + beta) as f32;
            }
        }
        Ok(())
    })())
}

/// Registers the fast normalisation kernels over the portable ones.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        (
            "aten::native_layer_norm.out(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2) -> (Tensor(a!), Tensor(b!), Tensor(c!))",
            portable::elementwise::FLOAT_DTYPES,
            native_layer_norm_out,
        ),
        (
            "aten::_native_batch_norm_legit_no_training.out(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor running_var, float momentum, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2) -> (Tensor(a!), Tensor(b!), Tensor(c!))",
            portable::elementwise::FLOAT_DTYPES,
            batch_norm_no_training_out,
        ),
    ];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::Call;

    /// The same bits as the portable kernel: batches, planes of one element and of many, with
    /// and without weight and bias, a zero variance, inf and NaN inputs; contiguous and
    /// channels-last (4-D).
    #[test]
    fn batch_norm_matches_portable_bit_for_bit() {
        let cases = [
            (&[2usize, 3, 4, 5][..], true, false),
            (&[1, 8, 1, 1][..], false, false),
            (&[3, 5][..], true, false),
            (&[1, 4, 7][..], false, false),
            (&[2, 3, 4, 5][..], true, true),
            (&[1, 19, 3, 2][..], false, true),
            // Two blocks of channels (CHANNEL_BLOCK).
            (&[1, 300, 2, 3][..], true, true),
        ];
        for (sizes, affine, channels_last) in cases {
            let order: Option<&[u8]> = channels_last.then_some(&[0, 2, 3, 1]);
            let (c, n) = (sizes[1], sizes.iter().product::<usize>());
            let mut x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 / 37.0 - 13.0).collect();
            x[0] = f32::INFINITY;
            if n > 3 {
                x[3] = f32::NAN;
            }
            let param =
                |seed: usize| -> Vec<f32> { (0..c).map(|i| ((i * 31 + seed) % 17) as f32 / 7.0 - 1.0).collect() };
            let mean = param(1);
            let mut var: Vec<f32> = param(2).iter().map(|v| v.abs()).collect();
            var[0] = 0.0;
            let run = |kernel: KernelFn| {
                let call = Call::new().tensor_ordered(sizes, order, &x);
                let call =
                    if affine { call.tensor(&[c], &param(3)).tensor(&[c], &param(4)) } else { call.none().none() };
                let call = call.tensor(&[c], &mean).tensor(&[c], &var).double(0.1).double(1e-5);
                let call = match order {
                    Some(order) => call.out_ordered(DType::Float, sizes, order, n),
                    None => call.out(DType::Float, sizes, n),
                };
                let call = call.out(DType::Float, &[0], 1).out(DType::Float, &[0], 1);
                let (r, mut done) = call.run(kernel);
                r.expect("batch norm");
                done.tensor::<f32>(7)
            };
            let (got, want) =
                (run(batch_norm_no_training_out), run(portable::norm::native_batch_norm_legit_no_training_out));
            assert_eq!(got.0, want.0);
            assert!(got.1.iter().zip(&want.1).all(|(g, w)| g.to_bits() == w.to_bits()), "{sizes:?}");
        }
    }

    /// Within 1 ulp-scale (2e-7 relative, 1e-7 absolute) of the portable kernel on rows of 1 to
    /// 300 elements (odd lengths, the eight-lane remainder), with weight and bias or without,
    /// rows holding inf or NaN (NaN out), and a large common offset (the centred variance).
    #[test]
    fn layer_norm_matches_portable() {
        for (rows, row, affine, offset) in
            [(3, 1, true, 0.0), (4, 7, true, 0.0), (16, 64, true, 0.0), (2, 300, false, 1e4), (5, 33, true, 3.0)]
        {
            let n = rows * row;
            let mut x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 / 101.0 - 5.0 + offset).collect();
            if rows > 3 {
                x[row] = f32::INFINITY;
                x[2 * row + row / 2] = f32::NAN;
            }
            let w: Vec<f32> = (0..row).map(|i| 0.5 + i as f32 / row as f32).collect();
            let b: Vec<f32> = (0..row).map(|i| i as f32 * 0.01 - 0.3).collect();
            let call = || {
                let c = Call::new().tensor(&[rows, row], &x).ints(&[row as i64]);
                let c = if affine { c.tensor(&[row], &w).tensor(&[row], &b) } else { c.none().none() };
                c.double(1e-5).out(DType::Float, &[rows, row], n).out(DType::Float, &[rows, 1], rows).out(
                    DType::Float,
                    &[rows, 1],
                    rows,
                )
            };
            let run = |kernel: KernelFn| {
                let (r, mut done) = call().run(kernel);
                r.expect("layer norm");
                [done.tensor::<f32>(5).1, done.tensor::<f32>(6).1, done.tensor::<f32>(7).1]
            };
            let (got, want) = (run(native_layer_norm_out), run(portable::norm::native_layer_norm_out));
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.len(), w.len());
                for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
                    let ok = g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= 2e-7 * w.abs() + 1e-7;
                    assert!(ok, "rows {rows} x {row}, output {k} at {i}: {g} vs portable {w}");
                }
            }
        }
    }
}

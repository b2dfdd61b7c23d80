//! Normalisation: `native_layer_norm`, `native_group_norm` and the `_native_batch_norm_legit`
//! family, with every output PyTorch returns (mean and reciprocal standard deviation, or the
//! empty placeholders of inference-mode batch norm).
//!
//! Statistics are accumulated in f64 (two passes: mean, then the centred sum of squares), which
//! is at least as precise as PyTorch's float accumulation; the normalised value is formed in f64
//! and rounded once to the output dtype. Parameters (weight, bias, running statistics) may be of
//! any floating dtype, as PyTorch allows f32 parameters with 16-bit inputs.

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{FLOAT_DTYPES, Src};
use crate::portable::layout::is_dense;
use crate::portable::spatial::{dispatch_float, short, to_size};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, StridedIter};
use crate::tensor::{Tensor, TensorMut};

/// Checks that `t` is a floating tensor (input, output or parameter of a normalisation).
fn check_float(dtype: DType, arg: usize) -> Result<(), KernelError> {
    if dtype.is_floating_point() { Ok(()) } else { Err(KernelError::UnsupportedDtype { arg, dtype }) }
}

/// An optional per-channel (or per-normalised-element) parameter, read as f64.
#[derive(Clone, Copy)]
struct Param<'a> {
    src: Option<Src<'a>>,
    default: f64,
}

impl<'a> Param<'a> {
    /// `t` (checked to be floating with `len` elements), or `default` everywhere when absent.
    fn new(t: Option<Tensor<'a>>, len: usize, default: f64) -> Result<Param<'a>, KernelError> {
        let Some(t) = t else { return Ok(Param { src: None, default }) };
        check_float(t.dtype(), t.arg())?;
        if t.numel() != len {
            return Err(KernelError::ShapeMismatch {
                arg: t.arg(),
                reason: "parameter has the wrong number of elements",
            });
        }
        Ok(Param { src: Some(Src::of(&t)?), default })
    }

    /// Element `i`; `i` is below the length checked in `new`.
    #[inline]
    fn get(&self, i: usize) -> f64 {
        self.src.map_or(self.default, |s| s.get::<f64>(i))
    }
}

/// Writes `v` at element offset `at` of a floating output (any float dtype).
fn store(out: &mut TensorMut<'_>, at: usize, v: f64) -> Result<(), KernelError> {
    let arg = out.arg();
    let dtype = out.dtype();
    dispatch_float!(dtype, T, _C => {
        *out.data_mut::<T>()?.get_mut(at).ok_or(short(arg))? = T::from_f64(v);
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype }))
}

/// Reads the element at offset `at` of a floating tensor.
fn load(t: &Tensor<'_>, at: usize) -> Result<f64, KernelError> {
    if at >= t.numel() {
        return Err(short(t.arg()));
    }
    Ok(Src::of(t)?.get::<f64>(at))
}

/// `1 / sqrt(var + eps)`, clamping a rounding-negative variance to zero as PyTorch does.
fn rstd(var: f64, eps: f64) -> f64 {
    // Not `max`: a NaN variance (a row holding inf or NaN) must stay NaN.
    let var = if var < 0.0 { 0.0 } else { var };
    1.0 / (var + eps).sqrt()
}

/// Mean and population variance of the `count` elements of `x` at `base + o` for the offsets `o`
/// that `offsets()` walks (twice: mean, then the centred sum of squares).
fn moments<I: Iterator<Item = usize>>(x: Src<'_>, base: usize, offsets: impl Fn() -> I, count: usize) -> (f64, f64) {
    let n = count as f64;
    let mean = offsets().map(|o| x.get::<f64>(base + o)).sum::<f64>() / n;
    let var = offsets()
        .map(|o| {
            let d = x.get::<f64>(base + o) - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, var)
}

/// Splits a shape at `at` into (leading, trailing) sizes and the matching strides.
fn split(sizes: &[usize], strides: &[usize], at: usize) -> ([Shape; 2], [Shape; 2]) {
    let part = |s: &[usize]| Shape::new(s).unwrap_or_default();
    ([part(&sizes[..at]), part(&sizes[at..])], [part(&strides[..at]), part(&strides[at..])])
}

/// `aten::native_layer_norm.out(Tensor input, SymInt[] normalized_shape, Tensor? weight,
/// Tensor? bias, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2)
/// -> (Tensor(a!), Tensor(b!), Tensor(c!))`
///
/// Normalises over the trailing `normalized_shape` dims; `out1` (mean) and `out2` (rstd) have the
/// input's leading sizes followed by ones.
pub fn native_layer_norm_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let normalized = args.int_list(1)?.to_shape()?;
    let eps = args.double(4)?;
    let mut out = args.tensor_mut(5)?;
    let mut mean_out = args.tensor_mut(6)?;
    let mut rstd_out = args.tensor_mut(7)?;
    check_float(x.dtype(), 0)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 5, expected: x.dtype(), found: out.dtype() });
    }
    check_float(mean_out.dtype(), 6)?;
    check_float(rstd_out.dtype(), 7)?;
    let k = normalized.rank();
    if k == 0 || k > x.dim() {
        return Err(KernelError::InvalidArgument {
            arg: 1,
            reason: "normalized_shape must have 1 to input.dim() sizes",
        });
    }
    let axis = x.dim() - k;
    if x.sizes()[axis..] != normalized[..] {
        return Err(KernelError::ShapeMismatch {
            arg: 1,
            reason: "normalized_shape differs from the input's last dims",
        });
    }
    let row = normalized.numel().ok_or(KernelError::Overflow { arg: 1, what: "normalized size" })?;
    for arg in [2, 3] {
        if let Some(t) = args.opt_tensor(arg)?
            && t.sizes() != &normalized[..]
        {
            return Err(KernelError::ShapeMismatch { arg, reason: "weight and bias must have normalized_shape" });
        }
    }
    let weight = Param::new(args.opt_tensor(2)?, row, 1.0)?;
    let bias = Param::new(args.opt_tensor(3)?, row, 0.0)?;
    let mut stats_shape = x.shape();
    stats_shape.as_mut_slice()[axis..].fill(1);
    out.resize(x.sizes())?;
    mean_out.resize(&stats_shape)?;
    rstd_out.resize(&stats_shape)?;
    let ([lead, trail], [x_lead, x_trail]) = split(x.sizes(), x.strides(), axis);
    let ostr = out.strides();
    let (o_lead, o_trail) =
        (Shape::new(&ostr[..axis]).unwrap_or_default(), Shape::new(&ostr[axis..]).unwrap_or_default());
    let (ms, rs) = (mean_out.strides(), rstd_out.strides());
    let stats_stride = |s: &Shape| Shape::new(&s[..axis]).unwrap_or_default();
    let src = Src::of(&x)?;
    // The weight is indexed by its own layout within the normalised block.
    let w_strides = args.opt_tensor(2)?.map(|t| *t.strides()).unwrap_or_else(|| contiguous_strides(&trail));
    let b_strides = args.opt_tensor(3)?.map(|t| *t.strides()).unwrap_or_else(|| contiguous_strides(&trail));
    let dtype = x.dtype();
    let lead_iter = StridedIter::new(&lead, [x_lead, o_lead, stats_stride(&ms), stats_stride(&rs)]);
    dispatch_float!(dtype, T, _C => {
        for [xb, ob, mb, rb] in lead_iter {
            let inner = || StridedIter::new(&trail, [x_trail]).map(|[o]| o);
            let (mean, var) = moments(src, xb, inner, row);
            let r = if row == 0 { f64::NAN } else { rstd(var, eps) };
            store(&mut mean_out, mb, mean)?;
            store(&mut rstd_out, rb, r)?;
            let o = out.data_mut::<T>()?;
            for [xo, oo, wo, bo] in StridedIter::new(&trail, [x_trail, o_trail, w_strides, b_strides]) {
                let v = (src.get::<f64>(xb + xo) - mean) * r * weight.get(wo) + bias.get(bo);
                *o.get_mut(ob + oo).ok_or(short(5))? = T::from_f64(v);
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Row-major strides of `sizes`.
fn contiguous_strides(sizes: &[usize]) -> Shape {
    crate::shape::strides_for(sizes, &crate::shape::DimOrder::contiguous(sizes.len()))
}

/// `aten::native_group_norm.out(Tensor input, Tensor? weight, Tensor? bias, SymInt N, SymInt C,
/// SymInt HxW, int group, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2)
/// -> (Tensor(a!), Tensor(b!), Tensor(c!))`
///
/// `input` is `[N, C, *]`; each sample's channels form `group` groups normalised together;
/// `out1` (mean) and `out2` (rstd) are `[N, group]`.
pub fn native_group_norm_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let (n, c, hxw, group) = (args.int(3)?, args.int(4)?, args.int(5)?, args.int(6)?);
    let eps = args.double(7)?;
    let mut out = args.tensor_mut(8)?;
    let mut mean_out = args.tensor_mut(9)?;
    let mut rstd_out = args.tensor_mut(10)?;
    check_float(x.dtype(), 0)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 8, expected: x.dtype(), found: out.dtype() });
    }
    check_float(mean_out.dtype(), 9)?;
    check_float(rstd_out.dtype(), 10)?;
    if x.dim() < 2 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "group norm expects an input of rank 2 or more" });
    }
    let (n, c, hxw) = (to_size(n, 3, "negative N")?, to_size(c, 4, "negative C")?, to_size(hxw, 5, "negative HxW")?);
    if x.sizes()[0] != n || x.sizes()[1] != c {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "input sizes differ from N and C" });
    }
    if n.checked_mul(c).and_then(|v| v.checked_mul(hxw)) != Some(x.numel()) {
        return Err(KernelError::ShapeMismatch { arg: 5, reason: "input has not N * C * HxW elements" });
    }
    if group <= 0 {
        return Err(KernelError::ValueOutOfRange { arg: 6, value: group, min: 1, max: i64::MAX });
    }
    let group = to_size(group, 6, "group")?;
    if c % group != 0 {
        return Err(KernelError::InvalidArgument { arg: 6, reason: "channels are not divisible by group" });
    }
    for arg in [1, 2] {
        if let Some(t) = args.opt_tensor(arg)?
            && (t.dim() != 1 || t.sizes()[0] != c)
        {
            return Err(KernelError::ShapeMismatch { arg, reason: "weight and bias must be 1-D of size C" });
        }
    }
    let weight = Param::new(args.opt_tensor(1)?, c, 1.0)?;
    let bias = Param::new(args.opt_tensor(2)?, c, 0.0)?;
    out.resize(x.sizes())?;
    mean_out.resize(&[n, group])?;
    rstd_out.resize(&[n, group])?;
    let per_group = c / group;
    let count = per_group * hxw;
    let (xs, os) = (x.strides(), out.strides());
    let ([_, spatial], [_, x_sp]) = split(x.sizes(), xs, 2);
    let o_sp = Shape::new(&os[2..]).unwrap_or_default();
    let (ms, rs) = (mean_out.strides(), rstd_out.strides());
    let src = Src::of(&x)?;
    let dtype = x.dtype();
    dispatch_float!(dtype, T, _C => {
        for b in 0..n {
            for g in 0..group {
                let channels = g * per_group..(g + 1) * per_group;
                // Offsets of every element of the group relative to the sample's start.
                let offsets = || {
                    channels.clone().flat_map(|ch| StridedIter::new(&spatial, [x_sp]).map(move |[o]| ch * xs[1] + o))
                };
                let (mean, var) = moments(src, b * xs[0], offsets, count);
                let r = rstd(var, eps);
                store(&mut mean_out, b * ms[0] + g * ms[1], mean)?;
                store(&mut rstd_out, b * rs[0] + g * rs[1], r)?;
                let o = out.data_mut::<T>()?;
                for ch in channels {
                    let (scale, shift) = (r * weight.get(ch), bias.get(ch));
                    let (xb, ob) = (b * xs[0] + ch * xs[1], b * os[0] + ch * os[1]);
                    for [xo, oo] in StridedIter::new(&spatial, [x_sp, o_sp]) {
                        let v = (src.get::<f64>(xb + xo) - mean) * scale + shift;
                        *o.get_mut(ob + oo).ok_or(short(8))? = T::from_f64(v);
                    }
                }
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Positions of the arguments of one batch-norm overload.
struct BatchNormArgs {
    weight: usize,
    bias: usize,
    /// Running mean and variance, when the overload has them.
    running: Option<(usize, usize)>,
    training: Option<usize>,
    momentum: usize,
    eps: usize,
    out: usize,
}

/// The input seen as `[N, C, rest]`: channel count and the strides to walk it.
struct ChannelLayout {
    batch: usize,
    channels: usize,
    rest: Shape,
    x_rest: Shape,
    o_rest: Shape,
    x_bc: [usize; 2],
    o_bc: [usize; 2],
}

impl ChannelLayout {
    fn new(x: &Tensor<'_>, out: &TensorMut<'_>) -> ChannelLayout {
        let (xs, os) = (x.strides(), out.strides());
        let rest = |s: &[usize]| Shape::new(s.get(2..).unwrap_or(&[])).unwrap_or_default();
        ChannelLayout {
            batch: x.sizes()[0],
            channels: x.sizes()[1],
            rest: rest(x.sizes()),
            x_rest: rest(xs),
            o_rest: rest(&os),
            x_bc: [xs[0], xs[1]],
            o_bc: [os[0], os[1]],
        }
    }

    /// Input offsets of every element of channel `ch`.
    fn channel_offsets(&self, ch: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.batch).flat_map(move |b| {
            let base = b * self.x_bc[0] + ch * self.x_bc[1];
            StridedIter::new(&self.rest, [self.x_rest]).map(move |[o]| base + o)
        })
    }
}

/// `out = (x - mean[c]) * invstd[c] * weight[c] + bias[c]`, with `stats(c) = (mean, invstd)`.
fn normalize_channels(
    x: &Tensor<'_>,
    out: &mut TensorMut<'_>,
    layout: &ChannelLayout,
    weight: Param<'_>,
    bias: Param<'_>,
    stats: impl Fn(usize) -> (f64, f64),
) -> Result<(), KernelError> {
    let arg = out.arg();
    let dtype = x.dtype();
    let inner = layout.rest.numel().unwrap_or(0);
    // Dense channel planes (contiguous input and output) take a slice loop.
    let dense = is_dense(&layout.rest, &layout.x_rest) && is_dense(&layout.rest, &layout.o_rest);
    dispatch_float!(dtype, T, _C => {
        let xd = x.data::<T>()?;
        let o = out.data_mut::<T>()?;
        for ch in 0..layout.channels {
            let (mean, invstd) = stats(ch);
            // PyTorch's form: x * alpha + beta.
            let alpha = invstd * weight.get(ch);
            let beta = bias.get(ch) - mean * alpha;
            for b in 0..layout.batch {
                let xb = b * layout.x_bc[0] + ch * layout.x_bc[1];
                let ob = b * layout.o_bc[0] + ch * layout.o_bc[1];
                if dense {
                    let (Some(xs), Some(os)) = (xd.get(xb..xb + inner), o.get_mut(ob..ob + inner)) else {
                        return Err(short(arg));
                    };
                    for (ov, &xv) in os.iter_mut().zip(xs) {
                        *ov = T::from_f64(xv.to_f64() * alpha + beta);
                    }
                    continue;
                }
                for [xo, oo] in StridedIter::new(&layout.rest, [layout.x_rest, layout.o_rest]) {
                    let xv = xd.get(xb + xo).ok_or(short(0))?.to_f64();
                    *o.get_mut(ob + oo).ok_or(short(arg))? = T::from_f64(xv * alpha + beta);
                }
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Checks a per-channel tensor: floating, 1-D, `channels` long.
fn check_channel_param(t: &Tensor<'_>, channels: usize) -> Result<(), KernelError> {
    check_float(t.dtype(), t.arg())?;
    if t.dim() != 1 || t.sizes()[0] != channels {
        return Err(KernelError::ShapeMismatch {
            arg: t.arg(),
            reason: "expected a 1-D tensor with one value per channel",
        });
    }
    Ok(())
}

/// The batch-norm overloads: inference with running statistics, or training with batch
/// statistics (updating the running ones when present).
fn batch_norm(args: &KernelArgs<'_>, pos: BatchNormArgs) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    check_float(x.dtype(), 0)?;
    if x.dim() < 2 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "batch norm expects an input of rank 2 or more" });
    }
    let channels = x.sizes()[1];
    let training = match pos.training {
        Some(arg) => args.bool(arg)?,
        None => false,
    };
    let momentum = args.double(pos.momentum)?;
    let eps = args.double(pos.eps)?;
    for arg in [pos.weight, pos.bias] {
        if let Some(t) = args.opt_tensor(arg)? {
            check_channel_param(&t, channels)?;
        }
    }
    let weight = Param::new(args.opt_tensor(pos.weight)?, channels, 1.0)?;
    let bias = Param::new(args.opt_tensor(pos.bias)?, channels, 0.0)?;
    let mut out = args.tensor_mut(pos.out)?;
    let mut save_mean = args.tensor_mut(pos.out + 1)?;
    let mut save_invstd = args.tensor_mut(pos.out + 2)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: pos.out, expected: x.dtype(), found: out.dtype() });
    }
    check_float(save_mean.dtype(), pos.out + 1)?;
    check_float(save_invstd.dtype(), pos.out + 2)?;
    out.resize(x.sizes())?;
    let layout = ChannelLayout::new(&x, &out);

    if !training {
        let Some((rm, rv)) = pos.running else {
            return Err(KernelError::InvalidArgument {
                arg: 3,
                reason: "running_mean must be defined in evaluation mode",
            });
        };
        let (running_mean, running_var) = (args.tensor(rm)?, args.tensor(rv)?);
        check_channel_param(&running_mean, channels)?;
        check_channel_param(&running_var, channels)?;
        // Inference returns empty statistics.
        save_mean.resize(&[0])?;
        save_invstd.resize(&[0])?;
        let (mean, var) = (Src::of(&running_mean)?, Src::of(&running_var)?);
        return normalize_channels(&x, &mut out, &layout, weight, bias, |ch| {
            (mean.get::<f64>(ch), 1.0 / (var.get::<f64>(ch) + eps).sqrt())
        });
    }

    save_mean.resize(&[channels])?;
    save_invstd.resize(&[channels])?;
    let count = layout.batch * layout.rest.numel().unwrap_or(0);
    let src = Src::of(&x)?;
    let (sm_stride, si_stride) = (save_mean.strides()[0], save_invstd.strides()[0]);
    let mut running = match pos.running {
        Some((rm, rv)) => {
            let (running_mean, running_var) = (args.tensor_mut(rm)?, args.tensor_mut(rv)?);
            check_channel_param(&running_mean.as_ref(), channels)?;
            check_channel_param(&running_var.as_ref(), channels)?;
            Some((running_mean, running_var))
        }
        None => None,
    };
    // Bessel's correction for the running variance (n / (n - 1); NaN or inf for n = 1, as in
    // PyTorch's var_sum / (n - 1)).
    let unbiased = count as f64 / (count as f64 - 1.0);
    for ch in 0..channels {
        let (mean, var) = moments(src, 0, || layout.channel_offsets(ch), count);
        // PyTorch's InvStd: zero variance with zero eps gives 0, not inf.
        let invstd = if var == 0.0 && eps == 0.0 { 0.0 } else { 1.0 / (var + eps).sqrt() };
        store(&mut save_mean, ch * sm_stride, mean)?;
        store(&mut save_invstd, ch * si_stride, invstd)?;
        if let Some((running_mean, running_var)) = &mut running {
            let old_mean = load(&running_mean.as_ref(), ch)?;
            let old_var = load(&running_var.as_ref(), ch)?;
            store(running_mean, ch, momentum * mean + (1.0 - momentum) * old_mean)?;
            store(running_var, ch, momentum * var * unbiased + (1.0 - momentum) * old_var)?;
        }
    }
    let (sm, si) = (save_mean.as_ref(), save_invstd.as_ref());
    let (means, invstds) = (Src::of(&sm)?, Src::of(&si)?);
    normalize_channels(&x, &mut out, &layout, weight, bias, |ch| {
        (means.get::<f64>(ch * sm_stride), invstds.get::<f64>(ch * si_stride))
    })
}

/// `aten::_native_batch_norm_legit_no_training.out(Tensor input, Tensor? weight, Tensor? bias,
/// Tensor running_mean, Tensor running_var, float momentum, float eps, *, Tensor(a!) out0,
/// Tensor(b!) out1, Tensor(c!) out2) -> (Tensor(a!), Tensor(b!), Tensor(c!))`
///
/// Inference batch norm over dim 1; `out1` and `out2` are resized to `[0]` as PyTorch returns.
pub fn native_batch_norm_legit_no_training_out(
    _: &mut KernelContext,
    args: &KernelArgs<'_>,
) -> Result<(), KernelError> {
    let pos = BatchNormArgs { weight: 1, bias: 2, running: Some((3, 4)), training: None, momentum: 5, eps: 6, out: 7 };
    batch_norm(args, pos)
}

/// `aten::_native_batch_norm_legit.out(Tensor input, Tensor? weight, Tensor? bias,
/// Tensor(a!) running_mean, Tensor(b!) running_var, bool training, float momentum, float eps, *,
/// Tensor(d!) out, Tensor(e!) save_mean, Tensor(f!) save_invstd) -> (Tensor(d!), Tensor(e!),
/// Tensor(f!))`
///
/// Training mode normalises with the batch statistics, returns them (mean, 1/sqrt(var + eps))
/// and updates the running statistics in place (the variance with Bessel's correction).
pub fn native_batch_norm_legit_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let pos =
        BatchNormArgs { weight: 1, bias: 2, running: Some((3, 4)), training: Some(5), momentum: 6, eps: 7, out: 8 };
    batch_norm(args, pos)
}

/// `aten::_native_batch_norm_legit.no_stats_out(Tensor input, Tensor? weight, Tensor? bias,
/// bool training, float momentum, float eps, *, Tensor(a!) out, Tensor(b!) save_mean,
/// Tensor(c!) save_invstd) -> (Tensor(a!), Tensor(b!), Tensor(c!))`
///
/// Batch statistics only; `training = false` is refused, as PyTorch does.
pub fn native_batch_norm_legit_no_stats_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let pos = BatchNormArgs { weight: 1, bias: 2, running: None, training: Some(3), momentum: 4, eps: 5, out: 6 };
    batch_norm(args, pos)
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::native_layer_norm.out(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2) -> (Tensor(a!), Tensor(b!), Tensor(c!))",
            FLOAT_DTYPES,
            native_layer_norm_out,
        ),
        (
            "aten::native_group_norm.out(Tensor input, Tensor? weight, Tensor? bias, SymInt N, SymInt C, SymInt HxW, int group, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2) -> (Tensor(a!), Tensor(b!), Tensor(c!))",
            FLOAT_DTYPES,
            native_group_norm_out,
        ),
        (
            "aten::_native_batch_norm_legit_no_training.out(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor running_var, float momentum, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2) -> (Tensor(a!), Tensor(b!), Tensor(c!))",
            FLOAT_DTYPES,
            native_batch_norm_legit_no_training_out,
        ),
        (
            "aten::_native_batch_norm_legit.out(Tensor input, Tensor? weight, Tensor? bias, Tensor(a!) running_mean, Tensor(b!) running_var, bool training, float momentum, float eps, *, Tensor(d!) out, Tensor(e!) save_mean, Tensor(f!) save_invstd) -> (Tensor(d!), Tensor(e!), Tensor(f!))",
            FLOAT_DTYPES,
            native_batch_norm_legit_out,
        ),
        (
            "aten::_native_batch_norm_legit.no_stats_out(Tensor input, Tensor? weight, Tensor? bias, bool training, float momentum, float eps, *, Tensor(a!) out, Tensor(b!) save_mean, Tensor(c!) save_invstd) -> (Tensor(a!), Tensor(b!), Tensor(c!))",
            FLOAT_DTYPES,
            native_batch_norm_legit_no_stats_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::portable::test_support::{Call, assert_close};

    /// `x[i] = (i * 7 % 11) * 0.25 - 1`, shape `[2, 3, 2, 2]`.
    fn input() -> Vec<f32> {
        (0..24).map(|i| ((i * 7) % 11) as f32 * 0.25 - 1.0).collect()
    }

    #[test]
    fn training_batch_norm_matches_pytorch() {
        // torch.ops.aten._native_batch_norm_legit(x, w, b, rm, rv, True, 0.3, 1e-5)
        let (r, mut done) = Call::new()
            .tensor(&[2, 3, 2, 2], &input())
            .tensor(&[3], &[1.5f32, -0.5, 2.0])
            .tensor(&[3], &[0.1f32, 0.2, -0.3])
            .inout(&[3], &[0.5f32, -1.0, 0.25])
            .inout(&[3], &[1.0f32, 2.0, 0.5])
            .bool(true)
            .double(0.3)
            .double(1e-5)
            .out(DType::Float, &[2, 3, 2, 2], 24)
            .out(DType::Float, &[3], 3)
            .out(DType::Float, &[3], 3)
            .run(native_batch_norm_legit_out);
        r.unwrap();
        let out = [
            -2.5079358,
            0.66694254,
            -1.1472735,
            2.0276046,
            0.005449891,
            0.6971836,
            -0.51335037,
            0.17838332,
            -2.1740706,
            2.1987607,
            -0.3,
            -2.7987607,
            0.66694254,
            -1.1472735,
            2.0276046,
            0.2133885,
            0.6971836,
            -0.51335037,
            0.17838332,
            0.87011707,
            2.1987607,
            -0.3,
            -2.7987607,
            1.5740705,
        ];
        assert_close(&done.tensor::<f32>(8).1, &out, 1e-6);
        assert_close(&done.tensor::<f32>(9).1, &[0.4375, 0.21875, 0.0], 1e-6);
        assert_close(&done.tensor::<f32>(10).1, &[1.2094774, 1.3834674, 1.2493804], 1e-6);
        assert_close(&done.tensor::<f32>(3).1, &[0.48125, -0.634375, 0.175], 1e-6);
        assert_close(&done.tensor::<f32>(4).1, &[0.934375, 1.5791295, 0.56964284], 1e-6);
    }

    #[test]
    fn no_stats_batch_norm_matches_pytorch() {
        // torch.ops.aten._native_batch_norm_legit.no_stats(x, None, None, True, 0.3, 1e-5)
        let call = |training| {
            Call::new()
                .tensor(&[2, 3, 2, 2], &input())
                .none()
                .none()
                .bool(training)
                .double(0.3)
                .double(1e-5)
                .out(DType::Float, &[2, 3, 2, 2], 24)
                .out(DType::Float, &[3], 3)
                .out(DType::Float, &[3], 3)
        };
        let (r, mut done) = call(true).run(native_batch_norm_legit_no_stats_out);
        r.unwrap();
        let (sizes, out) = done.tensor::<f32>(6);
        assert_eq!(sizes, [2, 3, 2, 2]);
        assert_close(&out[..6], &[-1.7386239, 0.3779617, -0.8315157, 1.2850697, 0.38910022, -0.9943672], 1e-6);
        assert_close(&done.tensor::<f32>(8).1, &[1.2094774, 1.3834674, 1.2493804], 1e-6);
        // Evaluation mode needs running statistics.
        assert!(call(false).run(native_batch_norm_legit_no_stats_out).0.is_err());
    }

    #[test]
    fn bad_arguments_are_errors() {
        // Inference batch norm: channel count of a parameter, rank-1 input, integer input.
        let bn = |x: &[usize], c: usize, dtype: DType| {
            Call::new()
                .ramp(dtype, x, 0.5)
                .ramp(DType::Float, &[c], 1.0)
                .none()
                .ramp(DType::Float, &[c], 1.0)
                .ramp(DType::Float, &[c], 1.0)
                .double(0.1)
                .double(1e-5)
                .out(dtype, &vec![1; x.len()], 64)
                .out(dtype, &[0], 0)
                .out(dtype, &[0], 0)
                .run(native_batch_norm_legit_no_training_out)
                .0
        };
        assert!(bn(&[2, 3, 4], 3, DType::Float).is_ok());
        assert!(bn(&[2, 3, 4], 4, DType::Float).is_err());
        assert!(bn(&[6], 6, DType::Float).is_err());
        assert!(bn(&[2, 3, 4], 3, DType::Long).is_err());
        // Layer norm: normalized shape not matching, empty, longer than the rank.
        let ln = |normalized: &[i64]| {
            Call::new()
                .ramp(DType::Float, &[2, 3, 4], 0.5)
                .ints(normalized)
                .none()
                .none()
                .double(1e-5)
                .out(DType::Float, &[1, 1, 1], 24)
                .out(DType::Float, &[1, 1, 1], 24)
                .out(DType::Float, &[1, 1, 1], 24)
                .run(native_layer_norm_out)
                .0
        };
        assert!(ln(&[3, 4]).is_ok());
        assert!(ln(&[4, 3]).is_err());
        assert!(ln(&[]).is_err());
        assert!(ln(&[2, 2, 3, 4]).is_err());
        assert!(ln(&[-4]).is_err());
        // Group norm: groups not dividing C, N/C/HxW inconsistent with the input, zero groups.
        let gn = |n: i64, c: i64, hxw: i64, group: i64| {
            Call::new()
                .ramp(DType::Float, &[2, 4, 3], 0.5)
                .none()
                .none()
                .int(n)
                .int(c)
                .int(hxw)
                .int(group)
                .double(1e-5)
                .out(DType::Float, &[1, 1, 1], 24)
                .out(DType::Float, &[1, 1], 24)
                .out(DType::Float, &[1, 1], 24)
                .run(native_group_norm_out)
                .0
        };
        assert!(gn(2, 4, 3, 2).is_ok());
        for (n, c, hxw, group) in [(2, 4, 3, 3), (2, 4, 4, 2), (3, 4, 3, 2), (2, 4, 3, 0), (2, 4, 3, -1), (-2, 4, 3, 2)]
        {
            assert!(gn(n, c, hxw, group).is_err(), "{n} {c} {hxw} {group}");
        }
        assert!(gn(i64::MAX, i64::MAX, i64::MAX, i64::MAX).is_err());
    }
}

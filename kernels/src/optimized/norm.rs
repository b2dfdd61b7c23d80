//! Layer norm of contiguous float32 rows: the portable kernel's arithmetic (f64, mean then the
//! centred sum of squares, in element order, so results are bit-identical), on slices instead of
//! its strided iterators and run-time dtype reads. Everything else goes to the portable kernel,
//! which also reports the errors.

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
        let n = row as f64;
        for (((xr, or), m), r) in xs.chunks_exact(row).zip(o.chunks_exact_mut(row)).zip(means).zip(rstds) {
            let mean = xr.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = xr
                .iter()
                .map(|&v| {
                    let d = f64::from(v) - mean;
                    d * d
                })
                .sum::<f64>()
                / n;
            // Not `max`: a NaN variance (a row holding inf or NaN) must stay NaN.
            let var = if var < 0.0 { 0.0 } else { var };
            let rstd = 1.0 / (var + eps).sqrt();
            *m = mean as f32;
            *r = rstd as f32;
            for (j, (dst, &v)) in or.iter_mut().zip(xr).enumerate() {
                let w = weight.map_or(1.0, |w| f64::from(w[j]));
                let b = bias.map_or(0.0, |b| f64::from(b[j]));
                *dst = ((f64::from(v) - mean) * rstd * w + b) as f32;
            }
        }
        Ok(())
    })())
}

/// Registers the fast normalisation kernels over the portable ones.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [DType], KernelFn)] = &[(
        "aten::native_layer_norm.out(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps, *, Tensor(a!) out0, Tensor(b!) out1, Tensor(c!) out2) -> (Tensor(a!), Tensor(b!), Tensor(c!))",
        portable::elementwise::FLOAT_DTYPES,
        native_layer_norm_out,
    )];
    super::replace_table(r, table);
}

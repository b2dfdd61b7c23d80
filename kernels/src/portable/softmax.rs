//! `softmax` and `log_softmax` along one dimension.

use crate::args::KernelArgs;
use crate::dtype::Element;
use crate::error::KernelError;
use crate::portable::elementwise::Src;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{StridedIter, wrap_dim};

fn softmax_impl(args: &KernelArgs<'_>, log: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim =
        wrap_dim(args.int(1)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    if args.bool(2)? {
        return Err(KernelError::InvalidArgument { arg: 2, reason: "half_to_float is not supported on CPU" });
    }
    let mut out = args.tensor_mut(3)?;
    if !x.dtype().is_floating_point() || out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 3, expected: x.dtype(), found: out.dtype() });
    }
    out.resize(x.sizes())?;
    if x.numel() == 0 {
        return Ok(());
    }
    let (xs, ost) = (x.strides(), out.strides());
    let n = if x.dim() == 0 { 1 } else { x.sizes()[dim] };
    let (sx, so) = if x.dim() == 0 { (0, 0) } else { (xs[dim], ost[dim]) };
    // Walk every line along `dim`: the outer shape has `dim` collapsed to 1.
    let mut outer = x.shape();
    if x.dim() > 0 {
        outer.as_mut_slice()[dim] = 1;
    }
    let src = Src::of(&x)?;
    let arg = out.arg();
    crate::dispatch_dtype!(out.dtype(), D => {
        let o = out.data_mut::<D>()?;
        for [bi, bo] in StridedIter::new(&outer, [*xs, ost]) {
            let at = |k: usize| bi + k * sx;
            let max = (0..n).map(|k| src.get::<f64>(at(k))).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..n).map(|k| (src.get::<f64>(at(k)) - max).exp()).sum();
            for k in 0..n {
                let v = src.get::<f64>(at(k)) - max;
                let r = if log { v - sum.ln() } else { v.exp() / sum };
                *o.get_mut(bo + k * so).ok_or(KernelError::ShapeMismatch { arg, reason: "output too small" })? = D::from_f64(r);
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: out.dtype() }))
}

/// `aten::_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out)`
pub fn softmax_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    softmax_impl(args, false)
}

/// `aten::_log_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out)`
pub fn log_softmax_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    softmax_impl(args, true)
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::FLOAT_DTYPES;
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            softmax_out,
        ),
        (
            "aten::_log_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            log_softmax_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

//! `glu`: the gated linear unit, `a * sigmoid(b)` over the two halves of one dim.

use crate::args::KernelArgs;
use crate::dtype::Element;
use crate::error::KernelError;
use crate::portable::elementwise::FLOAT_DTYPES;
use crate::portable::spatial::{Acc, dispatch_float, for_each_index, offset_of, short};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::wrap_dim;

/// `aten::glu.out(Tensor self, int dim=-1, *, Tensor(a!) out) -> Tensor(a!)`
///
/// Splits `self` in halves `a`, `b` along `dim` (whose size must be even) and returns
/// `a * sigmoid(b)`, computed as PyTorch does: `a * (1 / (1 + exp(-b)))`.
pub fn glu_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(2)?;
    if !x.dtype().is_floating_point() {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: x.dtype() });
    }
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 2, expected: x.dtype(), found: out.dtype() });
    }
    if x.dim() == 0 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "glu does not support 0-dim tensors" });
    }
    let dim =
        wrap_dim(args.int(1)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    let full = x.sizes()[dim];
    if full % 2 != 0 {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "halving dimension must be even" });
    }
    let half = full / 2;
    let mut shape = x.shape();
    shape.as_mut_slice()[dim] = half;
    out.resize(&shape)?;
    let (xs, os) = (x.strides(), out.strides());
    let dtype = x.dtype();
    dispatch_float!(dtype, T, C => {
        let (src, o) = (x.data::<T>()?, out.data_mut::<T>()?);
        for_each_index(&shape, |index| {
            let at = offset_of(index, xs);
            let a = C::cast_from(*src.get(at).ok_or(short(0))?);
            let b = C::cast_from(*src.get(at + half * xs[dim]).ok_or(short(0))?);
            let v = a * (C::ONE / (C::ONE + (C::ZERO - b).exp()));
            *o.get_mut(offset_of(index, &os)).ok_or(short(2))? = T::cast_from(v);
            Ok(())
        })
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], KernelFn)] =
        &[("aten::glu.out(Tensor self, int dim=-1, *, Tensor(a!) out) -> Tensor(a!)", FLOAT_DTYPES, glu_out)];
    crate::portable::register_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::portable::test_support::Call;

    fn glu(x: &[usize], dim: i64, dtype: DType) -> Result<(), KernelError> {
        Call::new().ramp(dtype, x, 0.5).int(dim).out(dtype, &vec![1; x.len()], 64).run(glu_out).0
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(glu(&[2, 4], -1, DType::Float).is_ok());
        assert!(glu(&[2, 3], -1, DType::Float).is_err(), "odd size");
        assert!(glu(&[2, 4], 2, DType::Float).is_err(), "dim");
        assert!(glu(&[2, 4], i64::MIN, DType::Float).is_err(), "dim");
        assert!(glu(&[2, 4], -1, DType::Long).is_err(), "integer");
        assert!(glu(&[], 0, DType::Float).is_err(), "0-dim");
    }
}

//! Tensors made from scalars and shapes (`full`, `zeros`, `arange`, ...), plain copies (`clone`,
//! `_to_copy`, ...), `mean.dtype_out` and inference-mode `native_dropout`.

use crate::args::KernelArgs;
use crate::dtype::{Bool, DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{Operand, Src, broadcast_all, broadcast_strides_ordered};
use crate::portable::layout::strided_copy;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorMut};
use crate::value::Scalar;

/// A scalar converted to `T` as PyTorch's `Scalar::to<T>` does: floats truncate toward zero into
/// integers, anything nonzero is `true`.
fn scalar_to<T: Element>(s: Scalar) -> T {
    match s {
        Scalar::Bool(b) => T::from_bool(b),
        Scalar::Int(i) => T::from_i64(i),
        Scalar::Double(d) => {
            if T::DTYPE == DType::Bool {
                T::from_bool(d != 0.0)
            } else {
                T::from_f64(d)
            }
        }
    }
}

/// Writes `value` into every element of `out` (already sized).
fn fill_with(out: &mut TensorMut<'_>, value: Scalar) -> Result<(), KernelError> {
    let (arg, dtype) = (out.arg(), out.dtype());
    crate::dispatch_dtype!(dtype, D => {
        let v = scalar_to::<D>(value);
        out.data_mut::<D>()?.fill(v);
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype }))
}

/// A `MemoryFormat?` argument: the output's dim order decides the layout, so any known format
/// (contiguous, preserve, channels-last, channels-last-3d) is accepted.
fn check_memory_format(args: &KernelArgs<'_>, arg: usize) -> Result<(), KernelError> {
    match args.opt_int(arg)? {
        None | Some(0..=3) => Ok(()),
        Some(_) => Err(KernelError::InvalidArgument { arg, reason: "unknown memory format" }),
    }
}

/// `aten::fill.Scalar_out(Tensor self, Scalar value, *, Tensor(a!) out)`: `self`'s shape, every
/// element `value`.
pub fn fill_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let value = args.scalar(1)?;
    let mut out = args.tensor_mut(2)?;
    same_dtype(&x, &out)?;
    out.resize(x.sizes())?;
    fill_with(&mut out, value)
}

/// `aten::fill.Tensor_out(Tensor self, Tensor value, *, Tensor(a!) out)`: `value` must have zero
/// dimensions.
pub fn fill_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let value = args.tensor(1)?;
    if value.dim() != 0 {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "fill value must be a zero-dimensional tensor" });
    }
    let mut out = args.tensor_mut(2)?;
    same_dtype(&x, &out)?;
    out.resize(x.sizes())?;
    let value = if value.dtype().is_floating_point() {
        Scalar::Double(value.item::<f64>()?)
    } else if value.dtype() == DType::Bool {
        Scalar::Bool(value.item::<Bool>()?.get())
    } else {
        Scalar::Int(value.item::<i64>()?)
    };
    fill_with(&mut out, value)
}

/// `aten::full.out(SymInt[] size, Scalar fill_value, *, Tensor(a!) out)`
pub fn full_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let size = args.int_list(0)?.to_shape()?;
    let value = args.scalar(1)?;
    let mut out = args.tensor_mut(2)?;
    out.resize(&size)?;
    fill_with(&mut out, value)
}

/// `aten::full_like.out(Tensor self, Scalar fill_value, *, MemoryFormat? memory_format=None,
/// Tensor(a!) out)`: `self`'s shape, the output's dtype.
pub fn full_like_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let value = args.scalar(1)?;
    check_memory_format(args, 2)?;
    let mut out = args.tensor_mut(3)?;
    out.resize(x.sizes())?;
    fill_with(&mut out, value)
}

/// `aten::ones.out(SymInt[] size, *, Tensor(a!) out)`
pub fn ones_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let size = args.int_list(0)?.to_shape()?;
    let mut out = args.tensor_mut(1)?;
    out.resize(&size)?;
    fill_with(&mut out, Scalar::Int(1))
}

/// `aten::zeros.out(SymInt[] size, *, Tensor(a!) out)`
pub fn zeros_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let size = args.int_list(0)?.to_shape()?;
    let mut out = args.tensor_mut(1)?;
    out.resize(&size)?;
    fill_with(&mut out, Scalar::Int(0))
}

/// `aten::scalar_tensor.out(Scalar s, *, Tensor(a!) out)`: a zero-dimensional tensor.
pub fn scalar_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let value = args.scalar(0)?;
    let mut out = args.tensor_mut(1)?;
    out.resize(&[])?;
    fill_with(&mut out, value)
}

/// `aten::empty.out(SymInt[] size, *, MemoryFormat? memory_format=None, Tensor(a!) out)`: sizes
/// the output and leaves its contents as they are.
pub fn empty_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let size = args.int_list(0)?.to_shape()?;
    check_memory_format(args, 1)?;
    let mut out = args.tensor_mut(2)?;
    out.resize(&size)
}

/// `dim_order_ops::_empty_dim_order.out(int[] size, *, int[]? dim_order=None, Tensor(a!) out)`:
/// like `empty.out`; a given dim order must be the output's.
pub fn empty_dim_order_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let size = args.int_list(0)?.to_shape()?;
    let mut out = args.tensor_mut(2)?;
    if let Some(order) = args.opt_int_list(1)? {
        let same = order.len() == out.dim()
            && order.iter().zip(out.dim_order().iter()).all(|(a, &b)| a.is_ok_and(|a| a == i64::from(b)));
        if !same {
            return Err(KernelError::InvalidArgument {
                arg: 1,
                reason: "dim_order differs from the output's dim order",
            });
        }
    }
    out.resize(&size)
}

/// `start + step·i` for `i` in `0..len(out)`, after PyTorch's `arange`: the length is
/// `ceil((end - start) / step)` (in integer arithmetic for int64 outputs), values are computed in
/// the output's accumulation type (f64 for float32/float64, f32 for 16-bit floats, i64 for
/// integers).
fn arange(
    start: Scalar,
    end: Scalar,
    step: Scalar,
    out: &mut TensorMut<'_>,
    args_base: usize,
) -> Result<(), KernelError> {
    let dtype = out.dtype();
    let arg_step = args_base + 2;
    let (fstart, fend, fstep) = (start.to_f64(), end.to_f64(), step.to_f64());
    if !fstart.is_finite() || !fend.is_finite() {
        return Err(KernelError::InvalidArgument { arg: args_base, reason: "arange bounds must be finite" });
    }
    let integral = !dtype.is_floating_point();
    let (istart, iend, istep) = (start.to_i64(), end.to_i64(), step.to_i64());
    let size_f = if dtype == DType::Long {
        if istep == 0 {
            return Err(KernelError::InvalidArgument { arg: arg_step, reason: "step must be nonzero" });
        }
        if (istep > 0 && iend < istart) || (istep < 0 && iend > istart) {
            return Err(KernelError::InvalidArgument {
                arg: arg_step,
                reason: "upper bound and lower bound inconsistent with step sign",
            });
        }
        let sign = istep.signum();
        // (end - start + step - sign) / step, in i128 so that no i64 range overflows.
        let num = i128::from(iend) - i128::from(istart) + i128::from(istep) - i128::from(sign);
        (num / i128::from(istep)) as f64
    } else {
        if fstep == 0.0 || fstep.is_nan() {
            return Err(KernelError::InvalidArgument { arg: arg_step, reason: "step must be nonzero" });
        }
        if (fstep > 0.0 && fend < fstart) || (fstep < 0.0 && fend > fstart) {
            return Err(KernelError::InvalidArgument {
                arg: arg_step,
                reason: "upper bound and lower bound inconsistent with step sign",
            });
        }
        ((fend - fstart) / fstep).ceil()
    };
    if !(size_f >= 0.0 && size_f <= i64::MAX as f64) {
        return Err(KernelError::InvalidArgument { arg: arg_step, reason: "invalid arange size" });
    }
    let len =
        usize::try_from(size_f as i64).map_err(|_| KernelError::Overflow { arg: arg_step, what: "arange size" })?;
    out.resize(&[len])?;
    let arg = out.arg();
    crate::dispatch_dtype!(dtype, D => {
        let o = out.data_mut::<D>()?;
        for (i, slot) in o.iter_mut().enumerate() {
            *slot = if integral {
                D::from_i64(istart.wrapping_add(istep.wrapping_mul(i as i64)))
            } else if matches!(dtype, DType::Half | DType::BFloat16) {
                D::from_f64(f64::from(fstart as f32 + fstep as f32 * i as f32))
            } else {
                D::from_f64(fstart + fstep * i as f64)
            };
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype }))
}

/// `aten::arange.out(Scalar end, *, Tensor(a!) out)`: `0, 1, ..` below `end`.
pub fn arange_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let end = args.scalar(0)?;
    let mut out = args.tensor_mut(1)?;
    if out.dtype() == DType::Bool {
        return Err(KernelError::UnsupportedDtype { arg: 1, dtype: DType::Bool });
    }
    arange(Scalar::Int(0), end, Scalar::Int(1), &mut out, 0)
}

/// `aten::arange.start_out(Scalar start, Scalar end, Scalar step=1, *, Tensor(a!) out)`
pub fn arange_start_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (start, end, step) = (args.scalar(0)?, args.scalar(1)?, args.scalar(2)?);
    let mut out = args.tensor_mut(3)?;
    if out.dtype() == DType::Bool {
        return Err(KernelError::UnsupportedDtype { arg: 3, dtype: DType::Bool });
    }
    arange(start, end, step, &mut out, 0)
}

fn same_dtype(x: &Tensor<'_>, out: &TensorMut<'_>) -> Result<(), KernelError> {
    if x.dtype() == out.dtype() {
        Ok(())
    } else {
        Err(KernelError::DtypeMismatch { arg: out.arg(), expected: x.dtype(), found: out.dtype() })
    }
}

/// Copies `x` into `out` (resized to x's shape), converting the dtype and the layout.
fn copy_into(x: &Tensor<'_>, out: &mut TensorMut<'_>) -> Result<(), KernelError> {
    out.resize(x.sizes())?;
    let ostr = out.strides();
    strided_copy(x, 0, x.strides(), x.sizes(), out, 0, &ostr)
}

/// `aten::_to_copy.out(Tensor self, *, bool non_blocking=False, MemoryFormat? memory_format=None,
/// Tensor(a!) out)`: a copy converted to the output's dtype.
pub fn to_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    check_memory_format(args, 2)?;
    let mut out = args.tensor_mut(3)?;
    copy_into(&x, &mut out)
}

/// `aten::clone.out(Tensor self, *, MemoryFormat? memory_format=None, Tensor(a!) out)`
pub fn clone_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    check_memory_format(args, 1)?;
    let mut out = args.tensor_mut(2)?;
    same_dtype(&x, &out)?;
    copy_into(&x, &mut out)
}

/// A same-dtype copy of argument 0 into argument 1 (`detach_copy`, `lift_fresh_copy`,
/// `_conj_physical` of a real tensor).
fn plain_copy(args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    same_dtype(&x, &out)?;
    copy_into(&x, &mut out)
}

/// `aten::detach_copy.out(Tensor self, *, Tensor(a!) out)`
pub fn detach_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    plain_copy(args)
}

/// `aten::lift_fresh_copy.out(Tensor self, *, Tensor(a!) out)`
pub fn lift_fresh_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    plain_copy(args)
}

/// `aten::_conj_physical.out(Tensor self, *, Tensor(a!) out)`: the conjugate of a real tensor is
/// a copy (etch has no complex dtypes).
pub fn conj_physical_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    plain_copy(args)
}

/// `aten::copy.out(Tensor self, Tensor src, bool non_blocking=False, *, Tensor(a!) out)`: `self`'s
/// shape, filled with `src` broadcast to it and converted to the output's dtype.
pub fn copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let src = args.tensor(1)?;
    let mut out = args.tensor_mut(3)?;
    let shape = x.shape();
    let b = broadcast_all(&[Operand::Tensor(src)], 1)?;
    if crate::shape::broadcast_shapes(&b, &shape).as_deref() != Some(&shape[..]) {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "src does not broadcast to self" });
    }
    out.resize(&shape)?;
    let sstr = broadcast_strides_ordered(src.sizes(), src.strides(), &shape);
    let ostr = out.strides();
    strided_copy(&src, 0, &sstr, &shape, &mut out, 0, &ostr)
}

/// `aten::native_dropout.out(Tensor input, float p, bool? train, *, Tensor(a!) out0,
/// Tensor(b!) out1)`: in inference (`train=False`) the output is the input and the mask all
/// true. Training mode needs random numbers, except for `p == 0` (nothing dropped).
pub fn native_dropout_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let p = args.double(1)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "dropout probability must be in [0, 1]" });
    }
    // PyTorch treats an absent `train` as training.
    let train = args.opt_bool(2)?.unwrap_or(true);
    if train && p == 1.0 {
        // Everything dropped: no randomness involved.
        {
            let mut out = args.tensor_mut(3)?;
            same_dtype(&x, &out)?;
            out.resize(x.sizes())?;
            fill_with(&mut out, Scalar::Int(0))?;
        }
        let mut mask = args.tensor_mut(4)?;
        mask.resize(x.sizes())?;
        return fill_with(&mut mask, Scalar::Bool(false));
    }
    if train && p != 0.0 {
        return Err(KernelError::NotImplemented("native_dropout in training mode (needs a random generator)"));
    }
    {
        let mut out = args.tensor_mut(3)?;
        same_dtype(&x, &out)?;
        copy_into(&x, &mut out)?;
    }
    let mut mask = args.tensor_mut(4)?;
    mask.resize(x.sizes())?;
    fill_with(&mut mask, Scalar::Bool(true))
}

/// `aten::mean.dtype_out(Tensor self, *, ScalarType? dtype=None, Tensor(a!) out)`: the mean of
/// every element, accumulated in f64, as a zero-dimensional tensor of `dtype` (by default
/// self's, which must then be floating point).
pub fn mean_dtype_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let want = args.opt_dtype(1)?.unwrap_or(x.dtype());
    let mut out = args.tensor_mut(2)?;
    if !want.is_floating_point() {
        return Err(KernelError::UnsupportedDtype { arg: 1, dtype: want });
    }
    if out.dtype() != want {
        return Err(KernelError::DtypeMismatch { arg: 2, expected: want, found: out.dtype() });
    }
    let src = Src::of(&x)?;
    let count = x.numel();
    let sum: f64 = (0..count).map(|i| src.get::<f64>(i)).sum();
    let mean = sum / count as f64;
    out.resize(&Shape::scalar())?;
    fill_with(&mut out, Scalar::Double(mean))
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::{ALL_DTYPES, FLOAT_DTYPES, REAL_DTYPES};
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        (
            "aten::fill.Scalar_out(Tensor self, Scalar value, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            fill_scalar_out,
        ),
        (
            "aten::fill.Tensor_out(Tensor self, Tensor value, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            fill_tensor_out,
        ),
        ("aten::full.out(SymInt[] size, Scalar fill_value, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, full_out),
        (
            "aten::full_like.out(Tensor self, Scalar fill_value, *, MemoryFormat? memory_format=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            full_like_out,
        ),
        ("aten::ones.out(SymInt[] size, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, ones_out),
        ("aten::zeros.out(SymInt[] size, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, zeros_out),
        ("aten::scalar_tensor.out(Scalar s, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, scalar_tensor_out),
        (
            "aten::empty.out(SymInt[] size, *, MemoryFormat? memory_format=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            empty_out,
        ),
        (
            "dim_order_ops::_empty_dim_order.out(int[] size, *, int[]? dim_order=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            empty_dim_order_out,
        ),
        ("aten::arange.out(Scalar end, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, arange_out),
        (
            "aten::arange.start_out(Scalar start, Scalar end, Scalar step=1, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            arange_start_out,
        ),
        (
            "aten::_to_copy.out(Tensor self, *, bool non_blocking=False, MemoryFormat? memory_format=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            to_copy_out,
        ),
        (
            "aten::clone.out(Tensor self, *, MemoryFormat? memory_format=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            clone_out,
        ),
        (
            "aten::copy.out(Tensor self, Tensor src, bool non_blocking=False, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            copy_out,
        ),
        ("aten::detach_copy.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, detach_copy_out),
        ("aten::lift_fresh_copy.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, lift_fresh_copy_out),
        ("aten::_conj_physical.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, conj_physical_out),
        (
            "aten::native_dropout.out(Tensor input, float p, bool? train, *, Tensor(a!) out0, Tensor(b!) out1) -> (Tensor(a!), Tensor(b!))",
            FLOAT_DTYPES,
            native_dropout_out,
        ),
        (
            "aten::mean.dtype_out(Tensor self, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            mean_dtype_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

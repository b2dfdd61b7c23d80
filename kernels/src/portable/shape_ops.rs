//! Operators that move data without arithmetic: permute, slice, cat, copies.

use crate::args::KernelArgs;
use crate::dtype::can_cast;
use crate::error::KernelError;
use crate::portable::elementwise::{Operand, broadcast_all, broadcast_strides_ordered};
use crate::portable::layout::strided_copy;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, wrap_dim};

/// `aten::permute_copy.out(Tensor self, int[] dims, *, Tensor(a!) out)`
pub fn permute_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dims = args.int_list(1)?;
    let mut out = args.tensor_mut(2)?;
    if dims.len() != x.dim() {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "dims must list every dimension once" });
    }
    let (xs, xstr) = (x.sizes(), x.strides());
    let mut sizes = Shape::scalar();
    let mut strides = Shape::scalar();
    let mut seen = 0u32;
    for d in dims.iter() {
        let d = wrap_dim(d?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
        if seen & (1 << d) != 0 {
            return Err(KernelError::InvalidArgument { arg: 1, reason: "repeated dim" });
        }
        seen |= 1 << d;
        if x.dim() > 0 {
            sizes.push(xs[d]);
            strides.push(xstr[d]);
        }
    }
    if x.dtype() != out.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 2, expected: x.dtype(), found: out.dtype() });
    }
    out.resize(&sizes)?;
    let ostr = out.strides();
    strided_copy(&x, 0, strides, &sizes, &mut out, 0, ostr)
}

/// PyTorch's slice bounds: clamp `start`/`end` into `0..=size` after wrapping negatives.
fn slice_bounds(start: Option<i64>, end: Option<i64>, size: usize) -> (usize, usize) {
    let n = size as i64;
    let clamp = |v: i64| {
        let v = if v < 0 { v + n } else { v };
        v.clamp(0, n)
    };
    let s = clamp(start.unwrap_or(0));
    let e = clamp(end.unwrap_or(n)).max(s);
    (s as usize, e as usize)
}

/// `aten::slice_copy.Tensor_out(Tensor self, int dim=0, SymInt? start=None, SymInt? end=None,
/// SymInt step=1, *, Tensor(a!) out)`
pub fn slice_copy_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "cannot slice a 0-dim tensor" });
    }
    let dim =
        wrap_dim(args.int(1)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    let (start, end) = slice_bounds(args.opt_int(2)?, args.opt_int(3)?, x.sizes()[dim]);
    let step = args.int(4)?;
    if step <= 0 {
        return Err(KernelError::InvalidArgument { arg: 4, reason: "slice step must be positive" });
    }
    let step = step as usize;
    let mut out = args.tensor_mut(5)?;
    if x.dtype() != out.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 5, expected: x.dtype(), found: out.dtype() });
    }
    let mut sizes = x.shape();
    sizes.as_mut_slice()[dim] = (end - start).div_ceil(step);
    out.resize(&sizes)?;
    let mut strides = x.strides();
    let offset = start * strides[dim];
    strides.as_mut_slice()[dim] *= step;
    let ostr = out.strides();
    strided_copy(&x, offset, strides, &sizes, &mut out, 0, ostr)
}

/// `aten::cat.out(Tensor[] tensors, int dim=0, *, Tensor(a!) out)`
pub fn cat_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let list = args.tensor_list(0)?;
    let mut out = args.tensor_mut(2)?;
    // Legacy rule: 1-D empty tensors are skipped whatever their rank.
    let skip = |t: &crate::Tensor<'_>| t.dim() == 1 && t.numel() == 0;
    let mut reference: Option<crate::Tensor<'_>> = None;
    for t in list.iter() {
        let t = t?;
        if !skip(&t) {
            reference = Some(t);
            break;
        }
    }
    let Some(first) = reference else {
        out.resize(&[0])?;
        return Ok(());
    };
    let rank = first.dim();
    let dim =
        wrap_dim(args.int(1)?, rank).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    if rank == 0 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "zero-dimensional tensors cannot be concatenated" });
    }
    let mut sizes = first.shape();
    let mut total = 0usize;
    for t in list.iter() {
        let t = t?;
        if skip(&t) {
            continue;
        }
        if t.dim() != rank || t.sizes().iter().enumerate().any(|(d, &s)| d != dim && s != sizes[d]) {
            return Err(KernelError::ShapeMismatch { arg: 0, reason: "cat inputs differ outside the cat dimension" });
        }
        if !can_cast(t.dtype(), out.dtype()) {
            return Err(KernelError::DtypeMismatch { arg: 2, expected: t.dtype(), found: out.dtype() });
        }
        total = total.checked_add(t.sizes()[dim]).ok_or(KernelError::Overflow { arg: 0, what: "cat size" })?;
    }
    sizes.as_mut_slice()[dim] = total;
    out.resize(&sizes)?;
    let ostr = out.strides();
    let mut at = 0usize;
    for t in list.iter() {
        let t = t?;
        if skip(&t) {
            continue;
        }
        strided_copy(&t, 0, t.strides(), t.sizes(), &mut out, at * ostr[dim], ostr)?;
        at += t.sizes()[dim];
    }
    Ok(())
}

/// `aten::copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)`: writes `src`
/// (broadcast, converted) into `self`.
pub fn copy_(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let src = args.tensor(1)?;
    let mut dst = args.tensor_mut(0)?;
    let shape = dst.as_ref().shape();
    let b = broadcast_all(&[Operand::Tensor(src)], 1)?;
    if crate::shape::broadcast_shapes(&b, &shape).as_deref() != Some(&shape[..]) {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "src does not broadcast to self" });
    }
    let sstr = broadcast_strides_ordered(src.sizes(), &src.strides(), &shape);
    let dstr = dst.strides();
    strided_copy(&src, 0, sstr, &shape, &mut dst, 0, dstr)
}

/// `dim_order_ops::_to_dim_order_copy.out(Tensor self, *, bool non_blocking=False,
/// int[]? dim_order=None, Tensor(a!) out)`: a copy that may change dtype and memory layout.
pub fn to_dim_order_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    dim_order_copy(args, false)
}

/// `dim_order_ops::_clone_dim_order.out(Tensor self, *, bool non_blocking=False,
/// int[]? dim_order=None, Tensor(a!) out)`: like `_to_dim_order_copy` without a dtype change.
pub fn clone_dim_order_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    dim_order_copy(args, true)
}

fn dim_order_copy(args: &KernelArgs<'_>, same_dtype: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(3)?;
    if same_dtype && out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 3, expected: x.dtype(), found: out.dtype() });
    }
    if let Some(order) = args.opt_int_list(2)? {
        let same = order.len() == out.dim()
            && order.iter().zip(out.dim_order().iter()).all(|(a, &b)| a.is_ok_and(|a| a == i64::from(b)));
        if !same {
            return Err(KernelError::InvalidArgument {
                arg: 2,
                reason: "dim_order differs from the output's dim order",
            });
        }
    }
    out.resize(x.sizes())?;
    let ostr = out.strides();
    strided_copy(&x, 0, x.strides(), x.sizes(), &mut out, 0, ostr)
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::ALL_DTYPES;
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::permute_copy.out(Tensor self, int[] dims, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            permute_copy_out,
        ),
        (
            "aten::slice_copy.Tensor_out(Tensor self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            slice_copy_tensor_out,
        ),
        ("aten::cat.out(Tensor[] tensors, int dim=0, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, cat_out),
        ("aten::copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)", ALL_DTYPES, copy_),
        (
            "dim_order_ops::_to_dim_order_copy.out(Tensor self, *, bool non_blocking=False, int[]? dim_order=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            to_dim_order_copy_out,
        ),
        (
            "dim_order_ops::_clone_dim_order.out(Tensor self, *, bool non_blocking=False, int[]? dim_order=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            clone_dim_order_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

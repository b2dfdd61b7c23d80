//! Operators that move data without arithmetic: permute, slice, cat, copies, and the `_copy`
//! forms of PyTorch's views (select, squeeze, expand, diagonal, as_strided, ...).
//!
//! Most of them are "copy a view": the view is a start offset and a stride per output dimension
//! into the input's storage, built from the input's own strides, so every dim order works and the
//! output may have any dim order too.

use crate::args::KernelArgs;
use crate::dtype::can_cast;
use crate::error::KernelError;
use crate::portable::elementwise::{Operand, broadcast_all, broadcast_strides_ordered};
use crate::portable::layout::{coordinate_strides, elements, elements_mut, strided_copy, with_element_bits};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, StridedIter, wrap_dim};
use crate::tensor::{Tensor, TensorMut};

/// A strided view of a tensor's storage: element `i` of the view (a multi-index over `sizes`) is
/// storage element `offset + Σ i[d]·strides[d]`. Strides may be wrapped negatives (`flip`).
#[derive(Debug, Clone, Copy)]
struct View {
    offset: usize,
    sizes: Shape,
    strides: Shape,
}

impl View {
    /// The whole tensor, as it is.
    fn of(x: &Tensor<'_>) -> View {
        View { offset: 0, sizes: x.shape(), strides: *x.strides() }
    }

    /// Appends a dimension; an error naming `arg` beyond 16 dimensions.
    fn push(&mut self, size: usize, stride: usize, arg: usize) -> Result<(), KernelError> {
        if self.sizes.push(size) && self.strides.push(stride) {
            Ok(())
        } else {
            Err(KernelError::InvalidArgument { arg, reason: "more than 16 dimensions" })
        }
    }
}

/// Resizes `out` to the view's sizes and copies the view of `x` into it (same dtype required).
fn copy_view(x: &Tensor<'_>, view: &View, out: &mut TensorMut<'_>) -> Result<(), KernelError> {
    same_dtype(x, out)?;
    out.resize(&view.sizes)?;
    let ostr = out.strides();
    strided_copy(x, view.offset, &view.strides, &view.sizes, out, 0, &ostr)
}

/// PyTorch's view-op rule (and ExecuTorch's): the output keeps the input's dtype.
fn same_dtype(x: &Tensor<'_>, out: &TensorMut<'_>) -> Result<(), KernelError> {
    if x.dtype() == out.dtype() {
        Ok(())
    } else {
        Err(KernelError::DtypeMismatch { arg: out.arg(), expected: x.dtype(), found: out.dtype() })
    }
}

/// Argument `arg` as a dimension of a rank-`rank` tensor (negative counts from the end).
fn dim_arg(args: &KernelArgs<'_>, arg: usize, rank: usize) -> Result<usize, KernelError> {
    wrap_dim(args.int(arg)?, rank).ok_or(KernelError::InvalidArgument { arg, reason: "dim out of range" })
}

/// `size` as a signed number for error reports (sizes fit: they are bounded by memory).
fn signed(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

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
    strided_copy(&x, 0, &strides, &sizes, &mut out, 0, &ostr)
}

/// PyTorch's slice bounds: clamp `start`/`end` into `0..=size` after wrapping negatives.
pub(crate) fn slice_bounds(start: Option<i64>, end: Option<i64>, size: usize) -> (usize, usize) {
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
    let mut strides = *x.strides();
    let offset = start * strides[dim];
    strides.as_mut_slice()[dim] *= step;
    let ostr = out.strides();
    strided_copy(&x, offset, &strides, &sizes, &mut out, 0, &ostr)
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
        strided_copy(&t, 0, t.strides(), t.sizes(), &mut out, at * ostr[dim], &ostr)?;
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
    let sstr = broadcast_strides_ordered(src.sizes(), src.strides(), &shape);
    let dstr = dst.strides();
    strided_copy(&src, 0, &sstr, &shape, &mut dst, 0, &dstr)
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
    strided_copy(&x, 0, x.strides(), x.sizes(), &mut out, 0, &ostr)
}

/// `aten::alias_copy.out(Tensor self, *, Tensor(a!) out)`
pub fn alias_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    copy_view(&x, &View::of(&x), &mut out)
}

/// `aten::as_strided_copy.out(Tensor self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None,
/// *, Tensor(a!) out)`: the view reads the input's storage directly (its dim order does not
/// matter), and must stay inside it.
pub fn as_strided_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let sizes = args.int_list(1)?.to_shape()?;
    let stride_list = args.int_list(2)?;
    let offset = args.opt_int(3)?.unwrap_or(0);
    let mut out = args.tensor_mut(4)?;
    if stride_list.len() != sizes.len() {
        return Err(KernelError::InvalidArgument { arg: 2, reason: "size and stride differ in length" });
    }
    let offset = usize::try_from(offset)
        .map_err(|_| KernelError::InvalidArgument { arg: 3, reason: "negative storage offset" })?;
    let mut view = View { offset, sizes: Shape::scalar(), strides: Shape::scalar() };
    // Largest storage element the view touches; only an empty view may reach past the end.
    let mut last = Some(offset);
    for (k, &size) in sizes.iter().enumerate() {
        let stride = usize::try_from(stride_list.get(k)?)
            .map_err(|_| KernelError::InvalidArgument { arg: 2, reason: "negative stride" })?;
        last = last
            .zip(size.checked_sub(1).map_or(Some(0), |n| n.checked_mul(stride)))
            .and_then(|(a, b)| a.checked_add(b));
        view.push(size, stride, 1)?;
    }
    let empty = sizes.contains(&0);
    if !empty && last.is_none_or(|l| l >= x.numel()) {
        return Err(KernelError::InvalidArgument {
            arg: 1,
            reason: "as_strided view reaches past the input's storage",
        });
    }
    if empty {
        view.offset = 0;
    }
    copy_view(&x, &view, &mut out)
}

/// `aten::diagonal_copy.out(Tensor self, int offset=0, int dim1=0, int dim2=1, *, Tensor(a!) out)`
pub fn diagonal_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let diag = args.int(1)?;
    let rank = x.dim();
    if rank < 2 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "diagonal needs at least 2 dimensions" });
    }
    let (d1, d2) = (dim_arg(args, 2, rank)?, dim_arg(args, 3, rank)?);
    if d1 == d2 {
        return Err(KernelError::InvalidArgument { arg: 3, reason: "diagonal dimensions cannot be identical" });
    }
    let mut out = args.tensor_mut(4)?;
    let (sizes, strides) = (x.sizes(), x.strides());
    let (n1, n2) = (signed(sizes[d1]), signed(sizes[d2]));
    // Length of the diagonal `offset` steps above (positive) or below the main one.
    let len = if diag >= 0 { n1.min(n2.saturating_sub(diag)) } else { n2.min(n1.saturating_add(diag)) }.max(0);
    let mut view = View { offset: 0, sizes: Shape::scalar(), strides: Shape::scalar() };
    if len > 0 {
        let first = if diag >= 0 { (diag as usize, d2) } else { (diag.unsigned_abs() as usize, d1) };
        view.offset = first.0 * strides[first.1];
    }
    for d in (0..rank).filter(|&d| d != d1 && d != d2) {
        view.push(sizes[d], strides[d], 0)?;
    }
    view.push(len as usize, strides[d1].wrapping_add(strides[d2]), 0)?;
    copy_view(&x, &view, &mut out)
}

/// `aten::expand_copy.out(Tensor self, SymInt[] size, *, bool implicit=False, Tensor(a!) out)`:
/// size-1 dimensions repeat (stride 0); `-1` keeps a size; new leading dimensions may be added.
pub fn expand_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let list = args.int_list(1)?;
    let mut out = args.tensor_mut(3)?;
    let rank = x.dim();
    if list.len() < rank {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "expand cannot drop dimensions" });
    }
    let lead = list.len() - rank;
    let (sizes, strides) = (x.sizes(), x.strides());
    let mut view = View { offset: 0, sizes: Shape::scalar(), strides: Shape::scalar() };
    for k in 0..list.len() {
        let want = list.get(k)?;
        let (size, stride) = match k.checked_sub(lead) {
            None => {
                let size = usize::try_from(want)
                    .map_err(|_| KernelError::InvalidArgument { arg: 1, reason: "new dimensions need a size" })?;
                (size, 0)
            }
            Some(d) if want == -1 || usize::try_from(want) == Ok(sizes[d]) => (sizes[d], strides[d]),
            Some(d) if sizes[d] == 1 => {
                let size = usize::try_from(want)
                    .map_err(|_| KernelError::InvalidArgument { arg: 1, reason: "negative size" })?;
                (size, 0)
            }
            Some(_) => {
                return Err(KernelError::ShapeMismatch { arg: 1, reason: "only size-1 dimensions can be expanded" });
            }
        };
        view.push(size, stride, 1)?;
    }
    copy_view(&x, &view, &mut out)
}

/// Dimensions named by an `int[]` argument, as a bitmask; each at most once.
fn dim_mask(args: &KernelArgs<'_>, arg: usize, rank: usize) -> Result<u32, KernelError> {
    let mut mask = 0u32;
    for d in args.int_list(arg)?.iter() {
        let d = wrap_dim(d?, rank).ok_or(KernelError::InvalidArgument { arg, reason: "dim out of range" })?;
        if mask & (1 << d) != 0 {
            return Err(KernelError::InvalidArgument { arg, reason: "dim appears twice" });
        }
        mask |= 1 << d;
    }
    Ok(mask)
}

/// `aten::flip.out(Tensor self, int[] dims, *, Tensor(a!) out)`: a view that starts at the far end
/// of each flipped dimension and walks it backwards.
pub fn flip_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = dim_mask(args, 1, x.dim())?;
    let mut out = args.tensor_mut(2)?;
    let mut view = View::of(&x);
    if x.numel() > 0 {
        for d in (0..x.dim()).filter(|d| mask & (1 << d) != 0) {
            let (size, stride) = (view.sizes[d], view.strides[d]);
            view.offset += (size - 1) * stride;
            view.strides.as_mut_slice()[d] = stride.wrapping_neg();
        }
    }
    copy_view(&x, &view, &mut out)
}

/// `aten::narrow_copy.out(Tensor self, int dim, SymInt start, SymInt length, *, Tensor(a!) out)`
pub fn narrow_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "cannot narrow a 0-dim tensor" });
    }
    let dim = dim_arg(args, 1, x.dim())?;
    let size = signed(x.sizes()[dim]);
    let start = args.int(2)?;
    let length = args.int(3)?;
    let mut out = args.tensor_mut(4)?;
    let begin = if start < 0 { start + size } else { start };
    if !(0..=size).contains(&begin) {
        return Err(KernelError::ValueOutOfRange { arg: 2, value: start, min: -size, max: size });
    }
    if length < 0 || length > size - begin {
        return Err(KernelError::ValueOutOfRange { arg: 3, value: length, min: 0, max: size - begin });
    }
    let mut view = View::of(&x);
    view.offset = begin as usize * view.strides[dim];
    view.sizes.as_mut_slice()[dim] = length as usize;
    copy_view(&x, &view, &mut out)
}

/// `aten::select_copy.int_out(Tensor self, int dim, SymInt index, *, Tensor(a!) out)`
pub fn select_copy_int_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    if x.dim() == 0 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "cannot select from a 0-dim tensor" });
    }
    let dim = dim_arg(args, 1, x.dim())?;
    let size = x.sizes()[dim];
    let index = crate::portable::layout::check_index(args.int(2)?, size, true, 2)?;
    let mut out = args.tensor_mut(3)?;
    copy_view(&x, &without_dim(&x, dim, index * x.strides()[dim]), &mut out)
}

/// The view of `x` with dimension `dim` removed, starting at element `offset`.
fn without_dim(x: &Tensor<'_>, dim: usize, offset: usize) -> View {
    let mut view = View { offset, sizes: Shape::scalar(), strides: Shape::scalar() };
    let strides = x.strides();
    for (d, &size) in x.sizes().iter().enumerate() {
        if d != dim {
            view.sizes.push(size);
            view.strides.push(strides[d]);
        }
    }
    view
}

/// The view of `x` without the size-1 dimensions in `mask`.
fn squeezed(x: &Tensor<'_>, mask: u32) -> View {
    let mut view = View { offset: 0, sizes: Shape::scalar(), strides: Shape::scalar() };
    let strides = x.strides();
    for (d, &size) in x.sizes().iter().enumerate() {
        if size != 1 || mask & (1 << d) == 0 {
            view.sizes.push(size);
            view.strides.push(strides[d]);
        }
    }
    view
}

/// `aten::squeeze_copy.dim_out(Tensor self, int dim, *, Tensor(a!) out)`
pub fn squeeze_copy_dim_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim = dim_arg(args, 1, x.dim())?;
    let mut out = args.tensor_mut(2)?;
    copy_view(&x, &squeezed(&x, 1 << dim), &mut out)
}

/// `aten::squeeze_copy.dims_out(Tensor self, int[] dim, *, Tensor(a!) out)`
pub fn squeeze_copy_dims_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = dim_mask(args, 1, x.dim())?;
    let mut out = args.tensor_mut(2)?;
    copy_view(&x, &squeezed(&x, mask), &mut out)
}

/// `aten::unsqueeze_copy.out(Tensor self, int dim, *, Tensor(a!) out)`
pub fn unsqueeze_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim = dim_arg(args, 1, x.dim() + 1)?;
    let mut out = args.tensor_mut(2)?;
    let mut view = View { offset: 0, sizes: Shape::scalar(), strides: Shape::scalar() };
    let strides = x.strides();
    for d in 0..=x.dim() {
        if d == dim {
            view.push(1, 0, 1)?;
        }
        if let Some(&size) = x.sizes().get(d) {
            view.push(size, strides[d], 0)?;
        }
    }
    copy_view(&x, &view, &mut out)
}

/// The view of `x` with dimensions `a` and `b` exchanged.
fn transposed(x: &Tensor<'_>, a: usize, b: usize) -> View {
    let mut view = View::of(x);
    if x.dim() > 0 {
        view.sizes.as_mut_slice().swap(a, b);
        view.strides.as_mut_slice().swap(a, b);
    }
    view
}

/// `aten::transpose_copy.int_out(Tensor self, int dim0, int dim1, *, Tensor(a!) out)`
pub fn transpose_copy_int_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let (a, b) = (dim_arg(args, 1, x.dim())?, dim_arg(args, 2, x.dim())?);
    let mut out = args.tensor_mut(3)?;
    copy_view(&x, &transposed(&x, a, b), &mut out)
}

/// `aten::t_copy.out(Tensor self, *, Tensor(a!) out)`: transposes a 2-D tensor; 0-D and 1-D
/// tensors are copied as they are.
pub fn t_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    if x.dim() > 2 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "t expects a tensor of at most 2 dimensions" });
    }
    let mut out = args.tensor_mut(1)?;
    let view = if x.dim() == 2 { transposed(&x, 0, 1) } else { View::of(&x) };
    copy_view(&x, &view, &mut out)
}

/// Copies `x` into `out` element by element in row-major (logical) order, whatever the shapes and
/// dim orders of both; they must have as many elements.
fn copy_in_logical_order(x: &Tensor<'_>, out: &mut TensorMut<'_>) -> Result<(), KernelError> {
    same_dtype(x, out)?;
    let arg = out.arg();
    if x.numel() != out.numel() {
        return Err(KernelError::ShapeMismatch { arg, reason: "element counts differ" });
    }
    if x.dim_order().is_contiguous() && out.dim_order().is_contiguous() {
        let from = x.bytes()?;
        let to = out.bytes_mut()?;
        if from.len() != to.len() {
            return Err(KernelError::ShapeMismatch { arg, reason: "element counts differ" });
        }
        to.copy_from_slice(from);
        return Ok(());
    }
    let (xs, os) = (x.shape(), out.as_ref().shape());
    let (xstr, ostr) = (x.strides(), out.strides());
    with_element_bits!(x.dtype(), arg, E => {
        let from = elements::<E>(x)?;
        let to = elements_mut::<E>(out)?;
        let bad = KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" };
        for ([i], [o]) in StridedIter::new(&xs, [*xstr]).zip(StridedIter::new(&os, [ostr])) {
            *to.get_mut(o).ok_or(bad)? = *from.get(i).ok_or(bad)?;
        }
        Ok(())
    })
}

/// `aten::view_copy.out(Tensor self, SymInt[] size, *, Tensor(a!) out)`: the same elements in
/// row-major order under a new shape; one size may be `-1` (inferred).
pub fn view_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let list = args.int_list(1)?;
    let mut out = args.tensor_mut(2)?;
    let mut sizes = Shape::scalar();
    let mut inferred = None;
    let mut known = 1usize;
    for (k, v) in list.iter().enumerate() {
        let v = v?;
        let size = if v == -1 {
            if inferred.replace(k).is_some() {
                return Err(KernelError::InvalidArgument { arg: 1, reason: "only one dimension can be inferred" });
            }
            1
        } else {
            usize::try_from(v).map_err(|_| KernelError::InvalidArgument { arg: 1, reason: "invalid size" })?
        };
        known = known.checked_mul(size).ok_or(KernelError::Overflow { arg: 1, what: "view size" })?;
        if !sizes.push(size) {
            return Err(KernelError::InvalidArgument { arg: 1, reason: "more than 16 dimensions" });
        }
    }
    let numel = x.numel();
    if let Some(k) = inferred {
        // PyTorch: with the other sizes multiplying to 0 the inferred size is ambiguous.
        if known == 0 || numel % known != 0 {
            return Err(KernelError::ShapeMismatch { arg: 1, reason: "shape is invalid for the input's size" });
        }
        sizes.as_mut_slice()[k] = numel / known;
    } else if known != numel {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "shape is invalid for the input's size" });
    }
    out.resize(&sizes)?;
    copy_in_logical_order(&x, &mut out)
}

/// `aten::repeat.out(Tensor self, SymInt[] repeats, *, Tensor(a!) out)`: tiles the input; `repeats`
/// may add leading dimensions.
pub fn repeat_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let repeats = args.int_list(1)?.to_shape()?;
    let mut out = args.tensor_mut(2)?;
    same_dtype(&x, &out)?;
    let rank = repeats.len();
    if rank < x.dim() {
        return Err(KernelError::InvalidArgument {
            arg: 1,
            reason: "repeats must have at least as many entries as the tensor has dimensions",
        });
    }
    // The input seen with the output's rank: leading size-1 dimensions.
    let lead = rank - x.dim();
    let mut tile = Shape::scalar();
    let mut tile_strides = Shape::scalar();
    let mut sizes = Shape::scalar();
    let xstr = x.strides();
    for d in 0..rank {
        let (size, stride) = d.checked_sub(lead).map_or((1, 0), |k| (x.sizes()[k], xstr[k]));
        tile.push(size);
        tile_strides.push(stride);
        sizes.push(size.checked_mul(repeats[d]).ok_or(KernelError::Overflow { arg: 1, what: "repeat size" })?);
    }
    sizes.numel().ok_or(KernelError::Overflow { arg: 1, what: "repeat size" })?;
    out.resize(&sizes)?;
    if out.numel() == 0 {
        return Ok(());
    }
    let ostr = out.strides();
    // One copy of the input per tile: tile `t` starts at output position t[d]·size[d].
    let mut tile_step = Shape::scalar();
    for d in 0..rank {
        tile_step.push(tile[d] * ostr[d]);
    }
    for [at] in StridedIter::new(&repeats, [tile_step]) {
        strided_copy(&x, 0, &tile_strides, &tile, &mut out, at, &ostr)?;
    }
    Ok(())
}

/// `aten::roll.out(Tensor self, SymInt[1] shifts, int[1] dims=[], *, Tensor(a!) out)`: element
/// `i` moves to `i + shift` (mod size) along each dim; without dims, along the flattened tensor.
pub fn roll_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let shifts = args.int_list(1)?;
    let dims = args.int_list(2)?;
    let mut out = args.tensor_mut(3)?;
    same_dtype(&x, &out)?;
    out.resize(x.sizes())?;
    if dims.is_empty() {
        if shifts.len() != 1 {
            return Err(KernelError::InvalidArgument { arg: 1, reason: "shifts and dimensions must align" });
        }
        return roll_flat(&x, shifts.get(0)?, &mut out);
    }
    if shifts.len() != dims.len() {
        return Err(KernelError::InvalidArgument { arg: 2, reason: "shifts and dimensions must align" });
    }
    if x.numel() == 0 {
        return Ok(());
    }
    // Along each rolled dim the output is two blocks: the input's tail (the last `shift`
    // elements) then its head. Copy every combination of blocks as one strided view.
    let rank = x.dim().max(1);
    let mut shift = [0usize; 16];
    let mut rolled = 0u32;
    for k in 0..dims.len() {
        let d = wrap_dim(dims.get(k)?, x.dim())
            .ok_or(KernelError::InvalidArgument { arg: 2, reason: "dim out of range" })?;
        let size = x.sizes().get(d).copied().unwrap_or(1);
        // Shifts along the same dim add up, as in PyTorch (which rolls once per entry).
        let s = shifts.get(k)?.rem_euclid(signed(size)) as usize;
        shift[d] = (shift[d] + s) % size;
        rolled |= 1 << d;
    }
    if x.dim() == 0 {
        return strided_copy(&x, 0, x.strides(), &[], &mut out, 0, &Shape::scalar());
    }
    let (xstr, ostr) = (x.strides(), out.strides());
    for combo in 0u32..(1 << rolled.count_ones()) {
        let (mut sizes, mut src_off, mut out_off) = (x.shape(), 0usize, 0usize);
        for (bit, d) in (0..rank).filter(|d| rolled & (1 << d) != 0).enumerate() {
            let (n, s) = (x.sizes()[d], shift[d]);
            if combo & (1 << bit) != 0 {
                // Head: input [0, n - s) goes to output [s, n).
                sizes.as_mut_slice()[d] = n - s;
                out_off += s * ostr[d];
            } else {
                // Tail: input [n - s, n) goes to output [0, s).
                sizes.as_mut_slice()[d] = s;
                src_off += (n - s) * xstr[d];
            }
        }
        if sizes.contains(&0) {
            continue;
        }
        strided_copy(&x, src_off, xstr, &sizes, &mut out, out_off, &ostr)?;
    }
    Ok(())
}

/// `roll` without dims: along the row-major order of all elements.
fn roll_flat(x: &Tensor<'_>, shift: i64, out: &mut TensorMut<'_>) -> Result<(), KernelError> {
    let n = x.numel();
    if n == 0 {
        return Ok(());
    }
    let s = shift.rem_euclid(signed(n)) as usize;
    let (xs, xstr, ostr) = (x.shape(), x.strides(), out.strides());
    let arg = out.arg();
    with_element_bits!(x.dtype(), arg, E => {
        let from = elements::<E>(x)?;
        let to = elements_mut::<E>(out)?;
        let bad = KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" };
        // Output position j holds input position (j - s) mod n: start reading at n - s.
        let src = StridedIter::new(&xs, [*xstr]).skip(n - s).chain(StridedIter::new(&xs, [*xstr]).take(n - s));
        for ([i], [o]) in src.zip(StridedIter::new(&xs, [ostr])) {
            *to.get_mut(o).ok_or(bad)? = *from.get(i).ok_or(bad)?;
        }
        Ok(())
    })
}

/// `aten::tril.out(Tensor self, SymInt diagonal=0, *, Tensor(a!) out)`: keeps the elements on and
/// below the `diagonal`-th diagonal of the last two dimensions, zeroes the rest.
pub fn tril_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let diagonal = args.int(1)?;
    let mut out = args.tensor_mut(2)?;
    let rank = x.dim();
    if rank < 2 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "tril needs at least 2 dimensions" });
    }
    same_dtype(&x, &out)?;
    out.resize(x.sizes())?;
    let shape = x.shape();
    let strides = [out.strides(), *x.strides(), coordinate_strides(rank, rank - 2), coordinate_strides(rank, rank - 1)];
    let arg = out.arg();
    with_element_bits!(x.dtype(), arg, E => {
        let from = elements::<E>(&x)?;
        let to = elements_mut::<E>(&mut out)?;
        let bad = KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" };
        for [o, i, row, col] in StridedIter::new(&shape, strides) {
            // Every dtype's zero is all-zero bytes.
            let keep = signed(col) - signed(row) <= diagonal;
            *to.get_mut(o).ok_or(bad)? = if keep { *from.get(i).ok_or(bad)? } else { E::default() };
        }
        Ok(())
    })
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
        ("aten::alias_copy.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, alias_copy_out),
        (
            "aten::as_strided_copy.out(Tensor self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            as_strided_copy_out,
        ),
        (
            "aten::diagonal_copy.out(Tensor self, int offset=0, int dim1=0, int dim2=1, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            diagonal_copy_out,
        ),
        (
            "aten::expand_copy.out(Tensor self, SymInt[] size, *, bool implicit=False, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            expand_copy_out,
        ),
        ("aten::flip.out(Tensor self, int[] dims, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, flip_out),
        (
            "aten::narrow_copy.out(Tensor self, int dim, SymInt start, SymInt length, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            narrow_copy_out,
        ),
        ("aten::repeat.out(Tensor self, SymInt[] repeats, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, repeat_out),
        (
            "aten::roll.out(Tensor self, SymInt[1] shifts, int[1] dims=[], *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            roll_out,
        ),
        (
            "aten::select_copy.int_out(Tensor self, int dim, SymInt index, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            select_copy_int_out,
        ),
        (
            "aten::squeeze_copy.dim_out(Tensor self, int dim, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            squeeze_copy_dim_out,
        ),
        (
            "aten::squeeze_copy.dims_out(Tensor self, int[] dim, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            squeeze_copy_dims_out,
        ),
        ("aten::t_copy.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, t_copy_out),
        (
            "aten::transpose_copy.int_out(Tensor self, int dim0, int dim1, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            transpose_copy_int_out,
        ),
        ("aten::tril.out(Tensor self, SymInt diagonal=0, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, tril_out),
        (
            "aten::unsqueeze_copy.out(Tensor self, int dim, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            unsqueeze_copy_out,
        ),
        ("aten::view_copy.out(Tensor self, SymInt[] size, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, view_copy_out),
    ];
    crate::portable::register_table(r, table);
}

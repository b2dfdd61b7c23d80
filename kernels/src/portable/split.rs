//! Operators between one tensor and a list of tensors: `split_copy`, `split_with_sizes_copy`,
//! `unbind_copy` (one input, a list of outputs) and `stack` (a list of inputs, one output).

use crate::args::KernelArgs;
use crate::dtype::can_cast;
use crate::error::KernelError;
use crate::portable::layout::strided_copy;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, wrap_dim};
use crate::tensor::Tensor;

/// Copies consecutive pieces of `x` along `dim` into the output list at position `out_arg`:
/// piece `k` has `size_of(k)` entries along `dim` (or, with `drop_dim`, exactly one entry and the
/// dimension removed, as `unbind` does).
fn split_into(
    args: &KernelArgs<'_>,
    x: &Tensor<'_>,
    dim: usize,
    out_arg: usize,
    pieces: usize,
    size_of: impl Fn(usize) -> Result<usize, KernelError>,
    drop_dim: bool,
) -> Result<(), KernelError> {
    let mut outs = args.tensor_list_mut(out_arg)?;
    if outs.len() != pieces {
        return Err(KernelError::InvalidArgument { arg: out_arg, reason: "wrong number of output tensors" });
    }
    let xstr = x.strides();
    let mut start = 0usize;
    for k in 0..pieces {
        let size = size_of(k)?;
        let mut sizes = x.shape();
        sizes.as_mut_slice()[dim] = size;
        let mut strides = *xstr;
        if drop_dim {
            sizes = remove(&sizes, dim);
            strides = remove(&strides, dim);
        }
        let mut out = outs.get_mut(k)?;
        if out.dtype() != x.dtype() {
            return Err(KernelError::DtypeMismatch { arg: out_arg, expected: x.dtype(), found: out.dtype() });
        }
        out.resize(&sizes)?;
        let ostr = out.strides();
        strided_copy(x, start * xstr[dim], &strides, &sizes, &mut out, 0, &ostr)?;
        start += size;
    }
    Ok(())
}

/// `shape` without dimension `dim`.
fn remove(shape: &[usize], dim: usize) -> Shape {
    let mut s = Shape::scalar();
    for (d, &n) in shape.iter().enumerate() {
        if d != dim {
            s.push(n);
        }
    }
    s
}

fn split_dim(args: &KernelArgs<'_>, arg: usize, x: &Tensor<'_>) -> Result<usize, KernelError> {
    if x.dim() == 0 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "cannot split a 0-dim tensor" });
    }
    wrap_dim(args.int(arg)?, x.dim()).ok_or(KernelError::InvalidArgument { arg, reason: "dim out of range" })
}

/// `aten::split_copy.Tensor_out(Tensor self, SymInt split_size, int dim=0, *, Tensor(a!)[] out)`:
/// pieces of `split_size` entries, the last one smaller if need be.
pub fn split_copy_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let split = usize::try_from(args.int(1)?)
        .map_err(|_| KernelError::InvalidArgument { arg: 1, reason: "split size must be non-negative" })?;
    let dim = split_dim(args, 2, &x)?;
    let size = x.sizes()[dim];
    // PyTorch: a zero split size only splits an empty dimension (into one piece).
    let pieces = match (size, split) {
        (0, _) => 1,
        (_, 0) => return Err(KernelError::InvalidArgument { arg: 1, reason: "split size 0 of a non-empty dim" }),
        _ => size.div_ceil(split),
    };
    split_into(args, &x, dim, 3, pieces, |k| Ok(split.min(size - (k * split).min(size))), false)
}

/// `aten::split_with_sizes_copy.out(Tensor self, SymInt[] split_sizes, int dim=0, *,
/// Tensor(a!)[] out)`: pieces of the given sizes, which must add up to the dimension.
pub fn split_with_sizes_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let sizes = args.int_list(1)?;
    let dim = split_dim(args, 2, &x)?;
    let mut total = 0usize;
    for v in sizes.iter() {
        let v = usize::try_from(v?)
            .map_err(|_| KernelError::InvalidArgument { arg: 1, reason: "split sizes must be non-negative" })?;
        total = total.checked_add(v).ok_or(KernelError::Overflow { arg: 1, what: "split sizes" })?;
    }
    if total != x.sizes()[dim] {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "split sizes must add up to the dimension" });
    }
    // Each size was checked above.
    split_into(args, &x, dim, 3, sizes.len(), |k| Ok(usize::try_from(sizes.get(k)?).unwrap_or(0)), false)
}

/// `aten::unbind_copy.int_out(Tensor self, int dim=0, *, Tensor(a!)[] out)`: one output per entry
/// of `dim`, without that dimension.
pub fn unbind_copy_int_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim = split_dim(args, 1, &x)?;
    split_into(args, &x, dim, 2, x.sizes()[dim], |_| Ok(1), true)
}

/// `aten::stack.out(Tensor[] tensors, int dim=0, *, Tensor(a!) out)`: tensors of one shape joined
/// along a new dimension `dim`; values convert to the output's dtype where PyTorch allows.
pub fn stack_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let list = args.tensor_list(0)?;
    let mut out = args.tensor_mut(2)?;
    if list.is_empty() {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "stack expects a non-empty list" });
    }
    let first = list.get(0)?;
    let dim = wrap_dim(args.int(1)?, first.dim() + 1)
        .ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    let mut sizes = Shape::scalar();
    for (d, &n) in first.sizes().iter().enumerate() {
        if d == dim {
            sizes.push(list.len());
        }
        sizes.push(n);
    }
    if dim == first.dim() && !sizes.push(list.len()) {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "more than 16 dimensions" });
    }
    if sizes.len() != first.dim() + 1 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "more than 16 dimensions" });
    }
    for t in list.iter() {
        let t = t?;
        if t.sizes() != first.sizes() {
            return Err(KernelError::ShapeMismatch { arg: 0, reason: "stack expects tensors of equal size" });
        }
        if !can_cast(t.dtype(), out.dtype()) {
            return Err(KernelError::DtypeMismatch { arg: 2, expected: t.dtype(), found: out.dtype() });
        }
    }
    out.resize(&sizes)?;
    let ostr = out.strides();
    // Each input fills one entry of the new dimension.
    let inner = remove(&ostr, dim);
    for (k, t) in list.iter().enumerate() {
        let t = t?;
        strided_copy(&t, 0, t.strides(), t.sizes(), &mut out, k * ostr[dim], &inner)?;
    }
    Ok(())
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::ALL_DTYPES;
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::split_copy.Tensor_out(Tensor self, SymInt split_size, int dim=0, *, Tensor(a!)[] out) -> ()",
            ALL_DTYPES,
            split_copy_tensor_out,
        ),
        (
            "aten::split_with_sizes_copy.out(Tensor self, SymInt[] split_sizes, int dim=0, *, Tensor(a!)[] out) -> ()",
            ALL_DTYPES,
            split_with_sizes_copy_out,
        ),
        (
            "aten::unbind_copy.int_out(Tensor self, int dim=0, *, Tensor(a!)[] out) -> ()",
            ALL_DTYPES,
            unbind_copy_int_out,
        ),
        ("aten::stack.out(Tensor[] tensors, int dim=0, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, stack_out),
    ];
    crate::portable::register_table(r, table);
}

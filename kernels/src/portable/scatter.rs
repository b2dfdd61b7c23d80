//! Scatter operators: `scatter` (from a tensor or a value), `scatter_add`, `select_scatter` and
//! `slice_scatter`. Each writes a copy of `self` with some elements replaced.

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::portable::index::{add_in_dtype, check_gather_shapes};
use crate::portable::layout::{
    IndexData, check_index, elements, elements_mut, padded, strided_copy, with_element_bits,
};
use crate::portable::shape_ops::slice_bounds;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, StridedIter, wrap_dim};
use crate::tensor::{Tensor, TensorMut};
use crate::value::Scalar;

const OUTSIDE: &str = "element offset outside the tensor";

/// Resizes `out` like `x` and copies `x` into it (same dtype required).
fn copy_self(x: &Tensor<'_>, out: &mut TensorMut<'_>) -> Result<(), KernelError> {
    if x.dtype() != out.dtype() {
        return Err(KernelError::DtypeMismatch { arg: out.arg(), expected: x.dtype(), found: out.dtype() });
    }
    out.resize(x.sizes())?;
    let ostr = out.strides();
    strided_copy(x, 0, x.strides(), x.sizes(), out, 0, &ostr)
}

/// What `scatter` writes.
enum Source<'a> {
    Tensor(Tensor<'a>),
    Value(Scalar),
}

/// `out = self; out[i with i[dim] replaced by index[i]] = src[i]` (or `+=` with `add`) for every
/// position `i` of `index`. Indices must lie in `0..self.size(dim)`, as PyTorch demands.
fn scatter_impl(args: &KernelArgs<'_>, source: Source<'_>, add: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim =
        wrap_dim(args.int(1)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    let index = args.tensor(2)?;
    let mut out = args.tensor_mut(4)?;
    let ids = IndexData::of(&index)?;
    let src_tensor = match &source {
        Source::Tensor(t) => Some(t),
        Source::Value(_) => None,
    };
    if let Some(src) = src_tensor
        && src.dtype() != x.dtype()
    {
        return Err(KernelError::DtypeMismatch { arg: 3, expected: x.dtype(), found: src.dtype() });
    }
    check_gather_shapes(&x, dim, &index, src_tensor)?;
    copy_self(&x, &mut out)?;
    let (size, stride) = if x.dim() == 0 { (1, 0) } else { (x.sizes()[dim], out.strides()[dim]) };
    let mut base_strides = out.strides();
    if let Some(s) = base_strides.as_mut_slice().get_mut(dim) {
        *s = 0;
    }
    let rank = index.dim();
    let src_strides = src_tensor.map_or(Shape::scalar(), |s| *s.strides());
    let strides = [*index.strides(), padded(src_strides, rank), padded(base_strides, rank)];
    let bad = KernelError::ShapeMismatch { arg: 4, reason: OUTSIDE };
    let dtype = out.dtype();
    let target = |i: usize, base: usize| -> Result<usize, KernelError> {
        Ok(base + check_index(ids.get(i, 2)?, size, false, 2)? * stride)
    };
    match source {
        Source::Tensor(src) if add && matches!(dtype, DType::Half | DType::BFloat16) => {
            let dim_strides =
                (index.strides().get(dim).copied().unwrap_or(0), strides[1].get(dim).copied().unwrap_or(0));
            crate::dispatch_dtype!(dtype, T => {
                scatter_add_16bit::<T>(src.data::<T>()?, &index, dim, strides, dim_strides, out.data_mut::<T>()?, target)
            }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
        }
        Source::Tensor(src) if add => crate::dispatch_dtype!(dtype, T => {
            let from = src.data::<T>()?;
            let to = out.data_mut::<T>()?;
            for [i, s, base] in StridedIter::new(index.sizes(), strides) {
                let v = *from.get(s).ok_or(bad)?;
                let slot = to.get_mut(target(i, base)?).ok_or(bad)?;
                *slot = add_in_dtype(*slot, v);
            }
            Ok(())
        }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype })),
        Source::Tensor(src) => with_element_bits!(dtype, 0, E => {
            let from = elements::<E>(&src)?;
            let to = elements_mut::<E>(&mut out)?;
            for [i, s, base] in StridedIter::new(index.sizes(), strides) {
                *to.get_mut(target(i, base)?).ok_or(bad)? = *from.get(s).ok_or(bad)?;
            }
            Ok(())
        }),
        Source::Value(value) => crate::dispatch_dtype!(dtype, T => {
            let v: T = match value {
                Scalar::Bool(b) => T::from_bool(b),
                Scalar::Int(i) => T::from_i64(i),
                Scalar::Double(d) => T::from_f64(d),
            };
            let to = out.data_mut::<T>()?;
            for [i, _, base] in StridedIter::new(index.sizes(), strides) {
                *to.get_mut(target(i, base)?).ok_or(bad)? = v;
            }
            Ok(())
        }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype })),
    }
}

/// `scatter_add` for 16-bit floats as PyTorch's CPU kernel computes it: each output element is
/// `self + Σ src` accumulated in f32, in index order, and rounded once. Without scratch memory
/// for the accumulators, each line along `dim` finds the contributors of every target itself
/// (quadratic in the index's size along `dim`, which is what memory-free costs here).
fn scatter_add_16bit<T: Element>(
    from: &[T],
    index: &Tensor<'_>,
    dim: usize,
    strides: [Shape; 3],
    (index_step, src_step): (usize, usize),
    to: &mut [T],
    target: impl Fn(usize, usize) -> Result<usize, KernelError>,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg: 4, reason: OUTSIDE };
    let mut lines = index.shape();
    let count = match lines.as_mut_slice().get_mut(dim) {
        Some(n) => core::mem::replace(n, 1),
        None => 1,
    };
    for [i, s, base] in StridedIter::new(&lines, strides) {
        for j in 0..count {
            let at = target(i + j * index_step, base)?;
            // Targets already written from an earlier entry of this line are done.
            let mut seen = false;
            for earlier in 0..j {
                if target(i + earlier * index_step, base)? == at {
                    seen = true;
                    break;
                }
            }
            if seen {
                continue;
            }
            let mut acc = to.get(at).ok_or(bad)?.to_f64() as f32;
            for later in j..count {
                if target(i + later * index_step, base)? == at {
                    acc += from.get(s + later * src_step).ok_or(bad)?.to_f64() as f32;
                }
            }
            *to.get_mut(at).ok_or(bad)? = T::from_f64(f64::from(acc));
        }
    }
    Ok(())
}

/// `aten::scatter.src_out(Tensor self, int dim, Tensor index, Tensor src, *, Tensor(a!) out)`
pub fn scatter_src_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    scatter_impl(args, Source::Tensor(args.tensor(3)?), false)
}

/// `aten::scatter.value_out(Tensor self, int dim, Tensor index, Scalar value, *, Tensor(a!) out)`:
/// the value is converted to `self`'s dtype (truncated for integers).
pub fn scatter_value_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    scatter_impl(args, Source::Value(args.scalar(3)?), false)
}

/// `aten::scatter_add.out(Tensor self, int dim, Tensor index, Tensor src, *, Tensor(a!) out)`:
/// additions happen in index order, in `self`'s dtype (16-bit floats: in f32, rounded once per
/// element, as PyTorch's CPU kernel does).
pub fn scatter_add_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    scatter_impl(args, Source::Tensor(args.tensor(3)?), true)
}

/// `shape` without dimension `dim`.
fn without(shape: &[usize], dim: usize) -> Shape {
    let mut s = Shape::scalar();
    for (d, &n) in shape.iter().enumerate() {
        if d != dim {
            s.push(n);
        }
    }
    s
}

/// `aten::select_scatter.out(Tensor self, Tensor src, int dim, SymInt index, *, Tensor(a!) out)`:
/// `self` with `out.select(dim, index) = src` (values converted to `self`'s dtype).
pub fn select_scatter_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let src = args.tensor(1)?;
    if x.dim() == 0 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "cannot select from a 0-dim tensor" });
    }
    let dim =
        wrap_dim(args.int(2)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 2, reason: "dim out of range" })?;
    let index = check_index(args.int(3)?, x.sizes()[dim], true, 3)?;
    let mut out = args.tensor_mut(4)?;
    if src.sizes() != &without(x.sizes(), dim)[..] {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "src must have the shape of the selected slice" });
    }
    copy_self(&x, &mut out)?;
    let ostr = out.strides();
    strided_copy(&src, 0, src.strides(), src.sizes(), &mut out, index * ostr[dim], &without(&ostr, dim))
}

/// `aten::slice_scatter.out(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None,
/// SymInt step=1, *, Tensor(a!) out)`: `self` with `out[start:end:step]` along `dim` set to `src`.
pub fn slice_scatter_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let src = args.tensor(1)?;
    if x.dim() == 0 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "cannot slice a 0-dim tensor" });
    }
    let dim =
        wrap_dim(args.int(2)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 2, reason: "dim out of range" })?;
    let (start, end) = slice_bounds(args.opt_int(3)?, args.opt_int(4)?, x.sizes()[dim]);
    let step = usize::try_from(args.int(5)?)
        .ok()
        .filter(|&s| s > 0)
        .ok_or(KernelError::InvalidArgument { arg: 5, reason: "slice step must be positive" })?;
    let mut out = args.tensor_mut(6)?;
    let mut sizes = x.shape();
    sizes.as_mut_slice()[dim] = (end - start).div_ceil(step);
    if src.sizes() != &sizes[..] {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "src must have the shape of the slice" });
    }
    copy_self(&x, &mut out)?;
    let mut ostr = out.strides();
    let offset = start * ostr[dim];
    ostr.as_mut_slice()[dim] *= step;
    strided_copy(&src, 0, src.strides(), &sizes, &mut out, offset, &ostr)
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::ALL_DTYPES;
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::scatter.src_out(Tensor self, int dim, Tensor index, Tensor src, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            scatter_src_out,
        ),
        (
            "aten::scatter.value_out(Tensor self, int dim, Tensor index, Scalar value, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            scatter_value_out,
        ),
        (
            "aten::scatter_add.out(Tensor self, int dim, Tensor index, Tensor src, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            scatter_add_out,
        ),
        (
            "aten::select_scatter.out(Tensor self, Tensor src, int dim, SymInt index, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            select_scatter_out,
        ),
        (
            "aten::slice_scatter.out(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            slice_scatter_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

//! Reductions over dimensions: `sum`, `mean`, `prod`, `var`/`var_mean`, `amax`/`amin`,
//! `argmax`/`argmin`, `max`/`min` (values and indices), `any`, and the scan `cumsum`.
//!
//! NaN follows PyTorch: `amax`, `max`, `argmax` and their `min` twins pick the first NaN of a
//! reduced group (NaN propagates); ties pick the first occurrence. A group of no elements is an
//! error for the ops without an identity (max/min family), as in PyTorch.

use core::cmp::Ordering;

use crate::args::KernelArgs;
use crate::dtype::{DType, Element, can_cast};
use crate::error::KernelError;
use crate::portable::elementwise::{Compute, Src, compute_for};
use crate::portable::topk::cmp_nan_greatest;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, StridedIter, wrap_dim};
use crate::tensor::{Tensor, TensorMut};

/// Which dimensions a reduction folds, as a bitmask (rank <= 16). `None` or `[]` means all.
pub fn reduce_mask(args: &KernelArgs<'_>, arg: usize, rank: usize) -> Result<u32, KernelError> {
    let all = if rank == 0 { 0 } else { (1u32 << rank) - 1 };
    let Some(list) = args.opt_int_list(arg)? else { return Ok(all) };
    if list.is_empty() {
        return Ok(all);
    }
    let mut mask = 0u32;
    for d in list.iter() {
        let d = wrap_dim(d?, rank).ok_or(KernelError::InvalidArgument { arg, reason: "dim out of range" })?;
        if mask & (1 << d) != 0 {
            return Err(KernelError::InvalidArgument { arg, reason: "dim appears twice" });
        }
        mask |= 1 << d;
    }
    Ok(if rank == 0 { 0 } else { mask })
}

/// Output sizes of a reduction: reduced dims become 1 (`keepdim`) or disappear.
pub fn reduced_shape(sizes: &[usize], mask: u32, keepdim: bool) -> Shape {
    let mut s = Shape::scalar();
    for (d, &n) in sizes.iter().enumerate() {
        if mask & (1 << d) == 0 {
            s.push(n);
        } else if keepdim {
            s.push(1);
        }
    }
    s
}

/// How to walk a reduction: an outer walk over kept dims (input and output offsets) and an inner
/// walk over the reduced dims (input offsets).
pub struct ReductionPlan {
    kept: Shape,
    kept_strides: Shape,
    out_strides: Shape,
    reduced: Shape,
    reduced_strides: Shape,
}

impl ReductionPlan {
    /// The plan for reducing `x` over `mask` into `out` (which has its reduced shape already).
    pub fn new(x: &Tensor<'_>, mask: u32, out: &TensorMut<'_>) -> ReductionPlan {
        let (sizes, strides) = (x.sizes(), x.strides());
        let ostr_all = out.strides();
        let keepdim = out.dim() == sizes.len() && mask != 0;
        let mut p = ReductionPlan {
            kept: Shape::scalar(),
            kept_strides: Shape::scalar(),
            out_strides: Shape::scalar(),
            reduced: Shape::scalar(),
            reduced_strides: Shape::scalar(),
        };
        let mut k = 0usize;
        for d in 0..sizes.len() {
            if mask & (1 << d) != 0 {
                p.reduced.push(sizes[d]);
                p.reduced_strides.push(strides[d]);
            } else {
                p.kept.push(sizes[d]);
                p.kept_strides.push(strides[d]);
                let o = if keepdim { d } else { k };
                p.out_strides.push(ostr_all.get(o).copied().unwrap_or(0));
                k += 1;
            }
        }
        p
    }

    /// Number of input elements folded into each output element.
    pub fn count(&self) -> usize {
        self.reduced.numel().unwrap_or(0)
    }

    /// Calls `f(out_offset, input_offsets)` for every output element.
    pub fn for_each(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
        for [io, base] in StridedIter::new(&self.kept, [self.out_strides, self.kept_strides]) {
            let mut inner = StridedIter::new(&self.reduced, [self.reduced_strides]).map(|[o]| base + o);
            f(io, &mut inner);
        }
    }

    /// [`Self::for_each`] for a fallible `f`; stops at the first error. The input offsets come in
    /// row-major order of the reduced dimensions, so their position is the flat index PyTorch
    /// reports (`argmax` over several or all dimensions).
    pub fn try_for_each(
        &self,
        mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>) -> Result<(), KernelError>,
    ) -> Result<(), KernelError> {
        for [io, base] in StridedIter::new(&self.kept, [self.out_strides, self.kept_strides]) {
            let mut inner = StridedIter::new(&self.reduced, [self.reduced_strides]).map(|[o]| base.wrapping_add(o));
            f(io, &mut inner)?;
        }
        Ok(())
    }

    /// Fails (naming `arg`) when output elements would fold no input: max, min and friends have
    /// no value for an empty group.
    fn require_nonempty(&self, out_numel: usize, arg: usize) -> Result<(), KernelError> {
        if self.count() == 0 && out_numel > 0 {
            Err(KernelError::InvalidArgument { arg, reason: "cannot reduce over a dimension of size 0" })
        } else {
            Ok(())
        }
    }
}

const OUTSIDE: &str = "element offset outside the tensor";

/// The mask of an `int? dim` argument: one dimension, or all of them for `None`.
fn single_dim_mask(dim: Option<i64>, rank: usize, arg: usize) -> Result<u32, KernelError> {
    let all = if rank == 0 { 0 } else { (1u32 << rank) - 1 };
    match dim {
        None => Ok(all),
        Some(d) => {
            let d = wrap_dim(d, rank).ok_or(KernelError::InvalidArgument { arg, reason: "dim out of range" })?;
            Ok(if rank == 0 { 0 } else { 1 << d })
        }
    }
}

#[inline]
fn is_nan<T: Element>(v: T) -> bool {
    T::IS_FLOAT && v.to_f64().is_nan()
}

/// Whether `v` replaces `best` as the running maximum (`max`) or minimum: a NaN wins and then
/// stays; among equal values the earlier stays.
#[inline]
fn replaces<T: Element>(best: T, v: T, max: bool) -> bool {
    if is_nan(best) {
        return false;
    }
    if is_nan(v) {
        return true;
    }
    let order = cmp_nan_greatest(v, best);
    if max { order == Ordering::Greater } else { order == Ordering::Less }
}

/// Finds the maximum (or minimum) of each group and calls `write(out_offset, value, position)`,
/// `position` being the element's index within its group.
fn extremes<T: Element>(
    from: &[T],
    plan: &ReductionPlan,
    max: bool,
    mut write: impl FnMut(usize, T, usize) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg: 0, reason: OUTSIDE };
    plan.try_for_each(|io, inputs| {
        let mut best: Option<(T, usize)> = None;
        for (k, i) in inputs.enumerate() {
            let v = *from.get(i).ok_or(bad)?;
            match best {
                Some((b, _)) if !replaces(b, v, max) => {}
                _ => best = Some((v, k)),
            }
        }
        match best {
            Some((v, k)) => write(io, v, k),
            None => Ok(()),
        }
    })
}

/// Writes the extreme values of `x` over `mask` into `out` (which has the reduced shape).
fn write_extreme_values(x: &Tensor<'_>, mask: u32, out: &mut TensorMut<'_>, max: bool) -> Result<(), KernelError> {
    let arg = out.arg();
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg, expected: x.dtype(), found: out.dtype() });
    }
    let plan = ReductionPlan::new(x, mask, out);
    plan.require_nonempty(out.numel(), 1)?;
    let bad = KernelError::ShapeMismatch { arg, reason: OUTSIDE };
    crate::dispatch_dtype!(x.dtype(), T => {
        let from = x.data::<T>()?;
        let o = out.data_mut::<T>()?;
        extremes(from, &plan, max, |io, v, _| {
            *o.get_mut(io).ok_or(bad)? = v;
            Ok(())
        })
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: x.dtype() }))
}

/// Writes the positions of the extreme values of `x` over `mask` into the int64 `out`.
fn write_extreme_indices(x: &Tensor<'_>, mask: u32, out: &mut TensorMut<'_>, max: bool) -> Result<(), KernelError> {
    let arg = out.arg();
    if out.dtype() != DType::Long {
        return Err(KernelError::DtypeMismatch { arg, expected: DType::Long, found: out.dtype() });
    }
    if x.dtype() == DType::Bool {
        // PyTorch: "argmax(): does not support bool input" (and so for argmin).
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: DType::Bool });
    }
    let plan = ReductionPlan::new(x, mask, out);
    plan.require_nonempty(out.numel(), 1)?;
    let bad = KernelError::ShapeMismatch { arg, reason: OUTSIDE };
    crate::dispatch_dtype!(x.dtype(), T => {
        let from = x.data::<T>()?;
        let o = out.data_mut::<i64>()?;
        extremes(from, &plan, max, |io, _, k| {
            *o.get_mut(io).ok_or(bad)? = k as i64;
            Ok(())
        })
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: x.dtype() }))
}

fn amax_amin(args: &KernelArgs<'_>, max: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = reduce_mask(args, 1, x.dim())?;
    let keepdim = args.bool(2)?;
    let mut out = args.tensor_mut(3)?;
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    write_extreme_values(&x, mask, &mut out, max)
}

/// `aten::amax.out(Tensor self, int[1] dim=[], bool keepdim=False, *, Tensor(a!) out)`
pub fn amax_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    amax_amin(args, true)
}

/// `aten::amin.out(Tensor self, int[1] dim=[], bool keepdim=False, *, Tensor(a!) out)`
pub fn amin_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    amax_amin(args, false)
}

fn argmax_argmin(args: &KernelArgs<'_>, max: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = single_dim_mask(args.opt_int(1)?, x.dim(), 1)?;
    let keepdim = args.bool(2)?;
    let mut out = args.tensor_mut(3)?;
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    write_extreme_indices(&x, mask, &mut out, max)
}

/// `aten::argmax.out(Tensor self, int? dim=None, bool keepdim=False, *, Tensor(a!) out)`: the
/// first maximum's index (the first NaN's, if any); without `dim`, the flat index.
pub fn argmax_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    argmax_argmin(args, true)
}

/// `aten::argmin.out(Tensor self, int? dim=None, bool keepdim=False, *, Tensor(a!) out)`
pub fn argmin_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    argmax_argmin(args, false)
}

fn max_min_dim(args: &KernelArgs<'_>, max: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = single_dim_mask(Some(args.int(1)?), x.dim(), 1)?;
    let keepdim = args.bool(2)?;
    let shape = reduced_shape(x.sizes(), mask, keepdim);
    let mut values = args.tensor_mut(3)?;
    let mut indices = args.tensor_mut(4)?;
    values.resize(&shape)?;
    indices.resize(&shape)?;
    // Two passes, so that each output may have its own dim order.
    write_extreme_values(&x, mask, &mut values, max)?;
    if x.dtype() == DType::Bool {
        // max/min over bool are defined (unlike argmax); index with the bytes as uint8.
        return write_bool_extreme_indices(&x, mask, &mut indices, max);
    }
    write_extreme_indices(&x, mask, &mut indices, max)
}

fn write_bool_extreme_indices(
    x: &Tensor<'_>,
    mask: u32,
    out: &mut TensorMut<'_>,
    max: bool,
) -> Result<(), KernelError> {
    let arg = out.arg();
    if out.dtype() != DType::Long {
        return Err(KernelError::DtypeMismatch { arg, expected: DType::Long, found: out.dtype() });
    }
    let plan = ReductionPlan::new(x, mask, out);
    let bad = KernelError::ShapeMismatch { arg, reason: OUTSIDE };
    let from = x.data::<crate::dtype::Bool>()?;
    let o = out.data_mut::<i64>()?;
    extremes(from, &plan, max, |io, _, k| {
        *o.get_mut(io).ok_or(bad)? = k as i64;
        Ok(())
    })
}

/// `aten::max.dim_max(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) max, Tensor(b!)
/// max_values) -> (Tensor(a!) values, Tensor(b!) indices)`
pub fn max_dim_max(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    max_min_dim(args, true)
}

/// `aten::min.dim_min(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) min, Tensor(b!)
/// min_indices) -> (Tensor(a!) values, Tensor(b!) indices)`
pub fn min_dim_min(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    max_min_dim(args, false)
}

fn max_min_all(args: &KernelArgs<'_>, max: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    if x.numel() == 0 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "cannot reduce an empty tensor without a dim" });
    }
    out.resize(&[])?;
    let mask = single_dim_mask(None, x.dim(), 0)?;
    write_extreme_values(&x, mask, &mut out, max)
}

/// `aten::max.unary_out(Tensor self, *, Tensor(a!) out)`: the maximum of all elements (NaN if any).
pub fn max_unary_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    max_min_all(args, true)
}

/// `aten::min.unary_out(Tensor self, *, Tensor(a!) out)`
pub fn min_unary_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    max_min_all(args, false)
}

/// Writes, for each group of `x` over `mask`, whether any element is non-zero. `out` is bool, or
/// uint8 (PyTorch's result for uint8 input): both store 0 or 1 in one byte.
fn write_any(x: &Tensor<'_>, mask: u32, out: &mut TensorMut<'_>) -> Result<(), KernelError> {
    let arg = out.arg();
    if !matches!(out.dtype(), DType::Bool | DType::Byte) {
        return Err(KernelError::DtypeMismatch { arg, expected: DType::Bool, found: out.dtype() });
    }
    let plan = ReductionPlan::new(x, mask, out);
    let bad = KernelError::ShapeMismatch { arg, reason: OUTSIDE };
    crate::dispatch_dtype!(x.dtype(), T => {
        let from = x.data::<T>()?;
        let o = out.bytes_mut()?;
        plan.try_for_each(|io, inputs| {
            let mut any = false;
            for i in inputs {
                if from.get(i).ok_or(bad)?.is_nonzero() {
                    any = true;
                    break;
                }
            }
            *o.get_mut(io).ok_or(bad)? = u8::from(any);
            Ok(())
        })
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: x.dtype() }))
}

/// `aten::any.all_out(Tensor self, *, Tensor(a!) out)`
pub fn any_all_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    out.resize(&[])?;
    write_any(&x, single_dim_mask(None, x.dim(), 0)?, &mut out)
}

/// `aten::any.dims_out(Tensor self, int[]? dim=None, bool keepdim=False, *, Tensor(a!) out)`:
/// `dim=None` reduces everything; an empty list reduces nothing (PyTorch: elementwise "is
/// non-zero").
pub fn any_dims_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let no_dims = args.opt_int_list(1)?.is_some_and(|l| l.is_empty());
    let mask = if no_dims { 0 } else { reduce_mask(args, 1, x.dim())? };
    let keepdim = args.bool(2)?;
    let mut out = args.tensor_mut(3)?;
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    write_any(&x, mask, &mut out)
}

/// `aten::any.out(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) out)`
pub fn any_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = single_dim_mask(Some(args.int(1)?), x.dim(), 1)?;
    let keepdim = args.bool(2)?;
    let mut out = args.tensor_mut(3)?;
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    write_any(&x, mask, &mut out)
}

/// The dtype a `sum`-like op computes and returns: the `dtype` argument if given (the output
/// must have it), else the output's own dtype, into which the input must convert (PyTorch's rule
/// for `out=` reductions).
fn accumulate_dtype(x: &Tensor<'_>, dtype: Option<DType>, out: &TensorMut<'_>) -> Result<DType, KernelError> {
    let arg = out.arg();
    match dtype {
        Some(want) if want != out.dtype() => {
            Err(KernelError::DtypeMismatch { arg, expected: want, found: out.dtype() })
        }
        Some(want) => Ok(want),
        None if can_cast(x.dtype(), out.dtype()) => Ok(out.dtype()),
        None => Err(KernelError::DtypeMismatch { arg, expected: x.dtype(), found: out.dtype() }),
    }
}

/// `a·b` in `T`'s own arithmetic, as PyTorch's CPU `prod` multiplies: floats round to `T` after
/// each step (the product of two values of at most 24 significant bits is exact in f64; f64 is
/// native), integers wrap.
#[inline]
fn mul_in_dtype<T: Element>(a: T, b: T) -> T {
    if T::IS_FLOAT { T::from_f64(a.to_f64() * b.to_f64()) } else { T::from_i64(a.to_i64().wrapping_mul(b.to_i64())) }
}

fn prod_impl(x: &Tensor<'_>, mask: u32, out: &mut TensorMut<'_>, dtype: Option<DType>) -> Result<(), KernelError> {
    let want = accumulate_dtype(x, dtype, out)?;
    let plan = ReductionPlan::new(x, mask, out);
    let src = Src::of(x)?;
    let (arg, len) = (out.arg(), x.numel());
    let bad = KernelError::ShapeMismatch { arg, reason: OUTSIDE };
    crate::dispatch_dtype!(want, D => {
        let o = out.data_mut::<D>()?;
        plan.try_for_each(|io, inputs| {
            let mut acc = D::from_i64(1);
            for i in inputs {
                if i >= len {
                    return Err(bad);
                }
                acc = mul_in_dtype(acc, src.get::<D>(i));
            }
            *o.get_mut(io).ok_or(bad)? = acc;
            Ok(())
        })
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: want }))
}

/// `aten::prod.int_out(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None,
/// Tensor(a!) out)`
pub fn prod_int_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = single_dim_mask(Some(args.int(1)?), x.dim(), 1)?;
    let keepdim = args.bool(2)?;
    let dtype = args.opt_dtype(3)?;
    let mut out = args.tensor_mut(4)?;
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    prod_impl(&x, mask, &mut out, dtype)
}

/// `aten::prod.out(Tensor self, *, ScalarType? dtype=None, Tensor(a!) out)`: the product of all
/// elements (1 for none).
pub fn prod_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dtype = args.opt_dtype(1)?;
    let mut out = args.tensor_mut(2)?;
    out.resize(&[])?;
    prod_impl(&x, single_dim_mask(None, x.dim(), 0)?, &mut out, dtype)
}

/// `aten::cumsum.out(Tensor self, int dim, *, ScalarType? dtype=None, Tensor(a!) out)`: running
/// sums along `dim`, accumulated as PyTorch's CPU kernel does (f64 for f32/f64, f32 for 16-bit
/// floats, wrapping i64 for integers) and converted at each step.
pub fn cumsum_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim =
        wrap_dim(args.int(1)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    let dtype = args.opt_dtype(2)?;
    let mut out = args.tensor_mut(3)?;
    let want = accumulate_dtype(&x, dtype, &out)?;
    out.resize(x.sizes())?;
    if x.numel() == 0 {
        return Ok(());
    }
    let (xstr, ostr) = (x.strides(), out.strides());
    let (n, xs, os) = if x.dim() == 0 { (1, 0, 0) } else { (x.sizes()[dim], xstr[dim], ostr[dim]) };
    let mut lines = x.shape();
    if let Some(slot) = lines.as_mut_slice().get_mut(dim) {
        *slot = 1;
    }
    let src = Src::of(&x)?;
    let (arg, len) = (out.arg(), x.numel());
    let bad = KernelError::ShapeMismatch { arg, reason: OUTSIDE };
    let wide = compute_for(want);
    crate::dispatch_dtype!(want, D => {
        let o = out.data_mut::<D>()?;
        for [xb, ob] in StridedIter::new(&lines, [*xstr, ostr]) {
            let (mut f, mut i) = (0f64, 0i64);
            for k in 0..n {
                let at = xb + k * xs;
                if at >= len {
                    return Err(bad);
                }
                let v = match wide {
                    Compute::I64 => {
                        i = i.wrapping_add(src.get::<i64>(at));
                        D::from_i64(i)
                    }
                    Compute::F32 if want != DType::Float => {
                        f = f64::from((f as f32) + src.get::<f32>(at));
                        D::from_f64(f)
                    }
                    _ => {
                        f += src.get::<f64>(at);
                        D::from_f64(f)
                    }
                };
                *o.get_mut(ob + k * os).ok_or(bad)? = v;
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: want }))
}

/// Computes variance (and mean) of every group with Welford's algorithm in f64, and calls
/// `write(out_offset, variance, mean)`. The divisor is `max(0, n - correction)`, as in PyTorch:
/// a zero divisor gives NaN or infinity, an empty group NaN.
fn moments(
    x: &Tensor<'_>,
    plan: &ReductionPlan,
    correction: f64,
    mut write: impl FnMut(usize, f64, f64) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    let src = Src::of(x)?;
    let len = x.numel();
    let bad = KernelError::ShapeMismatch { arg: 0, reason: OUTSIDE };
    plan.try_for_each(|io, inputs| {
        let (mut n, mut mean, mut m2) = (0f64, 0f64, 0f64);
        for i in inputs {
            if i >= len {
                return Err(bad);
            }
            let v = src.get::<f64>(i);
            n += 1.0;
            let delta = v - mean;
            mean += delta / n;
            m2 += delta * (v - mean);
        }
        if n == 0.0 {
            mean = f64::NAN;
        }
        write(io, m2 / (n - correction).max(0.0), mean)
    })
}

/// Writes one statistic of `x` over `mask` into the floating `out` (`variance` picks which).
fn write_moment(
    x: &Tensor<'_>,
    mask: u32,
    correction: f64,
    out: &mut TensorMut<'_>,
    variance: bool,
) -> Result<(), KernelError> {
    let arg = out.arg();
    if !x.dtype().is_floating_point() {
        // PyTorch: "std and var only support floating point and complex dtypes".
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: x.dtype() });
    }
    if !out.dtype().is_floating_point() {
        return Err(KernelError::DtypeMismatch { arg, expected: x.dtype(), found: out.dtype() });
    }
    let plan = ReductionPlan::new(x, mask, out);
    let bad = KernelError::ShapeMismatch { arg, reason: OUTSIDE };
    crate::dispatch_dtype!(out.dtype(), D => {
        let o = out.data_mut::<D>()?;
        moments(x, &plan, correction, |io, var, mean| {
            *o.get_mut(io).ok_or(bad)? = D::from_f64(if variance { var } else { mean });
            Ok(())
        })
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: out.dtype() }))
}

/// The `Scalar? correction` argument (default 1, Bessel's correction).
fn correction_arg(args: &KernelArgs<'_>, arg: usize) -> Result<f64, KernelError> {
    Ok(args.opt_scalar(arg)?.map_or(1.0, |s| s.to_f64()))
}

/// `aten::var.correction_out(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool
/// keepdim=False, Tensor(a!) out)`
pub fn var_correction_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = reduce_mask(args, 1, x.dim())?;
    let correction = correction_arg(args, 2)?;
    let keepdim = args.bool(3)?;
    let mut out = args.tensor_mut(4)?;
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    write_moment(&x, mask, correction, &mut out, true)
}

/// `aten::var.out(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False, *, Tensor(a!) out)`
pub fn var_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = reduce_mask(args, 1, x.dim())?;
    let correction = if args.bool(2)? { 1.0 } else { 0.0 };
    let keepdim = args.bool(3)?;
    let mut out = args.tensor_mut(4)?;
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    write_moment(&x, mask, correction, &mut out, true)
}

/// `aten::var_mean.correction_out(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool
/// keepdim=False, Tensor(a!) out0, Tensor(b!) out1) -> (Tensor(a!), Tensor(b!))`: variance into
/// `out0`, mean into `out1`.
pub fn var_mean_correction_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = reduce_mask(args, 1, x.dim())?;
    let correction = correction_arg(args, 2)?;
    let keepdim = args.bool(3)?;
    let shape = reduced_shape(x.sizes(), mask, keepdim);
    let mut var = args.tensor_mut(4)?;
    let mut mean = args.tensor_mut(5)?;
    var.resize(&shape)?;
    mean.resize(&shape)?;
    write_moment(&x, mask, correction, &mut var, true)?;
    write_moment(&x, mask, correction, &mut mean, false)
}

fn sum_like(args: &KernelArgs<'_>, mean: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = reduce_mask(args, 1, x.dim())?;
    let keepdim = args.bool(2)?;
    let dtype = args.opt_dtype(3)?;
    let mut out = args.tensor_mut(4)?;
    let want = dtype.unwrap_or(if mean || x.dtype().is_floating_point() { x.dtype() } else { DType::Long });
    if out.dtype() != want {
        return Err(KernelError::DtypeMismatch { arg: 4, expected: want, found: out.dtype() });
    }
    if mean && !want.is_floating_point() {
        return Err(KernelError::UnsupportedDtype { arg: 4, dtype: want });
    }
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    let plan = ReductionPlan::new(&x, mask, &out);
    let count = plan.count();
    let src = Src::of(&x)?;
    let arg = out.arg();
    crate::dispatch_dtype!(want, D => {
        let o = out.data_mut::<D>()?;
        let mut bad = false;
        plan.for_each(|io, inputs| {
            // Floats accumulate in f64, integers in i64 (wrapping), then convert once.
            let v = if D::IS_FLOAT {
                let s: f64 = inputs.map(|i| src.get::<f64>(i)).sum();
                D::from_f64(if mean { s / count as f64 } else { s })
            } else {
                D::from_i64(inputs.fold(0i64, |a, i| a.wrapping_add(src.get::<i64>(i))))
            };
            match o.get_mut(io) {
                Some(slot) => *slot = v,
                None => bad = true,
            }
        });
        if bad { Err(KernelError::ShapeMismatch { arg, reason: "output smaller than the reduction" }) } else { Ok(()) }
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: want }))
}

/// `aten::sum.IntList_out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None,
/// Tensor(a!) out)`
pub fn sum_intlist_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    sum_like(args, false)
}

/// `aten::mean.out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None,
/// Tensor(a!) out)`
pub fn mean_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    sum_like(args, true)
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::{ALL_DTYPES, FLOAT_DTYPES, REAL_DTYPES};
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::sum.IntList_out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            sum_intlist_out,
        ),
        (
            "aten::mean.out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            mean_out,
        ),
        (
            "aten::amax.out(Tensor self, int[1] dim=[], bool keepdim=False, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            amax_out,
        ),
        (
            "aten::amin.out(Tensor self, int[1] dim=[], bool keepdim=False, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            amin_out,
        ),
        ("aten::any.all_out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, any_all_out),
        (
            "aten::any.dims_out(Tensor self, int[]? dim=None, bool keepdim=False, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            any_dims_out,
        ),
        (
            "aten::any.out(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            any_out,
        ),
        (
            "aten::argmax.out(Tensor self, int? dim=None, bool keepdim=False, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            argmax_out,
        ),
        (
            "aten::argmin.out(Tensor self, int? dim=None, bool keepdim=False, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            argmin_out,
        ),
        (
            "aten::max.dim_max(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) max, Tensor(b!) max_values) -> (Tensor(a!) values, Tensor(b!) indices)",
            ALL_DTYPES,
            max_dim_max,
        ),
        (
            "aten::min.dim_min(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) min, Tensor(b!) min_indices) -> (Tensor(a!) values, Tensor(b!) indices)",
            ALL_DTYPES,
            min_dim_min,
        ),
        ("aten::max.unary_out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, max_unary_out),
        ("aten::min.unary_out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, min_unary_out),
        (
            "aten::prod.int_out(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            prod_int_out,
        ),
        ("aten::prod.out(Tensor self, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, prod_out),
        (
            "aten::cumsum.out(Tensor self, int dim, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            cumsum_out,
        ),
        (
            "aten::var.correction_out(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            var_correction_out,
        ),
        (
            "aten::var.out(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            var_out,
        ),
        (
            "aten::var_mean.correction_out(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False, Tensor(a!) out0, Tensor(b!) out1) -> (Tensor(a!), Tensor(b!))",
            FLOAT_DTYPES,
            var_mean_correction_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

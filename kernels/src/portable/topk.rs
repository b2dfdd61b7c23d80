//! `topk`: the `k` largest (or smallest) elements along a dimension, with their indices.

use core::cmp::Ordering;

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{StridedIter, wrap_dim};

/// Orders values as PyTorch's sorting kernels do: NaN above everything (and equal to NaN).
#[inline]
pub(crate) fn cmp_nan_greatest<T: Element>(a: T, b: T) -> Ordering {
    if T::IS_FLOAT {
        let (x, y) = (a.to_f64(), b.to_f64());
        match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        }
    } else {
        a.to_i64().cmp(&b.to_i64())
    }
}

/// `aten::topk.values(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True, *,
/// Tensor(a!) values, Tensor(b!) indices)`.
///
/// The result is always sorted (best first), which `sorted=False` also allows; among equal values
/// the lower index comes first. Without scratch memory, each line is an insertion sort of its best
/// `k` elements kept directly in the output buffers: O(n·k) in the worst case, O(n) when most
/// elements cannot enter the top k.
pub fn topk_values(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let k = args.int(1)?;
    let dim =
        wrap_dim(args.int(2)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 2, reason: "dim out of range" })?;
    let largest = args.bool(3)?;
    let _sorted = args.bool(4)?;
    let mut values = args.tensor_mut(5)?;
    let mut indices = args.tensor_mut(6)?;
    if values.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 5, expected: x.dtype(), found: values.dtype() });
    }
    if indices.dtype() != DType::Long {
        return Err(KernelError::DtypeMismatch { arg: 6, expected: DType::Long, found: indices.dtype() });
    }
    if x.dtype() == DType::Bool {
        // As PyTorch: "topk does not support bool dtypes".
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: DType::Bool });
    }
    let (n, xstride) = if x.dim() == 0 { (1, 0) } else { (x.sizes()[dim], x.strides()[dim]) };
    let k = usize::try_from(k).ok().filter(|&k| k <= n).ok_or(KernelError::ValueOutOfRange {
        arg: 1,
        value: k,
        min: 0,
        max: i64::try_from(n).unwrap_or(i64::MAX),
    })?;
    let mut sizes = x.shape();
    let mut outer = x.shape();
    if x.dim() > 0 {
        sizes.as_mut_slice()[dim] = k;
        outer.as_mut_slice()[dim] = 1;
    }
    values.resize(&sizes)?;
    indices.resize(&sizes)?;
    if x.dim() == 0 {
        // PyTorch returns the one element (index 0) for k = 0 as for k = 1.
        let (from, to) = (x.bytes()?, values.bytes_mut()?);
        if from.len() != to.len() {
            return Err(KernelError::ShapeMismatch { arg: 5, reason: "values must hold one element" });
        }
        to.copy_from_slice(from);
        indices.data_mut::<i64>()?.fill(0);
        return Ok(());
    }
    if k == 0 || x.numel() == 0 {
        return Ok(());
    }
    let (vstr, istr) = (values.strides(), indices.strides());
    let (vstep, istep) = if x.dim() == 0 { (0, 0) } else { (vstr[dim], istr[dim]) };
    // `a` (at index ia) ranks before `b` (at ib > ia only when ties keep insertion order).
    let before = |ord: Ordering| if largest { ord == Ordering::Greater } else { ord == Ordering::Less };
    let bad = KernelError::ShapeMismatch { arg: 5, reason: "element offset outside the tensor" };
    crate::dispatch_dtype!(x.dtype(), T => {
        let from = x.data::<T>()?;
        let vals = values.data_mut::<T>()?;
        let idx = indices.data_mut::<i64>()?;
        for [xb, vb, ib] in StridedIter::new(&outer, [*x.strides(), vstr, istr]) {
            let mut filled = 0usize;
            for i in 0..n {
                let v = *from.get(xb + i * xstride).ok_or(bad)?;
                // Slot the new element would take, shifting worse ones down; ties stay behind the
                // earlier (lower-index) element.
                let mut j = filled.min(k - 1);
                if filled == k && !before(cmp_nan_greatest(v, *vals.get(vb + j * vstep).ok_or(bad)?)) {
                    continue;
                }
                while j > 0 {
                    let prev = *vals.get(vb + (j - 1) * vstep).ok_or(bad)?;
                    if !before(cmp_nan_greatest(v, prev)) {
                        break;
                    }
                    *vals.get_mut(vb + j * vstep).ok_or(bad)? = prev;
                    *idx.get_mut(ib + j * istep).ok_or(bad)? = *idx.get(ib + (j - 1) * istep).ok_or(bad)?;
                    j -= 1;
                }
                *vals.get_mut(vb + j * vstep).ok_or(bad)? = v;
                *idx.get_mut(ib + j * istep).ok_or(bad)? = i as i64;
                filled = (filled + 1).min(k);
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: x.dtype() }))
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::REAL_DTYPES;
    let table: &[(&str, &'static [DType], KernelFn)] = &[(
        "aten::topk.values(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True, *, Tensor(a!) values, Tensor(b!) indices) -> (Tensor(a!) values, Tensor(b!) indices)",
        REAL_DTYPES,
        topk_values,
    )];
    crate::portable::register_table(r, table);
}

//! Copies between layouts: the shared core of `permute_copy`, `slice_copy`, `cat`, `copy_`,
//! `_to_dim_order_copy` and friends.

use crate::error::KernelError;
use crate::portable::elementwise::Src;
use crate::shape::{Shape, StridedIter};
use crate::tensor::{Tensor, TensorMut};

/// Copies the elements of `src`, read at `src_offset + Σ index·src_strides` over the logical
/// `shape`, into `out` (whose shape must already be `shape`) starting at element `out_offset` with
/// `out_strides`, converting to the output's dtype.
pub fn strided_copy(
    src: &Tensor<'_>,
    src_offset: usize,
    src_strides: Shape,
    shape: &[usize],
    out: &mut TensorMut<'_>,
    out_offset: usize,
    out_strides: Shape,
) -> Result<(), KernelError> {
    let arg = out.arg();
    if src.dtype() == out.dtype() {
        let elem = src.dtype().element_size().unwrap_or(1);
        let from = src.bytes()?;
        let to = out.bytes_mut()?;
        let count = Shape::new(shape).and_then(|s| s.numel()).unwrap_or(0);
        // Fast path: both sides dense in the same order → one memcpy.
        if count > 0 && is_dense(shape, &src_strides) && src_strides == out_strides {
            let (s0, o0) = (src_offset * elem, out_offset * elem);
            let n = count * elem;
            let (Some(f), Some(t)) = (from.get(s0..s0 + n), to.get_mut(o0..o0 + n)) else {
                return Err(KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" });
            };
            t.copy_from_slice(f);
            return Ok(());
        }
        return copy_elements(from, to, elem, src_offset, src_strides, shape, out_offset, out_strides, arg);
    }
    let s = Src::of(src)?;
    crate::dispatch_dtype!(out.dtype(), D => {
        let o = out.data_mut::<D>()?;
        for [io, is] in StridedIter::new(shape, [out_strides, src_strides]) {
            let v: D = s.get(src_offset + is);
            *o.get_mut(out_offset + io).ok_or(KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" })? = v;
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: out.dtype() }))
}

/// Element-by-element byte copy for equal dtypes.
#[allow(clippy::too_many_arguments)]
fn copy_elements(
    from: &[u8],
    to: &mut [u8],
    elem: usize,
    src_offset: usize,
    src_strides: Shape,
    shape: &[usize],
    out_offset: usize,
    out_strides: Shape,
    arg: usize,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" };
    macro_rules! typed {
        ($t:ty) => {{
            let f: &[$t] = bytemuck::try_cast_slice(from).map_err(|_| bad)?;
            let t: &mut [$t] = bytemuck::try_cast_slice_mut(to).map_err(|_| bad)?;
            for [io, is] in StridedIter::new(shape, [out_strides, src_strides]) {
                *t.get_mut(out_offset + io).ok_or(bad)? = *f.get(src_offset + is).ok_or(bad)?;
            }
            Ok(())
        }};
    }
    match elem {
        1 => typed!(u8),
        2 => typed!(u16),
        4 => typed!(u32),
        8 => typed!(u64),
        _ => Err(KernelError::NotImplemented("copy of this element size")),
    }
}

/// True when `strides` are the contiguous row-major strides of `shape` (size-1 dims ignored).
pub fn is_dense(shape: &[usize], strides: &[usize]) -> bool {
    let mut expect = 1usize;
    for (&size, &stride) in shape.iter().zip(strides).rev() {
        if size != 1 && stride != expect {
            return false;
        }
        expect = expect.saturating_mul(size);
    }
    true
}

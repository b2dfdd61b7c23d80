//! Copies between layouts: the shared core of `permute_copy`, `slice_copy`, `cat`, `copy_`,
//! `_to_dim_order_copy` and friends, plus the element-moving helpers of the indexing kernels.
//!
//! A view of a tensor is a start offset and one stride per dimension, in elements of its storage.
//! Strides may be "negative" (`flip`): they are stored as wrapped `usize` and every offset is
//! computed with wrapping arithmetic, then bounds-checked where it is used.

use bytemuck::Pod;

use crate::dtype::DType;
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
    src_strides: &Shape,
    shape: &[usize],
    out: &mut TensorMut<'_>,
    out_offset: usize,
    out_strides: &Shape,
) -> Result<(), KernelError> {
    let arg = out.arg();
    let bad = KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" };
    if src.dtype() == out.dtype() {
        let elem = src.dtype().element_size().unwrap_or(1);
        let from = src.bytes()?;
        let to = out.bytes_mut()?;
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(0);
        // Fast path: both sides dense (row-major; strides of size-1 dimensions do not matter, a
        // split along the last dimension of `[1, 1, n]` has `[n, n, 1]` against `[m, m, 1]`) → one
        // memcpy.
        if count > 0 && is_dense(shape, src_strides) && is_dense(shape, out_strides) {
            let range = |offset: usize| {
                let start = offset.checked_mul(elem)?;
                Some(start..start.checked_add(count.checked_mul(elem)?)?)
            };
            let (Some(f), Some(t)) =
                (range(src_offset).and_then(|r| from.get(r)), range(out_offset).and_then(|r| to.get_mut(r)))
            else {
                return Err(bad);
            };
            t.copy_from_slice(f);
            return Ok(());
        }
        return copy_elements(from, to, elem, src_offset, src_strides, shape, out_offset, out_strides, arg);
    }
    let s = Src::of(src)?;
    let src_len = src.numel();
    crate::dispatch_dtype!(out.dtype(), D => {
        let o = out.data_mut::<D>()?;
        for [io, is] in StridedIter::new(shape, [*out_strides, *src_strides]) {
            let at = src_offset.wrapping_add(is);
            if at >= src_len {
                return Err(bad);
            }
            let v: D = s.get(at);
            *o.get_mut(out_offset.wrapping_add(io)).ok_or(bad)? = v;
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: out.dtype() }))
}

/// Where a copy is a transpose at heart (a channels-last tensor made contiguous, or back): the
/// dim `a` the output steps through one element at a time and the dim `b` the source does, when
/// they differ and both have more than one element.
fn transposed_pair(shape: &[usize], src_strides: &Shape, out_strides: &Shape) -> Option<(usize, usize)> {
    let unit = |strides: &Shape| (0..shape.len()).find(|&d| strides[d] == 1 && shape[d] > 1);
    let (a, b) = (unit(out_strides)?, unit(src_strides)?);
    (a != b).then_some((a, b))
}

/// Copies by tiles of [`TRANSPOSE_TILE`]² elements of the plane of dims `a` (unit stride in the
/// output) and `b` (unit stride in the source), for every index of the other dims: each tile
/// reads and writes whole cache lines, where the element loop took about 8 ns an element
/// (mobilenet_v2 exported channels-last converts its last feature map back, 62720 elements,
/// before the pooling). `None` when an element lies outside either slice (checked per plane).
fn transpose_copy<T: Copy>(
    from: &[T],
    to: &mut [T],
    (src_offset, src_strides): (usize, &Shape),
    shape: &[usize],
    (out_offset, out_strides): (usize, &Shape),
    (a, b): (usize, usize),
) -> Option<()> {
    let (na, nb) = (shape[a], shape[b]);
    let (sa, ob) = (src_strides[a], out_strides[b]);
    let mut outer_shape = shape.to_vec();
    outer_shape[a] = 1;
    outer_shape[b] = 1;
    let outer = Shape::new(&outer_shape)?;
    // The last element of a plane, from its first: both sides' reach along `a` and `b`.
    let src_reach = (na - 1).checked_mul(sa)?.checked_add(nb - 1)?;
    let out_reach = (nb - 1).checked_mul(ob)?.checked_add(na - 1)?;
    for [io, is] in StridedIter::new(&outer, [*out_strides, *src_strides]) {
        let (o, s) = (out_offset.checked_add(io)?, src_offset.checked_add(is)?);
        let src = from.get(s..=s.checked_add(src_reach)?)?;
        let dst = to.get_mut(o..=o.checked_add(out_reach)?)?;
        for i0 in (0..na).step_by(TRANSPOSE_TILE) {
            for j0 in (0..nb).step_by(TRANSPOSE_TILE) {
                for i in i0..(i0 + TRANSPOSE_TILE).min(na) {
                    for j in j0..(j0 + TRANSPOSE_TILE).min(nb) {
                        dst[j * ob + i] = src[i * sa + j];
                    }
                }
            }
        }
    }
    Some(())
}

/// Side of a [`transpose_copy`] tile: 16 f32 are a cache line.
const TRANSPOSE_TILE: usize = 16;

/// Element-by-element byte copy for equal dtypes.
#[allow(clippy::too_many_arguments)]
fn copy_elements(
    from: &[u8],
    to: &mut [u8],
    elem: usize,
    src_offset: usize,
    src_strides: &Shape,
    shape: &[usize],
    out_offset: usize,
    out_strides: &Shape,
    arg: usize,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" };
    // Where both sides step by one element along the innermost dimension, that dimension is
    // copied as runs (a split or slice along an outer dimension: rows of a few hundred bytes,
    // which the element loop took several nanoseconds per element to walk).
    let rank = shape.len();
    let inner = shape.last().copied().unwrap_or(1);
    let runs = rank > 0 && inner > 1 && src_strides[rank - 1] == 1 && out_strides[rank - 1] == 1;
    macro_rules! typed {
        ($t:ty) => {{
            let f: &[$t] = bytemuck::try_cast_slice(from).map_err(|_| bad)?;
            let t: &mut [$t] = bytemuck::try_cast_slice_mut(to).map_err(|_| bad)?;
            if runs {
                let outer = Shape::new(&shape[..rank - 1]).ok_or(bad)?;
                let os = Shape::new(&out_strides[..rank - 1]).ok_or(bad)?;
                let ss = Shape::new(&src_strides[..rank - 1]).ok_or(bad)?;
                for [io, is] in StridedIter::new(&outer, [os, ss]) {
                    let (o, s) = (out_offset.wrapping_add(io), src_offset.wrapping_add(is));
                    let src = f.get(s..s.checked_add(inner).ok_or(bad)?).ok_or(bad)?;
                    t.get_mut(o..o.checked_add(inner).ok_or(bad)?).ok_or(bad)?.copy_from_slice(src);
                }
                return Ok(());
            }
            if let Some((a, b)) = transposed_pair(shape, src_strides, out_strides) {
                return transpose_copy(f, t, (src_offset, src_strides), shape, (out_offset, out_strides), (a, b))
                    .ok_or(bad);
            }
            for [io, is] in StridedIter::new(shape, [*out_strides, *src_strides]) {
                *t.get_mut(out_offset.wrapping_add(io)).ok_or(bad)? = *f.get(src_offset.wrapping_add(is)).ok_or(bad)?;
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

/// Runs `$body` with `$E` bound to a plain unsigned integer as wide as one element of `$dtype`:
/// kernels that only move elements (gather, scatter, index) need no per-dtype code. Evaluates to
/// an `UnsupportedDtype` error naming `$arg` for dtypes of other widths.
macro_rules! with_element_bits {
    ($dtype:expr, $arg:expr, $E:ident => $body:expr) => {{
        let dtype: $crate::DType = $dtype;
        match dtype.element_size() {
            Some(1) => {
                type $E = u8;
                $body
            }
            Some(2) => {
                type $E = u16;
                $body
            }
            Some(4) => {
                type $E = u32;
                $body
            }
            Some(8) => {
                type $E = u64;
                $body
            }
            _ => Err($crate::KernelError::UnsupportedDtype { arg: $arg, dtype }),
        }
    }};
}
pub(crate) use with_element_bits;

/// The elements of `t` as `E`, a type of the same width as its dtype (see [`with_element_bits`]).
pub(crate) fn elements<'a, E: Pod>(t: &Tensor<'a>) -> Result<&'a [E], KernelError> {
    if t.dtype().element_size() != Some(core::mem::size_of::<E>()) {
        return Err(KernelError::UnsupportedDtype { arg: t.arg(), dtype: t.dtype() });
    }
    bytemuck::try_cast_slice(t.bytes()?).map_err(|_| KernelError::Misaligned { arg: t.arg(), dtype: t.dtype() })
}

/// The elements of `t` as `E`, writable (see [`elements`]).
pub(crate) fn elements_mut<'b, E: Pod>(t: &'b mut TensorMut<'_>) -> Result<&'b mut [E], KernelError> {
    let (arg, dtype) = (t.arg(), t.dtype());
    if dtype.element_size() != Some(core::mem::size_of::<E>()) {
        return Err(KernelError::UnsupportedDtype { arg, dtype });
    }
    bytemuck::try_cast_slice_mut(t.bytes_mut()?).map_err(|_| KernelError::Misaligned { arg, dtype })
}

/// Strides that turn a [`StridedIter`] offset into the coordinate along `dim` (1 there, 0 elsewhere).
pub(crate) fn coordinate_strides(rank: usize, dim: usize) -> Shape {
    let mut s =
        Shape::new(&crate::shape::MAX_RANK_SHAPE[..rank.min(crate::shape::MAX_RANK_SHAPE.len())]).unwrap_or_default();
    if let Some(slot) = s.as_mut_slice().get_mut(dim) {
        *slot = 1;
    }
    s
}

/// The values of an integer index tensor (`int64` or `int32`, as PyTorch accepts for indices).
#[derive(Clone, Copy)]
pub(crate) enum IndexData<'a> {
    I64(&'a [i64]),
    I32(&'a [i32]),
}

impl<'a> IndexData<'a> {
    /// The indices of `t`, or an `UnsupportedDtype` error naming its argument.
    pub(crate) fn of(t: &Tensor<'a>) -> Result<IndexData<'a>, KernelError> {
        match t.dtype() {
            DType::Long => Ok(IndexData::I64(t.data()?)),
            DType::Int => Ok(IndexData::I32(t.data()?)),
            dtype => Err(KernelError::UnsupportedDtype { arg: t.arg(), dtype }),
        }
    }

    /// The index at element offset `i`; `arg` names the tensor when `i` is outside it.
    #[inline]
    pub(crate) fn get(&self, i: usize, arg: usize) -> Result<i64, KernelError> {
        let v = match self {
            IndexData::I64(d) => d.get(i).copied(),
            IndexData::I32(d) => d.get(i).map(|&v| i64::from(v)),
        };
        v.ok_or(KernelError::ShapeMismatch { arg, reason: "index read outside the tensor" })
    }
}

/// Checks an index read from a tensor against a dimension of `size`: `0..size`, and with
/// `wrap_negative` also `-size..0` counted from the end (PyTorch's advanced indexing).
#[inline]
pub(crate) fn check_index(index: i64, size: usize, wrap_negative: bool, arg: usize) -> Result<usize, KernelError> {
    let n = i64::try_from(size).unwrap_or(i64::MAX);
    let wrapped = if wrap_negative && index < 0 { index.wrapping_add(n) } else { index };
    if (0..n).contains(&wrapped) {
        Ok(wrapped as usize)
    } else {
        Err(KernelError::IndexOutOfRange { arg, index, size })
    }
}

/// Calls `f` with every multi-index of `shape`, in row-major order (none for an empty shape,
/// one — the empty index — for rank 0). Stops at the first error.
pub(crate) fn for_each_index(
    shape: &[usize],
    mut f: impl FnMut(&[usize]) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    let rank = shape.len().min(crate::shape::MAX_RANK_SHAPE.len());
    let shape = &shape[..rank];
    if shape.contains(&0) {
        return Ok(());
    }
    let mut index = crate::shape::MAX_RANK_SHAPE;
    loop {
        f(&index[..rank])?;
        // Advance, innermost dimension fastest; done when every dimension wrapped.
        let mut d = rank;
        loop {
            if d == 0 {
                return Ok(());
            }
            d -= 1;
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// `Σ index[d]·strides[d]`, wrapping (strides may be wrapped negatives); callers bounds-check.
#[inline]
pub(crate) fn offset_of(index: &[usize], strides: &[usize]) -> usize {
    index.iter().zip(strides).fold(0usize, |a, (&i, &s)| a.wrapping_add(i.wrapping_mul(s)))
}

/// `strides` extended with zeros to at least `rank` entries: a 0-dim operand walked alongside a
/// 1-D one (PyTorch treats 0-dim tensors as one-element 1-D ones in `gather`/`scatter`).
pub(crate) fn padded(strides: Shape, rank: usize) -> Shape {
    let mut s = strides;
    while s.len() < rank && s.push(0) {}
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::{DimOrder, strides_for};

    /// Channels-last to contiguous and back, and a 3-D permutation, through `copy_elements`
    /// (which takes the tiled transpose for them): every element lands where the strides say,
    /// on shapes that cross tile boundaries and leave partial tiles. A swapped index or a
    /// skipped tile fails it.
    #[test]
    fn transposing_copies_put_every_element_in_place() {
        let cases: &[(&[usize], &[u8], &[u8])] = &[
            (&[1, 20, 17, 3], &[0, 2, 3, 1], &[0, 1, 2, 3]),
            (&[2, 35, 4, 9], &[0, 1, 2, 3], &[0, 2, 3, 1]),
            (&[1, 1280, 7, 7], &[0, 2, 3, 1], &[0, 1, 2, 3]),
            (&[5, 33, 18], &[2, 0, 1], &[0, 1, 2]),
        ];
        for &(sizes, from_order, to_order) in cases {
            let n: usize = sizes.iter().product();
            let src_strides = strides_for(sizes, &DimOrder::new(from_order).expect("order"));
            let out_strides = strides_for(sizes, &DimOrder::new(to_order).expect("order"));
            assert!(transposed_pair(sizes, &src_strides, &out_strides).is_some(), "{sizes:?} takes the tiled path");
            let src: Vec<u32> = (0..n as u32).map(|v| v.wrapping_mul(2_654_435_761)).collect();
            let mut got = vec![0u8; n * 4];
            let shape = Shape::new(sizes).expect("shape");
            copy_elements(bytemuck::cast_slice(&src), &mut got, 4, 0, &src_strides, &shape, 0, &out_strides, 0)
                .expect("copy");
            let got: &[u32] = bytemuck::cast_slice(&got);
            let mut want = vec![0u32; n];
            for [io, is] in StridedIter::new(&shape, [out_strides, src_strides]) {
                want[io] = src[is];
            }
            assert!(got == want.as_slice(), "{sizes:?} {from_order:?} -> {to_order:?}");
        }
    }
}

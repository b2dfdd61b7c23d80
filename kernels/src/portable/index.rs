//! Indexing operators: `embedding`, `gather`, `index_select`, `index.Tensor` and `index_put`
//! (PyTorch's advanced indexing), the mask operators and `nonzero`, `repeat_interleave`.
//!
//! They move whole elements, so one byte-moving body serves every dtype (see
//! [`with_element_bits`]). Every index read from a tensor is checked against the dimension it
//! indexes: an index out of range is a [`KernelError::IndexOutOfRange`] naming the argument that
//! held it. Negative indices count from the end where PyTorch allows it (advanced indexing,
//! `index_put`); `embedding`, `gather` and `index_select` reject them, as PyTorch does.

use crate::args::{KernelArgs, TensorList};
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::broadcast_strides_ordered;
use crate::portable::layout::{
    IndexData, check_index, coordinate_strides, elements, elements_mut, for_each_index, offset_of, padded,
    strided_copy, with_element_bits,
};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{MAX_RANK_SHAPE, Shape, StridedIter, broadcast_shapes, wrap_dim};
use crate::tensor::{Tensor, TensorMut};

const OUTSIDE: &str = "element offset outside the tensor";

fn same_dtype(x: &Tensor<'_>, out: &TensorMut<'_>) -> Result<(), KernelError> {
    if x.dtype() == out.dtype() {
        Ok(())
    } else {
        Err(KernelError::DtypeMismatch { arg: out.arg(), expected: x.dtype(), found: out.dtype() })
    }
}

fn push_dim(shape: &mut Shape, size: usize, arg: usize) -> Result<(), KernelError> {
    if shape.push(size) { Ok(()) } else { Err(KernelError::InvalidArgument { arg, reason: "more than 16 dimensions" }) }
}

/// `a + b` in `T`'s own arithmetic, as PyTorch's CPU kernels accumulate in `index_put` and
/// `scatter_add`: floats round to `T` after each addition (the sum of two values of at most 24
/// significant bits is exact in f64, so rounding it once is exactly `T`'s addition), integers wrap,
/// bools OR.
#[inline]
pub(crate) fn add_in_dtype<T: Element>(a: T, b: T) -> T {
    if T::IS_FLOAT { T::from_f64(a.to_f64() + b.to_f64()) } else { T::from_i64(a.to_i64().wrapping_add(b.to_i64())) }
}

/// `aten::embedding.out(Tensor weight, Tensor indices, SymInt padding_idx=-1, bool
/// scale_grad_by_freq=False, bool sparse=False, *, Tensor(a!) out)`: row `indices[i]` of the 2-D
/// `weight` for every index (`padding_idx` only matters for gradients).
pub fn embedding_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let weight = args.tensor(0)?;
    let indices = args.tensor(1)?;
    let mut out = args.tensor_mut(5)?;
    if weight.dim() != 2 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "embedding weight must be 2-D" });
    }
    same_dtype(&weight, &out)?;
    let ids = IndexData::of(&indices)?;
    let (rows, width) = (weight.sizes()[0], weight.sizes()[1]);
    let mut sizes = indices.shape();
    push_dim(&mut sizes, width, 1)?;
    out.resize(&sizes)?;
    let ostr = out.strides();
    let rank = indices.dim();
    let (row_strides, col_stride) = (Shape::new(&ostr[..rank]).unwrap_or_default(), ostr[rank]);
    let wstr = weight.strides();
    with_element_bits!(weight.dtype(), 5, E => {
        let w = elements::<E>(&weight)?;
        let o = elements_mut::<E>(&mut out)?;
        let bad = KernelError::ShapeMismatch { arg: 5, reason: OUTSIDE };
        for [at, i] in StridedIter::new(indices.sizes(), [row_strides, *indices.strides()]) {
            let row = check_index(ids.get(i, 1)?, rows, false, 1)?;
            if col_stride == 1 && wstr[1] == 1 {
                // Rows contiguous on both sides (the usual case): one slice copy per index.
                let from = row.checked_mul(wstr[0]).and_then(|s| w.get(s..s.checked_add(width)?)).ok_or(bad)?;
                o.get_mut(at..at.checked_add(width).ok_or(bad)?).ok_or(bad)?.copy_from_slice(from);
                continue;
            }
            for c in 0..width {
                *o.get_mut(at + c * col_stride).ok_or(bad)? = *w.get(row * wstr[0] + c * wstr[1]).ok_or(bad)?;
            }
        }
        Ok(())
    })
}

/// Size and stride of dimension `dim` of `t`, a 0-dim tensor counting as one element.
fn dim_size_stride(t: &Tensor<'_>, dim: usize) -> (usize, usize) {
    if t.dim() == 0 { (1, 0) } else { (t.sizes()[dim], t.strides()[dim]) }
}

/// `t`'s strides with dimension `dim` zeroed (the part of an offset that does not depend on it).
fn strides_without(t: &Tensor<'_>, dim: usize) -> Shape {
    let mut s = *t.strides();
    if let Some(slot) = s.as_mut_slice().get_mut(dim) {
        *slot = 0;
    }
    s
}

/// Checks the shapes of `gather`/`scatter`: `index` has the rank of `x` (0-dim counting as 1-D)
/// and is no larger than `x` outside `dim` (and than `src`, when given, everywhere).
pub(crate) fn check_gather_shapes(
    x: &Tensor<'_>,
    dim: usize,
    index: &Tensor<'_>,
    src: Option<&Tensor<'_>>,
) -> Result<(), KernelError> {
    if x.dim().max(1) != index.dim().max(1) {
        return Err(KernelError::ShapeMismatch {
            arg: index.arg(),
            reason: "index must have as many dimensions as the input",
        });
    }
    for (d, &n) in index.sizes().iter().enumerate() {
        if d != dim && n > x.sizes().get(d).copied().unwrap_or(1) {
            return Err(KernelError::ShapeMismatch { arg: index.arg(), reason: "index is larger than the input" });
        }
        if let Some(src) = src
            && n > src.sizes().get(d).copied().unwrap_or(1)
        {
            return Err(KernelError::ShapeMismatch { arg: src.arg(), reason: "index is larger than src" });
        }
    }
    if let Some(src) = src
        && src.dim().max(1) != index.dim().max(1)
    {
        return Err(KernelError::ShapeMismatch { arg: src.arg(), reason: "src must have as many dimensions as index" });
    }
    Ok(())
}

/// `aten::gather.out(Tensor self, int dim, Tensor index, *, bool sparse_grad=False, Tensor(a!) out)`:
/// `out[i] = self[i with i[dim] replaced by index[i]]`.
pub fn gather_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim =
        wrap_dim(args.int(1)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    let index = args.tensor(2)?;
    let mut out = args.tensor_mut(4)?;
    same_dtype(&x, &out)?;
    let ids = IndexData::of(&index)?;
    check_gather_shapes(&x, dim, &index, None)?;
    out.resize(index.sizes())?;
    let (size, stride) = dim_size_stride(&x, dim);
    let rank = index.dim();
    let strides = [padded(out.strides(), rank), *index.strides(), padded(strides_without(&x, dim), rank)];
    with_element_bits!(x.dtype(), 4, E => {
        let from = elements::<E>(&x)?;
        let to = elements_mut::<E>(&mut out)?;
        let bad = KernelError::ShapeMismatch { arg: 4, reason: OUTSIDE };
        for [o, i, base] in StridedIter::new(index.sizes(), strides) {
            let k = check_index(ids.get(i, 2)?, size, false, 2)?;
            *to.get_mut(o).ok_or(bad)? = *from.get(base + k * stride).ok_or(bad)?;
        }
        Ok(())
    })
}

/// `aten::index_select.out(Tensor self, int dim, Tensor index, *, Tensor(a!) out)`: the entries
/// `index` (0-D or 1-D) of dimension `dim`, in that order.
pub fn index_select_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim =
        wrap_dim(args.int(1)?, x.dim()).ok_or(KernelError::InvalidArgument { arg: 1, reason: "dim out of range" })?;
    let index = args.tensor(2)?;
    let mut out = args.tensor_mut(3)?;
    same_dtype(&x, &out)?;
    if index.dim() > 1 {
        return Err(KernelError::InvalidArgument { arg: 2, reason: "index must be 0-D or 1-D" });
    }
    let ids = IndexData::of(&index)?;
    let count = index.numel();
    let index_stride = index.strides().first().copied().unwrap_or(0);
    let (size, stride) = dim_size_stride(&x, dim);
    let mut sizes = x.shape();
    if let Some(slot) = sizes.as_mut_slice().get_mut(dim) {
        *slot = count;
    } else if count != 1 {
        return Err(KernelError::ShapeMismatch { arg: 2, reason: "a 0-dim input takes one index" });
    }
    out.resize(&sizes)?;
    let strides = [out.strides(), strides_without(&x, dim), coordinate_strides(sizes.len(), dim)];
    with_element_bits!(x.dtype(), 3, E => {
        let from = elements::<E>(&x)?;
        let to = elements_mut::<E>(&mut out)?;
        let bad = KernelError::ShapeMismatch { arg: 3, reason: OUTSIDE };
        for [o, base, j] in StridedIter::new(&sizes, strides) {
            let k = check_index(ids.get(j * index_stride, 2)?, size, false, 2)?;
            *to.get_mut(o).ok_or(bad)? = *from.get(base + k * stride).ok_or(bad)?;
        }
        Ok(())
    })
}

/// Walks a boolean mask in row-major order to find its k-th true element. Advanced indexing asks
/// for k = 0, 1, 2, ... over and over (once per slice of the other dimensions), so the walk
/// continues from where it stopped and restarts only when k goes back: linear in the mask per
/// pass, without materialising the mask's `nonzero` (which would need memory).
#[derive(Clone, Copy)]
struct MaskWalk {
    coord: [usize; crate::shape::MAX_RANK_SHAPE.len()],
    /// Number of true elements at or before `coord`.
    seen: usize,
    started: bool,
}

impl MaskWalk {
    fn new() -> MaskWalk {
        MaskWalk { coord: MAX_RANK_SHAPE, seen: 0, started: false }
    }

    /// The coordinates of the `k`-th (from 0) true element of `mask`.
    fn find(&mut self, mask: &MaskData<'_>, k: usize) -> Result<&[usize], KernelError> {
        let rank = mask.sizes.len();
        if !self.started || self.seen > k + 1 {
            self.coord = MAX_RANK_SHAPE;
            self.seen = usize::from(mask.at(&self.coord[..rank])?);
            self.started = true;
        }
        loop {
            if self.seen == k + 1 && mask.at(&self.coord[..rank])? {
                return Ok(&self.coord[..rank]);
            }
            // Advance one element, innermost dimension fastest.
            let mut d = rank;
            loop {
                if d == 0 {
                    return Err(KernelError::ShapeMismatch { arg: mask.arg, reason: "mask has fewer true elements" });
                }
                d -= 1;
                self.coord[d] += 1;
                if self.coord[d] < mask.sizes[d] {
                    break;
                }
                self.coord[d] = 0;
            }
            if mask.at(&self.coord[..rank])? {
                self.seen += 1;
            }
        }
    }
}

/// A bool (or, as PyTorch still accepts for indexing, uint8) mask: one byte per element.
#[derive(Clone, Copy)]
struct MaskData<'a> {
    bytes: &'a [u8],
    sizes: Shape,
    strides: Shape,
    arg: usize,
}

impl<'a> MaskData<'a> {
    fn of(t: &Tensor<'a>) -> Result<MaskData<'a>, KernelError> {
        Ok(MaskData { bytes: t.bytes()?, sizes: t.shape(), strides: *t.strides(), arg: t.arg() })
    }

    fn at(&self, coord: &[usize]) -> Result<bool, KernelError> {
        self.bytes
            .get(offset_of(coord, &self.strides))
            .map(|&b| b != 0)
            .ok_or(KernelError::ShapeMismatch { arg: self.arg, reason: OUTSIDE })
    }

    fn count(&self) -> Result<usize, KernelError> {
        let mut n = 0usize;
        for [o] in StridedIter::new(&self.sizes, [self.strides]) {
            n += usize::from(
                *self.bytes.get(o).ok_or(KernelError::ShapeMismatch { arg: self.arg, reason: OUTSIDE })? != 0,
            );
        }
        Ok(n)
    }
}

/// One non-`None` entry of an advanced index.
#[derive(Clone, Copy)]
enum Entry<'a> {
    /// Integer indices into self's dimension `dim`; `strides` read them over the broadcast shape.
    Ints { data: IndexData<'a>, sizes: Shape, own_strides: Shape, strides: Shape, dim: usize },
    /// A mask over self's dimensions `dim..dim + mask rank`: it acts as the list of its true
    /// elements' coordinates, a 1-D index of `count` entries.
    Mask { mask: MaskData<'a>, count: usize, strides: Shape, dim: usize, walk: MaskWalk },
}

/// PyTorch's advanced indexing (`self[indices]` with a `Tensor?[]` of integer tensors, masks and
/// `None` for whole dimensions), resolved into: the result's shape and, for each result element,
/// the element of the indexed tensor it refers to.
///
/// The index tensors broadcast together to `broadcast`. The result has the dimensions indexed
/// by `None` (and the trailing unindexed ones) in order, with `broadcast` inserted where the
/// indexed dimensions were if those were adjacent, else in front (PyTorch's rule).
struct AdvancedIndex<'a> {
    entries: [Option<Entry<'a>>; 16],
    entry_count: usize,
    /// Self's dimensions taken whole, in order.
    slice_dims: Shape,
    /// How many of `slice_dims` come before the broadcast dimensions in the result.
    before: usize,
    broadcast: Shape,
    result: Shape,
    sizes: Shape,
    strides: Shape,
    arg: usize,
}

impl<'a> AdvancedIndex<'a> {
    /// Resolves `list` (argument `arg`) against a tensor of `sizes` laid out with `strides`.
    fn new(sizes: &[usize], strides: Shape, list: &TensorList<'a>) -> Result<AdvancedIndex<'a>, KernelError> {
        let arg = list.arg();
        let rank = sizes.len();
        let too_many = KernelError::InvalidArgument { arg, reason: "too many indices for the tensor's dimensions" };
        let mut ix = AdvancedIndex {
            entries: [None; 16],
            entry_count: 0,
            slice_dims: Shape::scalar(),
            before: 0,
            broadcast: Shape::scalar(),
            result: Shape::scalar(),
            sizes: Shape::new(sizes).unwrap_or_default(),
            strides,
            arg,
        };
        let mut dim = 0usize;
        // Adjacency of the advanced entries, in list order.
        let (mut seen_advanced, mut gap_after_advanced, mut adjacent) = (false, false, true);
        for k in 0..list.len() {
            let Some(t) = list.get_opt(k)? else {
                if dim >= rank {
                    return Err(too_many);
                }
                if !seen_advanced {
                    ix.before += 1;
                }
                gap_after_advanced |= seen_advanced;
                ix.slice_dims.push(dim);
                dim += 1;
                continue;
            };
            if gap_after_advanced {
                adjacent = false;
            }
            seen_advanced = true;
            if ix.entry_count == ix.entries.len() {
                return Err(too_many);
            }
            let entry = if matches!(t.dtype(), DType::Bool | DType::Byte) {
                let end = dim.checked_add(t.dim()).filter(|&e| e <= rank).ok_or(too_many)?;
                if t.sizes() != &sizes[dim..end] {
                    return Err(KernelError::ShapeMismatch {
                        arg,
                        reason: "mask shape differs from the indexed dimensions",
                    });
                }
                let mask = MaskData::of(&t)?;
                let e =
                    Entry::Mask { mask, count: mask.count()?, strides: Shape::scalar(), dim, walk: MaskWalk::new() };
                dim = end;
                e
            } else {
                if dim >= rank {
                    return Err(too_many);
                }
                let data = IndexData::of(&t)?;
                let e =
                    Entry::Ints { data, sizes: t.shape(), own_strides: *t.strides(), strides: Shape::scalar(), dim };
                dim += 1;
                e
            };
            ix.entries[ix.entry_count] = Some(entry);
            ix.entry_count += 1;
        }
        for d in dim..rank {
            ix.slice_dims.push(d);
        }
        if !adjacent {
            ix.before = 0;
        }
        // Broadcast the index shapes, then line each entry's strides up with the result.
        let mismatch = KernelError::ShapeMismatch { arg, reason: "indices cannot be broadcast together" };
        for e in ix.entries[..ix.entry_count].iter().flatten() {
            ix.broadcast = match e {
                Entry::Ints { sizes, .. } => broadcast_shapes(&ix.broadcast, sizes),
                Entry::Mask { count, .. } => broadcast_shapes(&ix.broadcast, &[*count]),
            }
            .ok_or(mismatch)?;
        }
        let b = ix.broadcast;
        for e in ix.entries[..ix.entry_count].iter_mut().flatten() {
            match e {
                Entry::Ints { sizes, own_strides, strides, .. } => {
                    *strides = broadcast_strides_ordered(sizes, own_strides, &b)
                }
                Entry::Mask { count, strides, .. } => *strides = broadcast_strides_ordered(&[*count], &[1], &b),
            }
        }
        let slice_sizes = |k: usize| ix.sizes[ix.slice_dims[k]];
        for k in 0..ix.before {
            push_dim(&mut ix.result, slice_sizes(k), arg)?;
        }
        for &n in b.iter() {
            push_dim(&mut ix.result, n, arg)?;
        }
        for k in ix.before..ix.slice_dims.len() {
            push_dim(&mut ix.result, slice_sizes(k), arg)?;
        }
        Ok(ix)
    }

    /// The element offset (in the indexed tensor's storage) of result element `r`.
    fn offset(&mut self, r: &[usize]) -> Result<usize, KernelError> {
        let nb = self.broadcast.len();
        let (head, rest) = r.split_at(self.before.min(r.len()));
        let (b, tail) = rest.split_at(nb.min(rest.len()));
        let mut off = 0usize;
        for (k, &d) in self.slice_dims.iter().enumerate() {
            let i = if k < self.before { head[k] } else { tail[k - self.before] };
            off = off.wrapping_add(i.wrapping_mul(self.strides[d]));
        }
        let arg = self.arg;
        for e in self.entries[..self.entry_count].iter_mut().flatten() {
            match e {
                Entry::Ints { data, strides, dim, .. } => {
                    let i = check_index(data.get(offset_of(b, strides), arg)?, self.sizes[*dim], true, arg)?;
                    off = off.wrapping_add(i.wrapping_mul(self.strides[*dim]));
                }
                Entry::Mask { mask, strides, dim, walk, .. } => {
                    let coord = walk.find(mask, offset_of(b, strides))?;
                    off = off.wrapping_add(offset_of(coord, &self.strides[*dim..]));
                }
            }
        }
        Ok(off)
    }
}

/// `aten::index.Tensor_out(Tensor self, Tensor?[] indices, *, Tensor(a!) out)`: advanced indexing
/// (see [`AdvancedIndex`]); negative indices count from the end.
pub fn index_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let list = args.opt_tensor_list(1)?;
    let mut out = args.tensor_mut(2)?;
    same_dtype(&x, &out)?;
    let mut ix = AdvancedIndex::new(x.sizes(), *x.strides(), &list)?;
    let result = ix.result;
    out.resize(&result)?;
    let ostr = out.strides();
    with_element_bits!(x.dtype(), 2, E => {
        let from = elements::<E>(&x)?;
        let to = elements_mut::<E>(&mut out)?;
        let bad = KernelError::ShapeMismatch { arg: 2, reason: OUTSIDE };
        for_each_index(&result, |r| {
            let at = ix.offset(r)?;
            *to.get_mut(offset_of(r, &ostr)).ok_or(bad)? = *from.get(at).ok_or(bad)?;
            Ok(())
        })
    })
}

/// Writes (or with `accumulate`, adds) `values`, broadcast to the indexing result, into the
/// elements of `dst` that `list` selects. Later writes to the same element win.
fn put(
    dst: &mut TensorMut<'_>,
    list: &TensorList<'_>,
    values: &Tensor<'_>,
    accumulate: bool,
) -> Result<(), KernelError> {
    if values.dtype() != dst.dtype() {
        return Err(KernelError::DtypeMismatch { arg: values.arg(), expected: dst.dtype(), found: values.dtype() });
    }
    let sizes = dst.as_ref().shape();
    let mut ix = AdvancedIndex::new(&sizes, dst.strides(), list)?;
    let result = ix.result;
    if broadcast_shapes(values.sizes(), &result).as_deref() != Some(&result[..]) {
        return Err(KernelError::ShapeMismatch {
            arg: values.arg(),
            reason: "values cannot be broadcast to the indexing result",
        });
    }
    let vstr = broadcast_strides_ordered(values.sizes(), values.strides(), &result);
    let arg = dst.arg();
    let bad = KernelError::ShapeMismatch { arg, reason: OUTSIDE };
    if accumulate {
        crate::dispatch_dtype!(dst.dtype(), T => {
            let from = values.data::<T>()?;
            let to = dst.data_mut::<T>()?;
            for_each_index(&result, |r| {
                let at = ix.offset(r)?;
                let v = *from.get(offset_of(r, &vstr)).ok_or(bad)?;
                let slot = to.get_mut(at).ok_or(bad)?;
                *slot = add_in_dtype(*slot, v);
                Ok(())
            })
        }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: dst.dtype() }))
    } else {
        with_element_bits!(dst.dtype(), arg, E => {
            let from = elements::<E>(values)?;
            let to = elements_mut::<E>(dst)?;
            for_each_index(&result, |r| {
                let at = ix.offset(r)?;
                *to.get_mut(at).ok_or(bad)? = *from.get(offset_of(r, &vstr)).ok_or(bad)?;
                Ok(())
            })
        })
    }
}

/// `aten::index_put.out(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False, *,
/// Tensor(a!) out)`: a copy of `self` with `out[indices] = values` (or `+=`).
pub fn index_put_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let list = args.opt_tensor_list(1)?;
    let values = args.tensor(2)?;
    let accumulate = args.bool(3)?;
    let mut out = args.tensor_mut(4)?;
    same_dtype(&x, &out)?;
    out.resize(x.sizes())?;
    let ostr = out.strides();
    strided_copy(&x, 0, x.strides(), x.sizes(), &mut out, 0, &ostr)?;
    put(&mut out, &list, &values, accumulate)
}

/// `aten::index_put_(Tensor(a!) self, Tensor?[] indices, Tensor values, bool accumulate=False)`:
/// `self[indices] = values` (or `+=`) in place.
pub fn index_put_(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let list = args.opt_tensor_list(1)?;
    let values = args.tensor(2)?;
    let accumulate = args.bool(3)?;
    let mut dst = args.tensor_mut(0)?;
    put(&mut dst, &list, &values, accumulate)
}

/// A bool mask argument broadcast against `x`: the shape and both operands' strides over it.
fn broadcast_mask(x: &Tensor<'_>, mask: &Tensor<'_>) -> Result<(Shape, Shape, Shape), KernelError> {
    if mask.dtype() != DType::Bool {
        return Err(KernelError::DtypeMismatch { arg: mask.arg(), expected: DType::Bool, found: mask.dtype() });
    }
    let shape = broadcast_shapes(x.sizes(), mask.sizes())
        .ok_or(KernelError::ShapeMismatch { arg: mask.arg(), reason: "mask does not broadcast with self" })?;
    let xs = broadcast_strides_ordered(x.sizes(), x.strides(), &shape);
    let ms = broadcast_strides_ordered(mask.sizes(), mask.strides(), &shape);
    Ok((shape, xs, ms))
}

/// `aten::masked_select.out(Tensor self, Tensor mask, *, Tensor(a!) out)`: the elements of `self`
/// where the (broadcast) mask is true, as a 1-D tensor; its length depends on the data, so `out`
/// must be dynamic with room for them.
pub fn masked_select_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = args.tensor(1)?;
    let mut out = args.tensor_mut(2)?;
    same_dtype(&x, &out)?;
    let (shape, xs, ms) = broadcast_mask(&x, &mask)?;
    let m = mask.bytes()?;
    let bad_mask = KernelError::ShapeMismatch { arg: 1, reason: OUTSIDE };
    let mut count = 0usize;
    for [i] in StridedIter::new(&shape, [ms]) {
        count += usize::from(*m.get(i).ok_or(bad_mask)? != 0);
    }
    out.resize(&[count])?;
    let step = out.strides().first().copied().unwrap_or(1);
    with_element_bits!(x.dtype(), 2, E => {
        let from = elements::<E>(&x)?;
        let to = elements_mut::<E>(&mut out)?;
        let bad = KernelError::ShapeMismatch { arg: 2, reason: OUTSIDE };
        let mut k = 0usize;
        for [i, mi] in StridedIter::new(&shape, [xs, ms]) {
            if *m.get(mi).ok_or(bad_mask)? != 0 {
                *to.get_mut(k * step).ok_or(bad)? = *from.get(i).ok_or(bad)?;
                k += 1;
            }
        }
        Ok(())
    })
}

/// `aten::masked_scatter.out(Tensor self, Tensor mask, Tensor source, *, Tensor(a!) out)`: `self`
/// (broadcast with the mask) with the positions where the mask is true filled by consecutive
/// elements of `source`.
pub fn masked_scatter_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = args.tensor(1)?;
    let source = args.tensor(2)?;
    let mut out = args.tensor_mut(3)?;
    same_dtype(&x, &out)?;
    if source.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 2, expected: x.dtype(), found: source.dtype() });
    }
    let (shape, xs, ms) = broadcast_mask(&x, &mask)?;
    out.resize(&shape)?;
    let m = mask.bytes()?;
    let ostr = out.strides();
    let (src_shape, src_strides) = (source.shape(), source.strides());
    with_element_bits!(x.dtype(), 3, E => {
        let from = elements::<E>(&x)?;
        let src = elements::<E>(&source)?;
        let to = elements_mut::<E>(&mut out)?;
        let bad = KernelError::ShapeMismatch { arg: 3, reason: OUTSIDE };
        // `source` is consumed in its row-major order.
        let mut next = StridedIter::new(&src_shape, [*src_strides]);
        for [o, i, mi] in StridedIter::new(&shape, [ostr, xs, ms]) {
            let v = if *m.get(mi).ok_or(bad)? != 0 {
                let [s] = next.next().ok_or(KernelError::ShapeMismatch {
                    arg: 2,
                    reason: "source has fewer elements than the mask has true values",
                })?;
                *src.get(s).ok_or(bad)?
            } else {
                *from.get(i).ok_or(bad)?
            };
            *to.get_mut(o).ok_or(bad)? = v;
        }
        Ok(())
    })
}

/// `aten::nonzero.out(Tensor self, *, Tensor(a!) out)`: the coordinates of the non-zero elements,
/// one row each in row-major order (int64, `[count, rank]`; `out` must be dynamic).
pub fn nonzero_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    if out.dtype() != DType::Long {
        return Err(KernelError::DtypeMismatch { arg: 1, expected: DType::Long, found: out.dtype() });
    }
    let (shape, xstr, rank) = (x.shape(), x.strides(), x.dim());
    crate::dispatch_dtype!(x.dtype(), T => {
        let from = x.data::<T>()?;
        let bad = KernelError::ShapeMismatch { arg: 0, reason: OUTSIDE };
        let mut count = 0usize;
        for [i] in StridedIter::new(&shape, [*xstr]) {
            count += usize::from(from.get(i).ok_or(bad)?.is_nonzero());
        }
        out.resize(&[count, rank])?;
        let ostr = out.strides();
        let to = out.data_mut::<i64>()?;
        let bad_out = KernelError::ShapeMismatch { arg: 1, reason: OUTSIDE };
        let mut row = 0usize;
        for_each_index(&shape, |c| {
            if from.get(offset_of(c, xstr)).ok_or(bad)?.is_nonzero() {
                for (d, &v) in c.iter().enumerate() {
                    *to.get_mut(row * ostr[0] + d * ostr[1]).ok_or(bad_out)? = v as i64;
                }
                row += 1;
            }
            Ok(())
        })
    }, _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: x.dtype() }))
}

/// `aten::repeat_interleave.Tensor_out(Tensor repeats, *, SymInt? output_size=None, Tensor(a!) out)`:
/// `i` repeated `repeats[i]` times, for each `i` in order (the index form used by
/// `repeat_interleave` with a tensor of repeats).
pub fn repeat_interleave_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let repeats = args.tensor(0)?;
    let output_size = args.opt_int(1)?;
    let mut out = args.tensor_mut(2)?;
    if repeats.dim() != 1 {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "repeats must be 1-D" });
    }
    if out.dtype() != repeats.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 2, expected: repeats.dtype(), found: out.dtype() });
    }
    let data = IndexData::of(&repeats)?;
    let stride = repeats.strides()[0];
    let mut total = 0usize;
    for k in 0..repeats.numel() {
        let r = data.get(k * stride, 0)?;
        let r =
            usize::try_from(r).map_err(|_| KernelError::ValueOutOfRange { arg: 0, value: r, min: 0, max: i64::MAX })?;
        total = total.checked_add(r).ok_or(KernelError::Overflow { arg: 0, what: "sum of repeats" })?;
    }
    if let Some(size) = output_size
        && usize::try_from(size) != Ok(total)
    {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "output_size differs from the sum of repeats" });
    }
    out.resize(&[total])?;
    let step = out.strides()[0];
    let bad = KernelError::ShapeMismatch { arg: 2, reason: OUTSIDE };
    let mut at = 0usize;
    crate::dispatch_dtype!(out.dtype(), T => {
        let to = out.data_mut::<T>()?;
        for k in 0..repeats.numel() {
            // Checked non-negative above.
            let r = usize::try_from(data.get(k * stride, 0)?).unwrap_or(0);
            for _ in 0..r {
                *to.get_mut(at * step).ok_or(bad)? = T::from_i64(k as i64);
                at += 1;
            }
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg: 2, dtype: out.dtype() }))
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::ALL_DTYPES;
    const INDEX_DTYPES: &[DType] = &[DType::Int, DType::Long];
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        (
            "aten::embedding.out(Tensor weight, Tensor indices, SymInt padding_idx=-1, bool scale_grad_by_freq=False, bool sparse=False, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            embedding_out,
        ),
        (
            "aten::gather.out(Tensor self, int dim, Tensor index, *, bool sparse_grad=False, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            gather_out,
        ),
        (
            "aten::index_select.out(Tensor self, int dim, Tensor index, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            index_select_out,
        ),
        (
            "aten::index.Tensor_out(Tensor self, Tensor?[] indices, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            index_tensor_out,
        ),
        (
            "aten::index_put.out(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            index_put_out,
        ),
        (
            "aten::index_put_(Tensor(a!) self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor(a!)",
            ALL_DTYPES,
            index_put_,
        ),
        (
            "aten::masked_select.out(Tensor self, Tensor mask, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            masked_select_out,
        ),
        (
            "aten::masked_scatter.out(Tensor self, Tensor mask, Tensor source, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            masked_scatter_out,
        ),
        ("aten::nonzero.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, nonzero_out),
        (
            "aten::repeat_interleave.Tensor_out(Tensor repeats, *, SymInt? output_size=None, Tensor(a!) out) -> Tensor(a!)",
            INDEX_DTYPES,
            repeat_interleave_tensor_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

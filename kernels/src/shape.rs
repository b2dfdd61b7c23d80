//! Fixed-capacity shapes, dim orders and strides: no heap, so kernels never allocate for them.

use core::fmt;
use core::ops::Deref;

use etch_schema::MAX_RANK;

/// `MAX_RANK` zeros, to build zeroed shapes of any rank.
pub const MAX_RANK_SHAPE: [usize; MAX_RANK] = [0; MAX_RANK];

/// Up to [`MAX_RANK`] dimension sizes, stored inline.
#[derive(Clone, Copy, Eq, Default)]
pub struct Shape {
    rank: u8,
    dims: [usize; MAX_RANK],
}

impl Shape {
    /// The shape with these sizes, or `None` above [`MAX_RANK`] dimensions.
    pub fn new(sizes: &[usize]) -> Option<Shape> {
        if sizes.len() > MAX_RANK {
            return None;
        }
        // A fixed trip count with a bounds test per entry: the copy stays inline, where
        // `copy_from_slice` of `sizes.len()` entries is a `memmove` call (`perf` on an LSTM, whose
        // kernels handle 32 to 128 floats: `memmove` under `strides_for` and `Shape::new` among
        // the top entries).
        let mut dims = [0; MAX_RANK];
        for (i, d) in dims.iter_mut().enumerate() {
            if let Some(&s) = sizes.get(i) {
                *d = s;
            }
        }
        Some(Shape { rank: sizes.len() as u8, dims })
    }

    /// A rank-0 shape.
    pub fn scalar() -> Shape {
        Shape::default()
    }

    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// Number of elements, `None` on overflow.
    pub fn numel(&self) -> Option<usize> {
        self.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Appends a dimension; `false` when the shape is full.
    pub fn push(&mut self, d: usize) -> bool {
        if self.rank() == MAX_RANK {
            return false;
        }
        self.dims[self.rank()] = d;
        self.rank += 1;
        true
    }

    pub fn as_mut_slice(&mut self) -> &mut [usize] {
        &mut self.dims[..self.rank as usize]
    }
}

/// Compares element by element: shapes are short, and this stays inline where a slice compare
/// would call `memcmp` (it shows up in per-instruction overhead).
#[inline]
pub fn same_sizes(a: &[usize], b: &[usize]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl PartialEq for Shape {
    fn eq(&self, other: &Shape) -> bool {
        same_sizes(self, other)
    }
}

impl Deref for Shape {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.dims[..self.rank as usize]
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A permutation of dimensions, outermost first: `[0, 1, 2, 3]` is contiguous NCHW,
/// `[0, 2, 3, 1]` channels-last. Unused slots are zero, so whole-struct equality is exact (and
/// compiles to two integer compares).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct DimOrder {
    rank: u8,
    order: [u8; MAX_RANK],
}

impl DimOrder {
    /// The contiguous (row-major) order for `rank` dimensions.
    pub fn contiguous(rank: usize) -> DimOrder {
        let mut order = [0u8; MAX_RANK];
        for (i, o) in order.iter_mut().enumerate().take(rank.min(MAX_RANK)) {
            *o = i as u8;
        }
        DimOrder { rank: rank.min(MAX_RANK) as u8, order }
    }

    /// The order given, or `None` unless it is a permutation of `0..len`.
    pub fn new(order: &[u8]) -> Option<DimOrder> {
        if order.len() > MAX_RANK {
            return None;
        }
        let mut seen = [false; MAX_RANK];
        for &d in order {
            let s = seen.get_mut(d as usize).filter(|s| !**s && (d as usize) < order.len())?;
            *s = true;
        }
        let mut o = [0u8; MAX_RANK];
        o[..order.len()].copy_from_slice(order);
        Some(DimOrder { rank: order.len() as u8, order: o })
    }

    pub fn is_contiguous(&self) -> bool {
        self.iter().enumerate().all(|(i, &d)| d as usize == i)
    }

    /// Channels-last for rank 4: `[0, 2, 3, 1]`.
    pub fn is_channels_last(&self) -> bool {
        **self == [0, 2, 3, 1]
    }
}

impl Deref for DimOrder {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.order[..self.rank as usize]
    }
}

impl fmt::Debug for DimOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Element strides for `sizes` laid out in `order`: the innermost dimension has stride 1.
pub fn strides_for(sizes: &[usize], order: &DimOrder) -> Shape {
    let mut strides = Shape { rank: sizes.len().min(MAX_RANK) as u8, dims: [0; MAX_RANK] };
    let mut step = 1usize;
    for &d in order.iter().rev() {
        let d = d as usize;
        if let (Some(s), Some(&size)) = (strides.as_mut_slice().get_mut(d), sizes.get(d)) {
            *s = step;
            step = step.saturating_mul(size.max(1));
        }
    }
    strides
}

/// PyTorch broadcasting of two shapes (aligned at the trailing dimension), or `None` when a pair
/// of sizes differs and neither is 1.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let rank = a.len().max(b.len());
    let mut out = Shape::new(&[0; MAX_RANK][..rank.min(MAX_RANK)])?;
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out.as_mut_slice()[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides (in elements, contiguous layout) to read a tensor of `sizes` as if it had the
/// broadcast shape `out`: broadcast dimensions get stride 0.
pub fn broadcast_strides(sizes: &[usize], out: &[usize]) -> Shape {
    let mut strides = Shape::new(&[0; MAX_RANK][..out.len()]).unwrap_or_default();
    let offset = out.len() - sizes.len().min(out.len());
    let mut step = 1usize;
    for i in (0..sizes.len().min(out.len())).rev() {
        let size = sizes[i];
        strides.as_mut_slice()[i + offset] = if size == 1 { 0 } else { step };
        step = step.saturating_mul(size);
    }
    strides
}

/// Normalises a possibly negative dimension index against `rank` (PyTorch's `maybe_wrap_dim`;
/// rank 0 accepts -1 and 0).
pub fn wrap_dim(dim: i64, rank: usize) -> Option<usize> {
    let r = rank.max(1) as i64;
    let d = if dim < 0 { dim + r } else { dim };
    if (0..r).contains(&d) { Some(d as usize) } else { None }
}

/// Walks every multi-index of `shape` in row-major order, tracking linear offsets into up to
/// three operands with their own strides. Allocation-free.
pub struct StridedIter<const N: usize> {
    shape: Shape,
    strides: [Shape; N],
    index: [usize; MAX_RANK],
    offsets: [usize; N],
    remaining: usize,
}

impl<const N: usize> StridedIter<N> {
    pub fn new(shape: &[usize], strides: [Shape; N]) -> Self {
        let shape = Shape::new(shape).unwrap_or_default();
        let remaining = shape.numel().unwrap_or(0);
        StridedIter { shape, strides, index: [0; MAX_RANK], offsets: [0; N], remaining }
    }
}

impl<const N: usize> Iterator for StridedIter<N> {
    type Item = [usize; N];

    #[inline]
    fn next(&mut self) -> Option<[usize; N]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.offsets;
        // Advance the multi-index (innermost dimension fastest).
        for d in (0..self.shape.rank()).rev() {
            self.index[d] += 1;
            for k in 0..N {
                self.offsets[k] = self.offsets[k].wrapping_add(self.strides[k][d]);
            }
            if self.index[d] < self.shape[d] {
                break;
            }
            for k in 0..N {
                self.offsets[k] = self.offsets[k].wrapping_sub(self.strides[k][d].wrapping_mul(self.index[d]));
            }
            self.index[d] = 0;
        }
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(&*broadcast_shapes(&[2, 3, 4], &[3, 1]).unwrap(), &[2, 3, 4]);
        assert_eq!(&*broadcast_shapes(&[], &[5]).unwrap(), &[5]);
        assert!(broadcast_shapes(&[2, 3], &[4]).is_none());
        assert_eq!(&*broadcast_strides(&[3, 1], &[2, 3, 4]), &[0, 1, 0]);
    }

    #[test]
    fn strided_iteration() {
        let offs: Vec<[usize; 2]> =
            StridedIter::new(&[2, 2], [broadcast_strides(&[2, 2], &[2, 2]), broadcast_strides(&[2], &[2, 2])])
                .collect();
        assert_eq!(offs, vec![[0, 0], [1, 1], [2, 0], [3, 1]]);
        assert_eq!(StridedIter::<1>::new(&[], [Shape::scalar()]).count(), 1);
        assert_eq!(StridedIter::<1>::new(&[3, 0], [Shape::scalar()]).count(), 0);
    }

    #[test]
    fn strides_follow_dim_order() {
        let cl = DimOrder::new(&[0, 2, 3, 1]).unwrap();
        assert_eq!(&*strides_for(&[2, 3, 4, 5], &cl), &[60, 1, 15, 3]);
        assert_eq!(&*strides_for(&[2, 3], &DimOrder::contiguous(2)), &[3, 1]);
        assert!(DimOrder::new(&[0, 0]).is_none());
        assert!(DimOrder::new(&[0, 2]).is_none());
    }

    #[test]
    fn dims_wrap() {
        assert_eq!(wrap_dim(-1, 3), Some(2));
        assert_eq!(wrap_dim(3, 3), None);
        assert_eq!(wrap_dim(-1, 0), Some(0));
        assert_eq!(wrap_dim(-4, 3), None);
    }
}

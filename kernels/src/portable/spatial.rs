//! Shared pieces of the spatial kernels (convolution, pooling, resampling, normalisation,
//! padding): the float compute types, reading `int[]` parameters the way ATen expands them, and a
//! view of a tensor as `[N, C, D, H, W]` with element strides from its dim order, so one loop nest
//! serves 1-D, 2-D and 3-D inputs in any layout (contiguous or channels-last).

use core::ops::{Add, AddAssign, Div, Mul, Sub};

use crate::args::KernelArgs;
use crate::dtype::Element;
use crate::error::KernelError;
use etch_schema::MAX_RANK;

/// A type arithmetic is done in: f32 for 16/32-bit floats (PyTorch's "opmath"), f64 for f64.
pub trait Acc:
    Element + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> + AddAssign + PartialOrd
{
    const ZERO: Self;
    const ONE: Self;
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn floor(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, p: Self) -> Self;
    fn is_nan(self) -> bool;
    fn from_usize(n: usize) -> Self;
}

macro_rules! acc_impl {
    ($t:ty) => {
        impl Acc for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn from_usize(n: usize) -> Self {
                n as $t
            }
        }
    };
}

acc_impl!(f32);
acc_impl!(f64);

/// A type products are summed in: the float compute types, or wrapping i64 for integer dtypes
/// (wrapping sums give the same low bits as PyTorch's integer accumulation at any width).
pub trait Accumulator: Copy {
    const ZERO: Self;
    /// An element converted to the accumulator.
    fn load<T: Element>(v: T) -> Self;
    /// The accumulated value converted back to an element (integers wrap, as C++ casts do).
    fn store<T: Element>(self) -> T;
    /// `self + a * b`.
    fn mul_add(self, a: Self, b: Self) -> Self;
}

impl<C: Acc> Accumulator for C {
    const ZERO: Self = <C as Acc>::ZERO;
    #[inline(always)]
    fn load<T: Element>(v: T) -> Self {
        C::cast_from(v)
    }
    #[inline(always)]
    fn store<T: Element>(self) -> T {
        T::cast_from(self)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        self + a * b
    }
}

/// Integer accumulation in i64 with wrapping arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrappingI64(pub i64);

impl Accumulator for WrappingI64 {
    const ZERO: Self = WrappingI64(0);
    #[inline(always)]
    fn load<T: Element>(v: T) -> Self {
        WrappingI64(v.to_i64())
    }
    #[inline(always)]
    fn store<T: Element>(self) -> T {
        T::from_i64(self.0)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        WrappingI64(self.0.wrapping_add(a.0.wrapping_mul(b.0)))
    }
}

/// Calls `$body` with `$T` bound to the storage type of the integer dtype `$dtype` (not bool);
/// `$fallback` otherwise.
macro_rules! dispatch_int {
    ($dtype:expr, $T:ident => $body:expr, _ => $fallback:expr) => {{
        use $crate::DType as __D;
        match $dtype {
            __D::Byte => {
                type $T = u8;
                $body
            }
            __D::Char => {
                type $T = i8;
                $body
            }
            __D::Short => {
                type $T = i16;
                $body
            }
            __D::Int => {
                type $T = i32;
                $body
            }
            __D::Long => {
                type $T = i64;
                $body
            }
            _ => $fallback,
        }
    }};
}
pub(crate) use dispatch_int;

/// Calls `$body` with `$T` bound to the storage type of the floating dtype `$dtype` and `$C` to
/// the type PyTorch computes it in (f32 for f16/bf16/f32, f64 for f64); `$fallback` otherwise.
macro_rules! dispatch_float {
    ($dtype:expr, $T:ident, $C:ident => $body:expr, _ => $fallback:expr) => {{
        use $crate::DType as __D;
        match $dtype {
            __D::Float => {
                type $T = f32;
                type $C = f32;
                $body
            }
            __D::Double => {
                type $T = f64;
                type $C = f64;
                $body
            }
            __D::Half => {
                type $T = $crate::half::f16;
                type $C = f32;
                $body
            }
            __D::BFloat16 => {
                type $T = $crate::half::bf16;
                type $C = f32;
                $body
            }
            _ => $fallback,
        }
    }};
}
pub(crate) use dispatch_float;

/// A tensor seen as `[N, C, D, H, W]`: missing leading spatial dims (1-D and 2-D inputs) and a
/// missing batch dim have size 1 and stride 0. Strides are in elements, from the dim order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims5 {
    pub size: [usize; 5],
    pub stride: [usize; 5],
}

impl Dims5 {
    /// `sizes`/`strides` of a tensor with `spatial` trailing spatial dims, after a channel dim and
    /// (when `batched`) a batch dim. The caller has checked the rank.
    pub fn new(sizes: &[usize], strides: &[usize], spatial: usize, batched: bool) -> Dims5 {
        let mut d = Dims5 { size: [1; 5], stride: [0; 5] };
        let lead = usize::from(batched);
        let mut set = |slot: usize, dim: usize| {
            if let (Some(&s), Some(&t)) = (sizes.get(dim), strides.get(dim)) {
                d.size[slot] = s;
                d.stride[slot] = t;
            }
        };
        if batched {
            set(0, 0);
        }
        set(1, lead);
        for k in 0..spatial.min(3) {
            set(5 - spatial + k, lead + 1 + k);
        }
        d
    }

    /// Element offset of `[n, c, z, y, x]`.
    #[inline(always)]
    pub fn at(&self, n: usize, c: usize, z: usize, y: usize, x: usize) -> usize {
        n * self.stride[0] + c * self.stride[1] + z * self.stride[2] + y * self.stride[3] + x * self.stride[4]
    }
}

/// An `int[]` parameter expanded to `n` (<= 3) values the way ATen does: one value repeats, `n`
/// values are used as given, and an empty list means `empty` when that is allowed. Each value
/// must be at least `min`. Values are placed right-aligned in the result (`[D, H, W]` order).
pub fn spatial_param(
    args: &KernelArgs<'_>,
    arg: usize,
    n: usize,
    min: i64,
    empty: Option<[i64; 3]>,
) -> Result<[i64; 3], KernelError> {
    let list = args.int_list(arg)?;
    let mut out = [0i64; 3];
    let len = list.len();
    if len == 0 {
        return empty.ok_or(KernelError::InvalidArgument { arg, reason: "parameter list is empty" });
    }
    if len != 1 && len != n {
        return Err(KernelError::InvalidArgument { arg, reason: "parameter list has the wrong length" });
    }
    for k in 0..n.min(3) {
        let v = list.get(if len == 1 { 0 } else { k })?;
        if v < min {
            return Err(KernelError::ValueOutOfRange { arg, value: v, min, max: i64::MAX });
        }
        out[3 - n + k] = v;
    }
    Ok(out)
}

/// A size as i64 (sizes of real tensors always fit).
#[inline]
pub fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A non-negative i64 as a size, or an error naming `arg`.
pub fn to_size(v: i64, arg: usize, what: &'static str) -> Result<usize, KernelError> {
    usize::try_from(v).map_err(|_| KernelError::InvalidArgument { arg, reason: what })
}

/// Output length of a sliding window (PyTorch's `pooling_output_shape`, also used by
/// convolution with `ceil_mode = false`): `None` on overflow.
pub fn window_output_size(input: i64, kernel: i64, pad: i64, stride: i64, dilation: i64, ceil: bool) -> Option<i64> {
    let span = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let mut num = input.checked_add(pad.checked_mul(2)?)?.checked_sub(span)?;
    if ceil {
        num = num.checked_add(stride - 1)?;
    }
    let mut out = num.div_euclid(stride) + 1;
    // The last window must start inside the input or the left padding (ceil mode only).
    if ceil && (out - 1).checked_mul(stride)? >= input.checked_add(pad)? {
        out -= 1;
    }
    Some(out)
}

/// Ranges `[lo, hi)` of output positions `o` in `[o0, o1)` whose input position
/// `o * step + offset` falls in `[0, len)`; empty ranges have `lo >= hi`.
#[inline(always)]
pub fn valid_range(o0: i64, o1: i64, step: i64, offset: i64, len: i64) -> (i64, i64) {
    // o * step + offset >= 0  <=>  o >= ceil(-offset / step)
    let lo = (-offset).div_euclid(step) + i64::from((-offset).rem_euclid(step) != 0);
    // o * step + offset <= len - 1  <=>  o <= floor((len - 1 - offset) / step)
    let hi = (len - 1 - offset).div_euclid(step) + 1;
    (lo.max(o0), hi.min(o1))
}

/// `acc[k * acc_step] += w * x[k * x_step]` for `k` in `0..count` (an axpy over strided slices),
/// summing in `C`. `None` if a slice is too short (which shape checks rule out).
#[inline(always)]
pub fn strided_axpy<T: Element, C: Accumulator>(
    acc: &mut [C],
    acc_step: usize,
    w: C,
    x: &[T],
    x_step: usize,
    count: usize,
) -> Option<()> {
    if count == 0 {
        return Some(());
    }
    let acc = acc.get_mut(..(count - 1) * acc_step + 1)?;
    let x = x.get(..(count - 1) * x_step + 1)?;
    if acc_step == 1 && x_step == 1 {
        for (a, &v) in acc.iter_mut().zip(x) {
            *a = a.mul_add(w, C::load(v));
        }
    } else {
        for (a, &v) in acc.iter_mut().step_by(acc_step).zip(x.iter().step_by(x_step)) {
            *a = a.mul_add(w, C::load(v));
        }
    }
    Some(())
}

/// Calls `f(index)` for every multi-index of `shape`, in row-major order (once for rank 0, never
/// for an empty shape).
pub fn for_each_index(
    shape: &[usize],
    mut f: impl FnMut(&[usize]) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    if shape.contains(&0) {
        return Ok(());
    }
    let rank = shape.len().min(MAX_RANK);
    let mut index = [0usize; MAX_RANK];
    loop {
        f(&index[..rank])?;
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

/// Element offset of `index` with `strides`.
#[inline]
pub fn offset_of(index: &[usize], strides: &[usize]) -> usize {
    index.iter().zip(strides).map(|(i, s)| i * s).sum()
}

/// An output the shape checks promised was large enough, but was not: a bug, reported.
pub fn short(arg: usize) -> KernelError {
    KernelError::ShapeMismatch { arg, reason: "tensor smaller than its shape implies" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_match_pytorch() {
        // torch.nn.functional.max_pool2d / avg_pool2d output sizes.
        assert_eq!(window_output_size(7, 3, 1, 2, 1, false), Some(4));
        assert_eq!(window_output_size(6, 3, 0, 2, 1, false), Some(2));
        assert_eq!(window_output_size(6, 3, 0, 2, 1, true), Some(3));
        // ceil mode drops a last window that would start in the right padding.
        assert_eq!(window_output_size(5, 2, 1, 2, 1, true), Some(3));
        assert_eq!(window_output_size(10, 3, 1, 3, 2, true), Some(4));
        assert_eq!(window_output_size(2, 5, 0, 1, 1, false), Some(-2));
        assert_eq!(window_output_size(i64::MAX, 3, i64::MAX, 1, 1, false), None);
    }

    #[test]
    fn index_walk() {
        let mut seen = Vec::new();
        for_each_index(&[2, 3], |i| {
            seen.push((i[0], i[1]));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
        let mut count = 0;
        for_each_index(&[], |_| {
            count += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 1);
        for_each_index(&[3, 0], |_| panic!("empty")).unwrap();
    }

    #[test]
    fn ranges() {
        // x = o*2 - 1 must be in 0..5: o in 1..=3
        assert_eq!(valid_range(0, 10, 2, -1, 5), (1, 3));
        assert_eq!(valid_range(0, 2, 1, 0, 5), (0, 2));
        let (lo, hi) = valid_range(0, 4, 1, 10, 5);
        assert!(lo >= hi);
    }
}

//! Operators that move elements to new positions: `pixel_shuffle`, `pixel_unshuffle` and
//! `unfold_copy`, for every dtype and any dim order.

use crate::args::KernelArgs;
use crate::dtype::Element;
use crate::error::KernelError;
use crate::portable::elementwise::ALL_DTYPES;
use crate::portable::spatial::{for_each_index, offset_of, short, to_size};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, wrap_dim};
use crate::tensor::{Tensor, TensorMut};

/// Writes `out[index] = x[input_offset(index)]` for every output index.
fn gather_by<T: Element>(
    x: &Tensor<'_>,
    out: &mut TensorMut<'_>,
    input_offset: impl Fn(&[usize]) -> usize,
) -> Result<(), KernelError> {
    let shape = Shape::new(out.sizes()).unwrap_or_default();
    let os = out.strides();
    let (src, arg) = (x.data::<T>()?, out.arg());
    let o = out.data_mut::<T>()?;
    for_each_index(&shape, |index| {
        let v = *src.get(input_offset(index)).ok_or(short(0))?;
        *o.get_mut(offset_of(index, &os)).ok_or(short(arg))? = v;
        Ok(())
    })
}

/// Reads the shuffle factor (positive) and checks dtypes and rank.
fn shuffle_args(args: &KernelArgs<'_>, x: &Tensor<'_>, out: &TensorMut<'_>) -> Result<usize, KernelError> {
    let factor = args.int(1)?;
    if factor <= 0 {
        return Err(KernelError::ValueOutOfRange { arg: 1, value: factor, min: 1, max: i64::MAX });
    }
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 2, expected: x.dtype(), found: out.dtype() });
    }
    if x.dim() < 3 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "expected an input of rank 3 or more" });
    }
    to_size(factor, 1, "factor")
}

/// `aten::pixel_shuffle.out(Tensor self, int upscale_factor, *, Tensor(a!) out) -> Tensor(a!)`
///
/// `[*, C * r * r, H, W]` to `[*, C, H * r, W * r]`:
/// `out[.., c, h * r + i, w * r + j] = self[.., c * r * r + i * r + j, h, w]`.
pub fn pixel_shuffle_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(2)?;
    let r = shuffle_args(args, &x, &out)?;
    let rank = x.dim();
    let (c, h, w) = (x.sizes()[rank - 3], x.sizes()[rank - 2], x.sizes()[rank - 1]);
    let rr = r.checked_mul(r).ok_or(KernelError::Overflow { arg: 1, what: "upscale_factor squared" })?;
    if c % rr != 0 {
        return Err(KernelError::ShapeMismatch {
            arg: 0,
            reason: "channels are not divisible by upscale_factor squared",
        });
    }
    let overflow = KernelError::Overflow { arg: 1, what: "output size" };
    let mut shape = x.shape();
    shape.as_mut_slice()[rank - 3] = c / rr;
    shape.as_mut_slice()[rank - 2] = h.checked_mul(r).ok_or(overflow)?;
    shape.as_mut_slice()[rank - 1] = w.checked_mul(r).ok_or(overflow)?;
    out.resize(&shape)?;
    let xs = x.strides();
    let input_offset = |index: &[usize]| {
        let (oc, oh, ow) = (index[rank - 3], index[rank - 2], index[rank - 1]);
        let channel = oc * rr + (oh % r) * r + ow % r;
        offset_of(&index[..rank - 3], xs) + channel * xs[rank - 3] + (oh / r) * xs[rank - 2] + (ow / r) * xs[rank - 1]
    };
    let dtype = x.dtype();
    crate::dispatch_dtype!(dtype, T => gather_by::<T>(&x, &mut out, input_offset),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// `aten::pixel_unshuffle.out(Tensor self, int downscale_factor, *, Tensor(a!) out) -> Tensor(a!)`
///
/// `[*, C, H * r, W * r]` to `[*, C * r * r, H, W]`, the inverse of `pixel_shuffle`.
pub fn pixel_unshuffle_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(2)?;
    let r = shuffle_args(args, &x, &out)?;
    let rank = x.dim();
    let (c, h, w) = (x.sizes()[rank - 3], x.sizes()[rank - 2], x.sizes()[rank - 1]);
    if h % r != 0 || w % r != 0 {
        return Err(KernelError::ShapeMismatch {
            arg: 0,
            reason: "height and width are not divisible by downscale_factor",
        });
    }
    let rr = r.checked_mul(r).ok_or(KernelError::Overflow { arg: 1, what: "downscale_factor squared" })?;
    let mut shape = x.shape();
    shape.as_mut_slice()[rank - 3] = c.checked_mul(rr).ok_or(KernelError::Overflow { arg: 1, what: "output size" })?;
    shape.as_mut_slice()[rank - 2] = h / r;
    shape.as_mut_slice()[rank - 1] = w / r;
    out.resize(&shape)?;
    let xs = x.strides();
    let input_offset = |index: &[usize]| {
        let (oc, oh, ow) = (index[rank - 3], index[rank - 2], index[rank - 1]);
        let (channel, i, j) = (oc / rr, (oc % rr) / r, oc % r);
        offset_of(&index[..rank - 3], xs)
            + channel * xs[rank - 3]
            + (oh * r + i) * xs[rank - 2]
            + (ow * r + j) * xs[rank - 1]
    };
    let dtype = x.dtype();
    crate::dispatch_dtype!(dtype, T => gather_by::<T>(&x, &mut out, input_offset),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// `aten::unfold_copy.out(Tensor self, int dimension, int size, int step, *, Tensor(a!) out)
/// -> Tensor(a!)`
///
/// Windows of `size` elements every `step` along `dimension`: that dim becomes the window count
/// `(n - size) / step + 1` and a new last dim of `size` holds each window.
pub fn unfold_copy_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let rank = x.dim();
    let dim = wrap_dim(args.int(1)?, rank)
        .ok_or(KernelError::InvalidArgument { arg: 1, reason: "dimension out of range" })?;
    let size = to_size(args.int(2)?, 2, "size is negative")?;
    let step = args.int(3)?;
    if step <= 0 {
        return Err(KernelError::ValueOutOfRange { arg: 3, value: step, min: 1, max: i64::MAX });
    }
    let step = to_size(step, 3, "step")?;
    let mut out = args.tensor_mut(4)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 4, expected: x.dtype(), found: out.dtype() });
    }
    let length = if rank == 0 { 1 } else { x.sizes()[dim] };
    if size > length {
        return Err(KernelError::InvalidArgument { arg: 2, reason: "size exceeds the dimension's length" });
    }
    let windows = (length - size) / step + 1;
    let mut shape = x.shape();
    if rank > 0 {
        shape.as_mut_slice()[dim] = windows;
    }
    if !shape.push(size) {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "too many dimensions" });
    }
    out.resize(&shape)?;
    let xs = x.strides();
    let input_offset = |index: &[usize]| {
        let mut at = offset_of(&index[..rank], xs);
        if rank > 0 {
            // Window w, element j sits at w * step + j along `dim`; `offset_of` counted w once.
            at += (index[dim] * (step - 1) + index[rank]) * xs[dim];
        }
        at
    };
    let dtype = x.dtype();
    crate::dispatch_dtype!(dtype, T => gather_by::<T>(&x, &mut out, input_offset),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::pixel_shuffle.out(Tensor self, int upscale_factor, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            pixel_shuffle_out,
        ),
        (
            "aten::pixel_unshuffle.out(Tensor self, int downscale_factor, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            pixel_unshuffle_out,
        ),
        (
            "aten::unfold_copy.out(Tensor self, int dimension, int size, int step, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            unfold_copy_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::portable::test_support::Call;

    fn shuffle(kernel: KernelFn, x: &[usize], factor: i64) -> Result<(), KernelError> {
        Call::new().ramp(DType::Byte, x, 1.0).int(factor).out(DType::Byte, &vec![1; x.len()], 512).run(kernel).0
    }

    fn unfold(x: &[usize], dim: i64, size: i64, step: i64) -> Result<(), KernelError> {
        Call::new()
            .ramp(DType::Float, x, 1.0)
            .int(dim)
            .int(size)
            .int(step)
            .out(DType::Float, &vec![1; x.len() + 1], 512)
            .run(unfold_copy_out)
            .0
    }

    #[test]
    fn shuffles_invert_each_other() {
        let (r, mut done) = Call::new()
            .ramp(DType::Byte, &[1, 8, 2, 3], 1.0)
            .int(2)
            .out(DType::Byte, &[1, 1, 1, 1], 48)
            .run(pixel_shuffle_out);
        r.unwrap();
        let (sizes, shuffled) = done.tensor::<u8>(2);
        assert_eq!(sizes, [1, 2, 4, 6]);
        // out[0, 0, 0, 0..2] = in[0, 0, 0, 0], in[0, 1, 0, 0]
        assert_eq!(shuffled[..2], [0, 6]);
        let (r, mut done) =
            Call::new().tensor(&sizes, &shuffled).int(2).out(DType::Byte, &[1, 1, 1, 1], 48).run(pixel_unshuffle_out);
        r.unwrap();
        assert_eq!(done.tensor::<u8>(2), (vec![1, 8, 2, 3], (0..48).collect()));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(shuffle(pixel_shuffle_out, &[1, 8, 2, 2], 2).is_ok());
        assert!(shuffle(pixel_shuffle_out, &[1, 6, 2, 2], 2).is_err(), "channels");
        assert!(shuffle(pixel_shuffle_out, &[8, 2], 2).is_err(), "rank");
        assert!(shuffle(pixel_unshuffle_out, &[1, 2, 3, 4], 2).is_err(), "height");
        for factor in [0, -1, i64::MIN, i64::MAX, 1 << 32] {
            assert!(shuffle(pixel_shuffle_out, &[1, 8, 2, 2], factor).is_err(), "{factor}");
            assert!(shuffle(pixel_unshuffle_out, &[1, 8, 2, 2], factor).is_err(), "{factor}");
        }
        assert!(unfold(&[3, 8], 1, 3, 2).is_ok());
        assert!(unfold(&[3, 8], 1, 9, 1).is_err(), "size over the length");
        assert!(unfold(&[3, 8], 1, 3, 0).is_err(), "step 0");
        assert!(unfold(&[3, 8], 2, 3, 1).is_err(), "dim");
        assert!(unfold(&[3, 8], 1, -1, 1).is_err(), "negative size");
        assert!(unfold(&[3, 8], 1, 2, i64::MAX).is_ok(), "one window");
    }
}

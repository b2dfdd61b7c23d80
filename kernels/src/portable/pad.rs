//! Padding: `constant_pad_nd` and the reflection / replication pads (1-D, 2-D, 3-D), for every
//! dtype and any dim order. As in PyTorch, pads are listed from the last dim backwards
//! (`[left, right, top, bottom, front, back]`) and may be negative (cropping).

use crate::args::KernelArgs;
use crate::dtype::Element;
use crate::error::KernelError;
use crate::portable::elementwise::ALL_DTYPES;
use crate::portable::spatial::{for_each_index, offset_of, short, to_i64, to_size};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorMut};
use crate::value::Scalar;

/// Per-dim padding `(before, after)` of a tensor of `rank` dims from a PyTorch pad list, plus the
/// output shape. Dims the list does not reach get `(0, 0)`.
struct PadPlan {
    before: [i64; etch_schema::MAX_RANK],
    out: Shape,
}

impl PadPlan {
    fn new(args: &KernelArgs<'_>, pad_arg: usize, sizes: &[usize]) -> Result<PadPlan, KernelError> {
        let pads = args.int_list(pad_arg)?;
        let rank = sizes.len();
        if pads.len() % 2 != 0 || pads.len() / 2 > rank {
            return Err(KernelError::InvalidArgument {
                arg: pad_arg,
                reason: "padding must have an even length of at most twice the rank",
            });
        }
        let mut plan = PadPlan { before: [0; etch_schema::MAX_RANK], out: Shape::new(sizes).unwrap_or_default() };
        for k in 0..pads.len() / 2 {
            let d = rank - 1 - k;
            let (before, after) = (pads.get(2 * k)?, pads.get(2 * k + 1)?);
            let size = to_i64(sizes[d])
                .checked_add(before)
                .and_then(|s| s.checked_add(after))
                .ok_or(KernelError::Overflow { arg: pad_arg, what: "padded size" })?;
            plan.out.as_mut_slice()[d] = to_size(size, pad_arg, "padding gives a negative size")?;
            plan.before[d] = before;
        }
        Ok(plan)
    }
}

/// Writes every output element: `source(d, out_index) -> Some(in_index)` maps each dim's index
/// back to the input (`None` for a padded position, which gets `fill`).
fn gather<T: Element>(
    x: &Tensor<'_>,
    out: &mut TensorMut<'_>,
    fill: T,
    source: impl Fn(usize, usize) -> Option<usize>,
) -> Result<(), KernelError> {
    let (xs, os) = (x.strides(), out.strides());
    let shape = Shape::new(out.sizes()).unwrap_or_default();
    let (src, arg) = (x.data::<T>()?, out.arg());
    let o = out.data_mut::<T>()?;
    let mut input = [0usize; etch_schema::MAX_RANK];
    for_each_index(&shape, |index| {
        let mut inside = true;
        for (d, &i) in index.iter().enumerate() {
            match source(d, i) {
                Some(s) => input[d] = s,
                None => inside = false,
            }
        }
        let v = if inside { *src.get(offset_of(&input[..index.len()], xs)).ok_or(short(0))? } else { fill };
        *o.get_mut(offset_of(index, &os)).ok_or(short(arg))? = v;
        Ok(())
    })
}

/// The fill value of `constant_pad_nd` in the tensor's dtype.
fn fill_value<T: Element>(value: Scalar) -> T {
    match value {
        Scalar::Double(d) => T::from_f64(d),
        Scalar::Int(i) => T::from_i64(i),
        Scalar::Bool(b) => T::from_bool(b),
    }
}

/// `aten::constant_pad_nd.out(Tensor self, SymInt[] pad, Scalar value=0, *, Tensor(a!) out)
/// -> Tensor(a!)`
pub fn constant_pad_nd_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let value = args.scalar(2)?;
    let mut out = args.tensor_mut(3)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 3, expected: x.dtype(), found: out.dtype() });
    }
    let plan = PadPlan::new(args, 1, x.sizes())?;
    out.resize(&plan.out)?;
    let sizes = x.sizes();
    let source = |d: usize, o: usize| {
        let i = to_i64(o).checked_sub(plan.before[d])?;
        usize::try_from(i).ok().filter(|&i| i < sizes[d])
    };
    let dtype = x.dtype();
    crate::dispatch_dtype!(dtype, T => gather::<T>(&x, &mut out, fill_value::<T>(value), source),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Which border rule a pad uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Border {
    Reflect,
    Replicate,
}

/// The reflection / replication pads over the last `dims` dims of a `dims + 1` or `dims + 2`-D
/// input.
fn border_pad(args: &KernelArgs<'_>, dims: usize, border: Border) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(2)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 2, expected: x.dtype(), found: out.dtype() });
    }
    let rank = x.dim();
    if rank != dims + 1 && rank != dims + 2 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "input rank must be the padded dims plus 1 or 2" });
    }
    // The batch dim may be empty; the others may not.
    if x.sizes()[rank - dims - 1..].contains(&0) {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "non-batch dims of the input must be non-empty" });
    }
    if args.int_list(1)?.len() != 2 * dims {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "padding must have two values per padded dim" });
    }
    let plan = PadPlan::new(args, 1, x.sizes())?;
    let sizes = x.sizes();
    for (d, &size) in sizes.iter().enumerate().skip(rank - dims) {
        let n = to_i64(size);
        let after = to_i64(plan.out[d]) - n - plan.before[d];
        if border == Border::Reflect && (plan.before[d] >= n || after >= n) {
            return Err(KernelError::InvalidArgument {
                arg: 1,
                reason: "reflection padding must be smaller than the input dim",
            });
        }
        if plan.out[d] == 0 {
            return Err(KernelError::InvalidArgument { arg: 1, reason: "padding gives an empty output" });
        }
    }
    out.resize(&plan.out)?;
    let source = |d: usize, o: usize| {
        let n = to_i64(sizes[d]);
        // Saturating: a hostile pad far outside the input cannot overflow (it then maps outside).
        let i = to_i64(o).saturating_sub(plan.before[d]);
        let i = match border {
            Border::Replicate => i.clamp(0, n - 1),
            Border::Reflect if i < 0 => -i,
            Border::Reflect if i >= n => 2 * (n - 1) - i,
            Border::Reflect => i,
        };
        usize::try_from(i).ok().filter(|&i| i < sizes[d])
    };
    let dtype = x.dtype();
    // Every position maps inside the input (checked above), so the fill value is never used.
    crate::dispatch_dtype!(dtype, T => gather::<T>(&x, &mut out, T::from_bool(false), source),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

macro_rules! border_pad_kernel {
    ($name:ident, $op:literal, $dims:literal, $border:expr, $n:literal) => {
        #[doc = concat!("`aten::", $op, ".out(Tensor self, SymInt[", $n, "] padding, *, Tensor(a!) out) -> Tensor(a!)`")]
        pub fn $name(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
            border_pad(args, $dims, $border)
        }
    };
}

border_pad_kernel!(reflection_pad1d_out, "reflection_pad1d", 1, Border::Reflect, "2");
border_pad_kernel!(reflection_pad2d_out, "reflection_pad2d", 2, Border::Reflect, "4");
border_pad_kernel!(reflection_pad3d_out, "reflection_pad3d", 3, Border::Reflect, "6");
border_pad_kernel!(replication_pad1d_out, "replication_pad1d", 1, Border::Replicate, "2");
border_pad_kernel!(replication_pad2d_out, "replication_pad2d", 2, Border::Replicate, "4");
border_pad_kernel!(replication_pad3d_out, "replication_pad3d", 3, Border::Replicate, "6");

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::constant_pad_nd.out(Tensor self, SymInt[] pad, Scalar value=0, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            constant_pad_nd_out,
        ),
        (
            "aten::reflection_pad1d.out(Tensor self, SymInt[2] padding, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            reflection_pad1d_out,
        ),
        (
            "aten::reflection_pad2d.out(Tensor self, SymInt[4] padding, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            reflection_pad2d_out,
        ),
        (
            "aten::reflection_pad3d.out(Tensor self, SymInt[6] padding, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            reflection_pad3d_out,
        ),
        (
            "aten::replication_pad1d.out(Tensor self, SymInt[2] padding, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            replication_pad1d_out,
        ),
        (
            "aten::replication_pad2d.out(Tensor self, SymInt[4] padding, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            replication_pad2d_out,
        ),
        (
            "aten::replication_pad3d.out(Tensor self, SymInt[6] padding, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            replication_pad3d_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::portable::test_support::Call;

    fn pad(kernel: KernelFn, x: &[usize], pads: &[i64]) -> Result<(), KernelError> {
        Call::new().ramp(DType::Int, x, 1.0).ints(pads).out(DType::Int, &vec![1; x.len()], 512).run(kernel).0
    }

    #[test]
    fn reflection_and_replication_indices() {
        let (r, mut done) = Call::new()
            .ramp(DType::Long, &[1, 4], 1.0)
            .ints(&[3, 2])
            .out(DType::Long, &[1, 1], 9)
            .run(reflection_pad1d_out);
        r.unwrap();
        assert_eq!(done.tensor::<i64>(2).1, [3, 2, 1, 0, 1, 2, 3, 2, 1]);
        let (r, mut done) = Call::new()
            .ramp(DType::Long, &[1, 4], 1.0)
            .ints(&[2, -1])
            .out(DType::Long, &[1, 1], 9)
            .run(replication_pad1d_out);
        r.unwrap();
        assert_eq!(done.tensor::<i64>(2).1, [0, 0, 0, 1, 2]);
        let (r, mut done) = Call::new()
            .ramp(DType::Long, &[2, 3], 1.0)
            .ints(&[-1, 1, 1, 0])
            .double(7.5)
            .out(DType::Long, &[1, 1], 9)
            .run(constant_pad_nd_out);
        r.unwrap();
        assert_eq!(done.tensor::<i64>(3), (vec![3, 3], vec![7, 7, 7, 1, 2, 7, 4, 5, 7]));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(pad(reflection_pad2d_out, &[1, 3, 4], &[3, 3, 2, 2]).is_ok());
        assert!(pad(reflection_pad2d_out, &[1, 3, 4], &[4, 0, 0, 0]).is_err(), "pad reaches the size");
        assert!(pad(reflection_pad2d_out, &[1, 3, 4], &[1, 1]).is_err(), "two values for 2-D");
        assert!(pad(reflection_pad2d_out, &[3, 4], &[1, 1, 1, 1]).is_err(), "rank 2");
        assert!(pad(reflection_pad1d_out, &[2, 0, 4], &[1, 1]).is_err(), "empty channel dim");
        assert!(pad(replication_pad1d_out, &[0, 2, 4], &[1, 1]).is_ok(), "empty batch");
        assert!(pad(replication_pad3d_out, &[1, 2, 2, 2], &[-2, 0, 0, 0, 0, 0]).is_err(), "empty output");
        let constant = |x: &[usize], pads: &[i64]| {
            Call::new()
                .ramp(DType::Int, x, 1.0)
                .ints(pads)
                .int(0)
                .out(DType::Int, &vec![1; x.len()], 512)
                .run(constant_pad_nd_out)
                .0
        };
        assert!(constant(&[2, 3], &[1]).is_err(), "odd length");
        assert!(constant(&[2, 3], &[1, 1, 1, 1, 1, 1]).is_err(), "more pairs than dims");
        assert!(constant(&[2, 3], &[-2, -2]).is_err(), "negative size");
        let extremes = [i64::MIN, i64::MIN + 5, -3, -1, 0, 1, 3, i64::MAX - 5, i64::MAX];
        for &a in &extremes {
            for &b in &extremes {
                let _ = constant(&[2, 3], &[a, b]);
                for kernel in [reflection_pad1d_out as KernelFn, replication_pad1d_out] {
                    let _ = pad(kernel, &[2, 3], &[a, b]);
                }
            }
        }
    }
}

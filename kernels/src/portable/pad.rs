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
        let v = if inside { *src.get(offset_of(&input[..index.len()], &xs)).ok_or(short(0))? } else { fill };
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

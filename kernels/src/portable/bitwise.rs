//! Bitwise and logical operators: `bitwise_and/or/xor/not`, shifts, `logical_and/or/xor`.

use crate::args::KernelArgs;
use crate::dtype::{Bool, DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{BinaryOp, Operand, binary_in, binary_map, check_out_cast, result_type2, unary_map};
use crate::portable::math::{shift_left, shift_right};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};

/// Which bitwise operator.
#[derive(Clone, Copy)]
enum Bits {
    And,
    Or,
    Xor,
    /// `a << b` in an integer of this many bits.
    Shl(u32),
    /// `a >> b` in an integer of this many bits, signed or not.
    Shr(u32, bool),
}

impl BinaryOp for Bits {
    // Only reached for integer and bool dtypes: the kernels refuse floats before mapping.
    fn f32(self, a: f32, _: f32) -> f32 {
        a
    }
    fn f64(self, a: f64, _: f64) -> f64 {
        a
    }
    fn i64(self, a: i64, b: i64) -> i64 {
        match self {
            Bits::And => a & b,
            Bits::Or => a | b,
            Bits::Xor => a ^ b,
            Bits::Shl(bits) => shift_left(a, b, bits),
            Bits::Shr(bits, signed) => shift_right(a, b, bits, signed),
        }
    }
}

/// Integer (and, for `and`/`or`/`xor`, bool) operands only, as in PyTorch.
fn bitwise(a: Operand<'_>, b: Operand<'_>, args: &KernelArgs<'_>, out_arg: usize, op: Bits) -> Result<(), KernelError> {
    let mut out = args.tensor_mut(out_arg)?;
    let common = result_type2(&a, &b);
    let is_shift = matches!(op, Bits::Shl(_) | Bits::Shr(..));
    if common.is_floating_point() || (is_shift && common == DType::Bool) || !common.is_integral(true) {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: common });
    }
    check_out_cast(common, &out)?;
    let op = match op {
        Bits::Shl(_) => Bits::Shl(bit_width(common)),
        Bits::Shr(..) => Bits::Shr(bit_width(common), is_signed(common)),
        other => other,
    };
    binary_in(a, b, common, &mut out, op)
}

fn bit_width(t: DType) -> u32 {
    t.element_size().unwrap_or(8) as u32 * 8
}

fn is_signed(t: DType) -> bool {
    matches!(t, DType::Char | DType::Short | DType::Int | DType::Long)
}

macro_rules! bitwise_kernels {
    ($tensor_fn:ident, $scalar_fn:ident, $name:literal, $op:expr) => {
        #[doc = concat!("`aten::", $name, ".Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out)`")]
        pub fn $tensor_fn(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
            bitwise(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), args, 2, $op)
        }

        #[doc = concat!("`aten::", $name, ".Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out)` (for shifts: `.Tensor_Scalar_out`)")]
        pub fn $scalar_fn(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
            bitwise(Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?), args, 2, $op)
        }
    };
}

bitwise_kernels!(bitwise_and_tensor_out, bitwise_and_scalar_out, "bitwise_and", Bits::And);
bitwise_kernels!(bitwise_or_tensor_out, bitwise_or_scalar_out, "bitwise_or", Bits::Or);
bitwise_kernels!(bitwise_xor_tensor_out, bitwise_xor_scalar_out, "bitwise_xor", Bits::Xor);
bitwise_kernels!(
    bitwise_left_shift_tensor_out,
    bitwise_left_shift_tensor_scalar_out,
    "bitwise_left_shift",
    Bits::Shl(0)
);
bitwise_kernels!(
    bitwise_right_shift_tensor_out,
    bitwise_right_shift_tensor_scalar_out,
    "bitwise_right_shift",
    Bits::Shr(0, false)
);

/// `aten::bitwise_not.out(Tensor self, *, Tensor(a!) out)`: `!x` for integers, `not x` for bool.
pub fn bitwise_not_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    let dtype = x.dtype();
    if !dtype.is_integral(true) {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype });
    }
    check_out_cast(dtype, &out)?;
    crate::dispatch_dtype!(dtype, R => unary_map::<R, R>(x, &mut out, |v| {
        if R::DTYPE == DType::Bool { R::from_bool(!v.is_nonzero()) } else { R::from_i64(!v.to_i64()) }
    }), _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// A logical operator over the truth of both operands (nonzero, NaN included), evaluated after
/// converting them to their common dtype as PyTorch does; any output dtype receives 0 or 1.
fn logical(args: &KernelArgs<'_>, op: fn(bool, bool) -> bool) -> Result<(), KernelError> {
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?));
    let mut out = args.tensor_mut(2)?;
    let common = result_type2(&a, &b);
    crate::dispatch_dtype!(common, R => binary_map::<R, Bool>(a, b, &mut out, |x, y| {
        Bool::from(op(x.is_nonzero(), y.is_nonzero()))
    }), _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: common }))
}

/// `aten::logical_and.out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn logical_and_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    logical(args, |a, b| a && b)
}

/// `aten::logical_or.out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn logical_or_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    logical(args, |a, b| a || b)
}

/// `aten::logical_xor.out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn logical_xor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    logical(args, |a, b| a != b)
}

/// Integer dtypes and bool.
const INT_BOOL_DTYPES: &[DType] = &[DType::Bool, DType::Byte, DType::Char, DType::Short, DType::Int, DType::Long];
/// Integer dtypes.
const INT_DTYPES: &[DType] = &[DType::Byte, DType::Char, DType::Short, DType::Int, DType::Long];

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::ALL_DTYPES;
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        (
            "aten::bitwise_and.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_BOOL_DTYPES,
            bitwise_and_tensor_out,
        ),
        (
            "aten::bitwise_and.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_BOOL_DTYPES,
            bitwise_and_scalar_out,
        ),
        (
            "aten::bitwise_or.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_BOOL_DTYPES,
            bitwise_or_tensor_out,
        ),
        (
            "aten::bitwise_or.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_BOOL_DTYPES,
            bitwise_or_scalar_out,
        ),
        (
            "aten::bitwise_xor.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_BOOL_DTYPES,
            bitwise_xor_tensor_out,
        ),
        (
            "aten::bitwise_xor.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_BOOL_DTYPES,
            bitwise_xor_scalar_out,
        ),
        (
            "aten::bitwise_left_shift.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_DTYPES,
            bitwise_left_shift_tensor_out,
        ),
        (
            "aten::bitwise_left_shift.Tensor_Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_BOOL_DTYPES,
            bitwise_left_shift_tensor_scalar_out,
        ),
        (
            "aten::bitwise_right_shift.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_DTYPES,
            bitwise_right_shift_tensor_out,
        ),
        (
            "aten::bitwise_right_shift.Tensor_Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            INT_BOOL_DTYPES,
            bitwise_right_shift_tensor_scalar_out,
        ),
        ("aten::bitwise_not.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", INT_BOOL_DTYPES, bitwise_not_out),
        (
            "aten::logical_and.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            logical_and_out,
        ),
        (
            "aten::logical_or.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            logical_or_out,
        ),
        (
            "aten::logical_xor.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            logical_xor_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

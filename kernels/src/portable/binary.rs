//! Binary elementwise operators: arithmetic, comparisons, `where`.

use crate::args::KernelArgs;
use crate::dtype::{Bool, DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{
    BinaryOp as Arith, Compute, Operand, binary_in, binary_map, check_out_cast, compute_for, result_type2, scalar_fits,
    ternary_map,
};
use crate::portable::math::{Float, div_floor_float, div_floor_int, pow_int, remainder_float, remainder_int};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::tensor::Tensor;
use crate::value::Scalar;
use core::cell::Cell;

/// Computes `out = op(a, b)` in PyTorch's result type. Inlined into each kernel so operands stay
/// in registers (passing these small enums through memory costs store-forwarding stalls, which
/// dominate one-element ops).
#[inline(always)]
fn arith(
    a: Operand<'_>,
    b: Operand<'_>,
    out_arg: usize,
    args: &KernelArgs<'_>,
    op: impl Arith,
) -> Result<(), KernelError> {
    arith_in(a, b, result_type2(&a, &b), out_arg, args, op)
}

/// [`arith`] with the result type already known.
#[inline(always)]
fn arith_in(
    a: Operand<'_>,
    b: Operand<'_>,
    result: DType,
    out_arg: usize,
    args: &KernelArgs<'_>,
    op: impl Arith,
) -> Result<(), KernelError> {
    let mut out = args.tensor_mut(out_arg)?;
    check_out_cast(result, &out)?;
    if result == DType::Bool && !op_bool_ok(&op) {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: DType::Bool });
    }
    match compute_for(result) {
        Compute::F32 => binary_map::<f32, f32>(a, b, &mut out, |x, y| op.f32(x, y)),
        Compute::F64 => binary_map::<f64, f64>(a, b, &mut out, |x, y| op.f64(x, y)),
        Compute::I64 => {
            // Integer results are computed in i64 and narrowed (wrapping, like C++).
            crate::dispatch_dtype!(result, R => binary_map::<i64, R>(a, b, &mut out, |x, y| R::from_i64(op.i64(x, y))),
                _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: result }))
        }
    }
}

fn op_bool_ok<A: Arith>(_: &A) -> bool {
    A::BOOL_OK
}

/// `a + alpha * b`.
#[derive(Clone, Copy)]
struct Add {
    alpha: Scalar,
}

impl Arith for Add {
    fn f32(self, a: f32, b: f32) -> f32 {
        match self.alpha {
            Scalar::Int(1) => a + b,
            alpha => a + alpha.to_f64() as f32 * b,
        }
    }
    fn f64(self, a: f64, b: f64) -> f64 {
        a + self.alpha.to_f64() * b
    }
    fn i64(self, a: i64, b: i64) -> i64 {
        a.wrapping_add(self.alpha.to_i64().wrapping_mul(b))
    }
}

/// `a - alpha * b`.
#[derive(Clone, Copy)]
struct Sub {
    alpha: Scalar,
}

impl Arith for Sub {
    fn f32(self, a: f32, b: f32) -> f32 {
        match self.alpha {
            Scalar::Int(1) => a - b,
            alpha => a - alpha.to_f64() as f32 * b,
        }
    }
    fn f64(self, a: f64, b: f64) -> f64 {
        a - self.alpha.to_f64() * b
    }
    fn i64(self, a: i64, b: i64) -> i64 {
        a.wrapping_sub(self.alpha.to_i64().wrapping_mul(b))
    }
    const BOOL_OK: bool = false;
}

#[derive(Clone, Copy)]
struct Mul;

impl Arith for Mul {
    fn f32(self, a: f32, b: f32) -> f32 {
        a * b
    }
    fn f64(self, a: f64, b: f64) -> f64 {
        a * b
    }
    fn i64(self, a: i64, b: i64) -> i64 {
        a.wrapping_mul(b)
    }
}

/// `maximum`/`minimum`: NaN propagates.
#[derive(Clone, Copy)]
struct MaxMin {
    max: bool,
}

impl Arith for MaxMin {
    fn f32(self, a: f32, b: f32) -> f32 {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else if self.max {
            a.max(b)
        } else {
            a.min(b)
        }
    }
    fn f64(self, a: f64, b: f64) -> f64 {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else if self.max {
            a.max(b)
        } else {
            a.min(b)
        }
    }
    fn i64(self, a: i64, b: i64) -> i64 {
        if self.max { a.max(b) } else { a.min(b) }
    }
}

fn alpha_arg(args: &KernelArgs<'_>, arg: usize, result: DType) -> Result<Scalar, KernelError> {
    let alpha = args.scalar(arg)?;
    if !scalar_fits(alpha, result) {
        return Err(KernelError::InvalidArgument { arg, reason: "alpha's type does not fit the result dtype" });
    }
    Ok(alpha)
}

/// `aten::add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out)`
pub fn add_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    add_tensors(args.tensor(0)?, args.tensor(1)?, args)
}

/// `add.out` on operands already read (for kernels that fall back here after looking at them).
pub(crate) fn add_tensors(a: Tensor<'_>, b: Tensor<'_>, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, b) = (Operand::Tensor(a), Operand::Tensor(b));
    let result = result_type2(&a, &b);
    let alpha = alpha_arg(args, 2, result)?;
    arith_in(a, b, result, 3, args, Add { alpha })
}

/// `aten::add.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out)`
pub fn add_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?));
    let result = result_type2(&a, &b);
    let alpha = alpha_arg(args, 2, result)?;
    arith_in(a, b, result, 3, args, Add { alpha })
}

/// `aten::sub.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out)`
pub fn sub_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    sub_tensors(args.tensor(0)?, args.tensor(1)?, args)
}

/// `sub.out` on operands already read.
pub(crate) fn sub_tensors(a: Tensor<'_>, b: Tensor<'_>, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, b) = (Operand::Tensor(a), Operand::Tensor(b));
    let result = result_type2(&a, &b);
    let alpha = alpha_arg(args, 2, result)?;
    arith_in(a, b, result, 3, args, Sub { alpha })
}

/// `aten::sub.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out)`
pub fn sub_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?));
    let result = result_type2(&a, &b);
    let alpha = alpha_arg(args, 2, result)?;
    arith_in(a, b, result, 3, args, Sub { alpha })
}

/// `aten::mul.out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn mul_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    mul_tensors(args.tensor(0)?, args.tensor(1)?, args)
}

/// `mul.out` on operands already read.
pub(crate) fn mul_tensors(a: Tensor<'_>, b: Tensor<'_>, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    arith(Operand::Tensor(a), Operand::Tensor(b), 2, args, Mul)
}

/// `aten::mul.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out)`
pub fn mul_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    arith(Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?), 2, args, Mul)
}

/// `maximum`/`minimum` in the common dtype: the operands are converted to it first, so a wide
/// zero-dim operand wraps into a narrow integer dtype as in PyTorch.
fn max_min(args: &KernelArgs<'_>, max: bool) -> Result<(), KernelError> {
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?));
    let mut out = args.tensor_mut(2)?;
    let common = result_type2(&a, &b);
    check_out_cast(common, &out)?;
    binary_in(a, b, common, &mut out, MaxMin { max })
}

/// `aten::maximum.out(Tensor self, Tensor other, *, Tensor(a!) out)`; NaN propagates.
pub fn maximum_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    max_min(args, true)
}

/// `aten::minimum.out(Tensor self, Tensor other, *, Tensor(a!) out)`; NaN propagates.
pub fn minimum_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    max_min(args, false)
}

/// True division: integer inputs give a floating result.
fn div(a: Operand<'_>, b: Operand<'_>, args: &KernelArgs<'_>, out_arg: usize) -> Result<(), KernelError> {
    let mut out = args.tensor_mut(out_arg)?;
    let mut result = result_type2(&a, &b);
    if !result.is_floating_point() {
        result = DType::Float;
    }
    check_out_cast(result, &out)?;
    match compute_for(result) {
        Compute::F64 => binary_map::<f64, f64>(a, b, &mut out, |x, y| x / y),
        _ => binary_map::<f32, f32>(a, b, &mut out, |x, y| x / y),
    }
}

/// `aten::div.out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn div_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    div_tensors(args.tensor(0)?, args.tensor(1)?, args)
}

/// `div.out` on operands already read.
pub(crate) fn div_tensors(a: Tensor<'_>, b: Tensor<'_>, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    div(Operand::Tensor(a), Operand::Tensor(b), args, 2)
}

/// `aten::div.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out)`
pub fn div_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    div(Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?), args, 2)
}

/// `aten::pow.Tensor_Scalar_out(Tensor self, Scalar exponent, *, Tensor(a!) out)`
pub fn pow_tensor_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let a = Operand::Tensor(args.tensor(0)?);
    let e = args.scalar(1)?;
    let mut out = args.tensor_mut(2)?;
    let result = result_type2(&a, &Operand::Scalar(e));
    check_out_cast(result, &out)?;
    let b = Operand::Scalar(e);
    match compute_for(result) {
        Compute::F32 => match e {
            // PyTorch special-cases small integral exponents (2 → x*x, ...); so do we, which keeps
            // results bit-identical for the common squares.
            Scalar::Int(2) => binary_map::<f32, f32>(a, b, &mut out, |x, _| x * x),
            Scalar::Double(2.0) => binary_map::<f32, f32>(a, b, &mut out, |x, _| x * x),
            Scalar::Double(0.5) => binary_map::<f32, f32>(a, b, &mut out, |x, _| x.sqrt()),
            _ => binary_map::<f32, f32>(a, b, &mut out, |x, y| x.powf(y)),
        },
        Compute::F64 => binary_map::<f64, f64>(a, b, &mut out, |x, y| x.powf(y)),
        Compute::I64 => {
            let exp = e.to_i64();
            if exp < 0 {
                return Err(KernelError::InvalidArgument {
                    arg: 1,
                    reason: "integers to negative integer powers are not allowed",
                });
            }
            let exp = u32::try_from(exp).unwrap_or(u32::MAX);
            crate::dispatch_dtype!(result, R => binary_map::<i64, R>(a, b, &mut out, |x, _| R::from_i64(x.wrapping_pow(exp))),
                _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: result }))
        }
    }
}

/// A comparison, evaluated in the inputs' common type: operands are converted to it first, as
/// PyTorch does (`int8_tensor < 300` compares with 300 wrapped to int8, 44).
fn compare(
    a: Operand<'_>,
    b: Operand<'_>,
    args: &KernelArgs<'_>,
    out_arg: usize,
    op: fn(core::cmp::Ordering) -> bool,
) -> Result<(), KernelError> {
    let mut out = args.tensor_mut(out_arg)?;
    let common = result_type2(&a, &b);
    // NaN compares unequal and unordered: every comparison but `ne` is false.
    let nan_result =
        op(core::cmp::Ordering::Less) && op(core::cmp::Ordering::Greater) && !op(core::cmp::Ordering::Equal);
    crate::dispatch_dtype!(common, R => binary_map::<R, Bool>(a, b, &mut out, |x, y| {
        Bool::from(match compute_for(R::DTYPE) {
            Compute::I64 => op(i64::cast_from(x).cmp(&i64::cast_from(y))),
            Compute::F64 => f64::cast_from(x).partial_cmp(&f64::cast_from(y)).map_or(nan_result, op),
            Compute::F32 => f32::cast_from(x).partial_cmp(&f32::cast_from(y)).map_or(nan_result, op),
        })
    }), _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: common }))
}

macro_rules! comparison {
    ($tensor_fn:ident, $scalar_fn:ident, $op:expr) => {
        #[doc = concat!("`", stringify!($tensor_fn), "`: `(Tensor self, Tensor other, *, Tensor(a!) out)`")]
        pub fn $tensor_fn(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
            compare(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), args, 2, $op)
        }
        #[doc = concat!("`", stringify!($scalar_fn), "`: `(Tensor self, Scalar other, *, Tensor(a!) out)`")]
        pub fn $scalar_fn(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
            compare(Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?), args, 2, $op)
        }
    };
}

comparison!(eq_tensor_out, eq_scalar_out, |o| o.is_eq());
comparison!(ne_tensor_out, ne_scalar_out, |o| o.is_ne());
comparison!(gt_tensor_out, gt_scalar_out, |o| o.is_gt());
comparison!(ge_tensor_out, ge_scalar_out, |o| o.is_ge());
comparison!(lt_tensor_out, lt_scalar_out, |o| o.is_lt());
comparison!(le_tensor_out, le_scalar_out, |o| o.is_le());

/// `aten::where.self_out(Tensor condition, Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn where_self_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let cond = args.tensor(0)?;
    if cond.dtype() != DType::Bool && cond.dtype() != DType::Byte {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: cond.dtype() });
    }
    let (a, b) = (Operand::Tensor(args.tensor(1)?), Operand::Tensor(args.tensor(2)?));
    let mut out = args.tensor_mut(3)?;
    let result = result_type2(&a, &b);
    check_out_cast(result, &out)?;
    crate::dispatch_dtype!(result, R => ternary_map::<R>([Operand::Tensor(cond), a, b], &mut out, |s, [c, x, y]| {
        if s[0].get::<Bool>(c).get() { s[1].get::<R>(x) } else { s[2].get::<R>(y) }
    }), _ => Err(KernelError::UnsupportedDtype { arg: 1, dtype: result }))
}

/// PyTorch raises `ZeroDivisionError` for an integer division or remainder by zero; the integer
/// kernels record it in a flag and the caller reports it after the loop.
fn zero_division(arg: usize) -> KernelError {
    KernelError::InvalidArgument { arg, reason: "ZeroDivisionError: integer division or remainder by zero" }
}

/// Defines a [`Arith`] operator that needs a division-by-zero flag for integers.
macro_rules! int_checked_op {
    ($(#[$doc:meta])* $name:ident, |$a:ident, $b:ident| float: $float:expr, int: $int:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        struct $name<'a> {
            zero: &'a Cell<bool>,
        }

        impl Arith for $name<'_> {
            fn f32(self, $a: f32, $b: f32) -> f32 {
                $float
            }
            fn f64(self, $a: f64, $b: f64) -> f64 {
                $float
            }
            fn i64(self, $a: i64, $b: i64) -> i64 {
                if $b == 0 {
                    self.zero.set(true);
                    0
                } else {
                    $int
                }
            }
            const BOOL_OK: bool = false;
        }
    };
}

int_checked_op!(
    /// Division rounded toward zero.
    DivTrunc, |a, b| float: (a / b).trunc(), int: a.wrapping_div(b)
);
int_checked_op!(
    /// Division rounded down (Python's `//`).
    DivFloor, |a, b| float: div_floor_float(a, b), int: div_floor_int(a, b)
);
int_checked_op!(
    /// C's `fmod`: the remainder has the sign of the dividend.
    Fmod, |a, b| float: a.fmod(b), int: a.wrapping_rem(b)
);
int_checked_op!(
    /// Python's `%`: the remainder has the sign of the divisor.
    Remainder, |a, b| float: remainder_float(a, b), int: remainder_int(a, b)
);

/// Computes a division-like operator in the common dtype and reports integer division by zero.
fn checked_division<O: Arith>(
    a: Operand<'_>,
    b: Operand<'_>,
    args: &KernelArgs<'_>,
    out_arg: usize,
    zero: &Cell<bool>,
    op: O,
) -> Result<(), KernelError> {
    let mut out = args.tensor_mut(out_arg)?;
    let common = result_type2(&a, &b);
    check_out_cast(common, &out)?;
    binary_in(a, b, common, &mut out, op)?;
    if zero.get() { Err(zero_division(1)) } else { Ok(()) }
}

/// `div`'s `rounding_mode`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rounding {
    /// True division (`None`).
    None,
    Trunc,
    Floor,
}

fn rounding_arg(args: &KernelArgs<'_>, arg: usize) -> Result<Rounding, KernelError> {
    match args.opt_string(arg)? {
        None => Ok(Rounding::None),
        Some("trunc") => Ok(Rounding::Trunc),
        Some("floor") => Ok(Rounding::Floor),
        Some(_) => Err(KernelError::InvalidArgument { arg, reason: "rounding_mode must be None, 'trunc' or 'floor'" }),
    }
}

/// Division with a rounding mode: true division gives a float; `trunc` and `floor` keep the
/// common dtype.
fn div_rounded(
    a: Operand<'_>,
    b: Operand<'_>,
    mode: Rounding,
    args: &KernelArgs<'_>,
    out_arg: usize,
) -> Result<(), KernelError> {
    if mode != Rounding::None
        && let Some(divisor) = reduced_float_divisor(&a, &b)?
    {
        // PyTorch's `div_trunc` and `div_floor` on float16/bfloat16 read a one-element divisor at
        // its original precision (as f32) instead of rounding it to the common dtype first.
        let mut out = args.tensor_mut(out_arg)?;
        check_out_cast(result_type2(&a, &b), &out)?;
        let divisor = Operand::Scalar(Scalar::Double(f64::from(divisor)));
        return if mode == Rounding::Trunc {
            binary_map::<f32, f32>(a, divisor, &mut out, |x, y| (x / y).trunc())
        } else {
            binary_map::<f32, f32>(a, divisor, &mut out, div_floor_float)
        };
    }
    let common = result_type2(&a, &b);
    if mode == Rounding::Trunc && matches!(common, DType::Half | DType::BFloat16) {
        // PyTorch divides 16-bit floats in f32 but rounds the quotient to the dtype before
        // truncating (-2.78125 / -0.1640625 is 16.95, which bfloat16 rounds to 17).
        let mut out = args.tensor_mut(out_arg)?;
        check_out_cast(common, &out)?;
        let round: fn(f32) -> f32 = if common == DType::Half {
            |q| half::f16::from_f32(q).to_f32()
        } else {
            |q| half::bf16::from_f32(q).to_f32()
        };
        return binary_map::<f32, f32>(a, b, &mut out, |x, y| round(x / y).trunc());
    }
    let zero = Cell::new(false);
    match mode {
        Rounding::None => div(a, b, args, out_arg),
        Rounding::Trunc => checked_division(a, b, args, out_arg, &zero, DivTrunc { zero: &zero }),
        Rounding::Floor => checked_division(a, b, args, out_arg, &zero, DivFloor { zero: &zero }),
    }
}

/// The divisor as f32 when the division happens in float16/bfloat16, the dividend already has
/// that dtype, and the divisor is a scalar or a one-element tensor that adds no dimensions.
fn reduced_float_divisor(a: &Operand<'_>, b: &Operand<'_>) -> Result<Option<f32>, KernelError> {
    let Operand::Tensor(x) = a else { return Ok(None) };
    if !matches!(x.dtype(), DType::Half | DType::BFloat16) || result_type2(a, b) != x.dtype() {
        return Ok(None);
    }
    Ok(match b {
        Operand::Scalar(s) => Some(s.to_f64() as f32),
        Operand::Tensor(t) if t.numel() == 1 && t.dim() <= x.dim() => Some(t.item::<f32>()?),
        Operand::Tensor(_) => None,
    })
}

/// `aten::div.out_mode(Tensor self, Tensor other, *, str? rounding_mode, Tensor(a!) out)`
pub fn div_out_mode(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let mode = rounding_arg(args, 2)?;
    div_rounded(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), mode, args, 3)
}

/// `aten::div.Scalar_mode_out(Tensor self, Scalar other, *, str? rounding_mode, Tensor(a!) out)`
pub fn div_scalar_mode_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let mode = rounding_arg(args, 2)?;
    div_rounded(Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?), mode, args, 3)
}

/// `aten::floor_divide.out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn floor_divide_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    div_rounded(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), Rounding::Floor, args, 2)
}

/// `aten::fmod.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn fmod_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let zero = Cell::new(false);
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?));
    checked_division(a, b, args, 2, &zero, Fmod { zero: &zero })
}

/// `aten::fmod.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out)`
pub fn fmod_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let zero = Cell::new(false);
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?));
    checked_division(a, b, args, 2, &zero, Fmod { zero: &zero })
}

/// `aten::remainder.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn remainder_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let zero = Cell::new(false);
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?));
    checked_division(a, b, args, 2, &zero, Remainder { zero: &zero })
}

/// `aten::remainder.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out)`
pub fn remainder_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let zero = Cell::new(false);
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?));
    checked_division(a, b, args, 2, &zero, Remainder { zero: &zero })
}

/// `a ** b`: C's `pow` for floats, exact integer powers otherwise.
#[derive(Clone, Copy)]
struct Pow;

impl Arith for Pow {
    fn f32(self, a: f32, b: f32) -> f32 {
        a.powf(b)
    }
    fn f64(self, a: f64, b: f64) -> f64 {
        a.powf(b)
    }
    fn i64(self, a: i64, b: i64) -> i64 {
        pow_int(a, b)
    }
    const BOOL_OK: bool = false;
}

fn pow_common(a: Operand<'_>, b: Operand<'_>, args: &KernelArgs<'_>, out_arg: usize) -> Result<(), KernelError> {
    let mut out = args.tensor_mut(out_arg)?;
    let common = result_type2(&a, &b);
    check_out_cast(common, &out)?;
    binary_in(a, b, common, &mut out, Pow)
}

/// `aten::pow.Tensor_Tensor_out(Tensor self, Tensor exponent, *, Tensor(a!) out)`
pub fn pow_tensor_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    pow_common(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), args, 2)
}

/// `aten::pow.Scalar_out(Scalar self, Tensor exponent, *, Tensor(a!) out)`
pub fn pow_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    pow_common(Operand::Scalar(args.scalar(0)?), Operand::Tensor(args.tensor(1)?), args, 2)
}

/// `atan2(a, b)`; only ever computed in floats.
#[derive(Clone, Copy)]
struct Atan2;

impl Arith for Atan2 {
    fn f32(self, a: f32, b: f32) -> f32 {
        a.atan2(b)
    }
    fn f64(self, a: f64, b: f64) -> f64 {
        a.atan2(b)
    }
    fn i64(self, a: i64, b: i64) -> i64 {
        (a as f64).atan2(b as f64) as i64
    }
}

/// `aten::atan2.out(Tensor self, Tensor other, *, Tensor(a!) out)`: integer inputs give a float.
pub fn atan2_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?));
    let mut out = args.tensor_mut(2)?;
    let mut common = result_type2(&a, &b);
    if !common.is_floating_point() {
        common = DType::Float;
    }
    check_out_cast(common, &out)?;
    binary_in(a, b, common, &mut out, Atan2)
}

/// `b - alpha * a` (`rsub` swaps the operands of `sub`).
#[derive(Clone, Copy)]
struct RSub {
    alpha: Scalar,
}

impl Arith for RSub {
    fn f32(self, a: f32, b: f32) -> f32 {
        b - self.alpha.to_f64() as f32 * a
    }
    fn f64(self, a: f64, b: f64) -> f64 {
        b - self.alpha.to_f64() * a
    }
    fn i64(self, a: i64, b: i64) -> i64 {
        b.wrapping_sub(self.alpha.to_i64().wrapping_mul(a))
    }
    const BOOL_OK: bool = false;
}

/// `aten::rsub.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out)`:
/// `other - alpha * self`.
pub fn rsub_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?));
    let common = result_type2(&a, &b);
    let alpha = alpha_arg(args, 2, common)?;
    let mut out = args.tensor_mut(3)?;
    check_out_cast(common, &out)?;
    binary_in(a, b, common, &mut out, RSub { alpha })
}

/// `aten::masked_fill.Scalar_out(Tensor self, Tensor mask, Scalar value, *, Tensor(a!) out)`:
/// `self` where `mask` is false, `value` (converted to self's dtype) where it is true; `self` and
/// `mask` broadcast together.
pub fn masked_fill_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = args.tensor(1)?;
    if mask.dtype() != DType::Bool {
        return Err(KernelError::DtypeMismatch { arg: 1, expected: DType::Bool, found: mask.dtype() });
    }
    let value = args.scalar(2)?;
    let mut out = args.tensor_mut(3)?;
    check_out_cast(x.dtype(), &out)?;
    let dtype = x.dtype();
    let ops = [Operand::Tensor(x), Operand::Tensor(mask), Operand::Scalar(value)];
    crate::dispatch_dtype!(dtype, R => ternary_map::<R>(ops, &mut out, |s, [i, m, v]| {
        if s[1].get::<Bool>(m).get() { s[2].get::<R>(v) } else { s[0].get::<R>(i) }
    }), _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::{ALL_DTYPES, REAL_DTYPES};
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            add_out,
        ),
        (
            "aten::add.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            add_scalar_out,
        ),
        (
            "aten::sub.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            sub_out,
        ),
        (
            "aten::sub.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            sub_scalar_out,
        ),
        ("aten::mul.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, mul_out),
        (
            "aten::mul.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            mul_scalar_out,
        ),
        ("aten::div.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, div_out),
        (
            "aten::div.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            div_scalar_out,
        ),
        ("aten::maximum.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, maximum_out),
        ("aten::minimum.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, minimum_out),
        (
            "aten::pow.Tensor_Scalar_out(Tensor self, Scalar exponent, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            pow_tensor_scalar_out,
        ),
        ("aten::eq.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, eq_tensor_out),
        ("aten::eq.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, eq_scalar_out),
        ("aten::ne.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, ne_tensor_out),
        ("aten::ne.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, ne_scalar_out),
        ("aten::gt.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, gt_tensor_out),
        ("aten::gt.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, gt_scalar_out),
        ("aten::ge.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, ge_tensor_out),
        ("aten::ge.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, ge_scalar_out),
        ("aten::lt.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, lt_tensor_out),
        ("aten::lt.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, lt_scalar_out),
        ("aten::le.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, le_tensor_out),
        ("aten::le.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, le_scalar_out),
        (
            "aten::where.self_out(Tensor condition, Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            where_self_out,
        ),
        ("aten::atan2.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, atan2_out),
        (
            "aten::div.out_mode(Tensor self, Tensor other, *, str? rounding_mode, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            div_out_mode,
        ),
        (
            "aten::div.Scalar_mode_out(Tensor self, Scalar other, *, str? rounding_mode, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            div_scalar_mode_out,
        ),
        (
            "aten::floor_divide.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            floor_divide_out,
        ),
        (
            "aten::fmod.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            fmod_tensor_out,
        ),
        (
            "aten::fmod.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            fmod_scalar_out,
        ),
        (
            "aten::remainder.Tensor_out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            remainder_tensor_out,
        ),
        (
            "aten::remainder.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            remainder_scalar_out,
        ),
        (
            "aten::pow.Tensor_Tensor_out(Tensor self, Tensor exponent, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            pow_tensor_tensor_out,
        ),
        (
            "aten::pow.Scalar_out(Scalar self, Tensor exponent, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            pow_scalar_out,
        ),
        (
            "aten::rsub.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            rsub_scalar_out,
        ),
        (
            "aten::masked_fill.Scalar_out(Tensor self, Tensor mask, Scalar value, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            masked_fill_scalar_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

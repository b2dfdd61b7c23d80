//! Binary elementwise operators: arithmetic, comparisons, `where`.

use crate::args::KernelArgs;
use crate::dtype::{Bool, DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{
    Compute, Operand, binary_map, check_out_cast, compute_for, result_type2, scalar_fits, ternary_map,
};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::value::Scalar;

/// An arithmetic operator in each compute type.
trait Arith: Copy {
    fn f32(self, a: f32, b: f32) -> f32;
    fn f64(self, a: f64, b: f64) -> f64;
    fn i64(self, a: i64, b: i64) -> i64;
    /// Operators undefined on bool (PyTorch refuses `sub` on bool).
    const BOOL_OK: bool = true;
}

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
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?));
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
    let (a, b) = (Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?));
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
    arith(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), 2, args, Mul)
}

/// `aten::mul.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out)`
pub fn mul_scalar_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    arith(Operand::Tensor(args.tensor(0)?), Operand::Scalar(args.scalar(1)?), 2, args, Mul)
}

/// `aten::maximum.out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn maximum_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    arith(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), 2, args, MaxMin { max: true })
}

/// `aten::minimum.out(Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn minimum_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    arith(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), 2, args, MaxMin { max: false })
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
    div(Operand::Tensor(args.tensor(0)?), Operand::Tensor(args.tensor(1)?), args, 2)
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

/// A comparison, evaluated in the inputs' common type.
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
    match compute_for(common) {
        Compute::F32 => {
            binary_map::<f32, Bool>(a, b, &mut out, |x, y| Bool::from(x.partial_cmp(&y).map_or(nan_result, op)))
        }
        Compute::F64 => {
            binary_map::<f64, Bool>(a, b, &mut out, |x, y| Bool::from(x.partial_cmp(&y).map_or(nan_result, op)))
        }
        Compute::I64 => binary_map::<i64, Bool>(a, b, &mut out, |x, y| Bool::from(op(x.cmp(&y)))),
    }
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
    ];
    crate::portable::register_table(r, table);
}

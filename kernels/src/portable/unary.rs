//! Unary elementwise operators: PyTorch's float functions (integer and bool inputs give a float
//! result), rounding, sign and negation (which keep the dtype), and predicates.

use half::{bf16, f16};

use crate::args::KernelArgs;
use crate::dtype::{Bool, DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{Compute, check_out_cast, compute_for, unary_map};
use crate::portable::math::Float;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::tensor::{Tensor, TensorMut};

/// `out = f(x)` for a floating result dtype `result`: 16-bit floats compute in f32 and round once.
pub(crate) fn float_map(
    x: Tensor<'_>,
    out: &mut TensorMut<'_>,
    result: DType,
    f32f: impl Fn(f32) -> f32,
    f64f: impl Fn(f64) -> f64,
) -> Result<(), KernelError> {
    match result {
        DType::Half => unary_map::<f16, f16>(x, out, |v| f16::from_f32(f32f(v.to_f32()))),
        DType::BFloat16 => unary_map::<bf16, bf16>(x, out, |v| bf16::from_f32(f32f(v.to_f32()))),
        DType::Float => unary_map::<f32, f32>(x, out, f32f),
        DType::Double => unary_map::<f64, f64>(x, out, f64f),
        other => Err(KernelError::UnsupportedDtype { arg: 0, dtype: other }),
    }
}

/// The result dtype of PyTorch's "int to float" unary functions such as `sin`: floats keep
/// their dtype, integers and bool give float32.
pub(crate) fn float_result(t: DType) -> DType {
    if t.is_floating_point() { t } else { DType::Float }
}

/// A floating-point function of `self` (argument 0) into `out` (argument 1).
pub(crate) fn float_unary(
    args: &KernelArgs<'_>,
    f32f: impl Fn(f32) -> f32,
    f64f: impl Fn(f64) -> f64,
) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    let result = float_result(x.dtype());
    check_out_cast(result, &out)?;
    float_map(x, &mut out, result, f32f, f64f)
}

/// A function that keeps the dtype (`abs`, `neg`, `floor`, ...), computed in the dtype's opmath
/// type. Bool inputs are refused unless `bool_ok`.
pub(crate) fn same_dtype_unary(
    args: &KernelArgs<'_>,
    bool_ok: bool,
    f32f: impl Fn(f32) -> f32,
    f64f: impl Fn(f64) -> f64,
    i64f: impl Fn(i64) -> i64,
) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    let dtype = x.dtype();
    check_out_cast(dtype, &out)?;
    if dtype == DType::Bool && !bool_ok {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: DType::Bool });
    }
    if dtype.is_floating_point() {
        return float_map(x, &mut out, dtype, f32f, f64f);
    }
    crate::dispatch_dtype!(dtype, R => unary_map::<R, R>(x, &mut out, |v| R::cast_from(i64f(i64::cast_from(v)))),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
}

/// Defines a kernel of a float function whose body is written once for f32 and f64.
macro_rules! float_unary_kernel {
    ($(#[$doc:meta])* $name:ident, |$x:ident| $body:expr) => {
        $(#[$doc])*
        pub fn $name(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
            float_unary(args, |$x: f32| $body, |$x: f64| $body)
        }
    };
}

float_unary_kernel!(
    /// `aten::sin.out(Tensor self, *, Tensor(a!) out)`
    sin_out, |x| x.sin()
);
float_unary_kernel!(
    /// `aten::cos.out(Tensor self, *, Tensor(a!) out)`
    cos_out, |x| x.cos()
);
float_unary_kernel!(
    /// `aten::tan.out(Tensor self, *, Tensor(a!) out)`
    tan_out, |x| x.tan()
);
float_unary_kernel!(
    /// `aten::acos.out(Tensor self, *, Tensor(a!) out)`
    acos_out, |x| x.acos()
);
float_unary_kernel!(
    /// `aten::asin.out(Tensor self, *, Tensor(a!) out)`
    asin_out, |x| x.asin()
);
float_unary_kernel!(
    /// `aten::atan.out(Tensor self, *, Tensor(a!) out)`
    atan_out, |x| x.atan()
);
float_unary_kernel!(
    /// `aten::sinh.out(Tensor self, *, Tensor(a!) out)`
    sinh_out, |x| x.sinh()
);
float_unary_kernel!(
    /// `aten::cosh.out(Tensor self, *, Tensor(a!) out)`
    cosh_out, |x| x.cosh()
);
float_unary_kernel!(
    /// `aten::tanh.out(Tensor self, *, Tensor(a!) out)`
    tanh_out, |x| x.tanh()
);
float_unary_kernel!(
    /// `aten::acosh.out(Tensor self, *, Tensor(a!) out)`
    acosh_out, |x| x.acosh()
);
float_unary_kernel!(
    /// `aten::asinh.out(Tensor self, *, Tensor(a!) out)`
    asinh_out, |x| x.asinh()
);
float_unary_kernel!(
    /// `aten::atanh.out(Tensor self, *, Tensor(a!) out)`
    atanh_out, |x| x.atanh()
);
float_unary_kernel!(
    /// `aten::erf.out(Tensor self, *, Tensor(a!) out)`
    erf_out, |x| Float::erf(x)
);
float_unary_kernel!(
    /// `aten::exp.out(Tensor self, *, Tensor(a!) out)`
    exp_out, |x| x.exp()
);
float_unary_kernel!(
    /// `aten::expm1.out(Tensor self, *, Tensor(a!) out)`
    expm1_out, |x| x.exp_m1()
);
float_unary_kernel!(
    /// `aten::log.out(Tensor self, *, Tensor(a!) out)`
    log_out, |x| x.ln()
);
float_unary_kernel!(
    /// `aten::log10.out(Tensor self, *, Tensor(a!) out)`
    log10_out, |x| x.log10()
);
float_unary_kernel!(
    /// `aten::log1p.out(Tensor self, *, Tensor(a!) out)`
    log1p_out, |x| x.ln_1p()
);
float_unary_kernel!(
    /// `aten::log2.out(Tensor self, *, Tensor(a!) out)`
    log2_out, |x| x.log2()
);
float_unary_kernel!(
    /// `aten::reciprocal.out(Tensor self, *, Tensor(a!) out)`
    reciprocal_out, |x| 1.0 / x
);
float_unary_kernel!(
    /// `aten::rsqrt.out(Tensor self, *, Tensor(a!) out)`
    rsqrt_out, |x| 1.0 / x.sqrt()
);
float_unary_kernel!(
    /// `aten::sqrt.out(Tensor self, *, Tensor(a!) out)`
    sqrt_out, |x| x.sqrt()
);
float_unary_kernel!(
    /// `aten::sigmoid.out(Tensor self, *, Tensor(a!) out)`: `1 / (1 + exp(-x))`.
    sigmoid_out, |x| 1.0 / (1.0 + (-x).exp())
);

/// `aten::logit.out(Tensor self, float? eps=None, *, Tensor(a!) out)`: `log(x / (1 - x))`, with
/// `x` first clamped into `[eps, 1 - eps]` when `eps` is given and not negative. As in PyTorch,
/// the bounds are values of the result dtype (so `1 - 1e-6` is 1 in float16).
pub fn logit_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let eps = args.opt_double(1)?.filter(|e| *e >= 0.0);
    let mut out = args.tensor_mut(2)?;
    let result = float_result(x.dtype());
    check_out_cast(result, &out)?;
    let in_result = |v: f64| -> f64 { crate::dispatch_dtype!(result, R => R::from_f64(v).to_f64(), _ => v) };
    let bounds = eps.map(|e| (in_result(e), in_result(1.0 - e)));
    fn logit<F: Float>(x: F, bounds: Option<(f64, f64)>) -> F {
        let x = match bounds {
            Some((lo, hi)) => {
                let (lo, hi) = (F::from_double(lo), F::from_double(hi));
                if x < lo {
                    lo
                } else if x > hi {
                    hi
                } else {
                    x
                }
            }
            None => x,
        };
        (x / (F::ONE - x)).ln()
    }
    float_map(x, &mut out, result, |v| logit(v, bounds), |v| logit(v, bounds))
}

/// `aten::abs.out(Tensor self, *, Tensor(a!) out)`
pub fn abs_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    same_dtype_unary(args, false, f32::abs, f64::abs, i64::wrapping_abs)
}

/// `aten::relu.out(Tensor self, *, Tensor(a!) out)`; NaN stays NaN.
pub fn relu_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    same_dtype_unary(
        args,
        false,
        |x| if x > 0.0 || x.is_nan() { x } else { 0.0 },
        |x| if x > 0.0 || x.is_nan() { x } else { 0.0 },
        |x| x.max(0),
    )
}

/// `aten::neg.out(Tensor self, *, Tensor(a!) out)`; integers wrap (`-(-128) == -128` in int8).
pub fn neg_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    same_dtype_unary(args, false, |x| -x, |x| -x, i64::wrapping_neg)
}

/// `aten::ceil.out(Tensor self, *, Tensor(a!) out)`; integers are unchanged.
pub fn ceil_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    same_dtype_unary(args, false, f32::ceil, f64::ceil, |x| x)
}

/// `aten::floor.out(Tensor self, *, Tensor(a!) out)`; integers are unchanged.
pub fn floor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    same_dtype_unary(args, false, f32::floor, f64::floor, |x| x)
}

/// `aten::trunc.out(Tensor self, *, Tensor(a!) out)`; integers are unchanged.
pub fn trunc_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    same_dtype_unary(args, false, f32::trunc, f64::trunc, |x| x)
}

/// `aten::round.out(Tensor self, *, Tensor(a!) out)`: halves round to even (`round(2.5) == 2`),
/// as PyTorch's `nearbyint`; integers are unchanged.
pub fn round_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    same_dtype_unary(args, false, f32::round_ties_even, f64::round_ties_even, |x| x)
}

/// `aten::sign.out(Tensor self, *, Tensor(a!) out)`: -1, 0 or 1; `sign(NaN) == 0` and
/// `sign(-0.0) == 0.0`, as PyTorch's `(0 < x) - (x < 0)`.
pub fn sign_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    fn sign<F: Float>(x: F) -> F {
        let pos = if F::ZERO < x { F::ONE } else { F::ZERO };
        let neg = if x < F::ZERO { F::ONE } else { F::ZERO };
        pos - neg
    }
    same_dtype_unary(args, true, sign, sign, i64::signum)
}

/// A predicate on each element into a bool (or any other dtype's 0/1) output.
fn predicate(args: &KernelArgs<'_>, f32f: fn(f32) -> bool, f64f: fn(f64) -> bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    match compute_for(x.dtype()) {
        Compute::F32 => unary_map::<f32, Bool>(x, &mut out, |v| Bool::from(f32f(v))),
        Compute::F64 => unary_map::<f64, Bool>(x, &mut out, |v| Bool::from(f64f(v))),
        // Integers and bool are finite numbers.
        Compute::I64 => unary_map::<i64, Bool>(x, &mut out, |_| Bool::FALSE),
    }
}

/// `aten::isinf.out(Tensor self, *, Tensor(a!) out)`
pub fn isinf_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    predicate(args, f32::is_infinite, f64::is_infinite)
}

/// `aten::isnan.out(Tensor self, *, Tensor(a!) out)`
pub fn isnan_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    predicate(args, f32::is_nan, f64::is_nan)
}

/// `aten::logical_not.out(Tensor self, *, Tensor(a!) out)`: any input dtype, any output dtype.
pub fn logical_not_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    match compute_for(x.dtype()) {
        Compute::I64 => unary_map::<i64, Bool>(x, &mut out, |v| Bool::from(v == 0)),
        _ => unary_map::<f64, Bool>(x, &mut out, |v| Bool::from(v == 0.0)),
    }
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::{ALL_DTYPES, REAL_DTYPES};
    // "int to float" functions accept every dtype; integer and bool inputs give float32.
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        ("aten::abs.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, abs_out),
        ("aten::relu.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, relu_out),
        ("aten::neg.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, neg_out),
        ("aten::ceil.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, ceil_out),
        ("aten::floor.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, floor_out),
        ("aten::trunc.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, trunc_out),
        ("aten::round.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, round_out),
        ("aten::sign.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, sign_out),
        ("aten::sin.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, sin_out),
        ("aten::cos.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, cos_out),
        ("aten::tan.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, tan_out),
        ("aten::acos.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, acos_out),
        ("aten::asin.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, asin_out),
        ("aten::atan.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, atan_out),
        ("aten::sinh.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, sinh_out),
        ("aten::cosh.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, cosh_out),
        ("aten::tanh.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, tanh_out),
        ("aten::acosh.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, acosh_out),
        ("aten::asinh.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, asinh_out),
        ("aten::atanh.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, atanh_out),
        ("aten::erf.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, erf_out),
        ("aten::exp.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, exp_out),
        ("aten::expm1.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, expm1_out),
        ("aten::log.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, log_out),
        ("aten::log10.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, log10_out),
        ("aten::log1p.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, log1p_out),
        ("aten::log2.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, log2_out),
        ("aten::logit.out(Tensor self, float? eps=None, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, logit_out),
        ("aten::reciprocal.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, reciprocal_out),
        ("aten::rsqrt.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, rsqrt_out),
        ("aten::sqrt.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, sqrt_out),
        ("aten::sigmoid.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, sigmoid_out),
        ("aten::isinf.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, isinf_out),
        ("aten::isnan.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, isnan_out),
        ("aten::logical_not.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, logical_not_out),
    ];
    crate::portable::register_table(r, table);
}

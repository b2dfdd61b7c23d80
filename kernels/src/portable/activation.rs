//! Activation functions and clamping: `elu`, `gelu`, `hardtanh`, `leaky_relu`, `clamp`.

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{
    Compute, Operand, check_out_cast, compute_for, result_type, ternary_map, unary_map,
};
use crate::portable::math::Float;
use crate::portable::unary::float_map;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::tensor::Tensor;
use crate::value::Scalar;

/// The input of a float-only activation, with its output checked against its dtype.
fn float_input<'a>(args: &'a KernelArgs<'a>) -> Result<Tensor<'a>, KernelError> {
    let x = args.tensor(0)?;
    if !x.dtype().is_floating_point() {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: x.dtype() });
    }
    Ok(x)
}

/// `aten::elu.out(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1, *,
/// Tensor(a!) out)`: `scale * x` for `x > 0`, else `alpha * scale * (exp(input_scale * x) - 1)`.
pub fn elu_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = float_input(args)?;
    let alpha = args.scalar(1)?.to_f64();
    let scale = args.scalar(2)?.to_f64();
    let input_scale = args.scalar(3)?.to_f64();
    let mut out = args.tensor_mut(4)?;
    check_out_cast(x.dtype(), &out)?;
    fn elu<F: Float>(x: F, alpha: f64, scale: f64, input_scale: f64) -> F {
        let (neg_coef, pos_coef, input_coef) =
            (F::from_double(alpha) * F::from_double(scale), F::from_double(scale), F::from_double(input_scale));
        if x <= F::ZERO { (x * input_coef).exp_m1() * neg_coef } else { x * pos_coef }
    }
    let dtype = x.dtype();
    float_map(x, &mut out, dtype, |v| elu(v, alpha, scale, input_scale), |v| elu(v, alpha, scale, input_scale))
}

/// `aten::gelu.out(Tensor self, *, str approximate="none", Tensor(a!) out)`:
/// `x/2 · (1 + erf(x/√2))`, or with `approximate="tanh"`
/// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715·x³)))`.
pub fn gelu_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = float_input(args)?;
    let tanh = match args.string(1)? {
        "none" => false,
        "tanh" => true,
        _ => return Err(KernelError::InvalidArgument { arg: 1, reason: "approximate must be 'none' or 'tanh'" }),
    };
    let mut out = args.tensor_mut(2)?;
    check_out_cast(x.dtype(), &out)?;
    fn gelu<F: Float>(x: F, tanh: bool) -> F {
        // PyTorch gives NaN for ±inf (its formula multiplies inf by an erf/tanh term).
        if !x.is_finite() {
            return F::NAN;
        }
        let half = F::from_double(0.5);
        if tanh {
            // √2 · (2/√π) · ½ = √(2/π)
            let beta = F::from_double(core::f64::consts::SQRT_2 * core::f64::consts::FRAC_2_SQRT_PI * 0.5);
            let kappa = F::from_double(0.044715);
            let inner = beta * (x + kappa * x * x * x);
            half * x * (F::ONE + inner.tanh())
        } else {
            x * half * (F::ONE + (x * F::from_double(core::f64::consts::FRAC_1_SQRT_2)).erf())
        }
    }
    let dtype = x.dtype();
    float_map(x, &mut out, dtype, |v| gelu(v, tanh), |v| gelu(v, tanh))
}

/// `aten::leaky_relu.out(Tensor self, Scalar negative_slope=0.01, *, Tensor(a!) out)`
pub fn leaky_relu_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = float_input(args)?;
    let slope = args.scalar(1)?.to_f64();
    let mut out = args.tensor_mut(2)?;
    check_out_cast(x.dtype(), &out)?;
    fn leaky<F: Float>(x: F, slope: f64) -> F {
        if x > F::ZERO { x } else { x * F::from_double(slope) }
    }
    let dtype = x.dtype();
    float_map(x, &mut out, dtype, |v| leaky(v, slope), |v| leaky(v, slope))
}

/// `min(max(x, lo), hi)` where a NaN in `x` or in a given bound gives NaN; `hi` wins over `lo`.
#[inline]
fn clamp_float<F: Float>(x: F, lo: Option<F>, hi: Option<F>) -> F {
    let mut v = x;
    if let Some(lo) = lo {
        v = if v.is_nan() || lo.is_nan() {
            F::NAN
        } else if v < lo {
            lo
        } else {
            v
        };
    }
    if let Some(hi) = hi {
        v = if v.is_nan() || hi.is_nan() {
            F::NAN
        } else if v > hi {
            hi
        } else {
            v
        };
    }
    v
}

#[inline]
fn clamp_int(x: i64, lo: Option<i64>, hi: Option<i64>) -> i64 {
    let v = lo.map_or(x, |lo| x.max(lo));
    hi.map_or(v, |hi| v.min(hi))
}

/// Clamps `self` (argument 0) into `out` with scalar bounds, in the dtype `result`. Integer
/// bounds are compared as given, without first wrapping them into a narrow dtype (PyTorch keeps
/// `clamp(uint8, min=-1)` unchanged).
fn clamp_scalars(
    args: &KernelArgs<'_>,
    lo: Option<Scalar>,
    hi: Option<Scalar>,
    result: DType,
    out_arg: usize,
) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(out_arg)?;
    check_out_cast(result, &out)?;
    if result == DType::Bool {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: DType::Bool });
    }
    if result.is_floating_point() {
        let (lo, hi) = (lo.map(Scalar::to_f64), hi.map(Scalar::to_f64));
        let (lo32, hi32) = (lo.map(|v| v as f32), hi.map(|v| v as f32));
        return float_map(x, &mut out, result, |v| clamp_float(v, lo32, hi32), |v| clamp_float(v, lo, hi));
    }
    let (lo, hi) = (lo.map(Scalar::to_i64), hi.map(Scalar::to_i64));
    crate::dispatch_dtype!(result, R => unary_map::<R, R>(x, &mut out, |v| R::from_i64(clamp_int(v.to_i64(), lo, hi))),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: result }))
}

/// `aten::clamp.out(Tensor self, Scalar? min=None, Scalar? max=None, *, Tensor(a!) out)`: the
/// result dtype promotes with the bounds (`clamp(int_tensor, 0.5)` is float).
pub fn clamp_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let (lo, hi) = (args.opt_scalar(1)?, args.opt_scalar(2)?);
    if lo.is_none() && hi.is_none() {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "at least one of min and max must be given" });
    }
    let mut ops = [Operand::Tensor(x); 3];
    let mut n = 1;
    for s in [lo, hi].into_iter().flatten() {
        ops[n] = Operand::Scalar(s);
        n += 1;
    }
    let result = result_type(&ops[..n]);
    clamp_scalars(args, lo, hi, result, 3)
}

/// `aten::hardtanh.out(Tensor self, Scalar min_val=-1, Scalar max_val=1, *, Tensor(a!) out)`:
/// clamp that keeps the input dtype; for integer inputs the bounds are truncated to integers.
pub fn hardtanh_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let dtype = args.tensor(0)?.dtype();
    let (lo, hi) = (args.scalar(1)?, args.scalar(2)?);
    let (lo, hi) =
        if dtype.is_floating_point() { (lo, hi) } else { (Scalar::Int(lo.to_i64()), Scalar::Int(hi.to_i64())) };
    clamp_scalars(args, Some(lo), Some(hi), dtype, 3)
}

/// `aten::clamp.Tensor_out(Tensor self, Tensor? min=None, Tensor? max=None, *, Tensor(a!) out)`:
/// bounds broadcast with `self`; every operand is converted to the common dtype first.
pub fn clamp_tensor_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let (lo, hi) = (args.opt_tensor(1)?, args.opt_tensor(2)?);
    if lo.is_none() && hi.is_none() {
        return Err(KernelError::InvalidArgument { arg: 1, reason: "at least one of min and max must be given" });
    }
    let mut out = args.tensor_mut(3)?;
    let mut present = [Operand::Tensor(x); 3];
    let mut n = 1;
    for t in [lo, hi].into_iter().flatten() {
        present[n] = Operand::Tensor(t);
        n += 1;
    }
    let result = result_type(&present[..n]);
    check_out_cast(result, &out)?;
    if result == DType::Bool {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: DType::Bool });
    }
    // An absent bound is read from `self` (any operand of the right shape) and ignored.
    let ops = [Operand::Tensor(x), Operand::Tensor(lo.unwrap_or(x)), Operand::Tensor(hi.unwrap_or(x))];
    let (has_lo, has_hi) = (lo.is_some(), hi.is_some());
    crate::dispatch_dtype!(result, R => ternary_map::<R>(ops, &mut out, |s, [i, l, h]| {
        let (v, l, h) = (s[0].get::<R>(i), s[1].get::<R>(l), s[2].get::<R>(h));
        match compute_for(R::DTYPE) {
            Compute::F32 => R::cast_from(clamp_float(
                f32::cast_from(v),
                has_lo.then(|| f32::cast_from(l)),
                has_hi.then(|| f32::cast_from(h)),
            )),
            Compute::F64 => R::cast_from(clamp_float(
                f64::cast_from(v),
                has_lo.then(|| f64::cast_from(l)),
                has_hi.then(|| f64::cast_from(h)),
            )),
            Compute::I64 => R::cast_from(clamp_int(
                i64::cast_from(v),
                has_lo.then(|| i64::cast_from(l)),
                has_hi.then(|| i64::cast_from(h)),
            )),
        }
    }), _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: result }))
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::{ALL_DTYPES, FLOAT_DTYPES, REAL_DTYPES};
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        (
            "aten::elu.out(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            elu_out,
        ),
        (
            "aten::gelu.out(Tensor self, *, str approximate=\"none\", Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            gelu_out,
        ),
        (
            "aten::leaky_relu.out(Tensor self, Scalar negative_slope=0.01, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            leaky_relu_out,
        ),
        (
            "aten::hardtanh.out(Tensor self, Scalar min_val=-1, Scalar max_val=1, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            hardtanh_out,
        ),
        (
            "aten::clamp.out(Tensor self, Scalar? min=None, Scalar? max=None, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            clamp_out,
        ),
        (
            "aten::clamp.Tensor_out(Tensor self, Tensor? min=None, Tensor? max=None, *, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            clamp_tensor_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

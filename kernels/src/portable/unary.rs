//! Unary elementwise operators.

use crate::args::KernelArgs;
use crate::dtype::{Bool, DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{Compute, check_out_cast, compute_for, unary_map};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};

/// A floating-point function: integer and bool inputs produce a float result (PyTorch's
/// "int to float" unary ops such as `sin`).
pub(crate) fn float_unary(
    args: &KernelArgs<'_>,
    f32f: fn(f32) -> f32,
    f64f: fn(f64) -> f64,
) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    let result = if x.dtype().is_floating_point() { x.dtype() } else { DType::Float };
    check_out_cast(result, &out)?;
    match compute_for(result) {
        Compute::F64 => unary_map::<f64, f64>(x, &mut out, f64f),
        _ => unary_map::<f32, f32>(x, &mut out, f32f),
    }
}

/// A function that keeps the dtype (`abs`, `neg`, `relu`): computed per class.
pub(crate) fn same_dtype_unary(
    args: &KernelArgs<'_>,
    bool_ok: bool,
    f32f: fn(f32) -> f32,
    f64f: fn(f64) -> f64,
    i64f: fn(i64) -> i64,
) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(1)?;
    check_out_cast(x.dtype(), &out)?;
    if x.dtype() == DType::Bool && !bool_ok {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: DType::Bool });
    }
    match compute_for(x.dtype()) {
        Compute::F32 => unary_map::<f32, f32>(x, &mut out, f32f),
        Compute::F64 => unary_map::<f64, f64>(x, &mut out, f64f),
        Compute::I64 => {
            let dtype = x.dtype();
            crate::dispatch_dtype!(dtype, R => unary_map::<i64, R>(x, &mut out, |v| R::from_i64(i64f(v))),
                _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype }))
        }
    }
}

/// Defines a kernel applying the float method `$m` (e.g. `sin`) in f32 or f64.
macro_rules! float_unary_kernel {
    ($name:ident, $m:ident) => {
        #[doc = concat!("`aten::", stringify!($m), ".out(Tensor self, *, Tensor(a!) out)`")]
        pub fn $name(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
            float_unary(args, f32::$m, f64::$m)
        }
    };
}

float_unary_kernel!(sin_out, sin);
float_unary_kernel!(cos_out, cos);

/// `aten::abs.out(Tensor self, *, Tensor(a!) out)`
pub fn abs_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    same_dtype_unary(args, true, f32::abs, f64::abs, i64::wrapping_abs)
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
    use crate::portable::elementwise::{ALL_DTYPES, FLOAT_DTYPES, REAL_DTYPES};
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        ("aten::abs.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, abs_out),
        ("aten::relu.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, relu_out),
        ("aten::sin.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", FLOAT_DTYPES, sin_out),
        ("aten::cos.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", FLOAT_DTYPES, cos_out),
        ("aten::logical_not.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, logical_not_out),
    ];
    crate::portable::register_table(r, table);
}

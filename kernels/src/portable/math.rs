//! Scalar math that Rust's standard library lacks (`erf`) and PyTorch's exact formulas for the
//! operators whose results depend on them (rounding, Python-style division and remainder, shifts,
//! integer powers).

/// The error function in f64, after FreeBSD's `s_erf.c` (fdlibm), which keeps this notice:
///
/// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
/// Developed at SunPro, a Sun Microsystems, Inc. business.
/// Permission to use, copy, modify, and distribute this software is freely granted, provided
/// that this notice is preserved.
///
/// Rational approximations on `[0, 0.84375)`, `[0.84375, 1.25)`, `[1.25, 1/0.35)` and
/// `[1/0.35, 6)`; ±1 beyond. Error below one ulp.
// The coefficients are fdlibm's published decimals (each denotes exactly the double it rounds to).
#[allow(clippy::excessive_precision)]
pub fn erf_f64(x: f64) -> f64 {
    const ERX: f64 = 8.45062911510467529297e-01;
    const EFX8: f64 = 1.02703333676410069053e+00;
    const PP: [f64; 5] = [
        1.28379167095512558561e-01,
        -3.25042107247001499370e-01,
        -2.84817495755985104766e-02,
        -5.77027029648944159157e-03,
        -2.37630166566501626084e-05,
    ];
    const QQ: [f64; 5] = [
        3.97917223959155352819e-01,
        6.50222499887672944485e-02,
        5.08130628187576562776e-03,
        1.32494738004321644526e-04,
        -3.96022827877536812320e-06,
    ];
    const PA: [f64; 7] = [
        -2.36211856075265944077e-03,
        4.14856118683748331666e-01,
        -3.72207876035701323847e-01,
        3.18346619901161753674e-01,
        -1.10894694282396677476e-01,
        3.54783043256182359371e-02,
        -2.16637559486879084300e-03,
    ];
    const QA: [f64; 6] = [
        1.06420880400844228286e-01,
        5.40397917702171048937e-01,
        7.18286544141962662868e-02,
        1.26171219808761642112e-01,
        1.36370839120290507362e-02,
        1.19844998467991074170e-02,
    ];
    const RA: [f64; 8] = [
        -9.86494403484714822705e-03,
        -6.93858572707181764372e-01,
        -1.05586262253232909814e+01,
        -6.23753324503260060396e+01,
        -1.62396669462573470355e+02,
        -1.84605092906711035994e+02,
        -8.12874355063065934246e+01,
        -9.81432934416914548592e+00,
    ];
    const SA: [f64; 8] = [
        1.96512716674392571292e+01,
        1.37657754143519042600e+02,
        4.34565877475229228821e+02,
        6.45387271733267880336e+02,
        4.29008140027567833386e+02,
        1.08635005541779435134e+02,
        6.57024977031928170135e+00,
        -6.04244152148580987438e-02,
    ];
    const RB: [f64; 7] = [
        -9.86494292470009928597e-03,
        -7.99283237680523006574e-01,
        -1.77579549177547519889e+01,
        -1.60636384855821916062e+02,
        -6.37566443368389627722e+02,
        -1.02509513161107724954e+03,
        -4.83519191608651397019e+02,
    ];
    const SB: [f64; 7] = [
        3.03380607434824582924e+01,
        3.25792512996573918826e+02,
        1.53672958608443695994e+03,
        3.19985821950859553908e+03,
        2.55305040643316442583e+03,
        4.74528541206955367215e+02,
        -2.24409524465858183362e+01,
    ];
    /// `c[0] + z·(c[1] + z·(…))`.
    fn poly(c: &[f64], z: f64) -> f64 {
        c.iter().rev().fold(0.0, |acc, &k| acc * z + k)
    }

    if x.is_nan() {
        return x;
    }
    if x.is_infinite() {
        return x.signum();
    }
    let ax = x.abs();
    if ax < 0.84375 {
        if ax < f64::from_bits(0x3e30_0000_0000_0000) {
            // |x| < 2^-28: erf(x) ≈ 2x/√π, written so that tiny x does not underflow.
            return 0.125 * (8.0 * x + EFX8 * x);
        }
        let z = x * x;
        let r = poly(&PP, z);
        let s = 1.0 + z * poly(&QQ, z);
        return x + x * (r / s);
    }
    let y = if ax < 1.25 {
        let s = ax - 1.0;
        let p = poly(&PA, s);
        let q = 1.0 + s * poly(&QA, s);
        ERX + p / q
    } else if ax < 6.0 {
        let s = 1.0 / (ax * ax);
        let (r, big_s) = if ax < 1.0 / 0.35 {
            (poly(&RA, s), 1.0 + s * poly(&SA, s))
        } else {
            (poly(&RB, s), 1.0 + s * poly(&SB, s))
        };
        // exp(-x² - 0.5625 + R/S) split so that the large part -z² is exact: z is x with its
        // low 32 bits cleared.
        let z = f64::from_bits(ax.to_bits() & 0xffff_ffff_0000_0000);
        let erfc = (-z * z - 0.5625).exp() * ((z - ax) * (z + ax) + r / big_s).exp() / ax;
        1.0 - erfc
    } else {
        1.0
    };
    if x < 0.0 { -y } else { y }
}

/// The error function in f32: the f64 result rounded once.
pub fn erf_f32(x: f32) -> f32 {
    erf_f64(f64::from(x)) as f32
}

/// Float operations the kernels write once for f32 and f64.
pub trait Float:
    Copy
    + PartialOrd
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + core::ops::Div<Output = Self>
    + core::ops::Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    fn from_double(v: f64) -> Self;
    fn is_nan(self) -> bool;
    fn is_finite(self) -> bool;
    fn abs(self) -> Self;
    fn floor(self) -> Self;
    fn trunc(self) -> Self;
    fn exp(self) -> Self;
    fn exp_m1(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn erf(self) -> Self;
    fn copysign(self, sign: Self) -> Self;
    /// C's `fmod`: the remainder with the sign of `self`.
    fn fmod(self, other: Self) -> Self;
}

macro_rules! float_impl {
    ($t:ty, $erf:ident) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAN: Self = <$t>::NAN;
            #[inline(always)]
            fn from_double(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline(always)]
            fn trunc(self) -> Self {
                <$t>::trunc(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn copysign(self, sign: Self) -> Self {
                <$t>::copysign(self, sign)
            }
            #[inline(always)]
            fn fmod(self, other: Self) -> Self {
                // Rust's `%` on floats is C's fmod.
                self % other
            }
        }
    };
}

float_impl!(f32, erf_f32);
float_impl!(f64, erf_f64);

/// PyTorch's floor division of floats (`div_floor_floating`): the quotient is derived from
/// `fmod` so that `a == b * q + r` holds as in Python, and it rounds to the nearest integer when
/// the subtraction left it just below one.
#[inline]
pub fn div_floor_float<F: Float>(a: F, b: F) -> F {
    if b == F::ZERO {
        return a / b;
    }
    let rem = a.fmod(b);
    let mut div = (a - rem) / b;
    if rem != F::ZERO && ((b < F::ZERO) != (rem < F::ZERO)) {
        div = div - F::ONE;
    }
    if div != F::ZERO {
        let floor = div.floor();
        if div - floor > F::from_double(0.5) { floor + F::ONE } else { floor }
    } else {
        F::ZERO.copysign(a / b)
    }
}

/// Python's remainder of floats: the sign of the divisor (PyTorch's `remainder`).
#[inline]
pub fn remainder_float<F: Float>(a: F, b: F) -> F {
    let rem = a.fmod(b);
    if rem != F::ZERO && ((b < F::ZERO) != (rem < F::ZERO)) { rem + b } else { rem }
}

/// Python's floor division of integers; `b` must not be zero. `MIN / -1` wraps, as the narrow
/// types PyTorch computes in would after the conversion back.
#[inline]
pub fn div_floor_int(a: i64, b: i64) -> i64 {
    let q = a.wrapping_div(b);
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) { q.wrapping_sub(1) } else { q }
}

/// Python's remainder of integers (the sign of the divisor); `b` must not be zero.
#[inline]
pub fn remainder_int(a: i64, b: i64) -> i64 {
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) { r.wrapping_add(b) } else { r }
}

/// PyTorch's integer power (`powi`): exact by squaring with wrapping; negative exponents give
/// `1` for base 1, `±1` for base -1 and `0` otherwise.
#[inline]
pub fn pow_int(mut base: i64, mut exp: i64) -> i64 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 => {
                if exp % 2 == 0 {
                    1
                } else {
                    -1
                }
            }
            _ => 0,
        };
    }
    let mut result: i64 = 1;
    while exp != 0 {
        if exp & 1 == 1 {
            result = result.wrapping_mul(base);
        }
        exp /= 2;
        base = base.wrapping_mul(base);
    }
    result
}

/// `a << b` in a `bits`-wide integer, as PyTorch defines it: shifts by a negative amount or by
/// the width or more give 0. The caller narrows the result to the `bits`-wide type.
#[inline]
pub fn shift_left(a: i64, b: i64, bits: u32) -> i64 {
    if b < 0 || b >= i64::from(bits) { 0 } else { a.wrapping_shl(b as u32) }
}

/// `a >> b` in a `bits`-wide integer (arithmetic for signed types, whose values arrive
/// sign-extended; logical for unsigned ones, which arrive zero-extended). As in PyTorch, a shift
/// by a negative amount or by the width or more leaves only the sign: -1 or 0.
#[inline]
pub fn shift_right(a: i64, b: i64, bits: u32, signed: bool) -> i64 {
    if b < 0 || b >= i64::from(bits) { if signed { a >> 63 } else { 0 } } else { a >> b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        // Values from Python's math.erf (correctly rounded libm).
        let cases = [
            (0.0, 0.0),
            (1e-30, 1.1283791670955126e-30),
            (0.5, 0.5204998778130465),
            (-0.8, -0.7421009647076605),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (-3.5, -0.9999992569016276),
            (5.9, 0.9999999999999999),
            (7.0, 1.0),
        ];
        for (x, want) in cases {
            let got = erf_f64(x);
            assert!((got - want).abs() <= 2.0 * f64::EPSILON * want.abs().max(1e-300), "erf({x}) = {got}, want {want}");
        }
        assert!(erf_f64(f64::NAN).is_nan());
        assert_eq!(erf_f64(f64::NEG_INFINITY), -1.0);
    }

    #[test]
    fn python_division_semantics() {
        // Python: divmod(-7, 2) == (-4, 1); divmod(7, -2) == (-4, -1).
        assert_eq!((div_floor_int(-7, 2), remainder_int(-7, 2)), (-4, 1));
        assert_eq!((div_floor_int(7, -2), remainder_int(7, -2)), (-4, -1));
        assert_eq!(div_floor_float(-7.0f64, 2.0), -4.0);
        assert_eq!(remainder_float(-7.5f64, 2.0), 0.5);
        assert_eq!(div_floor_float(1.0f32, 0.0), f32::INFINITY);
        assert!(div_floor_float(0.0f32, -1.0).is_sign_negative());
    }

    #[test]
    fn integer_powers_and_shifts() {
        assert_eq!(pow_int(2, 10), 1024);
        assert_eq!((pow_int(2, -1), pow_int(1, -5), pow_int(-1, -3), pow_int(-1, -4)), (0, 1, -1, 1));
        assert_eq!(shift_left(1, 8, 8), 0);
        assert_eq!(shift_right(-128, 9, 8, true), -1);
        assert_eq!(shift_right(200, 9, 8, false), 0);
    }
}

//! Element types and the Rust types that store them.

use bytemuck::{Pod, Zeroable};
use half::{bf16, f16};

/// A tensor's element type (the format's `ScalarType`).
pub use etch_schema::ScalarType as DType;

/// A bool element. PyTorch stores bools as one byte; any byte other than 0 reads as true, so
/// reading untrusted memory as `Bool` is always sound (unlike Rust's `bool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
#[repr(transparent)]
pub struct Bool(pub u8);

impl Bool {
    pub const TRUE: Bool = Bool(1);
    pub const FALSE: Bool = Bool(0);

    pub fn get(self) -> bool {
        self.0 != 0
    }
}

impl From<bool> for Bool {
    fn from(b: bool) -> Self {
        Bool(u8::from(b))
    }
}

/// A Rust type that stores elements of one [`DType`]. Conversions follow C++ `static_cast`
/// semantics as PyTorch uses them: float to int truncates (saturating here), int to int wraps,
/// anything to bool is "not zero".
pub trait Element: Pod + Send + Sync + PartialEq + core::fmt::Debug + 'static {
    const DTYPE: DType;
    const IS_FLOAT: bool;
    fn to_f64(self) -> f64;
    fn to_i64(self) -> i64;
    fn from_f64(v: f64) -> Self;
    fn from_i64(v: i64) -> Self;
    fn is_nonzero(self) -> bool;
    fn from_bool(b: bool) -> Self;

    /// Converts from another element type.
    #[inline(always)]
    fn cast_from<S: Element>(s: S) -> Self {
        if Self::DTYPE == DType::Bool {
            Self::from_bool(s.is_nonzero())
        } else if Self::IS_FLOAT || S::IS_FLOAT {
            Self::from_f64(s.to_f64())
        } else {
            Self::from_i64(s.to_i64())
        }
    }
}

macro_rules! int_element {
    ($t:ty, $d:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            const IS_FLOAT: bool = false;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn is_nonzero(self) -> bool {
                self != 0
            }
            #[inline(always)]
            fn from_bool(b: bool) -> Self {
                b as $t
            }
        }
    };
}

int_element!(u8, Byte);
int_element!(i8, Char);
int_element!(i16, Short);
int_element!(i32, Int);
int_element!(i64, Long);
int_element!(u16, UInt16);
int_element!(u32, UInt32);
int_element!(u64, UInt64);

impl Element for f32 {
    const DTYPE: DType = DType::Float;
    const IS_FLOAT: bool = true;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn is_nonzero(self) -> bool {
        self != 0.0
    }
    #[inline(always)]
    fn from_bool(b: bool) -> Self {
        f32::from(u8::from(b))
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::Double;
    const IS_FLOAT: bool = true;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        v as f64
    }
    #[inline(always)]
    fn is_nonzero(self) -> bool {
        self != 0.0
    }
    #[inline(always)]
    fn from_bool(b: bool) -> Self {
        f64::from(u8::from(b))
    }
}

macro_rules! half_element {
    ($t:ty, $d:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            const IS_FLOAT: bool = true;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self.to_f64()
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self.to_f64() as i64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                <$t>::from_f64(v)
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                <$t>::from_f64(v as f64)
            }
            #[inline(always)]
            fn is_nonzero(self) -> bool {
                self.to_f32() != 0.0
            }
            #[inline(always)]
            fn from_bool(b: bool) -> Self {
                <$t>::from_f32(f32::from(u8::from(b)))
            }
        }
    };
}

half_element!(f16, Half);
half_element!(bf16, BFloat16);

impl Element for Bool {
    const DTYPE: DType = DType::Bool;
    const IS_FLOAT: bool = false;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self.get()))
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        i64::from(self.get())
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        Bool::from(v != 0.0)
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        Bool::from(v != 0)
    }
    #[inline(always)]
    fn is_nonzero(self) -> bool {
        self.get()
    }
    #[inline(always)]
    fn from_bool(b: bool) -> Self {
        Bool::from(b)
    }
}

/// Calls `$body` with `$T` bound to the Rust type of `$dtype`, for the dtypes etch computes on.
/// Evaluates `$fallback` for other dtypes.
#[macro_export]
macro_rules! dispatch_dtype {
    ($dtype:expr, $T:ident => $body:expr, _ => $fallback:expr) => {{
        use $crate::DType as __D;
        match $dtype {
            __D::Float => {
                type $T = f32;
                $body
            }
            __D::Double => {
                type $T = f64;
                $body
            }
            __D::Long => {
                type $T = i64;
                $body
            }
            __D::Int => {
                type $T = i32;
                $body
            }
            __D::Short => {
                type $T = i16;
                $body
            }
            __D::Char => {
                type $T = i8;
                $body
            }
            __D::Byte => {
                type $T = u8;
                $body
            }
            __D::Bool => {
                type $T = $crate::Bool;
                $body
            }
            __D::Half => {
                type $T = $crate::half::f16;
                $body
            }
            __D::BFloat16 => {
                type $T = $crate::half::bf16;
                $body
            }
            _ => $fallback,
        }
    }};
}

/// The dtypes etch's kernels compute on (those [`dispatch_dtype!`] covers).
pub const COMPUTE_DTYPES: [DType; 10] = [
    DType::Bool,
    DType::Byte,
    DType::Char,
    DType::Short,
    DType::Int,
    DType::Long,
    DType::Half,
    DType::BFloat16,
    DType::Float,
    DType::Double,
];

/// PyTorch's `promote_types`: the smallest type both `a` and `b` convert to without losing their
/// category (bool < integer < floating point).
#[inline]
pub fn promote_types(a: DType, b: DType) -> DType {
    use DType::*;
    if a == b {
        return a;
    }
    if a == Bool {
        return b;
    }
    if b == Bool {
        return a;
    }
    let (af, bf) = (a.is_floating_point(), b.is_floating_point());
    match (af, bf) {
        (true, false) => a,
        (false, true) => b,
        (true, true) => {
            // f16 with bf16 has no common 16-bit type.
            if matches!((a, b), (Half, BFloat16) | (BFloat16, Half)) {
                return Float;
            }
            if float_rank(a) >= float_rank(b) { a } else { b }
        }
        (false, false) => promote_ints(a, b),
    }
}

fn float_rank(t: DType) -> u8 {
    match t {
        DType::Half | DType::BFloat16 => 1,
        DType::Float => 2,
        _ => 3,
    }
}

fn promote_ints(a: DType, b: DType) -> DType {
    use DType::*;
    let signed = |t| matches!(t, Char | Short | Int | Long);
    let bits = |t| match t {
        Byte | Char => 8,
        Short | UInt16 => 16,
        Int | UInt32 => 32,
        _ => 64,
    };
    let (sa, sb) = (signed(a), signed(b));
    if sa == sb {
        return if bits(a) >= bits(b) { a } else { b };
    }
    let (s, u) = if sa { (a, b) } else { (b, a) };
    if bits(s) > bits(u) {
        return s;
    }
    // Unsigned at least as wide as the signed one: PyTorch widens uint8 to int16 and the
    // larger unsigned types to int64.
    match u {
        Byte => Short,
        _ => Long,
    }
}

/// Whether PyTorch allows casting values of `from` into an output of `to` (`canCast`): no
/// floating to integral, no non-bool to bool.
#[inline]
pub fn can_cast(from: DType, to: DType) -> bool {
    if from.is_floating_point() && to.is_integral(false) {
        return false;
    }
    if from != DType::Bool && to == DType::Bool {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_matches_pytorch_table() {
        use DType::*;
        // Pairs from torch.promote_types.
        let cases = [
            (Byte, Char, Short),
            (Byte, Short, Short),
            (Byte, Long, Long),
            (Char, Int, Int),
            (Bool, Char, Char),
            (Int, Float, Float),
            (Long, Half, Half),
            (Half, BFloat16, Float),
            (Half, Double, Double),
            (Float, Double, Double),
            (Bool, Bool, Bool),
            (BFloat16, Float, Float),
        ];
        for (a, b, want) in cases {
            assert_eq!(promote_types(a, b), want, "{a} {b}");
            assert_eq!(promote_types(b, a), want, "{b} {a}");
        }
    }

    #[test]
    fn casts() {
        assert_eq!(i32::cast_from(3.9f32), 3);
        assert_eq!(i32::cast_from(-3.9f64), -3);
        assert_eq!(u8::cast_from(300i64), 44);
        assert_eq!(Bool::cast_from(0.5f32), Bool::TRUE);
        assert_eq!(f32::cast_from(Bool::TRUE), 1.0);
        assert!(!can_cast(DType::Float, DType::Long));
        assert!(!can_cast(DType::Long, DType::Bool));
        assert!(can_cast(DType::Bool, DType::Float));
    }
}

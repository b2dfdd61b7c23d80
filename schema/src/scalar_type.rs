//! Element types, with the numeric codes the format uses (c10::ScalarType).

use core::fmt;

/// The element type of a tensor. Codes are the file format's; names follow PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i8)]
pub enum ScalarType {
    /// uint8
    Byte = 0,
    /// int8
    Char = 1,
    /// int16
    Short = 2,
    /// int32
    Int = 3,
    /// int64
    Long = 4,
    /// float16
    Half = 5,
    /// float32
    Float = 6,
    /// float64
    Double = 7,
    Bool = 11,
    QInt8 = 12,
    QUInt8 = 13,
    QInt32 = 14,
    BFloat16 = 15,
    QUInt4x2 = 16,
    QUInt2x4 = 17,
    Bits16 = 22,
    Float8E5M2 = 23,
    Float8E4M3FN = 24,
    Float8E5M2FNUZ = 25,
    Float8E4M3FNUZ = 26,
    UInt16 = 27,
    UInt32 = 28,
    UInt64 = 29,
}

impl ScalarType {
    /// Every type, for listings and tests.
    pub const ALL: [ScalarType; 23] = [
        ScalarType::Byte,
        ScalarType::Char,
        ScalarType::Short,
        ScalarType::Int,
        ScalarType::Long,
        ScalarType::Half,
        ScalarType::Float,
        ScalarType::Double,
        ScalarType::Bool,
        ScalarType::QInt8,
        ScalarType::QUInt8,
        ScalarType::QInt32,
        ScalarType::BFloat16,
        ScalarType::QUInt4x2,
        ScalarType::QUInt2x4,
        ScalarType::Bits16,
        ScalarType::Float8E5M2,
        ScalarType::Float8E4M3FN,
        ScalarType::Float8E5M2FNUZ,
        ScalarType::Float8E4M3FNUZ,
        ScalarType::UInt16,
        ScalarType::UInt32,
        ScalarType::UInt64,
    ];

    /// The type for a code from a file, or `None` for a code the format does not define.
    pub fn from_code(code: i64) -> Option<ScalarType> {
        ScalarType::ALL.iter().copied().find(|t| *t as i64 == code)
    }

    /// The code written in files.
    #[inline]
    pub fn code(self) -> i8 {
        self as i8
    }

    /// Bytes per element, or `None` for sub-byte packed types (QUInt4x2, QUInt2x4).
    #[inline]
    pub fn element_size(self) -> Option<usize> {
        use ScalarType::*;
        Some(match self {
            Byte | Char | Bool | QInt8 | QUInt8 | Float8E5M2 | Float8E4M3FN | Float8E5M2FNUZ | Float8E4M3FNUZ => 1,
            Short | Half | BFloat16 | Bits16 | UInt16 => 2,
            Int | Float | QInt32 | UInt32 => 4,
            Long | Double | UInt64 => 8,
            QUInt4x2 | QUInt2x4 => return None,
        })
    }

    /// PyTorch's name (`float32`, `int64`, ...), as numpy and `torch.dtype` print it.
    pub fn name(self) -> &'static str {
        use ScalarType::*;
        match self {
            Byte => "uint8",
            Char => "int8",
            Short => "int16",
            Int => "int32",
            Long => "int64",
            Half => "float16",
            Float => "float32",
            Double => "float64",
            Bool => "bool",
            QInt8 => "qint8",
            QUInt8 => "quint8",
            QInt32 => "qint32",
            BFloat16 => "bfloat16",
            QUInt4x2 => "quint4x2",
            QUInt2x4 => "quint2x4",
            Bits16 => "bits16",
            Float8E5M2 => "float8_e5m2",
            Float8E4M3FN => "float8_e4m3fn",
            Float8E5M2FNUZ => "float8_e5m2fnuz",
            Float8E4M3FNUZ => "float8_e4m3fnuz",
            UInt16 => "uint16",
            UInt32 => "uint32",
            UInt64 => "uint64",
        }
    }

    #[inline]
    pub fn is_floating_point(self) -> bool {
        matches!(self, ScalarType::Half | ScalarType::Float | ScalarType::Double | ScalarType::BFloat16)
    }

    #[inline]
    pub fn is_integral(self, include_bool: bool) -> bool {
        use ScalarType::*;
        match self {
            Byte | Char | Short | Int | Long | UInt16 | UInt32 | UInt64 => true,
            Bool => include_bool,
            _ => false,
        }
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for t in ScalarType::ALL {
            assert_eq!(ScalarType::from_code(t.code().into()), Some(t));
        }
        assert_eq!(ScalarType::from_code(8), None);
        assert_eq!(ScalarType::from_code(-1), None);
        assert_eq!(ScalarType::Float.code(), 6);
        assert_eq!(ScalarType::Bool.code(), 11);
    }
}

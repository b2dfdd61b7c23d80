//! BundledProgram (`.bpte`, identifier `BP08`): a program plus test inputs and expected outputs.

use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

use etch_fbs::bundled as fb;

use crate::ScalarType;
use crate::error::{FormatError, Site};
use crate::header::check_identifier;
use crate::model::{ByteRange, MAX_RANK};

const BUNDLED_IDENTIFIER: &[u8; 4] = b"BP08";

/// A checked bundled program; byte ranges point into the `.bpte` file.
#[derive(Debug, Clone)]
pub struct BundledProgramDef {
    pub version: u32,
    /// The embedded `.pte`.
    pub program: ByteRange,
    pub suites: Vec<TestSuiteDef>,
}

/// The test cases of one method.
#[derive(Debug, Clone)]
pub struct TestSuiteDef {
    pub method: alloc::string::String,
    pub cases: Vec<TestCaseDef>,
}

#[derive(Debug, Clone)]
pub struct TestCaseDef {
    pub inputs: Vec<BundledValue>,
    pub expected_outputs: Vec<BundledValue>,
}

/// An input or expected output of a test case.
#[derive(Debug, Clone, PartialEq)]
pub enum BundledValue {
    Tensor { scalar_type: ScalarType, sizes: Vec<usize>, dim_order: Vec<u8>, data: ByteRange },
    Int(i64),
    Bool(bool),
    Double(f64),
}

/// Parses and checks a `.bpte` file.
pub fn parse_bundled_program(file: &[u8]) -> Result<BundledProgramDef, FormatError> {
    if file.len() < 8 {
        return Err(FormatError::Truncated {
            what: "flatbuffer root offset and identifier",
            offset: 0,
            needed: 8,
            file_len: file.len(),
        });
    }
    check_identifier(file, BUNDLED_IDENTIFIER)?;
    let opts = flatbuffers::VerifierOptions { max_apparent_size: 1 << 32, ..Default::default() };
    let root = flatbuffers::root_with_opts::<fb::BundledProgram<'_>>(&opts, file)
        .map_err(|e| FormatError::from_verifier(&e))?;
    let range_of = |bytes: &[u8]| ByteRange {
        start: (bytes.as_ptr() as usize).saturating_sub(file.as_ptr() as usize),
        len: bytes.len(),
    };
    let program = root.program().map(|p| range_of(p.bytes())).ok_or(FormatError::MissingField {
        at: Site { path: "bundled program".to_string(), byte_offset: 0 },
        field: "program",
    })?;

    let mut suites = Vec::new();
    for (si, suite) in root.method_test_suites().into_iter().flat_map(|v| v.iter()).enumerate() {
        let at = Site { path: format!("bundled test suite {si}"), byte_offset: suite._tab.loc() };
        let method =
            suite.method_name().ok_or(FormatError::MissingField { at: at.clone(), field: "method_name" })?.to_string();
        let mut cases = Vec::new();
        for (ci, case) in suite.test_cases().into_iter().flat_map(|v| v.iter()).enumerate() {
            let cat = Site { path: format!("bundled test suite '{method}' case {ci}"), byte_offset: case._tab.loc() };
            let values = |v: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::Value<'_>>>>| {
                v.into_iter().flat_map(|v| v.iter()).map(|v| value(&cat, v, &range_of)).collect::<Result<Vec<_>, _>>()
            };
            cases.push(TestCaseDef {
                inputs: values(case.inputs())?,
                expected_outputs: values(case.expected_outputs())?,
            });
        }
        suites.push(TestSuiteDef { method, cases });
    }
    Ok(BundledProgramDef { version: root.version(), program, suites })
}

fn value(at: &Site, v: fb::Value<'_>, range_of: &dyn Fn(&[u8]) -> ByteRange) -> Result<BundledValue, FormatError> {
    let missing = || FormatError::MissingField { at: at.clone(), field: "val" };
    let invalid = |field, reason, value: i64| FormatError::InvalidField { at: at.clone(), field, reason, value };
    Ok(match v.val_type() {
        fb::ValueUnion::Int => BundledValue::Int(v.val_as_int().ok_or_else(missing)?.int_val()),
        fb::ValueUnion::Bool => BundledValue::Bool(v.val_as_bool().ok_or_else(missing)?.bool_val()),
        fb::ValueUnion::Double => BundledValue::Double(v.val_as_double().ok_or_else(missing)?.double_val()),
        fb::ValueUnion::Tensor => {
            let t = v.val_as_tensor().ok_or_else(missing)?;
            let code = t.scalar_type().0;
            let scalar_type = ScalarType::from_code(code.into())
                .ok_or_else(|| invalid("scalar_type", "unknown scalar type", code.into()))?;
            let mut sizes = Vec::new();
            for s in t.sizes().into_iter().flat_map(|v| v.iter()) {
                sizes.push(usize::try_from(s).map_err(|_| invalid("sizes", "negative size", s.into()))?);
            }
            if sizes.len() > MAX_RANK {
                return Err(invalid("sizes", "rank above 16", sizes.len() as i64));
            }
            let dim_order: Vec<u8> = t.dim_order().into_iter().flat_map(|v| v.iter()).collect();
            let data = t.data().map(|d| range_of(d.bytes())).unwrap_or_default();
            let element_size =
                scalar_type.element_size().ok_or_else(|| invalid("scalar_type", "sub-byte type", code.into()))?;
            let nbytes = sizes.iter().try_fold(element_size, |a, &s| a.checked_mul(s));
            if nbytes != Some(data.len) {
                return Err(invalid("data", "length does not match sizes and scalar type", data.len as i64));
            }
            BundledValue::Tensor { scalar_type, sizes, dim_order, data }
        }
        other => {
            return Err(invalid("val_type", "unknown value type tag", other.0.into()));
        }
    })
}

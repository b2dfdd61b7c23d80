//! BundledProgram (`.bpte`): a program with test inputs and expected outputs, and a runner that
//! reports each test case as pass/fail with its largest error (ExecuTorch's
//! `verify_method_outputs`).

use std::path::Path;

use etch_kernels::{DimOrder, Shape};
use etch_schema::{BundledProgramDef, BundledValue, parse_bundled_program};

use crate::error::{Error, Result};
use crate::memory::AlignedBuf;
use crate::method::{TensorView, Value};
use crate::program::{Program, Runtime};

/// A loaded `.bpte`.
pub struct BundledProgram {
    bytes: AlignedBuf,
    def: BundledProgramDef,
    program: Program,
}

impl std::fmt::Debug for BundledProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundledProgram").field("suites", &self.def.suites.len()).finish()
    }
}

/// Result of one test case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseReport {
    pub method: String,
    pub case: usize,
    pub passed: bool,
    /// Largest `|got - expected|` over all outputs (0 for exact matches).
    pub max_abs_error: f64,
    /// Why it failed, when it did.
    pub failure: Option<String>,
}

/// ExecuTorch's default tolerances for bundled programs.
pub const DEFAULT_RTOL: f64 = 1e-5;
pub const DEFAULT_ATOL: f64 = 1e-8;

impl BundledProgram {
    pub fn from_bytes(bytes: &[u8]) -> Result<BundledProgram> {
        let bytes = AlignedBuf::copy_of(bytes).ok_or_else(|| Error::Internal("file too large".into()))?;
        let def = parse_bundled_program(bytes.as_slice())?;
        let program_bytes =
            def.program.slice(bytes.as_slice()).ok_or_else(|| Error::Internal("program range".into()))?;
        let program = Program::from_bytes(program_bytes)?;
        Ok(BundledProgram { bytes, def, program })
    }

    pub fn load_file(path: impl AsRef<Path>) -> Result<BundledProgram> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        BundledProgram::from_bytes(&bytes)
    }

    /// The embedded program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn def(&self) -> &BundledProgramDef {
        &self.def
    }

    /// Runs every test case. A case that cannot run (bad input, kernel error) is reported failed;
    /// only a method that cannot load is an `Err`.
    pub fn verify(&self, runtime: &Runtime, rtol: f64, atol: f64) -> Result<Vec<CaseReport>> {
        let file = self.bytes.as_slice();
        let mut reports = Vec::new();
        for suite in &self.def.suites {
            let mut method = self.program.load_method_with(&suite.method, runtime, None)?;
            for (ci, case) in suite.cases.iter().enumerate() {
                let mut report = CaseReport {
                    method: suite.method.clone(),
                    case: ci,
                    passed: false,
                    max_abs_error: 0.0,
                    failure: None,
                };
                match run_case(&mut method, file, &case.inputs, &case.expected_outputs, rtol, atol) {
                    Ok((passed, err, why)) => {
                        report.passed = passed;
                        report.max_abs_error = err;
                        report.failure = why;
                    }
                    Err(e) => report.failure = Some(e.to_string()),
                }
                reports.push(report);
            }
        }
        Ok(reports)
    }
}

/// Row-major bytes of a bundled tensor stored in `dim_order`.
fn row_major(data: &[u8], sizes: &[usize], dim_order: &[u8], elem: usize) -> Option<Vec<u8>> {
    let shape = Shape::new(sizes)?;
    let order = if dim_order.is_empty() { DimOrder::contiguous(sizes.len()) } else { DimOrder::new(dim_order)? };
    if order.is_contiguous() {
        return Some(data.to_vec());
    }
    let mut out = vec![0u8; data.len()];
    let src = etch_kernels::shape::strides_for(&shape, &order);
    let dst = etch_kernels::shape::strides_for(&shape, &DimOrder::contiguous(shape.rank()));
    for [d, s] in etch_kernels::shape::StridedIter::new(&shape, [dst, src]) {
        out.get_mut(d * elem..(d + 1) * elem)?.copy_from_slice(data.get(s * elem..(s + 1) * elem)?);
    }
    Some(out)
}

fn run_case(
    method: &mut crate::Method<'_>,
    file: &[u8],
    inputs: &[BundledValue],
    expected: &[BundledValue],
    rtol: f64,
    atol: f64,
) -> Result<(bool, f64, Option<String>)> {
    if inputs.len() != method.num_inputs() {
        return Ok((
            false,
            0.0,
            Some(format!("{} inputs given, the method takes {}", inputs.len(), method.num_inputs())),
        ));
    }
    for (i, v) in inputs.iter().enumerate() {
        match v {
            BundledValue::Tensor { scalar_type, sizes, dim_order, data } => {
                let bytes = data.slice(file).unwrap_or(&[]);
                let elem = scalar_type.element_size().unwrap_or(1);
                let bytes = row_major(bytes, sizes, dim_order, elem).unwrap_or_default();
                method.set_input(i, TensorView { dtype: *scalar_type, sizes, data: &bytes })?;
            }
            BundledValue::Int(x) => method.set_input_scalar(i, Value::Int(*x))?,
            BundledValue::Bool(x) => method.set_input_scalar(i, Value::Bool(*x))?,
            BundledValue::Double(x) => method.set_input_scalar(i, Value::Double(*x))?,
        }
    }
    method.execute()?;
    if expected.len() != method.num_outputs() {
        return Ok((
            false,
            0.0,
            Some(format!("{} expected outputs, the method returns {}", expected.len(), method.num_outputs())),
        ));
    }
    let mut worst = 0f64;
    for (j, want) in expected.iter().enumerate() {
        let got = method.output(j)?;
        match (want, got) {
            (BundledValue::Tensor { scalar_type, sizes, dim_order, data }, Value::Tensor(t)) => {
                if t.dtype() != *scalar_type || t.sizes() != &sizes[..] {
                    let why =
                        format!("output {j}: {} {:?}, expected {} {:?}", t.dtype(), t.sizes(), scalar_type, sizes);
                    return Ok((false, worst, Some(why)));
                }
                let elem = scalar_type.element_size().unwrap_or(1);
                let want_bytes = row_major(data.slice(file).unwrap_or(&[]), sizes, dim_order, elem).unwrap_or_default();
                let got_bytes = crate::to_contiguous_bytes(&t).map_err(|e| Error::Internal(e.to_string()))?;
                let (w, g) = (as_f64(&want_bytes, *scalar_type), as_f64(&got_bytes, *scalar_type));
                for (k, (a, b)) in g.iter().zip(&w).enumerate() {
                    let err = (a - b).abs();
                    let both_nan = a.is_nan() && b.is_nan();
                    if !both_nan {
                        worst = worst.max(if err.is_nan() { f64::INFINITY } else { err });
                    }
                    let within = err <= atol + rtol * b.abs();
                    if !both_nan && !within {
                        return Ok((false, worst, Some(format!("output {j} element {k}: {a} vs expected {b}"))));
                    }
                }
            }
            (BundledValue::Int(a), Value::Int(b)) if *a == b => {}
            (BundledValue::Bool(a), Value::Bool(b)) if *a == b => {}
            (BundledValue::Double(a), Value::Double(b)) if (a - b).abs() <= atol + rtol * a.abs() => {}
            (w, g) => return Ok((false, worst, Some(format!("output {j}: {g:?}, expected {w:?}")))),
        }
    }
    Ok((true, worst, None))
}

/// Elements of row-major bytes as f64, for comparisons.
pub fn as_f64(bytes: &[u8], dtype: etch_kernels::DType) -> Vec<f64> {
    use etch_kernels::Element;
    etch_kernels::dispatch_dtype!(dtype, T => {
        match bytemuck::try_cast_slice::<u8, T>(bytes) {
            Ok(s) => s.iter().map(|v| v.to_f64()).collect(),
            // Unaligned copy: read element by element.
            Err(_) => bytes
                .chunks_exact(std::mem::size_of::<T>())
                .map(|c| bytemuck::pod_read_unaligned::<T>(c).to_f64())
                .collect(),
        }
    }, _ => Vec::new())
}

//! The operator conformance suite: every case of `tests/fixtures/ops/manifest.json` (generated
//! from PyTorch by `tools/op_suite/generate.py`) whose operators etch registers runs through the
//! library and must match PyTorch eager's outputs within the case's tolerance. Cases calling an
//! operator etch does not register yet are skipped and counted. Every portable operator etch
//! registers must have cases, unless the manifest lists it as one the exporter never emits.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use etch::npy::Array;
use etch::{DType, Program, Runtime, TensorView, Value};

/// `tests/fixtures/ops`, or the directory in `ETCH_OP_SUITE` (a suite generated elsewhere with
/// `OP_SUITE_OUT=DIR tools/op_suite/generate.py`).
/// Cases that fail because of etch bugs already reported, with the bug. The test fails when one
/// of them passes, so the list shrinks as kernels are fixed.
const KNOWN_FAILURES: &[(&str, &str)] = &[
    (
        "aten::native_dropout.out/p1_empty",
        "PyTorch eager returns a float32 mask for an empty input (a quirk); the exported program \
         declares the mask bool, as etch and ExecuTorch write it",
    ),
    ("aten::add.out/bool", "add of bool tensors refuses the default alpha=1 (PyTorch and ExecuTorch accept it)"),
    ("aten::add.Scalar_out/bool_True", "add of bool tensors refuses the default alpha=1"),
    ("aten::copy_/buffer_bool", "the case's bool buffer update is an add of bools: alpha=1 refused"),
];

fn suite_dir() -> PathBuf {
    std::env::var_os("ETCH_OP_SUITE").map(PathBuf::from).unwrap_or_else(|| common::fixtures().join("ops"))
}

/// One input or output tensor of a case.
struct TensorFile {
    file: PathBuf,
    dtype: String,
}

struct OpCase {
    name: String,
    family: String,
    op: String,
    program: String,
    method: String,
    inputs: Vec<TensorFile>,
    outputs: Vec<TensorFile>,
    atol: f64,
    rtol: f64,
    operators: Vec<String>,
}

struct Suite {
    cases: Vec<OpCase>,
    not_exportable: BTreeSet<String>,
}

fn load_suite() -> Suite {
    let path = suite_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let s = |v: &serde_json::Value| v.as_str().expect("a string").to_string();
    let files = |v: &serde_json::Value| -> Vec<TensorFile> {
        v.as_array()
            .expect("a list of tensors")
            .iter()
            .map(|t| TensorFile { file: suite_dir().join(s(&t["file"])), dtype: s(&t["dtype"]) })
            .collect()
    };
    let cases = json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| OpCase {
            name: s(&c["name"]),
            family: s(&c["family"]),
            op: s(&c["op"]),
            program: s(&c["program"]),
            method: s(&c["method"]),
            inputs: files(&c["inputs"]),
            outputs: files(&c["outputs"]),
            atol: c["atol"].as_f64().expect("atol"),
            rtol: c["rtol"].as_f64().expect("rtol"),
            operators: c["operators"].as_array().expect("operators").iter().map(s).collect(),
        })
        .collect();
    let not_exportable =
        json["not_exportable"].as_array().expect("not_exportable").iter().map(|e| s(&e["op"])).collect();
    Suite { cases, not_exportable }
}

/// The operators of ExecuTorch's portable library (`namespace::name.overload`).
fn portable_operators() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/portable_schemas.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split('(').next())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Why the case cannot run on etch today, if it cannot.
fn skip_reason(case: &OpCase, runtime: &Runtime) -> Option<String> {
    let missing: Vec<&str> =
        case.operators.iter().filter(|op| runtime.kernels().get(op).is_none()).map(String::as_str).collect();
    if !missing.is_empty() {
        return Some(format!("operators not registered: {}", missing.join(", ")));
    }
    let unknown: Vec<&str> = case
        .inputs
        .iter()
        .chain(&case.outputs)
        .filter(|t| common::dtype_named(&t.dtype).is_none())
        .map(|t| t.dtype.as_str())
        .collect();
    (!unknown.is_empty()).then(|| format!("dtypes etch does not have: {}", unknown.join(", ")))
}

fn dtype_of(t: &TensorFile) -> Result<DType, String> {
    common::dtype_named(&t.dtype).ok_or_else(|| format!("unknown dtype {}", t.dtype))
}

/// Runs one case; `Err` lists what went wrong (one line per failing output).
fn run_case(program: &Program, case: &OpCase, runtime: &Runtime) -> Result<(), String> {
    let mut method = program.load_method_with(&case.method, runtime, None).map_err(|e| format!("load_method: {e}"))?;
    for (i, input) in case.inputs.iter().enumerate() {
        let a = common::read_npy_as(&input.file, dtype_of(input)?)?;
        method
            .set_input(i, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data })
            .map_err(|e| format!("set_input {i}: {e}"))?;
    }
    method.execute().map_err(|e| format!("execute: {e}"))?;
    if method.num_outputs() != case.outputs.len() {
        return Err(format!("{} outputs, expected {}", method.num_outputs(), case.outputs.len()));
    }
    let mut problems = Vec::new();
    for (j, output) in case.outputs.iter().enumerate() {
        let want = common::read_npy_as(&output.file, dtype_of(output)?)?;
        let Value::Tensor(t) = method.output(j).map_err(|e| format!("output {j}: {e}"))? else {
            problems.push(format!("output {j}: not a tensor"));
            continue;
        };
        let got = Array {
            dtype: t.dtype(),
            shape: t.sizes().to_vec(),
            data: etch::to_contiguous_bytes(&t).map_err(|e| format!("output {j}: {e}"))?,
        };
        if let Err(why) = common::compare_close(&got, &want, case.atol, case.rtol) {
            problems.push(format!("output {j}: {why}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

#[derive(Default)]
struct Tally {
    runnable: usize,
    passed: usize,
    known: usize,
    skipped: usize,
}

/// The optimized kernels (etch's default) against PyTorch.
#[test]
fn operators_match_pytorch() {
    check_suite(Runtime::global());
}

/// The portable kernels (the reference, and the heapless configuration) against PyTorch.
#[test]
fn portable_operators_match_pytorch() {
    check_suite(&Runtime::portable());
}

fn check_suite(runtime: &Runtime) {
    let suite = load_suite();
    let mut by_family: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut programs: HashMap<&str, Result<Program, String>> = HashMap::new();
    let mut failures = Vec::new();
    let mut skipped_ops: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &suite.cases {
        let tally = by_family.entry(&case.family).or_default();
        if skip_reason(case, runtime).is_some() {
            tally.skipped += 1;
            *skipped_ops.entry(&case.op).or_default() += 1;
            continue;
        }
        tally.runnable += 1;
        let program = programs.entry(&case.program).or_insert_with(|| {
            Program::load_file(suite_dir().join(&case.program)).map_err(|e| format!("load {}: {e}", case.program))
        });
        let outcome = match program {
            Ok(p) => run_case(p, case, runtime),
            Err(e) => Err(e.clone()),
        };
        let known = KNOWN_FAILURES.iter().find(|(name, _)| *name == case.name);
        match (outcome, known) {
            (Ok(()), None) => tally.passed += 1,
            (Ok(()), Some(_)) => {
                failures.push(format!("{} [{}]: passes now; remove it from KNOWN_FAILURES", case.name, case.op))
            }
            (Err(_), Some(_)) => tally.known += 1,
            (Err(why), None) => failures.push(format!("{} [{}]: {why}", case.name, case.op)),
        }
    }
    let mut summary = String::new();
    let mut total = Tally::default();
    for (family, t) in &by_family {
        summary += &format!(
            "  {family}: {} runnable, {} passed, {} known failures, {} skipped\n",
            t.runnable, t.passed, t.known, t.skipped
        );
        total.runnable += t.runnable;
        total.passed += t.passed;
        total.known += t.known;
        total.skipped += t.skipped;
    }
    summary += &format!(
        "op conformance: {} runnable, {} passed, {} known failures, {} skipped ({} operators without a registered kernel)",
        total.runnable,
        total.passed,
        total.known,
        total.skipped,
        skipped_ops.len()
    );
    println!("{summary}");
    assert!(failures.is_empty(), "{} failing cases:\n{}\n{summary}", failures.len(), failures.join("\n"));
    assert!(total.runnable > 0, "no case ran: {summary}");
}

/// Every portable operator etch registers has cases (or cannot be exported at all).
#[test]
fn every_registered_portable_operator_has_cases() {
    let suite = load_suite();
    let covered: BTreeSet<&str> = suite.cases.iter().map(|c| c.op.as_str()).collect();
    let portable = portable_operators();
    let uncovered: Vec<&str> = Runtime::global()
        .kernels()
        .iter()
        .map(|(name, _)| name)
        .filter(|name| portable.contains(*name) && !covered.contains(name) && !suite.not_exportable.contains(*name))
        .collect();
    assert!(uncovered.is_empty(), "registered portable operators without conformance cases: {uncovered:?}");
}

/// The suite covers all of ExecuTorch's portable library, so kernels added later are tested on
/// arrival: each portable operator has cases or is listed as not exportable, with a reason.
#[test]
fn suite_covers_the_portable_library() {
    let suite = load_suite();
    let covered: BTreeSet<&str> = suite.cases.iter().map(|c| c.op.as_str()).collect();
    let missing: Vec<String> = portable_operators()
        .into_iter()
        .filter(|op| !covered.contains(op.as_str()) && !suite.not_exportable.contains(op))
        .collect();
    assert!(missing.is_empty(), "portable operators with no case and no reason: {missing:?}");
    for case in &suite.cases {
        assert!(case.operators.contains(&case.op), "{} does not call {}", case.name, case.op);
    }
}

/// The comparison itself: what passes and what does not.
#[test]
fn comparison_rules() {
    let f32s = |v: &[f32]| Array { dtype: DType::Float, shape: vec![v.len()], data: bytemuck::cast_slice(v).to_vec() };
    let inf = f32::INFINITY;
    assert!(
        common::compare_close(&f32s(&[1.0, inf, -inf, f32::NAN]), &f32s(&[1.0, inf, -inf, f32::NAN]), 0.0, 0.0).is_ok()
    );
    assert!(common::compare_close(&f32s(&[1.0]), &f32s(&[f32::NAN]), 1.0, 1.0).is_err());
    assert!(common::compare_close(&f32s(&[f32::NAN]), &f32s(&[1.0]), 1.0, 1.0).is_err());
    assert!(common::compare_close(&f32s(&[inf]), &f32s(&[-inf]), 1.0, 1.0).is_err());
    assert!(common::compare_close(&f32s(&[f32::MAX]), &f32s(&[inf]), 1.0, 1.0).is_err());
    assert!(common::compare_close(&f32s(&[1.5]), &f32s(&[1.0]), 0.25, 0.25).is_ok());
    assert!(common::compare_close(&f32s(&[1.51]), &f32s(&[1.0]), 0.25, 0.25).is_err());
    assert!(common::compare_close(&f32s(&[1.0, 2.0]), &f32s(&[1.0]), 1.0, 1.0).is_err());
    let i64s = |v: &[i64]| Array { dtype: DType::Long, shape: vec![v.len()], data: bytemuck::cast_slice(v).to_vec() };
    // 2^53 + 1 and 2^53 are the same f64: integers are compared exactly, not through floats.
    assert!(common::compare_close(&i64s(&[(1 << 53) + 1]), &i64s(&[1 << 53]), 1.0, 1.0).is_err());
    assert!(common::compare_close(&i64s(&[7]), &f32s(&[7.0]), 1.0, 1.0).is_err());
}

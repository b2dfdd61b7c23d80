//! Shared helpers for etch's integration tests: fixture paths, the manifest, comparisons.
#![allow(dead_code)]

pub mod builder;

use std::path::{Path, PathBuf};

use etch::npy::Array;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One case of `tests/fixtures/manifest.json` (written by the official exporter's run).
pub struct Case {
    pub name: String,
    pub program: PathBuf,
    pub method: String,
    pub runs: Vec<(Vec<PathBuf>, Vec<PathBuf>)>,
    pub atol: f64,
    pub rtol: f64,
    pub delegated: bool,
}

pub fn manifest() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let paths = |v: &serde_json::Value| -> Vec<PathBuf> {
        v.as_array().unwrap().iter().map(|p| fixtures().join(p.as_str().unwrap())).collect()
    };
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            program: fixtures().join(c["program"].as_str().unwrap()),
            method: c["method"].as_str().unwrap().to_string(),
            runs: c["runs"].as_array().unwrap().iter().map(|r| (paths(&r["inputs"]), paths(&r["outputs"]))).collect(),
            atol: c["atol"].as_f64().unwrap(),
            rtol: c["rtol"].as_f64().unwrap(),
            delegated: !c["delegates"].as_array().unwrap().is_empty(),
        })
        .collect()
}

pub fn case(name: &str) -> Case {
    manifest().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"))
}

/// `None` when `got` matches `want` as conform.py defines it: same dtype and shape, integers and
/// bools equal, floats within `atol + rtol * |want|` (NaN matches NaN).
pub fn mismatch(got: &Array, want: &Array, atol: f64, rtol: f64) -> Option<String> {
    if got.dtype != want.dtype {
        return Some(format!("dtype {} != {}", got.dtype, want.dtype));
    }
    if got.shape != want.shape {
        return Some(format!("shape {:?} != {:?}", got.shape, want.shape));
    }
    let (g, w) = (etch::bundled::as_f64(&got.data, got.dtype), etch::bundled::as_f64(&want.data, want.dtype));
    let exact = !got.dtype.is_floating_point();
    let mut worst = 0f64;
    let mut bad = 0usize;
    for (a, b) in g.iter().zip(&w) {
        let ok = if exact { a == b } else { (a.is_nan() && b.is_nan()) || (a - b).abs() <= atol + rtol * b.abs() };
        if !ok {
            bad += 1;
            worst = worst.max((a - b).abs());
        }
    }
    (bad > 0).then(|| format!("{bad} elements differ, max abs error {worst:.3e}"))
}

/// The cases of `root/manifest.json`, a manifest in the fixtures' format (e.g. `tests/fixtures/zoo`),
/// with paths resolved against `root`.
pub fn manifest_in(root: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(root.join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let paths = |v: &serde_json::Value| -> Vec<PathBuf> {
        v.as_array().unwrap().iter().map(|p| root.join(p.as_str().unwrap())).collect()
    };
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            program: root.join(c["program"].as_str().unwrap()),
            method: c["method"].as_str().unwrap().to_string(),
            runs: c["runs"].as_array().unwrap().iter().map(|r| (paths(&r["inputs"]), paths(&r["outputs"]))).collect(),
            atol: c["atol"].as_f64().unwrap(),
            rtol: c["rtol"].as_f64().unwrap(),
            delegated: !c["delegates"].as_array().unwrap().is_empty(),
        })
        .collect()
}

/// Runs every execution of `case`, in order, on one loaded method of `program` and compares each
/// output with the expected one within the case's tolerance.
pub fn run_and_compare(program: &etch::Program, case: &Case) -> Result<(), String> {
    let mut method = program.load_method(&case.method).map_err(|e| e.to_string())?;
    for (k, (inputs, outputs)) in case.runs.iter().enumerate() {
        for (i, path) in inputs.iter().enumerate() {
            let a = etch::npy::read(path)?;
            method
                .set_input(i, etch::TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data })
                .map_err(|e| format!("run {k} input {i}: {e}"))?;
        }
        method.execute().map_err(|e| format!("run {k}: {e}"))?;
        if outputs.len() != method.num_outputs() {
            return Err(format!("run {k}: {} outputs, expected {}", method.num_outputs(), outputs.len()));
        }
        for (j, path) in outputs.iter().enumerate() {
            let want = etch::npy::read(path)?;
            let etch::Value::Tensor(t) = method.output(j).map_err(|e| e.to_string())? else {
                return Err(format!("run {k} output {j} is not a tensor"));
            };
            let got = Array {
                dtype: t.dtype(),
                shape: t.sizes().to_vec(),
                data: etch::to_contiguous_bytes(&t).map_err(|e| e.to_string())?,
            };
            if let Some(why) = mismatch(&got, &want, case.atol, case.rtol) {
                return Err(format!("run {k} output {j}: {why}"));
            }
        }
    }
    Ok(())
}

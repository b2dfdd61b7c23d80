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

/// The dtype PyTorch calls `name` (`float32`, `bfloat16`, `int64`, ...), if etch has it.
pub fn dtype_named(name: &str) -> Option<etch::DType> {
    etch::DType::ALL.into_iter().find(|d| d.name() == name)
}

/// Reads a `.npy` file holding a tensor of `dtype`. bfloat16 tensors are stored as float32 (numpy
/// has no bfloat16) and converted here; the values are exactly representable, so nothing rounds.
pub fn read_npy_as(path: &Path, dtype: etch::DType) -> Result<Array, String> {
    let a = etch::npy::read(path)?;
    if a.dtype == dtype {
        return Ok(a);
    }
    if dtype == etch::DType::BFloat16 && a.dtype == etch::DType::Float {
        let data = a
            .data
            .chunks_exact(4)
            .flat_map(|c| half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes())
            .collect();
        return Ok(Array { dtype, shape: a.shape, data });
    }
    Err(format!("{}: holds {}, expected {dtype}", path.display(), a.dtype))
}

/// How far `got` is from `want`, when it is too far: same dtype and shape required; integers and
/// bools must be equal (compared as bytes, so int64 beyond 2^53 is exact too); floats pass when
/// equal (infinities included), both NaN, or both finite and within `atol + rtol * |want|`.
pub fn compare_close(got: &Array, want: &Array, atol: f64, rtol: f64) -> Result<(), String> {
    if got.dtype != want.dtype {
        return Err(format!("dtype {} != {}", got.dtype, want.dtype));
    }
    if got.shape != want.shape {
        return Err(format!("shape {:?} != {:?}", got.shape, want.shape));
    }
    if !got.dtype.is_floating_point() {
        if got.data == want.data {
            return Ok(());
        }
        let size = want.data.len() / want.shape.iter().product::<usize>().max(1);
        let bad = got.data.chunks(size.max(1)).zip(want.data.chunks(size.max(1))).filter(|(a, b)| a != b).count();
        let (g, w) = (etch::bundled::as_f64(&got.data, got.dtype), etch::bundled::as_f64(&want.data, want.dtype));
        let worst = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
        return Err(format!("{bad} elements differ (max abs error {worst})"));
    }
    let (g, w) = (etch::bundled::as_f64(&got.data, got.dtype), etch::bundled::as_f64(&want.data, want.dtype));
    let mut worst = 0f64;
    let mut first = None;
    let mut bad = 0usize;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        // An infinity matches only itself (`rtol * inf` would otherwise accept anything).
        let finite = a.is_finite() && b.is_finite();
        let ok = a == b || (a.is_nan() && b.is_nan()) || (finite && (a - b).abs() <= atol + rtol * b.abs());
        if !ok {
            bad += 1;
            let err = if (a - b).is_nan() { f64::INFINITY } else { (a - b).abs() };
            worst = worst.max(err);
            first.get_or_insert((i, *a, *b));
        }
    }
    match first {
        None => Ok(()),
        Some((i, a, b)) => Err(format!(
            "{bad} of {} elements differ, max abs error {worst:.3e} (atol {atol:e}, rtol {rtol:e}); first at flat index {i}: got {a}, want {b}",
            w.len()
        )),
    }
}

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

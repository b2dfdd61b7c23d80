//! `etch verify`: a BundledProgram's test cases, each reported pass/fail with its largest error.

use std::path::Path;

use etch::{BundledProgram, Runtime};

pub fn verify(path: &Path, rtol: f64, atol: f64) -> Result<(), String> {
    let bundled = BundledProgram::load_file(path).map_err(|e| e.to_string())?;
    let reports = bundled.verify(Runtime::global(), rtol, atol).map_err(|e| e.to_string())?;
    let mut failed = 0;
    for r in &reports {
        let status = if r.passed { "pass" } else { "FAIL" };
        let why = r.failure.as_deref().map(|w| format!(" ({w})")).unwrap_or_default();
        println!("{status} {} case {}: max abs error {:.3e}{why}", r.method, r.case, r.max_abs_error);
        failed += usize::from(!r.passed);
    }
    println!("{}/{} cases pass (rtol {rtol}, atol {atol})", reports.len() - failed, reports.len());
    if failed > 0 || reports.is_empty() {
        return Err(format!("{failed} of {} bundled test cases failed", reports.len()));
    }
    Ok(())
}

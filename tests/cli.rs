//! The command-line contract other tools depend on (`../shared/tools/conform.py` and friends).

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn etch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etch")).args(args).output().expect("etch runs")
}

fn fixture(p: &str) -> String {
    common::fixtures().join(p).display().to_string()
}

fn stderr_line(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(s.trim_end().lines().count(), 1, "stderr must be one line: {s:?}");
    s
}

#[test]
fn run_writes_one_npy_per_output_and_run() {
    let case = common::case("cond");
    let dir = std::env::temp_dir().join(format!("etch-cli-{}", std::process::id()));
    let mut args = vec!["run".to_string(), case.program.display().to_string(), "--method".into(), "forward".into()];
    for (inputs, _) in &case.runs {
        args.push("--inputs".into());
        args.push(inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","));
    }
    args.extend(["--outputs".into(), dir.display().to_string()]);
    let o = etch(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (k, (_, outputs)) in case.runs.iter().enumerate() {
        for (j, want) in outputs.iter().enumerate() {
            let got = etch::npy::read(&dir.join(format!("run{k}_out{j}.npy"))).unwrap();
            let want = etch::npy::read(want).unwrap();
            assert_eq!(common::mismatch(&got, &want, case.atol, case.rtol), None, "run {k} output {j}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_without_inputs_prints_a_summary() {
    let o = etch(&["run", &fixture("programs/two_methods.pte"), "--method", "encode"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("output 0: float32 [5, 4]"), "{out}");
}

#[test]
fn failures_are_one_line_and_non_zero() {
    let o = etch(&["run", &fixture("programs/add_broadcast.pte"), "--method", "nope"]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("no method 'nope'"));
    let o = etch(&["run", "/does/not/exist.pte"]);
    assert!(!o.status.success());
    stderr_line(&o);
    let bad = std::env::temp_dir().join(format!("etch-bad-{}.npy", std::process::id()));
    std::fs::write(&bad, b"\x93NUMPY garbage").unwrap();
    let o = etch(&["run", &fixture("programs/add_int64.pte"), "--inputs", &format!("{0},{0}", bad.display())]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains(".npy"));
    std::fs::remove_file(&bad).ok();
    let o = etch(&["run", &fixture("programs/add_broadcast.pte"), "--mode", "sideways"]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("sideways"));
}

#[test]
fn inspect_reports_the_program() {
    let o = etch(&["inspect", &fixture("programs/two_methods.pte"), "--json"]);
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let methods = j["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    let m = methods.iter().find(|m| m["name"] == "encode").unwrap();
    assert_eq!(m["inputs"][0]["shape"], serde_json::json!([5, 8]));
    assert_eq!(m["instructions"]["total"], 3);
    assert_eq!(m["planned_buffers"], serde_json::json!([368]));
    assert!(m["operators"]["aten::addmm.out"].is_number());
    let o = etch(&["inspect", &fixture("programs/linear.xnnpack.pte")]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("delegate XnnpackBackend"));
}

#[test]
fn bench_json_has_the_contract_keys() {
    let o = etch(&["bench", &fixture("programs/dispatch_chain.pte"), "--iters", "5", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["load_ms", "first_run_ms", "median_ms", "min_ms", "p90_ms", "iters"] {
        assert!(j[key].is_number(), "missing {key}: {j}");
    }
    assert_eq!(j["iters"], 5);
    assert!(j["min_ms"].as_f64() <= j["median_ms"].as_f64());
}

#[test]
fn bench_reloads_report_the_median_reload_and_the_first_load() {
    let o = etch(&["bench", &fixture("programs/dispatch_chain.pte"), "--iters", "2", "--loads", "4", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let samples: Vec<f64> = j["load_samples_ms"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(samples.len(), 4);
    assert_eq!(j["first_load_ms"].as_f64(), Some(samples[0]));
    let mut reloads = samples[1..].to_vec();
    reloads.sort_by(f64::total_cmp);
    assert_eq!(j["load_ms"].as_f64(), Some(reloads[1]));
}

#[test]
fn verify_reports_each_bundled_case() {
    let o = etch(&["verify", &fixture("programs/add_broadcast.bpte")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("pass forward case 0: max abs error")), "{out}");
    // A program that is not bundled is refused.
    let o = etch(&["verify", &fixture("programs/add_broadcast.pte")]);
    assert!(!o.status.success());
    stderr_line(&o);
    assert!(Path::new(&fixture("programs/add_broadcast.bpte")).exists());
}

/// `etch bench --trace` writes a Chrome trace with one complete event per executed instruction of
/// every timed run (mlp_towers runs 13 of its 37 instructions: the 12 weight transposes are
/// folded at load and the 12 ReLUs fused into the products before them), each with its index,
/// operator and thread.
#[test]
fn bench_trace_has_one_event_per_instruction_and_run() {
    let path = std::env::temp_dir().join(format!("etch-trace-{}.json", std::process::id()));
    let program = fixture("programs/mlp_towers.pte");
    let o = etch(&[
        "bench",
        &program,
        "--mode",
        "parallel",
        "--threads",
        "2",
        "--iters",
        "20",
        "--trace",
        &path.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    let events = trace["traceEvents"].as_array().unwrap();
    let spans: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(spans.len(), 20 * 13);
    let threads: Vec<_> = events.iter().filter(|e| e["ph"] == "M").map(|e| e["tid"].clone()).collect();
    let mut per_index = std::collections::BTreeMap::new();
    for s in &spans {
        assert!(threads.contains(&s["tid"]), "{s}");
        assert!(s["dur"].as_f64().unwrap() >= 0.0 && s["ts"].as_f64().unwrap() >= 0.0, "{s}");
        let op = s["args"]["op"].as_str().unwrap();
        assert!(["aten::addmm.out", "aten::cat.out"].contains(&op), "{op}");
        *per_index.entry(s["args"]["index"].as_u64().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(per_index.len(), 13);
    assert!(per_index.values().all(|&n| n == 20), "{per_index:?}");
}

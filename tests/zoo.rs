//! The model zoo (`tests/fixtures/zoo`, made by `tools/export_models.py`): real architectures —
//! narrowed torchvision classifiers of twelve families, a BERT-style encoder, a GPT-style decoder,
//! an LSTM and a GRU — exported by the official toolchain with random weights, with PyTorch eager
//! outputs as the reference (ExecuTorch's own runtime agreed with them when they were made).
//!
//! Every case whose operators etch registers must match PyTorch within the case's tolerance. A case
//! that calls an operator etch does not register yet is skipped and reported with the missing
//! operators, so the list of skips shrinks as the kernel library grows.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use common::{Case, fixtures, manifest_in, run_and_compare};
use etch::{Program, Runtime};

/// Committed programs stay small enough for the repository (tools/export_models.py checks the same).
const MAX_PROGRAM_BYTES: u64 = 6 * 1024 * 1024;
const MAX_TOTAL_BYTES: u64 = 40 * 1024 * 1024;

fn zoo() -> PathBuf {
    fixtures().join("zoo")
}

fn manifest_json() -> serde_json::Value {
    let text = std::fs::read_to_string(zoo().join("manifest.json")).expect("zoo manifest.json");
    serde_json::from_str(&text).expect("zoo manifest is JSON")
}

/// The operators the case's method calls, as the program's operator table names them.
fn program_operators(program: &Program, case: &Case) -> BTreeSet<String> {
    program.method_meta(&case.method).expect("method").operators().collect()
}

#[test]
fn zoo_manifest_describes_the_committed_programs() {
    let json = manifest_json();
    let cases = json["cases"].as_array().expect("cases");
    let families: BTreeSet<&str> = cases.iter().map(|c| c["family"].as_str().expect("family")).collect();
    for family in ["ResNet", "MobileNet v2", "MobileNet v3", "EfficientNet", "ShuffleNet v2", "SqueezeNet"] {
        assert!(families.contains(family), "no {family} model in the zoo");
    }
    for family in ["DenseNet", "RegNet", "GoogLeNet", "MNASNet", "ConvNeXt", "ViT", "BERT", "GPT", "LSTM", "GRU"] {
        assert!(families.contains(family), "no {family} model in the zoo");
    }

    let mut total = 0;
    for (entry, case) in cases.iter().zip(manifest_in(&zoo())) {
        assert_eq!(entry["category"], "model", "{}", case.name);
        assert!(!case.delegated, "{} calls a delegate; the zoo is portable operators only", case.name);
        let bytes = std::fs::metadata(&case.program).expect("program file").len();
        assert!(bytes <= MAX_PROGRAM_BYTES, "{} is {bytes} bytes", case.name);
        total += bytes;
        // The manifest's operator list is what the program calls.
        let program = Program::load_file(&case.program).expect("program loads");
        let listed: BTreeSet<String> = entry["operators"]
            .as_array()
            .expect("operators")
            .iter()
            .map(|o| o.as_str().expect("operator name").to_string())
            .collect();
        assert_eq!(listed, program_operators(&program, &case), "{}", case.name);
        for (inputs, outputs) in &case.runs {
            assert!(inputs.iter().chain(outputs).all(|p| p.is_file()), "{}: data missing", case.name);
        }
    }
    assert!(total <= MAX_TOTAL_BYTES, "committed zoo programs total {total} bytes");
}

#[test]
fn zoo_models_with_registered_operators_match_pytorch() {
    let kernels = Runtime::global().kernels();
    let (mut passed, mut skipped, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for case in manifest_in(&zoo()) {
        let program = match Program::load_file(&case.program) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        let missing: Vec<String> =
            program_operators(&program, &case).into_iter().filter(|op| kernels.get(op).is_none()).collect();
        if !missing.is_empty() {
            skipped.push(format!("{}: needs {}", case.name, missing.join(", ")));
            continue;
        }
        let started = Instant::now();
        match run_and_compare(&program, &case) {
            Ok(()) => passed.push(format!("{} ({:.1} s)", case.name, started.elapsed().as_secs_f64())),
            Err(why) => failures.push(format!("{}: {why}", case.name)),
        }
    }
    println!("zoo: {} passed: {}", passed.len(), passed.join(", "));
    println!("zoo: {} skipped, operators not registered:", skipped.len());
    for s in &skipped {
        println!("  {s}");
    }
    assert!(failures.is_empty(), "zoo models that do not match PyTorch:\n{}", failures.join("\n"));
}

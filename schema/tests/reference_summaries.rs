//! The parser agrees with ExecuTorch's own deserializer on every committed program.
//!
//! `tests/fixtures/summaries/NAME.json` was written by `tools/pte_summary.py` with
//! `executorch.exir._serialize._program.deserialize_pte_binary` (executorch 1.5.1).

use std::path::{Path, PathBuf};

use etch_schema::{ShapeDynamism, TensorData, ValueDef, parse_program};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn programs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["programs", "external"] {
        for e in std::fs::read_dir(fixtures().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "pte") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() >= 30, "fixtures missing: {}", out.len());
    out
}

fn check_value(ctx: &str, got: &ValueDef, want: &Value) {
    let kind = want["kind"].as_str().unwrap();
    let kind = if kind == "Null" { "None" } else { kind };
    assert_eq!(got.kind_name(), kind, "{ctx}");
    match got {
        ValueDef::Int(v) => assert_eq!(Some(*v), want["value"].as_i64(), "{ctx}: {want}"),
        ValueDef::Bool(v) => assert_eq!(*v, want["value"].as_bool().unwrap(), "{ctx}"),
        ValueDef::Double(v) => {
            // ExecuTorch's deserializer goes through flatc's JSON, which spells non-finite doubles
            // as strings ("-inf").
            let w = match &want["value"] {
                Value::String(s) => s.parse::<f64>().unwrap(),
                other => other.as_f64().unwrap(),
            };
            assert!(v == &w || (v.is_nan() && w.is_nan()), "{ctx}");
        }
        ValueDef::IntList(items) | ValueDef::TensorList(items) => {
            let w: Vec<u64> = want["items"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            assert_eq!(items.iter().map(|&x| x as u64).collect::<Vec<_>>(), w, "{ctx}");
        }
        ValueDef::OptionalTensorList(items) => {
            let w: Vec<i64> = want["items"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            let g: Vec<i64> = items.iter().map(|x| x.map_or(-1, i64::from)).collect();
            assert_eq!(g, w, "{ctx}");
        }
        ValueDef::Tensor(t) => {
            assert_eq!(i64::from(t.scalar_type.code()), want["dtype"].as_i64().unwrap(), "{ctx}");
            let sizes: Vec<usize> =
                want["sizes"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
            assert_eq!(t.sizes, sizes, "{ctx}");
            let dyn_code = match t.dynamism {
                ShapeDynamism::Static => 0,
                ShapeDynamism::DynamicBound => 1,
                ShapeDynamism::DynamicUnbound => 2,
            };
            assert_eq!(dyn_code, want["dynamism"].as_i64().unwrap(), "{ctx}");
            match &t.data {
                TensorData::Planned { buffer, offset, .. } => {
                    assert_eq!(*buffer as u64 + 1, want["memory_id"].as_u64().unwrap(), "{ctx}");
                    assert_eq!(*offset, want["offset"].as_u64().unwrap(), "{ctx}");
                }
                TensorData::Constant(r) => {
                    assert!(want["memory_id"].is_null(), "{ctx}");
                    assert!(want["data_buffer_idx"].as_u64().unwrap() > 0, "{ctx}");
                    assert_eq!(r.len, t.nbytes, "{ctx}");
                }
                TensorData::Unplanned => {
                    assert!(want["memory_id"].is_null() && want["data_buffer_idx"].as_u64() == Some(0), "{ctx}");
                }
                TensorData::External(_) => panic!("{ctx}: no fixture uses external data"),
            }
        }
        _ => {}
    }
}

#[test]
fn parser_matches_executorch_deserializer() {
    for path in programs() {
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let def = parse_program(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = std::fs::read_to_string(fixtures().join("summaries").join(format!("{name}.json"))).unwrap();
        let want: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(u64::from(def.version), want["version"].as_u64().unwrap());
        let methods = want["methods"].as_array().unwrap();
        assert_eq!(def.methods.len(), methods.len(), "{name}");
        for (m, w) in def.methods.iter().zip(methods) {
            let ctx = format!("{name}.{}", m.name);
            assert_eq!(m.name, w["name"].as_str().unwrap());
            let idx =
                |v: &Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
            assert_eq!(m.inputs, idx(&w["inputs"]), "{ctx}");
            assert_eq!(m.outputs, idx(&w["outputs"]), "{ctx}");
            let ops: Vec<String> = m.operators.iter().map(|o| o.qualified_name()).collect();
            let wops: Vec<String> =
                w["operators"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
            assert_eq!(ops, wops, "{ctx}");
            let sizes: Vec<u64> =
                w["planned_buffer_sizes"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            assert_eq!(m.planned_buffer_sizes, sizes, "{ctx}");
            let wvalues = w["values"].as_array().unwrap();
            assert_eq!(m.values.len(), wvalues.len(), "{ctx}");
            for (i, (g, wv)) in m.values.iter().zip(wvalues).enumerate() {
                check_value(&format!("{ctx} value {i}"), g, wv);
            }
            let wins = w["instructions"].as_array().unwrap();
            assert_eq!(m.instructions.len(), wins.len(), "{ctx}");
            for (i, (g, wi)) in m.instructions.iter().zip(wins).enumerate() {
                let ctx = format!("{ctx} instruction {i}");
                let u = |k: &str| wi[k].as_u64().unwrap() as u32;
                match g {
                    etch_schema::InstructionDef::Kernel { op, args } => {
                        assert_eq!(wi["kind"], "KernelCall", "{ctx}");
                        assert_eq!(*op, u("op_index"), "{ctx}");
                        assert_eq!(*args, idx(&wi["args"]), "{ctx}");
                    }
                    etch_schema::InstructionDef::Delegate { delegate, args } => {
                        assert_eq!(wi["kind"], "DelegateCall", "{ctx}");
                        assert_eq!(*delegate, u("delegate_index"), "{ctx}");
                        assert_eq!(*args, idx(&wi["args"]), "{ctx}");
                    }
                    etch_schema::InstructionDef::Move { from, to } => {
                        assert_eq!(wi["kind"], "MoveCall", "{ctx}");
                        assert_eq!((*from, *to), (u("move_from"), u("move_to")), "{ctx}");
                    }
                    etch_schema::InstructionDef::JumpFalse { cond, destination } => {
                        assert_eq!(wi["kind"], "JumpFalseCall", "{ctx}");
                        assert_eq!(
                            (*cond, *destination),
                            (u("cond_value_index"), u("destination_instruction")),
                            "{ctx}"
                        );
                    }
                    etch_schema::InstructionDef::Free { value } => {
                        assert_eq!(wi["kind"], "FreeCall", "{ctx}");
                        assert_eq!(*value, u("value_index"), "{ctx}");
                    }
                }
            }
            let delegates: Vec<String> = m.delegates.iter().map(|d| d.backend_id.clone()).collect();
            let wdel: Vec<String> =
                w["delegates"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
            assert_eq!(delegates, wdel, "{ctx}");
        }
    }
}

#[test]
fn bundled_program_cases() {
    let bytes = std::fs::read(fixtures().join("programs/add_broadcast.bpte")).unwrap();
    let b = etch_schema::parse_bundled_program(&bytes).unwrap();
    assert_eq!(b.suites.len(), 1);
    assert_eq!(b.suites[0].method, "forward");
    assert!(!b.suites[0].cases.is_empty());
    let program = b.program.slice(&bytes).unwrap();
    parse_program(program).unwrap();
    let ext = std::fs::read(fixtures().join("external/module_test_bundled_program.bpte")).unwrap();
    let b = etch_schema::parse_bundled_program(&ext).unwrap();
    assert_eq!(b.suites[0].cases.len(), 10);
}

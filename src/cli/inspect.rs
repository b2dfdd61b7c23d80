//! `etch inspect`.

use std::collections::BTreeMap;
use std::path::Path;

use etch::schema::{InstructionDef, ShapeDynamism, TensorData, ValueDef};
use etch::{Program, TensorInfo};
use serde_json::{Value as Json, json};

fn dynamism(d: ShapeDynamism) -> &'static str {
    match d {
        ShapeDynamism::Static => "static",
        ShapeDynamism::DynamicBound => "dynamic_bound",
        ShapeDynamism::DynamicUnbound => "dynamic_unbound",
    }
}

fn io_json(v: Option<&ValueDef>, t: Option<TensorInfo<'_>>) -> Json {
    match (t, v) {
        (Some(t), _) => json!({
            "kind": "tensor", "dtype": t.dtype.name(), "shape": t.sizes, "dim_order": t.dim_order,
            "dynamism": dynamism(t.dynamism), "nbytes": t.nbytes, "memory_planned": t.memory_planned,
        }),
        (None, Some(v)) => json!({ "kind": v.kind_name() }),
        (None, None) => json!(null),
    }
}

pub fn describe(program: &Program) -> Json {
    let def = program.def();
    let mut methods = Vec::new();
    for name in program.method_names() {
        let Ok(meta) = program.method_meta(name) else { continue };
        let m = meta.def();
        let mut op_counts: BTreeMap<String, usize> = BTreeMap::new();
        for ins in &m.instructions {
            if let InstructionDef::Kernel { op, .. } = ins
                && let Some(o) = m.operators.get(*op as usize)
            {
                *op_counts.entry(o.qualified_name()).or_default() += 1;
            }
        }
        let [kernels, delegates, moves, jumps, frees] = meta.instruction_counts();
        let constants: usize = m
            .values
            .iter()
            .filter_map(|v| match v {
                ValueDef::Tensor(t) if matches!(t.data, TensorData::Constant(_)) => Some(t.nbytes),
                _ => None,
            })
            .sum();
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let plans = match etch::plan_summary(program, name, etch::Runtime::global(), None, workers) {
            Ok(p) => json!({
                "cost_model": "1 per instruction",
                "workers": workers,
                "total_work": p.total_work,
                "blocks": p.blocks,
                "exporter": { "bytes": p.exporter_bytes, "edges": p.exporter_edges, "critical_path": p.exporter_critical_path },
                "data_only": { "edges": p.data_edges, "critical_path": p.data_critical_path },
                "replan": p.replan_bytes.map(|b| json!({ "bytes": b, "critical_path": p.replan_critical_path })),
            }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        methods.push(json!({
            "name": name,
            "memory_plans": plans,
            "inputs": (0..meta.num_inputs()).map(|i| io_json(meta.input_value(i), meta.input_tensor_meta(i))).collect::<Vec<_>>(),
            "outputs": (0..meta.num_outputs()).map(|i| io_json(m.outputs.get(i).and_then(|&v| m.values.get(v as usize)), meta.output_tensor_meta(i))).collect::<Vec<_>>(),
            "instructions": { "total": meta.num_instructions(), "kernel": kernels, "delegate": delegates, "move": moves, "jump_false": jumps, "free": frees },
            "operators": op_counts,
            "delegates": m.delegates.iter().map(|d| json!({ "backend": d.backend_id, "blob_bytes": d.processed.len, "compile_specs": d.compile_specs.iter().map(|s| s.key.clone()).collect::<Vec<_>>() })).collect::<Vec<_>>(),
            "planned_buffers": meta.planned_buffer_sizes(),
            "values": m.values.len(),
            "constant_bytes": constants,
        }));
    }
    json!({
        "file_bytes": program.bytes().len(),
        "version": def.version,
        "flatbuffer_bytes": def.flatbuffer_size,
        "extended_header": def.header.map(|h| json!({ "program_size": h.program_size, "segment_base_offset": h.segment_base_offset, "segment_data_size": h.segment_data_size })),
        "segments": def.segments.iter().map(|s| json!({ "offset": s.start, "size": s.len })).collect::<Vec<_>>(),
        "constant_segment": def.constant_segment,
        "named_data": def.named_data.iter().map(|n| json!({ "key": n.key, "segment": n.segment, "bytes": n.data.len })).collect::<Vec<_>>(),
        "methods": methods,
    })
}

pub fn inspect(path: &Path, as_json: bool) -> Result<(), String> {
    let program = Program::load_file(path).map_err(|e| e.to_string())?;
    let d = describe(&program);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&d).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{}: {} bytes, flatbuffer {} bytes, version {}",
        path.display(),
        d["file_bytes"],
        d["flatbuffer_bytes"],
        d["version"]
    );
    let segs = d["segments"].as_array().cloned().unwrap_or_default();
    println!("segments: {}", segs.len());
    for (i, s) in segs.iter().enumerate() {
        println!("  [{i}] offset {} size {}", s["offset"], s["size"]);
    }
    if let Some(n) = d["named_data"].as_array().filter(|n| !n.is_empty()) {
        println!("named data: {} entries", n.len());
    }
    for m in d["methods"].as_array().cloned().unwrap_or_default() {
        println!("method '{}':", m["name"].as_str().unwrap_or(""));
        let show = |v: &Json| -> String {
            if v["kind"] == "tensor" {
                format!(
                    "{} {} {}{}",
                    v["dtype"].as_str().unwrap_or(""),
                    v["shape"],
                    v["dynamism"].as_str().unwrap_or(""),
                    if v["dim_order"]
                        .as_array()
                        .is_some_and(|o| o.iter().enumerate().any(|(i, x)| x.as_u64() != Some(i as u64)))
                    {
                        format!(" dim_order {}", v["dim_order"])
                    } else {
                        String::new()
                    }
                )
            } else {
                v["kind"].as_str().unwrap_or("?").to_string()
            }
        };
        for (i, v) in m["inputs"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            println!("  input {i}: {}", show(v));
        }
        for (i, v) in m["outputs"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            println!("  output {i}: {}", show(v));
        }
        let ins = &m["instructions"];
        println!(
            "  instructions: {} ({} kernel, {} delegate, {} move, {} jump, {} free)",
            ins["total"], ins["kernel"], ins["delegate"], ins["move"], ins["jump_false"], ins["free"]
        );
        println!("  planned buffers (bytes): {}", m["planned_buffers"]);
        println!("  values: {}, constant bytes: {}", m["values"], m["constant_bytes"]);
        let p = &m["memory_plans"];
        if p["error"].is_string() {
            println!("  memory plans: not analysed ({})", p["error"].as_str().unwrap_or(""));
        } else {
            println!(
                "  memory plans (critical path in instructions, of {} total; {} block(s); re-plan for {} workers):",
                p["total_work"], p["blocks"], p["workers"]
            );
            println!(
                "    exporter plan   {:>10} bytes   critical path {:>6}   ({} edges incl. memory hazards)",
                p["exporter"]["bytes"], p["exporter"]["critical_path"], p["exporter"]["edges"]
            );
            match p["replan"].as_object() {
                Some(r) => println!(
                    "    etch re-plan    {:>10} bytes   critical path {:>6}   (data edges only: {})",
                    r["bytes"], r["critical_path"], p["data_only"]["critical_path"]
                ),
                None => println!("    etch re-plan    not available (control flow)"),
            }
        }
        println!("  operators:");
        for (name, count) in m["operators"].as_object().cloned().unwrap_or_default() {
            println!("    {name} x{count}");
        }
        for dlg in m["delegates"].as_array().cloned().unwrap_or_default() {
            println!("  delegate {} ({} byte blob)", dlg["backend"].as_str().unwrap_or(""), dlg["blob_bytes"]);
        }
    }
    Ok(())
}

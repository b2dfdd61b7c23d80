//! `etch bench`: load time, first-run time, then latency statistics over repeated runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use etch::Program;
use serde_json::json;

use super::{Mode, check_mode, inputs, set_inputs};

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q`-quantile of sorted samples (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn bench(
    path: &Path,
    method_name: &str,
    mode: Mode,
    iters: usize,
    input_files: Option<&[PathBuf]>,
    as_json: bool,
) -> Result<(), String> {
    check_mode(mode)?;
    let iters = iters.max(1);
    let t0 = Instant::now();
    let program = Program::load_file(path).map_err(|e| e.to_string())?;
    let mut method = program.load_method(method_name).map_err(|e| e.to_string())?;
    let load = t0.elapsed();
    match input_files {
        Some(files) => set_inputs(&mut method, files)?,
        None => {
            inputs::set_deterministic(&mut method)?;
        }
    }
    let t1 = Instant::now();
    method.execute().map_err(|e| e.to_string())?;
    let first = t1.elapsed();
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        method.execute().map_err(|e| e.to_string())?;
        samples.push(ms(t.elapsed()));
    }
    samples.sort_by(f64::total_cmp);
    let median = quantile(&samples, 0.5);
    let instructions = method.num_instructions();
    let report = json!({
        "program": path.display().to_string(),
        "method": method_name,
        "mode": format!("{mode:?}").to_lowercase(),
        "threads": 1,
        "instructions": instructions,
        "load_ms": ms(load),
        "first_run_ms": ms(first),
        "median_ms": median,
        "min_ms": samples[0],
        "p90_ms": quantile(&samples, 0.9),
        "mean_ms": samples.iter().sum::<f64>() / samples.len() as f64,
        "iters": iters,
        "ns_per_instruction": if instructions > 0 { median * 1e6 / instructions as f64 } else { 0.0 },
    });
    if as_json {
        println!("{report}");
    } else {
        println!("{} ({method_name}, {} instructions, {mode:?})", path.display(), instructions);
        println!("  load        {:10.3} ms", ms(load));
        println!("  first run   {:10.3} ms", ms(first));
        println!(
            "  median      {:10.4} ms   ({:.1} ns per instruction)",
            median,
            report["ns_per_instruction"].as_f64().unwrap_or(0.0)
        );
        println!("  min         {:10.4} ms", samples[0]);
        println!("  p90         {:10.4} ms   over {iters} runs", quantile(&samples, 0.9));
    }
    Ok(())
}

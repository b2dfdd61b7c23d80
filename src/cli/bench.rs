//! `etch bench`: load time, first-run time, then latency statistics over repeated runs; in
//! parallel mode also the ideal bound `max(critical path, work / threads)` from measured
//! per-instruction times.

use std::path::{Path, PathBuf};
use std::time::Instant;

use etch::{ExecutionMode, Program};
use serde_json::json;

use super::{inputs, set_inputs};

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

/// Round trips of a cache line between two threads, in nanoseconds (median of five runs of
/// 20,000): printed by `etch bench` with two or more threads, because kernels split over threads
/// read what the other threads wrote. On this project's 2-vCPU VM it measured 80-175 ns most of
/// the time and 385-436 ns in phases where the host placed the two vCPUs on different core
/// complexes; `mobilenet_v2` at 2 threads then took its 1-thread time (4.1 against 2.4 ms).
fn core_round_trip_ns() -> Option<f64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Its own cache line, so that nothing else shares the line the threads pass.
    #[repr(align(128))]
    struct Line(AtomicU64);
    const ROUNDS: u64 = 20_000;
    /// Tells the other thread to stop.
    const STOP: u64 = u64::MAX;
    // With fewer CPUs than threads a round trip waits for the scheduler: give up after this.
    const BUDGET: std::time::Duration = std::time::Duration::from_millis(100);
    if std::thread::available_parallelism().map_or(true, |n| n.get() < 2) {
        return None;
    }
    let line = Line(AtomicU64::new(0));
    let mut runs = Vec::new();
    for _ in 0..5 {
        line.0.store(0, Ordering::SeqCst);
        let elapsed = std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..ROUNDS {
                    // Answer with a compare-exchange, not a store, so that a STOP the caller
                    // wrote meanwhile is never overwritten (this thread would then wait forever).
                    loop {
                        match line.0.load(Ordering::Acquire) {
                            STOP => return,
                            v if v == 2 * i + 1 => {
                                let answer = 2 * i + 2;
                                if line.0.compare_exchange(v, answer, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
            });
            let start = Instant::now();
            for i in 0..ROUNDS {
                line.0.store(2 * i + 1, Ordering::Release);
                let mut spins = 0u32;
                while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(1 << 16) && start.elapsed() > BUDGET {
                        line.0.store(STOP, Ordering::Release);
                        return None;
                    }
                }
            }
            Some(start.elapsed())
        })?;
        runs.push(elapsed.as_nanos() as f64 / ROUNDS as f64);
    }
    runs.sort_by(f64::total_cmp);
    Some(quantile(&runs, 0.5))
}

/// Bound on untimed executions while parallel mode warms up (it needs about 14).
const MAX_WARM_UPS: usize = 64;

/// How often `etch bench` repeats what it times.
#[derive(Clone, Copy, Debug)]
pub struct Repeats {
    /// Timed executions.
    pub iters: usize,
    /// Loads of program and method (each from scratch: map the file, load the method).
    pub loads: usize,
}

pub fn bench(
    path: &Path,
    method_name: &str,
    config: &etch::MethodConfig,
    repeats: Repeats,
    input_files: Option<&[PathBuf]>,
    as_json: bool,
    trace: Option<&Path>,
) -> Result<(), String> {
    let iters = repeats.iters.max(1);
    // Measured before the pool's threads start spinning (they would share the two CPUs with it).
    let round_trip = if config.runtime.pool().current_num_threads() > 1 { core_round_trip_ns() } else { None };
    // The first load in a process also pays for what later loads find ready (the pool's threads,
    // fresh heap pages, cold code and file pages); a service loads in a warm process. With several
    // loads, `load_ms` is the median of the reloads and the first is reported beside it.
    let mut load_samples = Vec::with_capacity(repeats.loads.max(1));
    let mut load = || -> Result<_, String> {
        let t0 = Instant::now();
        let program = map_program(path)?;
        let method = program.load_method_configured(method_name, config, None).map_err(|e| e.to_string())?;
        load_samples.push(ms(t0.elapsed()));
        Ok((program, method))
    };
    for _ in 1..repeats.loads.max(1) {
        drop(load()?);
    }
    let (_program, mut method) = load()?;
    let first_load = load_samples[0];
    let mut reloads = load_samples[1..].to_vec();
    reloads.sort_by(f64::total_cmp);
    let load = if reloads.is_empty() { first_load } else { quantile(&reloads, 0.5) };
    // Inputs live in planned memory, which a program may reuse once it has read them (the
    // exporter's plan does): set them before every execution, outside the timed region, as a
    // caller would.
    let set = |method: &mut etch::Method<'_>| set_request_inputs(method, input_files);
    set(&mut method)?;
    let t1 = Instant::now();
    method.execute().map_err(|e| e.to_string())?;
    let first = t1.elapsed();
    // Parallel mode measures its first executions to decide what to run as graphs; finish that
    // warm-up (and warm caches) before timing.
    let mut warm_ups = 0;
    while warm_ups < 3 || (method.is_warming_up() && warm_ups < MAX_WARM_UPS) {
        set(&mut method)?;
        method.execute().map_err(|e| e.to_string())?;
        warm_ups += 1;
    }
    let guard = trace.map(super::trace::start);
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        set(&mut method)?;
        let t = Instant::now();
        method.execute().map_err(|e| e.to_string())?;
        samples.push(ms(t.elapsed()));
    }
    drop(guard);
    let in_order = samples.clone();
    samples.sort_by(f64::total_cmp);
    let median = quantile(&samples, 0.5);
    let instructions = method.num_instructions();
    // Both modes run kernels on the pool (sequential mode splits each kernel across it), so the
    // pool's size is the thread count of either.
    let threads = config.runtime.pool().current_num_threads();
    let (planned, replanned) = method.planned_memory();
    let planned_bytes: u64 = planned.iter().sum();
    let mut report = json!({
        "program": path.display().to_string(),
        "method": method_name,
        "mode": format!("{:?}", config.mode).to_lowercase(),
        "threads": threads,
        "instructions": instructions,
        "load_ms": load,
        "first_load_ms": first_load,
        "load_samples_ms": load_samples,
        "first_run_ms": ms(first),
        "median_ms": median,
        "min_ms": samples[0],
        "p90_ms": quantile(&samples, 0.9),
        "mean_ms": samples.iter().sum::<f64>() / samples.len() as f64,
        "iters": iters,
        "ns_per_instruction": if instructions > 0 { median * 1e6 / instructions as f64 } else { 0.0 },
        "planned_bytes": planned_bytes,
        "replanned": replanned,
        "samples_ms": in_order,
        "core_round_trip_ns": round_trip,
    });
    if config.mode == ExecutionMode::Parallel {
        // Per-instruction times, measured one at a time in program order: with kernels on the
        // pool and on one thread (the critical path takes the faster, the work the single-threaded).
        // Inputs set before each profiled execution: the exporter's plan may reuse their bytes.
        let profile = |method: &mut etch::Method<'_>, pool: bool| -> Result<Vec<f64>, String> {
            let mut best: Vec<f64> = Vec::new();
            for _ in 0..5 {
                set(method)?;
                let run =
                    if pool { method.profile_instructions(1) } else { method.profile_instructions_single_threaded(1) };
                let run = run.map_err(|e| e.to_string())?;
                best = if best.is_empty() { run } else { best.iter().zip(&run).map(|(a, b)| a.min(*b)).collect() };
            }
            Ok(best)
        };
        let single = profile(&mut method, false)?;
        // An instruction on the critical path takes the faster of the two ways: a kernel too small
        // to gain from the pool pays for waking it when profiled alone, and counting that would
        // put the bound above what the scheduler can reach by running it inline.
        let costs: Vec<f64> = profile(&mut method, true)?.iter().zip(&single).map(|(p, s)| p.min(*s)).collect();
        let blocks = method.parallel_profile(&costs, &single);
        let work: f64 = blocks.iter().map(|b| b.work_ns).sum();
        let cp: f64 = blocks.iter().map(|b| b.critical_path_ns).sum();
        let ideal: f64 = blocks.iter().map(|b| b.critical_path_ns.max(b.work_ns / threads as f64)).sum();
        report["total_work_ms"] = json!(work / 1e6);
        report["critical_path_ms"] = json!(cp / 1e6);
        report["ideal_ms"] = json!(ideal / 1e6);
        report["median_over_ideal"] = json!(median / (ideal / 1e6));
        report["blocks"] = json!(blocks.len());
        report["blocks_as_graph"] = json!(blocks.iter().filter(|b| b.runs_as_graph == Some(true)).count());
        report["long_instructions"] = json!(method.long_instructions());
    }
    if as_json {
        println!("{report}");
    } else {
        println!(
            "{} ({method_name}, {} instructions, {:?}, {threads} thread(s))",
            path.display(),
            instructions,
            config.mode
        );
        if load_samples.len() > 1 {
            println!(
                "  load        {load:10.3} ms   (median of {} reloads; first load {first_load:.3} ms)",
                reloads.len()
            );
        } else {
            println!("  load        {load:10.3} ms");
        }
        println!("  first run   {:10.3} ms", ms(first));
        println!(
            "  median      {:10.4} ms   ({:.1} ns per instruction)",
            median,
            report["ns_per_instruction"].as_f64().unwrap_or(0.0)
        );
        println!("  min         {:10.4} ms", samples[0]);
        println!("  p90         {:10.4} ms   over {iters} runs", quantile(&samples, 0.9));
        println!(
            "  planned     {planned_bytes:10} bytes{}",
            if replanned { " (etch re-plan)" } else { " (exporter plan)" }
        );
        if let Some(ns) = round_trip {
            println!("  core trip   {ns:10.1} ns   (a cache line between two threads and back)");
        }
        if let Some(ideal) = report["ideal_ms"].as_f64() {
            println!(
                "  ideal       {:10.4} ms   (work {:.4} ms, critical path {:.4} ms; {} of {} blocks as graphs)",
                ideal,
                report["total_work_ms"].as_f64().unwrap_or(0.0),
                report["critical_path_ms"].as_f64().unwrap_or(0.0),
                report["blocks_as_graph"],
                report["blocks"]
            );
            if let Some(long) = report["long_instructions"].as_array() {
                let list: Vec<String> = long.iter().map(|i| i.to_string()).collect();
                println!(
                    "  long        {:>10}   (instructions whose kernels split while other branches run: {})",
                    list.len(),
                    list.join(" ")
                );
            }
        }
    }
    if let Some(p) = trace {
        eprintln!("trace written to {}", p.display());
    }
    Ok(())
}

/// Several requests at once: for each level N, N threads each execute their own Method of the one
/// shared Program `iters` times; reports executions per second against N = 1.
pub fn throughput(
    path: &Path,
    method_name: &str,
    config: &etch::MethodConfig,
    levels: &[usize],
    iters: usize,
    input_files: Option<&[PathBuf]>,
    as_json: bool,
) -> Result<(), String> {
    let program = map_program(path)?;
    let mut rows = Vec::new();
    let mut base = None;
    for &n in levels {
        let n = n.max(1);
        // Load and warm every method before timing.
        let mut methods = Vec::with_capacity(n);
        for _ in 0..n {
            let mut m = program.load_method_configured(method_name, config, None).map_err(|e| e.to_string())?;
            for _ in 0..3 {
                set_request_inputs(&mut m, input_files)?;
                m.execute().map_err(|e| e.to_string())?;
            }
            methods.push(m);
        }
        let start = Instant::now();
        let results: Vec<Result<Vec<f64>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = methods
                .iter_mut()
                .map(|m| {
                    s.spawn(move || {
                        let mut lat = Vec::with_capacity(iters);
                        for _ in 0..iters.max(1) {
                            // Each request brings its inputs (a program may reuse their memory).
                            set_request_inputs(m, input_files)?;
                            let t = Instant::now();
                            m.execute().map_err(|e| e.to_string())?;
                            lat.push(ms(t.elapsed()));
                        }
                        Ok(lat)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a request thread panicked".into()))).collect()
        });
        let elapsed = start.elapsed().as_secs_f64();
        let mut lat = Vec::new();
        for r in results {
            lat.extend(r?);
        }
        lat.sort_by(f64::total_cmp);
        let per_s = lat.len() as f64 / elapsed;
        let base_rate = *base.get_or_insert(per_s);
        rows.push(json!({
            "requests": n,
            "executions_per_s": per_s,
            "vs_one": per_s / base_rate,
            "median_ms": quantile(&lat, 0.5),
            "p90_ms": quantile(&lat, 0.9),
        }));
    }
    if as_json {
        println!(
            "{}",
            json!({ "program": path.display().to_string(), "mode": format!("{:?}", config.mode).to_lowercase(), "levels": rows })
        );
    } else {
        println!("{} ({method_name}, {:?}): throughput with concurrent requests", path.display(), config.mode);
        println!("  requests   executions/s   vs 1   median ms   p90 ms");
        for r in &rows {
            println!(
                "  {:>8}   {:>12.1}   {:>4.2}   {:>9.4}   {:>6.4}",
                r["requests"],
                r["executions_per_s"].as_f64().unwrap_or(0.0),
                r["vs_one"].as_f64().unwrap_or(0.0),
                r["median_ms"].as_f64().unwrap_or(0.0),
                r["p90_ms"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// The inputs of one execution: from `files`, or deterministic data at the planned shapes.
fn set_request_inputs(method: &mut etch::Method<'_>, files: Option<&[PathBuf]>) -> Result<(), String> {
    match files {
        Some(files) => set_inputs(method, files),
        None => inputs::set_deterministic(method).map(|_| ()),
    }
}

/// Maps the program file instead of reading it, as ExecuTorch's `MmapDataLoader` does: constants
/// are used in place and load time does not include copying the file.
fn map_program(path: &Path) -> Result<Program, String> {
    // SAFETY: `etch bench` reads files the user names and nothing in this process writes them;
    // like any mmap-based loader, it relies on no other process truncating or rewriting the file
    // while the benchmark runs.
    unsafe { Program::map_file(path) }.map_err(|e| e.to_string())
}

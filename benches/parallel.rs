//! Inter-op parallelism: each multi-branch program sequentially and in parallel mode on two
//! threads (the policy's choice: graphs where a warm-up measured enough work), plus graphs forced
//! on `dispatch_fan` and `dispatch_chain`, where the per-task scheduling cost is all there is:
//! (forced - sequential) / instructions is the overhead per task.
//!
//! `etch bench PROGRAM --mode parallel --threads 2` prints the same latencies next to the ideal
//! bound max(critical path, work / threads) from measured per-instruction times.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use etch::{ExecutionMode, MethodConfig, PlanChoice, Program, Runtime, TensorView};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// (name, program, first run's input files)
fn cases() -> Vec<(&'static str, PathBuf, Vec<PathBuf>)> {
    let f = root();
    let fixture = |name: &'static str| {
        (name, f.join(format!("programs/{name}.pte")), vec![f.join(format!("data/{name}/run0_in0.npy"))])
    };
    let multi = |name: &'static str| {
        let m = f.join("multibranch");
        (name, m.join(format!("programs/{name}.pte")), vec![m.join(format!("data/{name}/run0_in0.npy"))])
    };
    vec![
        fixture("mlp_towers"),
        fixture("inception_block"),
        multi("wide_towers"),
        multi("inception_v1"),
        multi("moe"),
        fixture("res_block"),
        fixture("transformer_layer"),
        fixture("dispatch_fan"),
        fixture("dispatch_chain"),
    ]
}

fn bench_parallel(c: &mut Criterion) {
    let mut group = c.benchmark_group("parallel");
    group.sample_size(30);
    let runtime = Runtime::optimized().with_threads(2);
    let configs = [
        ("sequential", MethodConfig { runtime: runtime.clone(), ..MethodConfig::default() }),
        (
            "parallel_2t",
            MethodConfig { runtime: runtime.clone(), mode: ExecutionMode::Parallel, ..MethodConfig::default() },
        ),
        (
            "graph_forced_2t",
            MethodConfig {
                runtime: runtime.clone(),
                mode: ExecutionMode::Parallel,
                plan: PlanChoice::Auto,
                always_graph: true,
            },
        ),
    ];
    for (name, program, inputs) in cases() {
        let program = Program::load_file(&program).unwrap_or_else(|e| panic!("{name}: {e}"));
        let arrays: Vec<_> = inputs.iter().map(|p| etch::npy::read(p).expect("input")).collect();
        for (label, config) in &configs {
            let forced_only_for_dispatch = *label == "graph_forced_2t" && !name.starts_with("dispatch");
            if forced_only_for_dispatch {
                continue;
            }
            let mut method = program.load_method_configured("forward", config, None).expect("load");
            for (i, a) in arrays.iter().enumerate() {
                method.set_input(i, TensorView { dtype: a.dtype, sizes: &a.shape, data: &a.data }).expect("input");
            }
            // Warm-up executions (the parallel policy measures its first one).
            for _ in 0..3 {
                method.execute().expect("execute");
            }
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| black_box(&mut method).execute().expect("execute"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_parallel);
criterion_main!(benches);

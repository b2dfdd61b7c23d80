//! One criterion group per operator family — `elementwise`, `matmul`, `conv`, `reductions` — each
//! timing one-operator programs (`benches/programs/*.pte`, made by `tools/export_kernel_benches.py`
//! at the sizes real models use) through the engine, once with the portable kernels (the
//! reference) and once with the optimized set on one thread and on every core. The engine's own
//! overhead is tens of nanoseconds per instruction (see the `dispatch` bench), far below these.
//!
//! `cargo bench --bench kernels -- conv/` runs one family; criterion reports elements per second
//! (output elements, or multiply-adds for matmul and conv where that is the useful rate).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use etch::{DType, MethodConfig, Program, Runtime, TensorView};

fn programs(family: &str) -> Vec<(String, PathBuf)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/programs");
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            let name = stem.strip_prefix(family)?.strip_prefix('.')?.to_string();
            Some((name, p))
        })
        .collect();
    found.sort();
    found
}

/// Deterministic inputs in [-1, 1] for every input of `forward`.
fn inputs(program: &Program) -> Vec<(DType, Vec<usize>, Vec<u8>)> {
    let meta = program.method_meta("forward").expect("forward");
    (0..meta.num_inputs())
        .map(|i| {
            let t = meta.input_tensor_meta(i).expect("tensor input");
            assert_eq!(t.dtype, DType::Float, "the kernel benches feed float32 inputs");
            let n: usize = t.sizes.iter().product();
            let data: Vec<f32> = (0..n).map(|k| ((k * 7 + i) as f32 * 0.618).sin()).collect();
            (t.dtype, t.sizes.to_vec(), bytemuck::cast_slice(&data).to_vec())
        })
        .collect()
}

/// Work per execution for the throughput line: multiply-adds for products, output elements else.
fn work(family: &str, name: &str, program: &Program) -> u64 {
    let meta = program.method_meta("forward").expect("forward");
    let out: u64 = meta.output_tensor_meta(0).expect("output").sizes.iter().product::<usize>() as u64;
    let first: Vec<usize> = meta.input_tensor_meta(0).expect("input").sizes.to_vec();
    match (family, name) {
        ("matmul", _) => {
            // Inner dimension: the last of the first input.
            out * *first.last().unwrap_or(&1) as u64
        }
        ("conv", n) => {
            // Multiply-adds = output elements × input channels per group × kernel area.
            let (cin_per_group, area) = if n.starts_with("depthwise") {
                (1, 9)
            } else if n.contains("1x1") {
                (first[1] as u64, 1)
            } else {
                (first[1] as u64, 9)
            };
            out * cin_per_group * area
        }
        _ => out,
    }
}

fn bench_family(c: &mut Criterion, family: &str) {
    let mut group = c.benchmark_group(family);
    group.sample_size(20);
    let runtimes = [
        ("portable", Runtime::portable().with_threads(1)),
        ("optimized_1t", Runtime::optimized().with_threads(1)),
        ("optimized", Runtime::optimized()),
    ];
    for (name, path) in programs(family) {
        let program = Program::load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let data = inputs(&program);
        group.throughput(Throughput::Elements(work(family, &name, &program)));
        for (label, runtime) in &runtimes {
            let config = MethodConfig { runtime: runtime.clone(), ..MethodConfig::default() };
            let mut method = program.load_method_configured("forward", &config, None).expect("load");
            for (i, (dtype, sizes, bytes)) in data.iter().enumerate() {
                method.set_input(i, TensorView { dtype: *dtype, sizes, data: bytes }).expect("input");
            }
            group.bench_function(BenchmarkId::new(name.as_str(), label), |b| {
                b.iter(|| black_box(&mut method).execute().expect("execute"))
            });
        }
    }
    group.finish();
}

fn elementwise(c: &mut Criterion) {
    bench_family(c, "elementwise");
}
fn matmul(c: &mut Criterion) {
    bench_family(c, "matmul");
}
fn conv(c: &mut Criterion) {
    bench_family(c, "conv");
}
fn reductions(c: &mut Criterion) {
    bench_family(c, "reductions");
}

criterion_group!(benches, elementwise, matmul, conv, reductions);
criterion_main!(benches);

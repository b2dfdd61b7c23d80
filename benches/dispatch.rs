//! Per-instruction overhead of the sequential engine on `dispatch_chain` (500 dependent
//! one-element add/mul instructions) against a one-instruction program (`apple_add`, the fixed cost
//! of one `execute`). Throughput is in instructions, so criterion prints instructions per second;
//! ns per instruction = (time(chain) - time(one)) / 499.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etch::{DType, Program, TensorView};

fn fixture(name: &str) -> Program {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    Program::load_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bench_dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");

    let chain = fixture("programs/dispatch_chain.pte");
    let mut method = chain.load_method("forward").unwrap();
    let x = [0.5f32];
    method.set_input(0, TensorView { dtype: DType::Float, sizes: &[1], data: bytemuck::cast_slice(&x) }).unwrap();
    group.throughput(Throughput::Elements(method.num_instructions() as u64));
    group.bench_function("dispatch_chain_500", |b| b.iter(|| black_box(&mut method).execute().unwrap()));

    let one = fixture("external/apple_add.pte");
    let mut method = one.load_method("forward").unwrap();
    for i in 0..2 {
        method.set_input(i, TensorView { dtype: DType::Float, sizes: &[1], data: bytemuck::cast_slice(&x) }).unwrap();
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_instruction", |b| b.iter(|| black_box(&mut method).execute().unwrap()));
    group.finish();
}

criterion_group!(benches, bench_dispatch);
criterion_main!(benches);

//! etch's f32 GEMM (`optimized::sgemm`) against the `gemm` crate it replaces, on a square 512³
//! product (1 and 2 threads), a batch-1 linear layer (1280 → 1000, both ways round) and the pointwise-convolution
//! shapes of `mobilenet_v2` (`M` = output channels, `K` = input channels, `N` = pixels).
//! Throughput is in FLOPs (2 × multiply-adds): criterion's "elem/s" is FLOP/s. Before the groups
//! run, the core's measured peak (a loop of independent AVX-512 multiply-adds) is printed, so
//! figures read as a fraction of it.
//!
//! `cargo bench --bench sgemm` (add `-- sgemm/` for etch's kernel only).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etch_kernels::KernelContext;
use etch_kernels::optimized::sgemm::{
    Epilogue, MatMut, MatRef, PackedLhs, RowsLhs, bench_support, pack_lhs, packed_lhs_len, rows_lhs_available, sgemm,
    sgemm_rows,
};

/// `(name, M, K, N)`.
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("square_512", 512, 512, 512),
    ("pw_96x16x12544", 96, 16, 12544),
    ("pw_144x24x3136", 144, 24, 3136),
    ("pw_24x144x3136", 24, 144, 3136),
    ("pw_192x32x784", 192, 32, 784),
    ("pw_384x64x196", 384, 64, 196),
    ("pw_960x160x49", 960, 160, 49),
    ("pw_320x960x49", 320, 960, 49),
    ("pw_1280x320x49", 1280, 320, 49),
    // Batch-1 linear as etch runs `addmm(b, x, W^T)`: M = 1, N = out features (the epilogue adds b).
    ("linear_1x1280x1000", 1, 1280, 1000),
    // The same as a matrix-vector product on the packed weight: M = out features, N = 1.
    ("gemv_1000x1280x1", 1000, 1280, 1),
];

/// `(name, M, K, N)` of products whose left operand is activations (a linear layer's tokens):
/// packed per call then multiplied, against read in place by `sgemm_rows`.
const ACTIVATION_SHAPES: &[(&str, usize, usize, usize)] = &[
    ("linear_16x64x64", 16, 64, 64),
    ("linear_16x64x128", 16, 64, 128),
    ("linear_197x384x384", 197, 384, 384),
    ("linear_197x384x1536", 197, 384, 1536),
    ("square_512", 512, 512, 512),
];

fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()
}

fn bench_sgemm(c: &mut Criterion) {
    println!("measured single-core FMA peak: {:.1} GFLOP/s", bench_support::fma_peak_gflops());
    let mut group = c.benchmark_group("sgemm");
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"));
    for &(name, m, k, n) in SHAPES {
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        let (a, b) = (values(m * k), values(k * n));
        let mut out = vec![0f32; m * n];
        let mut packed = vec![0f32; packed_lhs_len(m, k).expect("size")];
        pack_lhs(m, k, MatRef { data: &a, row: k, col: 1 }, 1.0, &mut packed, 0).expect("pack");
        for threads in [1, 2] {
            let ctx = KernelContext::with_pool((threads > 1).then(|| pool.clone()));
            group.bench_function(format!("sgemm_{threads}t/{name}"), |bench| {
                bench.iter(|| {
                    let lhs = PackedLhs { data: &packed, m, k };
                    let rhs = MatRef { data: black_box(&b), row: n, col: 1 };
                    let dst = MatMut { data: &mut out, row: n, col: 1 };
                    sgemm(&ctx, n, lhs, rhs, dst, &Epilogue::store(), 0).expect("sgemm")
                })
            });
            // The same product with the weights out of cache, as in a model where every layer
            // has its own: cycles through copies of the packed matrix spanning more than L2.
            let copies = (24 << 20) / (packed.len() * 4) + 1;
            let cold: Vec<Vec<f32>> = (0..copies).map(|_| packed.clone()).collect();
            let mut next = 0;
            group.bench_function(format!("sgemm_{threads}t_cold/{name}"), |bench| {
                bench.iter(|| {
                    next = (next + 1) % cold.len();
                    let lhs = PackedLhs { data: &cold[next], m, k };
                    let rhs = MatRef { data: black_box(&b), row: n, col: 1 };
                    let dst = MatMut { data: &mut out, row: n, col: 1 };
                    sgemm(&ctx, n, lhs, rhs, dst, &Epilogue::store(), 0).expect("sgemm")
                })
            });
            group.bench_function(format!("gemm_crate_{threads}t/{name}"), |bench| {
                bench.iter(|| {
                    let mut run = || bench_support::gemm_crate(m, n, k, &a, black_box(&b), &mut out, threads);
                    if threads > 1 { pool.install(run) } else { run() }
                })
            });
        }
    }
    for &(name, m, k, n) in ACTIVATION_SHAPES {
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        let (a, b) = (values(m * k), values(k * n));
        let mut out = vec![0f32; m * n];
        let mut packed = vec![0f32; packed_lhs_len(m, k).expect("size")];
        for threads in [1, 2] {
            let ctx = KernelContext::with_pool((threads > 1).then(|| pool.clone()));
            group.bench_function(format!("packed_per_call_{threads}t/{name}"), |bench| {
                bench.iter(|| {
                    pack_lhs(m, k, MatRef { data: black_box(&a), row: k, col: 1 }, 1.0, &mut packed, 0).expect("pack");
                    let lhs = PackedLhs { data: &packed, m, k };
                    let rhs = MatRef { data: black_box(&b), row: n, col: 1 };
                    let dst = MatMut { data: &mut out, row: n, col: 1 };
                    sgemm(&ctx, n, lhs, rhs, dst, &Epilogue::store(), 0).expect("sgemm")
                })
            });
            if rows_lhs_available() {
                group.bench_function(format!("rows_in_place_{threads}t/{name}"), |bench| {
                    bench.iter(|| {
                        let lhs = RowsLhs { data: black_box(&a), row: k, m, k };
                        let rhs = MatRef { data: black_box(&b), row: n, col: 1 };
                        let dst = MatMut { data: &mut out, row: n, col: 1 };
                        sgemm_rows(&ctx, n, lhs, rhs, dst, &Epilogue::store(), 0).expect("sgemm_rows")
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench_sgemm
}
criterion_main!(benches);

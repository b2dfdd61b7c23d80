//! `aten::convolution.out`, portable against optimized, on the convolution shapes that dominate
//! `mobilenet_v2` (contiguous f32, batch 1): pointwise (1x1) layers at 112x112, 56x56, 14x14 and
//! 7x7 (expansions and projections), depthwise 3x3 layers at stride 1 and 2, and the 3x3 stride-2
//! stem. Throughput is in multiply-adds, so criterion's "elem/s" is MAC/s (GFLOP/s = 2 x GMAC/s).
//! The optimized kernel runs on a pool of two threads (the machine's cores) as in the engine, and
//! on one thread, on weights packed ahead by `prepare_convolution` (the engine packs a program's
//! constant weights at method init).
//!
//! `cargo bench --bench conv` (add `-- optimized` for the optimized kernel only).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etch_kernels::portable::test_support::{Call, Finished};
use etch_kernels::{DType, KernelContext, KernelFn};

/// One convolution layer: input `[1, c_in, size, size]`, `c_out` outputs, square kernel.
struct Layer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    size: usize,
    kernel: usize,
    stride: i64,
    groups: usize,
}

const LAYERS: &[Layer] = &[
    Layer { name: "pointwise_32to16_112", c_in: 32, c_out: 16, size: 112, kernel: 1, stride: 1, groups: 1 },
    Layer { name: "pointwise_16to96_112", c_in: 16, c_out: 96, size: 112, kernel: 1, stride: 1, groups: 1 },
    Layer { name: "conv3x3_3to32_32", c_in: 3, c_out: 32, size: 32, kernel: 3, stride: 1, groups: 1 },
    Layer { name: "pointwise_24to144_28", c_in: 24, c_out: 144, size: 28, kernel: 1, stride: 1, groups: 1 },
    Layer { name: "pointwise_24to144_56", c_in: 24, c_out: 144, size: 56, kernel: 1, stride: 1, groups: 1 },
    Layer { name: "pointwise_144to24_56", c_in: 144, c_out: 24, size: 56, kernel: 1, stride: 1, groups: 1 },
    Layer { name: "pointwise_576to96_14", c_in: 576, c_out: 96, size: 14, kernel: 1, stride: 1, groups: 1 },
    Layer { name: "pointwise_320to1280_7", c_in: 320, c_out: 1280, size: 7, kernel: 1, stride: 1, groups: 1 },
    Layer { name: "depthwise3x3_32_112_s1", c_in: 32, c_out: 32, size: 112, kernel: 3, stride: 1, groups: 32 },
    Layer { name: "depthwise3x3_144_56_s1", c_in: 144, c_out: 144, size: 56, kernel: 3, stride: 1, groups: 144 },
    Layer { name: "depthwise3x3_144_56_s2", c_in: 144, c_out: 144, size: 56, kernel: 3, stride: 2, groups: 144 },
    Layer { name: "depthwise3x3_192_28_s1", c_in: 192, c_out: 192, size: 28, kernel: 3, stride: 1, groups: 192 },
    Layer { name: "depthwise3x3_384_14_s1", c_in: 384, c_out: 384, size: 14, kernel: 3, stride: 1, groups: 384 },
    Layer { name: "depthwise3x3_960_7_s1", c_in: 960, c_out: 960, size: 7, kernel: 3, stride: 1, groups: 960 },
    Layer { name: "depthwise3x3_96_112_s2", c_in: 96, c_out: 96, size: 112, kernel: 3, stride: 2, groups: 96 },
    Layer { name: "depthwise3x3_576_14_s2", c_in: 576, c_out: 576, size: 14, kernel: 3, stride: 2, groups: 576 },
    Layer { name: "depthwise3x3_192_28_s2", c_in: 192, c_out: 192, size: 28, kernel: 3, stride: 2, groups: 192 },
    Layer { name: "depthwise5x5_240_16_s2", c_in: 240, c_out: 240, size: 16, kernel: 5, stride: 2, groups: 240 },
    Layer { name: "stem3x3_3to32_224_s2", c_in: 3, c_out: 32, size: 224, kernel: 3, stride: 2, groups: 1 },
    // resnet18_narrow (the zoo): its 7x7 stem and 3x3 convolutions on the smallest maps.
    Layer { name: "stem7x7_3to16_64_s2", c_in: 3, c_out: 16, size: 64, kernel: 7, stride: 2, groups: 1 },
    Layer { name: "conv3x3_16_16", c_in: 16, c_out: 16, size: 16, kernel: 3, stride: 1, groups: 1 },
    Layer { name: "conv3x3_64_4", c_in: 64, c_out: 64, size: 4, kernel: 3, stride: 1, groups: 1 },
    Layer { name: "conv3x3_128_2", c_in: 128, c_out: 128, size: 2, kernel: 3, stride: 1, groups: 1 },
];

impl Layer {
    fn out_size(&self) -> usize {
        let pad = self.kernel / 2;
        (self.size + 2 * pad - self.kernel) / self.stride as usize + 1
    }

    fn macs(&self) -> u64 {
        let o = self.out_size();
        (self.c_out * o * o * (self.c_in / self.groups) * self.kernel * self.kernel) as u64
    }

    fn call(&self) -> Finished {
        let values = |n: usize| (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect::<Vec<f32>>();
        let x = [1, self.c_in, self.size, self.size];
        let w = [self.c_out, self.c_in / self.groups, self.kernel, self.kernel];
        let pad = (self.kernel / 2) as i64;
        let o = self.out_size();
        Call::new()
            .tensor(&x, &values(x.iter().product()))
            .constant(&w, &values(w.iter().product()))
            .tensor(&[self.c_out], &values(self.c_out))
            .ints(&[self.stride, self.stride])
            .ints(&[pad, pad])
            .ints(&[1, 1])
            .bool(false)
            .ints(&[0, 0])
            .int(self.groups as i64)
            .out(DType::Float, &[1, self.c_out, o, o], self.c_out * o * o)
            .prepare()
    }
}

fn bench_conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv");
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"));
    let portable: KernelFn = etch_kernels::portable::conv::convolution_out;
    let optimized: KernelFn = etch_kernels::optimized::conv::convolution_out;
    for layer in LAYERS {
        group.throughput(Throughput::Elements(layer.macs()));
        let mut call = layer.call();
        let runs: [(&str, KernelFn, Option<Arc<rayon::ThreadPool>>); 3] = [
            ("portable", portable, None),
            ("optimized_1t", optimized, None),
            ("optimized_2t", optimized, Some(pool.clone())),
        ];
        // The optimized kernel runs on weights packed ahead, as the engine does at method init.
        let packed = call.prepare_state(etch_kernels::optimized::conv::prepare_convolution).expect("prepare");
        for (kind, kernel, pool) in runs {
            let _spinning = pool.as_ref().map(|p| Spinners::start(p));
            let mut ctx = KernelContext::with_pool(pool.clone());
            let state = if kind == "portable" { None } else { packed.as_ref() };
            group.bench_function(format!("{kind}/{}", layer.name), |b| match &pool {
                None => b.iter(|| call.run_with(state, black_box(kernel), &mut ctx).expect("convolution")),
                // Timed from inside a worker, as the engine runs an execution: a call from outside
                // would also time handing the work to the pool and waking the caller after it.
                Some(pool) => b.iter_custom(|iters| {
                    pool.install(|| {
                        let start = std::time::Instant::now();
                        for _ in 0..iters {
                            call.run_with(state, black_box(kernel), &mut ctx).expect("convolution");
                        }
                        start.elapsed()
                    })
                }),
            });
        }
    }
    group.finish();
}

/// Keeps every worker of a pool spinning (looping on `rayon::yield_now`) until dropped, as the
/// engine keeps its pool awake during executions: otherwise each iteration would time waking a
/// sleeping worker rather than the kernel. One spinner per worker, broadcast as the engine's are
/// (`engine/src/awake.rs`): spawned as ordinary jobs, both could end up nested on one worker while
/// the other sat in rayon's idle loop (`perf`: its `sched_yield`s were 12-16% of the samples of a
/// two-thread run of a 14 µs convolution).
struct Spinners(Arc<std::sync::atomic::AtomicBool>);

impl Spinners {
    fn start(pool: &rayon::ThreadPool) -> Spinners {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        pool.spawn_broadcast(move |_| {
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
        });
        Spinners(stop)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench_conv
}
criterion_main!(benches);

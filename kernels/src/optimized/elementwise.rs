//! Fast float32 elementwise kernels: the arithmetic and activations that fill real models'
//! feature maps (residual adds, ReLU/ReLU6). Contiguous operands run as flat slice loops LLVM
//! vectorizes; broadcasting runs row by row over the innermost dimension. Every other case (other
//! dtypes, mixed dim orders, promotion) goes to the portable kernel. Results are bit-identical to
//! the portable kernels: the same f32 operations in the same order per element.

use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::portable::elementwise::broadcast_strides_ordered;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, StridedIter, broadcast_shapes};
use crate::tensor::{Tensor, TensorMut};
use etch_schema::MAX_RANK;

/// Below this many elements the portable kernel runs (its setup is cheaper).
const SMALL: usize = 64;

/// Below this many elements a kernel stays on one thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// Applies `f` to chunks of `(out, inputs...)` in parallel on the context's pool when the work is
/// large enough; `f` gets the chunk's starting index.
fn for_chunks(ctx: &KernelContext, out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    let n = out.len();
    let threads = ctx.threads();
    if threads <= 1 || n < PARALLEL_MIN_ELEMENTS {
        f(0, out);
        return;
    }
    // A multiple of 16 elements per chunk keeps every chunk's vector loop aligned alike.
    let chunk = n.div_ceil(threads).next_multiple_of(16);
    ctx.install(|| {
        rayon::scope(|s| {
            for (k, piece) in out.chunks_mut(chunk).enumerate() {
                let f = &f;
                s.spawn(move |_| f(k * chunk, piece));
            }
        })
    });
}

fn contiguous(t: &Tensor<'_>) -> bool {
    t.dim_order().is_contiguous()
}

/// `out = op(a, b)` for float32 tensors; `None` when the fast path does not apply.
fn binary(
    ctx: &KernelContext,
    a: &Tensor<'_>,
    b: &Tensor<'_>,
    args: &KernelArgs<'_>,
    out_arg: usize,
    op: impl Fn(f32, f32) -> f32 + Sync + Copy,
) -> Option<Result<(), KernelError>> {
    // Decide before taking the output: a kernel can borrow it only once.
    let (out_dtype, out_order) = (args.tensor_dtype(out_arg).ok()?, args.tensor_dim_order(out_arg).ok()?);
    if a.dtype() != DType::Float || b.dtype() != DType::Float || out_dtype != DType::Float {
        return None;
    }
    let same_layout = a.sizes() == b.sizes() && a.dim_order() == b.dim_order();
    if same_layout && out_order == *a.dim_order() {
        return Some(args.tensor_mut(out_arg).and_then(|mut out| same_shape(ctx, a, b, &mut out, a.sizes(), op)));
    }
    if !(contiguous(a) && contiguous(b) && out_order.is_contiguous()) {
        return None;
    }
    let shape = broadcast_shapes(a.sizes(), b.sizes())?;
    if shape.numel().is_some_and(|n| n == a.numel() && n == b.numel()) {
        // Shapes that differ only by sizes of 1 (`[1, 1, 128] + [1, 128]`, an LSTM's gates): with
        // all three contiguous, element `i` of each is element `i` of the others.
        return Some(args.tensor_mut(out_arg).and_then(|mut out| same_shape(ctx, a, b, &mut out, &shape, op)));
    }
    Some(args.tensor_mut(out_arg).and_then(|mut out| broadcast(a, b, &mut out, &shape, op)))
}

fn same_shape(
    ctx: &KernelContext,
    a: &Tensor<'_>,
    b: &Tensor<'_>,
    out: &mut TensorMut<'_>,
    sizes: &[usize],
    op: impl Fn(f32, f32) -> f32 + Sync + Copy,
) -> Result<(), KernelError> {
    out.resize(sizes)?;
    let (x, y) = (a.data::<f32>()?, b.data::<f32>()?);
    let o = out.data_mut::<f32>()?;
    if x.len() != o.len() || y.len() != o.len() {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "operand storage does not match its shape" });
    }
    for_chunks(ctx, o, |start, piece| {
        let len = piece.len();
        let (x, y) = (&x[start..start + len], &y[start..start + len]);
        for ((o, &x), &y) in piece.iter_mut().zip(x).zip(y) {
            *o = op(x, y);
        }
    });
    Ok(())
}

/// Broadcasting over contiguous tensors: the innermost dimension is a run in which each operand
/// advances by 1 or stays put; outer dimensions are walked once per run.
fn broadcast(
    a: &Tensor<'_>,
    b: &Tensor<'_>,
    out: &mut TensorMut<'_>,
    shape: &Shape,
    op: impl Fn(f32, f32) -> f32 + Copy,
) -> Result<(), KernelError> {
    out.resize(shape)?;
    let dims: &[usize] = shape;
    let bad = KernelError::ShapeMismatch { arg: 0, reason: "operand storage does not match its shape" };
    let (x, y) = (a.data::<f32>()?, b.data::<f32>()?);
    let o = out.data_mut::<f32>()?;
    if dims.contains(&0) {
        return Ok(());
    }
    let rank = dims.len();
    let sa = broadcast_strides_ordered(a.sizes(), a.strides(), dims);
    let sb = broadcast_strides_ordered(b.sizes(), b.strides(), dims);
    // Coalesce: dimensions of size 1 go, and a dimension merges into the next inner one where
    // both operands step through them as one (contiguously, or not at all). A tensor times a
    // scalar becomes one run; `[C, 1, 1] * [C, H, W]` becomes C runs of H * W (it was C * H runs
    // of W: on mobilenet_v3's 2x2 maps, two elements per run).
    // (size, stride of a, stride of b), innermost first; no allocation (kernels run heapless).
    let mut merged = [[0usize; 3]; MAX_RANK];
    let mut len = 0usize;
    for i in (0..rank).rev() {
        let (d, x, y) = (dims[i], sa[i], sb[i]);
        if d == 1 {
            continue;
        }
        match len.checked_sub(1).map(|last| &mut merged[last]) {
            Some(inner) if inner[1].checked_mul(inner[0]) == Some(x) && inner[2].checked_mul(inner[0]) == Some(y) => {
                inner[0] *= d
            }
            _ => {
                *merged.get_mut(len).ok_or(bad)? = [d, x, y];
                len += 1;
            }
        }
    }
    let Some(&[inner, ia, ib]) = merged[..len].first() else {
        // Every dimension is 1: one element.
        *o.first_mut().ok_or(bad)? = op(*x.first().ok_or(bad)?, *y.first().ok_or(bad)?);
        return Ok(());
    };
    // The outer dimensions, outermost first, with the output's contiguous strides.
    let (mut outer, mut so, mut soa, mut sob) = ([0; MAX_RANK], [0; MAX_RANK], [0; MAX_RANK], [0; MAX_RANK]);
    let mut step = inner;
    for (k, m) in merged[1..len].iter().enumerate() {
        let at = len - 2 - k;
        (outer[at], so[at], soa[at], sob[at]) = (m[0], step, m[1], m[2]);
        step *= m[0];
    }
    let shape = |v: &[usize]| Shape::new(&v[..len - 1]).ok_or(bad);
    let (outer, so, soa, sob) = (shape(&outer)?, shape(&so)?, shape(&soa)?, shape(&sob)?);
    fn run(s: &[f32], start: usize, step: usize, inner: usize) -> Option<&[f32]> {
        s.get(start..start + (inner - 1) * step + 1)
    }
    if let [rows] = *outer
        && so[0] == inner
        && let Some(o) = o.get_mut(..rows * inner)
    {
        // A contiguous tensor times one value per run (a squeeze-excitation gate `[C, 1, 1] *
        // [C, H, W]` on small maps: efficientnet's 576 runs of 4 took 5.3 µs through
        // `one_run`, whose per-run set-up cost more than the four products).
        match (ia, ib, soa[0], sob[0]) {
            (1, 0, sa, 1) if sa == inner => {
                let (xs, ys) = (x.get(..rows * inner).ok_or(bad)?, y.get(..rows).ok_or(bad)?);
                for ((o, x), &y) in o.chunks_exact_mut(inner).zip(xs.chunks_exact(inner)).zip(ys) {
                    o.iter_mut().zip(x).for_each(|(o, &x)| *o = op(x, y));
                }
                return Ok(());
            }
            (0, 1, 1, sb) if sb == inner => {
                let (xs, ys) = (x.get(..rows).ok_or(bad)?, y.get(..rows * inner).ok_or(bad)?);
                for ((o, y), &x) in o.chunks_exact_mut(inner).zip(ys.chunks_exact(inner)).zip(xs) {
                    o.iter_mut().zip(y).for_each(|(o, &y)| *o = op(x, y));
                }
                return Ok(());
            }
            _ => {}
        }
    }
    let one_run = |[d0, a0, b0]: [usize; 3]| -> Result<(), KernelError> {
        let dst = o.get_mut(d0..d0 + inner).ok_or(bad)?;
        let (xs, ys) = (run(x, a0, ia, inner).ok_or(bad)?, run(y, b0, ib, inner).ok_or(bad)?);
        match (ia, ib) {
            (1, 1) => dst.iter_mut().zip(xs).zip(ys).for_each(|((o, &x), &y)| *o = op(x, y)),
            (1, 0) => {
                let y = ys[0];
                dst.iter_mut().zip(xs).for_each(|(o, &x)| *o = op(x, y));
            }
            (0, 1) => {
                let x = xs[0];
                dst.iter_mut().zip(ys).for_each(|(o, &y)| *o = op(x, y));
            }
            (0, 0) => {
                let v = op(xs[0], ys[0]);
                dst.fill(v);
            }
            // Contiguous operands step by 1 or 0 along their innermost dimension larger than 1.
            _ => return Err(bad),
        }
        Ok(())
    };
    let mut one_run = one_run;
    if let [rows] = *outer {
        // One outer dimension (a per-channel scale `[C, 1, 1] * [C, H, W]`, short runs): plain
        // index arithmetic, cheaper per run than the general walk.
        return (0..rows).try_for_each(|r| one_run([r * so[0], r * soa[0], r * sob[0]]));
    }
    StridedIter::new(&outer, [so, soa, sob]).try_for_each(one_run)
}

/// The binary entry points: operands are read once; small ones (dispatch-bound chains of
/// one-element operations, e.g. `dispatch_chain`) and every case the fast path does not cover go
/// to the portable kernel with the operands already in hand.
macro_rules! binary_kernel {
    ($(#[$doc:meta])* $name:ident, $portable:ident, $out:expr, |$args:ident| $op:expr) => {
        $(#[$doc])*
        pub fn $name(ctx: &mut KernelContext, $args: &KernelArgs<'_>) -> Result<(), KernelError> {
            let (a, b) = ($args.tensor(0)?, $args.tensor(1)?);
            if a.numel().max(b.numel()) >= SMALL {
                let fast = match $op {
                    Ok(op) => binary(ctx, &a, &b, $args, $out, op),
                    Err(_) => None,
                };
                if let Some(done) = fast {
                    return done;
                }
            }
            portable::binary::$portable(a, b, $args)
        }
    };
}

/// `x ± alpha * y`. With alpha 1 this is exactly `x ± y` (multiplying by 1 or -1 is exact), so
/// no per-element branch is needed to match the portable kernel.
fn with_alpha(args: &KernelArgs<'_>, sign: f32) -> Result<impl Fn(f32, f32) -> f32 + Sync + Copy, KernelError> {
    let k = args.scalar(2)?.to_f64() as f32;
    Ok(move |x: f32, y: f32| x + sign * (k * y))
}

binary_kernel!(
    /// `aten::add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out)`
    add_out, add_tensors, 3, |args| with_alpha(args, 1.0)
);
binary_kernel!(
    /// `aten::sub.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out)`
    sub_out, sub_tensors, 3, |args| with_alpha(args, -1.0)
);
binary_kernel!(
    /// `aten::mul.out(Tensor self, Tensor other, *, Tensor(a!) out)`
    mul_out, mul_tensors, 2, |args| Ok::<_, KernelError>(|x: f32, y: f32| x * y)
);
binary_kernel!(
    /// `aten::div.out(Tensor self, Tensor other, *, Tensor(a!) out)`
    div_out, div_tensors, 2, |args| Ok::<_, KernelError>(|x: f32, y: f32| x / y)
);

/// `out = f(x)` over a float32 tensor's storage (any dim order, out laid out alike); small
/// tensors are left to the portable kernel (`None`).
fn unary(
    ctx: &KernelContext,
    args: &KernelArgs<'_>,
    out_arg: usize,
    f: impl Fn(f32) -> f32 + Sync + Copy,
) -> Option<Result<(), KernelError>> {
    if args.tensor(0).ok()?.numel() < SMALL {
        return None;
    }
    map_f32(ctx, args, out_arg, f)
}

/// `out = f(x)` (argument 0) over a float32 tensor's storage of any size (any dim order, out laid
/// out alike); `None` for other dtypes or layouts.
pub(super) fn map_f32(
    ctx: &KernelContext,
    args: &KernelArgs<'_>,
    out_arg: usize,
    f: impl Fn(f32) -> f32 + Sync + Copy,
) -> Option<Result<(), KernelError>> {
    slice_unary(ctx, args, out_arg, move |src, dst| {
        for (o, &v) in dst.iter_mut().zip(src) {
            *o = f(v);
        }
    })
}

/// `aten::relu.out(Tensor self, *, Tensor(a!) out)`; NaN stays NaN.
pub fn relu_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    unary(ctx, args, 1, |x| if x > 0.0 || x.is_nan() { x } else { 0.0 })
        .unwrap_or_else(|| portable::unary::relu_out(ctx, args))
}

/// `aten::hardtanh.out(Tensor self, Scalar min_val=-1, Scalar max_val=1, *, Tensor(a!) out)`:
/// NaN in the input or a bound gives NaN; `max_val` wins over `min_val` (PyTorch's clamp).
pub fn hardtanh_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let bounds = args.scalar(1).and_then(|lo| Ok((lo.to_f64() as f32, args.scalar(2)?.to_f64() as f32)));
    let fast = match bounds {
        Ok((lo, hi)) if !lo.is_nan() && !hi.is_nan() => unary(ctx, args, 3, move |x| {
            let v = if x < lo { lo } else { x };
            if v > hi { hi } else { v }
        }),
        _ => None,
    };
    fast.unwrap_or_else(|| portable::activation::hardtanh_out(ctx, args))
}

/// The constants of [`exp_nonpositive`], shared with vector versions of it that must give the
/// same bits (`softmax.rs`).
pub(super) mod exp_constants {
    /// `1.5 · 2^23`: adding it rounds to an integer.
    pub(in crate::optimized) const ROUND: f32 = 12_582_912.0;
    /// `ln 2` in two parts for the reduction `x - n ln 2`.
    pub(in crate::optimized) const LN2_HI: f32 = 0.693_145_75;
    pub(in crate::optimized) const LN2_LO: f32 = 1.428_606_8e-6;
    /// Taylor coefficients of `e^r`: `1/6!`, `1/5!`, then `1/4!` down to `1/0!` (Horner order).
    pub(in crate::optimized) const TAYLOR_6: f32 = 1.0 / 720.0;
    pub(in crate::optimized) const TAYLOR_5: f32 = 1.0 / 120.0;
    pub(in crate::optimized) const TAYLOR_4_TO_0: [f32; 5] = [1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
}

/// `e^x` for `x <= 0` in f32, branch-free so that slice loops vectorize: `x = n ln2 + r` with
/// `|r| <= ln2 / 2` (n rounded by the 1.5 * 2^23 trick: `round` is a library call without SSE4.1),
/// `e^r` by its degree-6 Taylor polynomial in fused multiply-adds (relative error below 2e-7
/// there), `2^n` built in the exponent bits. Below -87 the result is flushed to `e^-87`
/// (1.6e-38), which callers treat as 0. Without FMA hardware `mul_add` is a library call: slow,
/// but the same results.
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    use exp_constants::*;
    let x = x.max(-87.0);
    // Fused multiply-adds (`mul_add`): one instruction each in the AVX2+FMA and AVX-512 builds
    // that run this (twelve separate multiplies and adds were most of the sigmoid's time in
    // efficientnet's SiLUs), and the same single rounding in the baseline build, so every build
    // gives the same results.
    let shifted = x.mul_add(core::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p = r.mul_add(TAYLOR_6, TAYLOR_5);
    for c in TAYLOR_4_TO_0 {
        p = r.mul_add(p, c);
    }
    // n is an integer in [-126, 0]: a normal power of two. `shifted` holds it in its low mantissa
    // bits (two's complement against ROUND's), read as integer bits: `n as i32` is a saturating
    // conversion the compiler did not vectorize (scalar code per lane, 1 ns per element).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `erf(x)` in f32 by Abramowitz and Stegun's 7.1.26 (absolute error below 1.5e-7, the same
/// approximation PyTorch's vectorized CPU `erf` uses), branch-free.
#[inline(always)]
fn erf_fast(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_72 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    (1.0 - poly * exp_nonpositive(-a * a)).copysign(x)
}

/// GELU (`approximate="none"`) as the portable kernel writes it, `x · ½ · (1 + erf(x/√2))`, with
/// [`erf_fast`]; non-finite inputs give NaN, as in PyTorch.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    let y = x * 0.5 * (1.0 + erf_fast(x * core::f32::consts::FRAC_1_SQRT_2));
    if x.is_finite() { y } else { f32::NAN }
}

/// `tanh(u)` as `sign(u) · (1 - e^{-2|u|}) / (1 + e^{-2|u|})`, branch-free. Near 0 the
/// difference loses relative precision (absolute error ~1e-7), which GELU's `1 + tanh` absorbs.
#[inline(always)]
fn tanh_fast(u: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * u.abs());
    ((1.0 - e) / (1.0 + e)).copysign(u)
}

/// GELU (`approximate="tanh"`) as the portable kernel writes it,
/// `½ · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`; non-finite inputs give NaN.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const BETA: f32 = (core::f64::consts::SQRT_2 * core::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
    const KAPPA: f32 = 0.044715;
    let inner = BETA * (x + KAPPA * x * x * x);
    let y = 0.5 * x * (1.0 + tanh_fast(inner));
    if x.is_finite() { y } else { f32::NAN }
}

#[inline(always)]
fn gelu_slice<const TANH: bool>(src: &[f32], dst: &mut [f32]) {
    for (o, &x) in dst.iter_mut().zip(src) {
        *o = if TANH { gelu_tanh(x) } else { gelu_erf(x) };
    }
}

/// [`gelu_slice`] compiled for AVX2 and FMA (the same operations: Rust does not contract `a * b
/// + c` into FMA, so the results equal the baseline build's).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_slice_avx2<const TANH: bool>(src: &[f32], dst: &mut [f32]) {
    gelu_slice::<TANH>(src, dst);
}

/// [`gelu_slice`] compiled for AVX-512 (the same operations, in 16 lanes).
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_slice_avx512<const TANH: bool>(src: &[f32], dst: &mut [f32]) {
    gelu_slice::<TANH>(src, dst);
}

fn gelu_dispatch<const TANH: bool>(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (detected just above).
            return unsafe { gelu_slice_avx512::<TANH>(src, dst) };
        }
        // The standard library caches the detection.
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (detected just above).
            return unsafe { gelu_slice_avx2::<TANH>(src, dst) };
        }
    }
    gelu_slice::<TANH>(src, dst);
}

/// `aten::gelu.out(Tensor self, *, str approximate="none", Tensor(a!) out)` for float32, both
/// forms (other dtypes take the portable kernel). The portable kernel evaluates erf in f64
/// through fdlibm, and tanh through the C library: 10 ns per element, 35% of gpt_decoder's time.
pub fn gelu_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let fast = match args.string(1) {
        Ok("none") => slice_unary(ctx, args, 2, gelu_dispatch::<false>),
        Ok("tanh") => slice_unary(ctx, args, 2, gelu_dispatch::<true>),
        _ => None,
    };
    fast.unwrap_or_else(|| portable::activation::gelu_out(ctx, args))
}

/// `1 / (1 + e^-x)` with [`exp_nonpositive`] of `-|x|` (no overflow either side): `1 / (1 + e)`
/// for `x >= 0`, `e / (1 + e)` below. Within 4e-7 relative of the exact value (the exponential's
/// error), and below 2e-38 absolute where the result is that small (x < -87).
#[inline(always)]
fn sigmoid_fast(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let r = 1.0 / (1.0 + e);
    let y = if x >= 0.0 { r } else { e * r };
    if x.is_nan() { f32::NAN } else { y }
}

/// `sigmoid(x)`, or with `TIMES_X` `x · sigmoid(x)` (SiLU): the same sigmoid and one float32
/// product, so bit-identical to `mul(x, sigmoid(x))` on the optimized kernels.
fn sigmoid_slice<const TIMES_X: bool>(src: &[f32], dst: &mut [f32]) {
    for (o, &x) in dst.iter_mut().zip(src) {
        *o = if TIMES_X { x * sigmoid_fast(x) } else { sigmoid_fast(x) };
    }
}

/// [`sigmoid_slice`] compiled for AVX2 and FMA (the same operations, see [`gelu_slice_avx2`]).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_slice_avx2<const TIMES_X: bool>(src: &[f32], dst: &mut [f32]) {
    sigmoid_slice::<TIMES_X>(src, dst);
}

/// [`sigmoid_slice`] compiled for AVX-512 (the same operations, in 16 lanes).
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sigmoid_slice_avx512<const TIMES_X: bool>(src: &[f32], dst: &mut [f32]) {
    sigmoid_slice::<TIMES_X>(src, dst);
}

pub(super) fn sigmoid_dispatch<const TIMES_X: bool>(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (detected just above).
            return unsafe { sigmoid_slice_avx512::<TIMES_X>(src, dst) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (detected just above).
            return unsafe { sigmoid_slice_avx2::<TIMES_X>(src, dst) };
        }
    }
    sigmoid_slice::<TIMES_X>(src, dst);
}

/// SiLU of float32 argument 0 into argument `out_arg` laid out like it; `None` for other dtypes
/// or layouts (see [`super::fused::silu`]).
pub(super) fn silu_f32(ctx: &KernelContext, args: &KernelArgs<'_>, out_arg: usize) -> Option<Result<(), KernelError>> {
    slice_unary(ctx, args, out_arg, sigmoid_dispatch::<true>)
}

/// `aten::sigmoid.out(Tensor self, *, Tensor(a!) out)` for float32 (other dtypes take the
/// portable kernel, which evaluates it in f64 through the C library: 413 µs of
/// efficientnet_b0_w050's 780, in its SiLU activations and squeeze-excitation gates).
pub fn sigmoid_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    slice_unary(ctx, args, 1, sigmoid_dispatch::<false>).unwrap_or_else(|| portable::unary::sigmoid_out(ctx, args))
}

/// `tanh(x)` to within 3e-7 relative across the range (2.3e-7 measured): below |x| = 0.55 its odd Taylor series to
/// the x^15 term (the first term left out is under 5e-8 relative there), above it
/// `(1 - e^{-2|x|}) / (1 + e^{-2|x|})` (no cancellation: `e^{-2|x|} < 0.34`), both computed and
/// one selected so that slice loops vectorize. NaN stays NaN, ±inf gives ±1.
#[inline(always)]
fn tanh_accurate(x: f32) -> f32 {
    const SERIES: [f32; 7] = [
        -929_569.0 / 638_512_875.0,
        21_844.0 / 6_081_075.0,
        -1_382.0 / 155_925.0,
        62.0 / 2_835.0,
        -17.0 / 315.0,
        2.0 / 15.0,
        -1.0 / 3.0,
    ];
    let a = x.abs();
    let z = a * a;
    let mut p = SERIES[0];
    for c in &SERIES[1..] {
        p = z.mul_add(p, *c);
    }
    let small = (a * z).mul_add(p, a);
    let e = exp_nonpositive(-2.0 * a);
    let large = (1.0 - e) / (1.0 + e);
    let y = if a < 0.55 { small } else { large };
    if x.is_nan() { f32::NAN } else { y.copysign(x) }
}

fn tanh_slice(src: &[f32], dst: &mut [f32]) {
    for (o, &x) in dst.iter_mut().zip(src) {
        *o = tanh_accurate(x);
    }
}

/// [`tanh_slice`] compiled for AVX2 and FMA (the same operations, see [`gelu_slice_avx2`]).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tanh_slice_avx2(src: &[f32], dst: &mut [f32]) {
    tanh_slice(src, dst);
}

/// [`tanh_slice`] compiled for AVX-512 (the same operations, in 16 lanes).
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tanh_slice_avx512(src: &[f32], dst: &mut [f32]) {
    tanh_slice(src, dst);
}

pub(super) fn tanh_dispatch(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (detected just above).
            return unsafe { tanh_slice_avx512(src, dst) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (detected just above).
            return unsafe { tanh_slice_avx2(src, dst) };
        }
    }
    tanh_slice(src, dst);
}

/// `aten::tanh.out(Tensor self, *, Tensor(a!) out)` for float32 (other dtypes take the portable
/// kernel). The C library's `tanhf` (through `expm1f`) was 12% of an LSTM's time.
pub fn tanh_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    slice_unary(ctx, args, 1, tanh_dispatch).unwrap_or_else(|| portable::unary::tanh_out(ctx, args))
}

/// `f(src, dst)` over chunks of a float32 tensor's storage (argument 0) and `out` (laid out
/// alike), on the pool when large; `None` for other dtypes or layouts.
fn slice_unary(
    ctx: &KernelContext,
    args: &KernelArgs<'_>,
    out_arg: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync + Copy,
) -> Option<Result<(), KernelError>> {
    let x = args.tensor(0).ok()?;
    let (out_dtype, out_order) = (args.tensor_dtype(out_arg).ok()?, args.tensor_dim_order(out_arg).ok()?);
    if x.dtype() != DType::Float || out_dtype != DType::Float || *x.dim_order() != out_order {
        return None;
    }
    Some((|| {
        let mut out = args.tensor_mut(out_arg)?;
        out.resize(x.sizes())?;
        let src = x.data::<f32>()?;
        let o = out.data_mut::<f32>()?;
        if src.len() != o.len() {
            return Err(KernelError::ShapeMismatch { arg: 0, reason: "storage does not match the shape" });
        }
        for_chunks(ctx, o, |start, piece| f(&src[start..start + piece.len()], piece));
        Ok(())
    })())
}

/// `clamp(x, lo, hi)` as the portable kernel computes it for float32 (bounds not NaN): NaN input
/// gives the canonical NaN; `hi` wins over `lo`.
#[inline(always)]
pub(super) fn clamp_like_portable(x: f32, lo: f32, hi: f32) -> f32 {
    // Clamp first, then select: with the NaN test first the loop stopped vectorizing (the fused
    // hardswish calls took 24 µs in all on mobilenet_v3 instead of 17).
    let v = super::sgemm::clamp(x, lo, hi);
    if x.is_nan() { f32::NAN } else { v }
}

/// `aten::clamp.out(Tensor self, Scalar? min=None, Scalar? max=None, *, Tensor(a!) out)` for a
/// float32 tensor (whose result stays float32 whatever the bounds): the portable kernel's
/// semantics (NaN input gives NaN; max wins over min), as one select per bound.
pub fn clamp_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let bound = |arg: usize, absent: f32| args.opt_scalar(arg).map(|s| s.map_or(absent, |s| s.to_f64() as f32));
    let fast = match (bound(1, f32::NEG_INFINITY), bound(2, f32::INFINITY), args.tensor_dtype(0)) {
        (Ok(lo), Ok(hi), Ok(DType::Float)) if !lo.is_nan() && !hi.is_nan() => {
            unary(ctx, args, 3, move |x| clamp_like_portable(x, lo, hi))
        }
        _ => None,
    };
    fast.unwrap_or_else(|| portable::activation::clamp_out(ctx, args))
}

/// Registers the fast elementwise kernels over the portable ones.
pub fn register(r: &mut KernelRegistry) {
    // The dtypes the portable kernels accept (the fast path covers float32, the rest falls back).
    let (all, real) = (portable::elementwise::ALL_DTYPES, portable::elementwise::REAL_DTYPES);
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        ("aten::add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)", all, add_out),
        ("aten::sub.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)", real, sub_out),
        ("aten::mul.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", all, mul_out),
        ("aten::div.out(Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)", all, div_out),
        ("aten::relu.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", real, relu_out),
        (
            "aten::hardtanh.out(Tensor self, Scalar min_val=-1, Scalar max_val=1, *, Tensor(a!) out) -> Tensor(a!)",
            real,
            hardtanh_out,
        ),
        (
            "aten::clamp.out(Tensor self, Scalar? min=None, Scalar? max=None, *, Tensor(a!) out) -> Tensor(a!)",
            all,
            clamp_out,
        ),
        (
            "aten::gelu.out(Tensor self, *, str approximate=\"none\", Tensor(a!) out) -> Tensor(a!)",
            portable::elementwise::FLOAT_DTYPES,
            gelu_out,
        ),
        ("aten::sigmoid.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", all, sigmoid_out),
        ("aten::tanh.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", all, tanh_out),
    ];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::Call;

    /// Deterministic values in [-4, 4) with NaN (two payloads), signed zeros and infinities.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                match (s >> 58) % 16 {
                    0 if i % 3 == 0 => f32::from_bits(0x7fc0_0001),
                    0 => f32::NAN,
                    1 => -0.0,
                    2 => f32::INFINITY,
                    _ => ((s >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0,
                }
            })
            .collect()
    }

    /// The first index where `got` and `want` differ in bits (any NaN matches any NaN: which
    /// payload an operation on two NaNs keeps is the hardware's choice, as in PyTorch).
    fn first_difference(got: &[f32], want: &[f32]) -> Option<(usize, f32, f32)> {
        if got.len() != want.len() {
            return Some((got.len().min(want.len()), f32::NAN, f32::NAN));
        }
        let same = |x: f32, y: f32| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
        got.iter().zip(want).enumerate().find(|&(_, (&x, &y))| !same(x, y)).map(|(i, (&x, &y))| (i, x, y))
    }

    #[test]
    fn broadcasts_match_portable_bit_for_bit() {
        // Scalar operands (0-d and one-element), per-channel, rows, columns, size-1 dimensions
        // in the middle, both operands broadcasting, and operands of different ranks.
        let shapes: &[(&[usize], &[usize])] = &[
            (&[1, 288, 2, 2], &[]),
            (&[], &[1, 40, 8, 8]),
            (&[1, 288, 1, 1], &[1, 288, 2, 2]),
            (&[2, 24, 5, 7], &[1, 24, 1, 1]),
            (&[1, 24, 5, 7], &[1, 24, 1, 1]),
            (&[3, 1, 70], &[3, 5, 70]),
            (&[3, 5, 1], &[3, 5, 70]),
            (&[4, 1, 33], &[1, 6, 1]),
            (&[6, 1, 1, 20], &[20]),
            (&[1, 1, 1], &[1, 1, 90]),
            (&[2, 3, 1, 4, 1], &[1, 3, 5, 4, 6]),
            (&[100], &[1]),
            // Equal element counts, sizes differing by ones only.
            (&[1, 1, 128], &[1, 128]),
            (&[2, 1, 3], &[2, 3]),
        ];
        type Fast = fn(&mut KernelContext, &KernelArgs<'_>) -> Result<(), KernelError>;
        let kernels: [(Fast, KernelFn, bool); 4] = [
            (add_out, portable::binary::add_out, true),
            (sub_out, portable::binary::sub_out, true),
            (mul_out, portable::binary::mul_out, false),
            (div_out, portable::binary::div_out, false),
        ];
        for &(a, b) in shapes {
            let out = broadcast_shapes(a, b).expect("broadcastable");
            let numel = |s: &[usize]| s.iter().product::<usize>();
            for (fast, reference, alpha) in kernels {
                for alpha_value in if alpha { &[1.0, -2.5][..] } else { &[1.0][..] } {
                    let call = || {
                        let c = Call::new().tensor(a, &values(numel(a), 1)).tensor(b, &values(numel(b), 2));
                        let c = if alpha { c.double(*alpha_value) } else { c };
                        c.out(DType::Float, &out, numel(&out))
                    };
                    let at = if alpha { 3 } else { 2 };
                    let want = call().run_f32(reference, at);
                    let got = call().run_f32(fast, at);
                    let diff = first_difference(&got, &want);
                    assert!(diff.is_none(), "{a:?} op {b:?} (alpha {alpha_value}): {diff:?}");
                }
            }
        }
    }

    /// The fast GELU (both forms) against the portable kernel (erf in f64, the C library's tanh):
    /// within 1.5e-7 · max(|x|, 1) plus 2 ulp across the range where erf and tanh change, and NaN
    /// for non-finite input.
    #[test]
    fn gelu_matches_portable() {
        let mut x: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.0061).collect();
        x.extend([0.0, -0.0, 1e-30, -1e-30, 1e-8, 30.0, -30.0, 200.0, -200.0, f32::MAX, f32::MIN_POSITIVE]);
        x.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        for form in ["none", "tanh"] {
            let call = || Call::new().tensor(&[x.len()], &x).string(form).out(DType::Float, &[x.len()], x.len());
            let want = call().run_f32(portable::activation::gelu_out, 2);
            let got = call().run_f32(gelu_out, 2);
            for ((&g, &w), &v) in got.iter().zip(&want).zip(&x) {
                let tol = 1.5e-7 * v.abs().max(1.0) + 2.0 * f32::EPSILON * w.abs();
                let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol;
                assert!(ok, "gelu({v}, {form}) = {g}, portable {w}");
            }
        }
        // exp on the vectorized path: e^x against the library.
        for i in 0..=1000 {
            let v = -(i as f32) * 0.087;
            let (g, w) = (exp_nonpositive(v), v.exp());
            assert!((g - w).abs() <= 3e-7 * w + 1e-37, "exp({v}) = {g}, want {w}");
        }
    }

    /// The fast sigmoid against the portable kernel (f64 through the C library's exp): within
    /// 4e-7 relative plus 2e-38 absolute across the range, NaN for NaN, 0 and 1 at the infinities.
    #[test]
    fn sigmoid_matches_portable() {
        let mut x: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.061).collect();
        x.extend([0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, -104.0, 200.0, -200.0, f32::MAX, f32::MIN]);
        x.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        let call = || Call::new().tensor(&[x.len()], &x).out(DType::Float, &[x.len()], x.len());
        let want = call().run_f32(portable::unary::sigmoid_out, 1);
        let got = call().run_f32(sigmoid_out, 1);
        for ((&g, &w), &v) in got.iter().zip(&want).zip(&x) {
            let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 4e-7 * w.abs() + 2e-38;
            assert!(ok, "sigmoid({v}) = {g}, portable {w}");
        }
    }

    /// The fast tanh against the portable kernel (the C library's `tanhf`): within 3e-7 relative
    /// (and 1e-38 absolute for subnormal inputs) across the range, finer near 0 and the branch
    /// point 0.55, NaN for NaN, ±1 at the infinities.
    #[test]
    fn tanh_matches_portable() {
        let mut x: Vec<f32> = (-3000..=3000).map(|i| i as f32 * 0.0037).collect();
        x.extend((0..400).map(|i| 0.5 + i as f32 * 2.5e-4));
        x.extend([0.0, -0.0, 1e-30, -1e-30, 1e-39, 1e-5, -3e-4, 9.0, -9.5, 20.0, 88.0, -104.0, f32::MAX, f32::MIN]);
        x.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        let call = || Call::new().tensor(&[x.len()], &x).out(DType::Float, &[x.len()], x.len());
        let want = call().run_f32(portable::unary::tanh_out, 1);
        let got = call().run_f32(tanh_out, 1);
        for ((&g, &w), &v) in got.iter().zip(&want).zip(&x) {
            let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 3e-7 * w.abs() + 1e-38;
            assert!(ok, "tanh({v}) = {g}, portable {w}");
        }
    }

    #[test]
    fn clamp_matches_portable_bit_for_bit() {
        let x = values(300, 3);
        let bounds: &[(Option<f64>, Option<f64>)] =
            &[(Some(0.0), None), (None, Some(6.0)), (Some(-1.5), Some(2.0)), (Some(3.0), Some(-3.0))];
        for &(lo, hi) in bounds {
            let call = || {
                let c = Call::new().tensor(&[3, 100], &x).opt_double(lo).opt_double(hi);
                c.out(DType::Float, &[3, 100], 300)
            };
            let want = call().run_f32(portable::activation::clamp_out, 3);
            let got = call().run_f32(clamp_out, 3);
            let diff = first_difference(&got, &want);
            assert!(diff.is_none(), "clamp({lo:?}, {hi:?}): {diff:?}");
        }
    }
}

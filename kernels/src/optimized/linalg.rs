//! Matrix products through etch's [`sgemm`](super::sgemm) (the left operand packed into scratch
//! memory per call, the scaling by `alpha` folded into the packing, a `[N]` bias of `addmm` added
//! in the epilogue), multi-threaded on etch's pool. Where only the portable microkernel would run
//! (CPUs without AVX2, other architectures) the `gemm` crate, whose NEON and SSE code is faster,
//! does the product instead.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::sgemm::{
    Bias, Epilogue, Kernel, MatMut, MatRef, PARALLEL_MIN_STREAMED, PackedLhs, RowsLhs, pack_lhs, packed_lhs_len,
    rows_lhs_available, sgemm, sgemm_rows,
};

use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::portable::elementwise::{REAL_DTYPES, broadcast_strides_ordered};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::StridedIter;
use crate::tensor::Tensor;
use crate::value::Scalar;

/// Below this many multiply-adds a product runs on one thread: spreading it costs more than it
/// saves (measured with `cargo bench --bench kernels`, matmul group).
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// A dense f32 matrix view: element (i, j) of batch b is at `b * batch + i * row + j * col`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub(super) data: &'a [f32],
    pub(super) batch: usize,
    pub(super) row: usize,
    pub(super) col: usize,
}

/// `(batch, row, col)` strides of a 2-D or 3-D tensor, from its dim order.
fn strides(t: &Tensor<'_>) -> Option<(usize, usize, usize)> {
    let s = t.strides();
    match t.dim() {
        2 => Some((0, s[0], s[1])),
        3 => Some((s[0], s[1], s[2])),
        _ => None,
    }
}

/// Largest element offset a view touches for `batches` × `rows` × `cols`, if it fits.
fn max_offset(batches: usize, rows: usize, cols: usize, batch: usize, row: usize, col: usize) -> Option<usize> {
    if batches == 0 || rows == 0 || cols == 0 {
        return Some(0);
    }
    (batches - 1)
        .checked_mul(batch)?
        .checked_add((rows - 1).checked_mul(row)?)?
        .checked_add((cols - 1).checked_mul(col)?)
}

/// Scratch memory for the packed left operand could not be allocated.
const NO_SCRATCH: KernelError = KernelError::NotImplemented("matrix product scratch memory could not be allocated");

/// `out[b] = keep * out[b] + scale * a[b] @ m[b] (+ col_bias)` for `batches` products of `n×k` by
/// `k×p`, each result then limited to `bounds` (a fused activation; `None`: unbounded). `keep` is
/// `None` when `out` is only written; `col_bias[j]` (length `p`) is added to column `j`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_f32(
    ctx: &mut KernelContext,
    batches: usize,
    (n, k, p): (usize, usize, usize),
    a: Mat<'_>,
    m: Mat<'_>,
    out: &mut [f32],
    (ob, or, oc): (usize, usize, usize),
    keep: Option<f32>,
    scale: f32,
    col_bias: Option<&[f32]>,
    bounds: Option<(f32, f32)>,
    arg: usize,
) -> Result<(), KernelError> {
    // The paths that have no epilogue clamp limit the stored results afterwards: the same values
    // clamped, so the same bits.
    let limit = |out: &mut [f32]| match bounds {
        Some((min, max)) => clamp_matrix(out, batches, (n, p), (ob, or, oc), (min, max), arg),
        None => Ok(()),
    };
    if Kernel::best() == Kernel::Portable {
        if let Some(bias) = col_bias {
            fill_col_bias(bias, out, batches, (n, p), (ob, or, oc), keep, arg)?;
            gemm_crate_f32(ctx, batches, (n, k, p), a, m, out, (ob, or, oc), Some(1.0), scale, arg)?;
        } else {
            gemm_crate_f32(ctx, batches, (n, k, p), a, m, out, (ob, or, oc), keep, scale, arg)?;
        }
        return limit(out);
    }
    let bad = KernelError::ShapeMismatch { arg, reason: "matrix view outside its tensor" };
    let len = packed_lhs_len(n, k).ok_or(bad)?;
    let (min, max) = bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let epilogue = Epilogue {
        bias: col_bias.map_or(Bias::None, Bias::Col),
        accumulate: keep.is_some(),
        ..Epilogue::store().clamped(min, max)
    };
    if n == 0 || p == 0 {
        return Ok(());
    }
    if batches == 1
        && let Some(done) = row_times_columns(ctx, (n, k, p), a, m, out, oc, keep, scale, col_bias, arg)
    {
        return done.and_then(|()| limit(out));
    }
    // A read where it lies, not packed (see `sgemm_rows`). `cargo bench --bench sgemm --
    // "per_call|in_place"` (A packed per call against read in place), one thread: 16x64x64 1.59
    // -> 1.43 µs, 16x64x128 2.93 -> 2.73 µs, 197x384x384 550 -> 562 µs, 197x384x1536 2.29 ->
    // 2.30 ms, 512³ 2.58 -> 2.57 ms; two threads 197x384x1536 1.21 -> 1.18 ms, 512³ 1.39 -> 1.33.
    let in_place = rows_lhs_available() && scale == 1.0 && a.col == 1;
    let run = |packed: &mut [f32], ctx: &KernelContext| -> Result<(), KernelError> {
        for b in 0..batches {
            let at = |base: usize| b.checked_mul(base).ok_or(bad);
            // An empty reduction reads nothing (its operands may be empty tensors).
            let data = operand(a.data, b.checked_mul(a.batch), k).ok_or(bad)?;
            if !in_place {
                pack_lhs(n, k, MatRef { data, row: a.row, col: a.col }, scale, packed, arg)?;
            }
            let dst = out.get_mut(at(ob)?..).ok_or(bad)?;
            if let Some(beta) = keep.filter(|&beta| beta != 1.0) {
                for i in 0..n {
                    for j in 0..p {
                        *dst.get_mut(i * or + j * oc).ok_or(bad)? *= beta;
                    }
                }
            }
            let rhs = MatRef { data: operand(m.data, b.checked_mul(m.batch), k).ok_or(bad)?, row: m.row, col: m.col };
            let dst = MatMut { data: dst, row: or, col: oc };
            if in_place {
                sgemm_rows(ctx, p, RowsLhs { data, row: a.row, m: n, k }, rhs, dst, &epilogue, arg)?;
            } else {
                sgemm(ctx, p, PackedLhs { data: packed, m: n, k }, rhs, dst, &epilogue, arg)?;
            }
        }
        Ok(())
    };
    let len = if in_place { 0 } else { len };
    ctx.with_scratch_f32(len, run).unwrap_or(Err(NO_SCRATCH))
}

/// A batch's operand data from `offset` (`None`: overflowed), or nothing for an empty reduction.
fn operand(data: &[f32], offset: Option<usize>, k: usize) -> Option<&[f32]> {
    if k == 0 { Some(&[]) } else { data.get(offset?..) }
}

/// Limits every element of the `batches` × `n` × `p` results in `out` to `[min, max]`.
fn clamp_matrix(
    out: &mut [f32],
    batches: usize,
    (n, p): (usize, usize),
    (ob, or, oc): (usize, usize, usize),
    (min, max): (f32, f32),
    arg: usize,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg, reason: "matrix view outside its tensor" };
    for b in 0..batches {
        for i in 0..n {
            for j in 0..p {
                let v = out.get_mut(b * ob + i * or + j * oc).ok_or(bad)?;
                *v = super::sgemm::clamp(*v, min, max);
            }
        }
    }
    Ok(())
}

/// Writes `keep * out + bias[j]` (or `bias[j]` when `keep` is `None`) into every row of `out`.
fn fill_col_bias(
    bias: &[f32],
    out: &mut [f32],
    batches: usize,
    (n, p): (usize, usize),
    (ob, or, oc): (usize, usize, usize),
    keep: Option<f32>,
    arg: usize,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg, reason: "matrix view outside its tensor" };
    for b in 0..batches {
        for i in 0..n {
            for (j, &bias) in bias.iter().enumerate().take(p) {
                let v = out.get_mut(b * ob + i * or + j * oc).ok_or(bad)?;
                *v = keep.map_or(0.0, |beta| beta * *v) + bias;
            }
        }
    }
    Ok(())
}

/// [`gemm_f32`] through the `gemm` crate.
#[allow(clippy::too_many_arguments)]
fn gemm_crate_f32(
    ctx: &KernelContext,
    batches: usize,
    (n, k, p): (usize, usize, usize),
    a: Mat<'_>,
    m: Mat<'_>,
    out: &mut [f32],
    (ob, or, oc): (usize, usize, usize),
    keep: Option<f32>,
    scale: f32,
    arg: usize,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg, reason: "matrix view outside its tensor" };
    // Every index gemm will form stays inside its slice: checked here, once, for the SAFETY below.
    let fits = |len: usize, off: Option<usize>| off.is_some_and(|o| len == 0 && o == 0 || o < len);
    if !fits(a.data.len(), max_offset(batches, n, k, a.batch, a.row, a.col))
        || !fits(m.data.len(), max_offset(batches, k, p, m.batch, m.row, m.col))
        || !fits(out.len(), max_offset(batches, n, p, ob, or, oc))
    {
        return Err(bad);
    }
    if n == 0 || p == 0 {
        return Ok(());
    }
    let isz = |x: usize| isize::try_from(x).map_err(|_| bad);
    let (a_rs, a_cs, m_rs, m_cs, o_rs, o_cs) = (isz(a.row)?, isz(a.col)?, isz(m.row)?, isz(m.col)?, isz(or)?, isz(oc)?);
    let macs = n.saturating_mul(k).saturating_mul(p);
    let threads = ctx.threads();
    let parallelism =
        if threads > 1 && macs >= PARALLEL_MIN_MACS { Parallelism::Rayon(threads) } else { Parallelism::None };
    let mut run = || {
        for b in 0..batches {
            let (ao, mo, oo) = (b * a.batch, b * m.batch, b * ob);
            // In bounds by the `fits` checks: `wrapping_add` here only avoids a separate unsafe op.
            let (dst, lhs, rhs) =
                (out.as_mut_ptr().wrapping_add(oo), a.data.as_ptr().wrapping_add(ao), m.data.as_ptr().wrapping_add(mo));
            // SAFETY: the pointers are into live slices; every element gemm reads is at
            // `base + i * rs + j * cs` with i < rows and j < cols, which the `fits` checks above
            // bound by the slice lengths (offsets are non-negative, strides fit in isize); the
            // output slice is exclusively borrowed and does not overlap the inputs (distinct
            // tensors, checked by the engine's alias rule).
            unsafe {
                gemm(
                    n,
                    p,
                    k,
                    dst,
                    o_cs,
                    o_rs,
                    keep.is_some(),
                    lhs,
                    a_cs,
                    a_rs,
                    rhs,
                    m_cs,
                    m_rs,
                    keep.unwrap_or(0.0),
                    scale,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
    };
    // One thread: no hop to a pool thread (`install` would send even sequential work there).
    if matches!(parallelism, Parallelism::None) {
        run()
    } else {
        ctx.install(run)
    }
    Ok(())
}

fn all_f32(args: &KernelArgs<'_>, inputs: &[usize], out: usize) -> Result<bool, KernelError> {
    for &i in inputs {
        if args.tensor(i)?.dtype() != DType::Float {
            return Ok(false);
        }
    }
    Ok(args.tensor_dtype(out)? == DType::Float)
}

fn view<'a>(t: &Tensor<'a>) -> Result<Option<Mat<'a>>, KernelError> {
    let Some((batch, row, col)) = strides(t) else { return Ok(None) };
    Ok(Some(Mat { data: t.data::<f32>()?, batch, row, col }))
}

/// `aten::mm.out` — f32 through gemm, otherwise the portable kernel.
pub fn mm_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, m) = (args.tensor(0)?, args.tensor(1)?);
    if !all_f32(args, &[0, 1], 2)? || a.dim() != 2 || m.dim() != 2 || a.sizes()[1] != m.sizes()[0] {
        return portable::linalg::mm_out(ctx, args);
    }
    let (n, k, p) = (a.sizes()[0], a.sizes()[1], m.sizes()[1]);
    let (Some(av), Some(mv)) = (view(&a)?, view(&m)?) else { return portable::linalg::mm_out(ctx, args) };
    let mut out = args.tensor_mut(2)?;
    out.resize(&[n, p])?;
    let s = out.strides();
    gemm_f32(ctx, 1, (n, k, p), av, mv, out.data_mut::<f32>()?, (0, s[0], s[1]), None, 1.0, None, None, 2)
}

/// `aten::bmm.out` — f32 through gemm, otherwise the portable kernel.
pub fn bmm_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, m) = (args.tensor(0)?, args.tensor(1)?);
    let ok = a.dim() == 3 && m.dim() == 3 && a.sizes()[0] == m.sizes()[0] && a.sizes()[2] == m.sizes()[1];
    if !all_f32(args, &[0, 1], 2)? || !ok {
        return portable::linalg::bmm_out(ctx, args);
    }
    let (b, n, k, p) = (a.sizes()[0], a.sizes()[1], a.sizes()[2], m.sizes()[2]);
    let (Some(av), Some(mv)) = (view(&a)?, view(&m)?) else { return portable::linalg::bmm_out(ctx, args) };
    let mut out = args.tensor_mut(2)?;
    out.resize(&[b, n, p])?;
    let s = out.strides();
    gemm_f32(ctx, b, (n, k, p), av, mv, out.data_mut::<f32>()?, (s[0], s[1], s[2]), None, 1.0, None, None, 2)
}

/// `aten::addmm.out` — `beta * self + alpha * (mat1 @ mat2)`; f32 through gemm (the bias is
/// broadcast into the output first, then accumulated onto), otherwise the portable kernel.
pub fn addmm_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    addmm(ctx, args, false, None)
}

/// `aten::addmm.out` with `mat2` given as its transpose: `beta * self + alpha * (mat1 @ mat2ᵀ)`,
/// where `mat2` is `[p, k]` — a linear layer reading its weight where the file stores it.
/// float32 only (the engine fuses nothing else; other calls get an error, not a fallback).
pub fn addmm_weight_transposed(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    addmm(ctx, args, true, None)
}

/// [`addmm_out`] (or with `transposed`, [`addmm_weight_transposed`]) with each result then
/// limited to `[min, max]`: the product and a ReLU or hardtanh that alone reads it, in one call.
/// Bit-identical to the two calls (the same sums, then the same clamp).
pub fn addmm_clamped(
    ctx: &mut KernelContext,
    args: &KernelArgs<'_>,
    transposed: bool,
    min: f32,
    max: f32,
) -> Result<(), KernelError> {
    addmm(ctx, args, transposed, Some((min, max)))
}

fn addmm(
    ctx: &mut KernelContext,
    args: &KernelArgs<'_>,
    transposed: bool,
    bounds: Option<(f32, f32)>,
) -> Result<(), KernelError> {
    let (bias, a, m) = (args.tensor(0)?, args.tensor(1)?, args.tensor(2)?);
    let (beta, alpha) = (args.scalar(3)?, args.scalar(4)?);
    // Which dimension of `mat2` is the reduction (`k`) and which the output columns (`p`).
    let (mk, mp) = if transposed { (1, 0) } else { (0, 1) };
    let shapes_ok = a.dim() == 2 && m.dim() == 2 && a.sizes()[1] == m.sizes()[mk] && bias.dim() <= 2;
    let unsupported = KernelError::ShapeMismatch {
        arg: 2,
        reason: "a linear layer with its weight transposed needs float32 2-D operands with matching sizes and a bias that broadcasts to the output",
    };
    // Calls the fast path does not cover: the portable kernel (then the clamp over its float32
    // output), or for the transposed form an error.
    let fallback = |ctx: &mut KernelContext| {
        if transposed {
            return Err(unsupported);
        }
        portable::linalg::addmm_out(ctx, args)?;
        match bounds {
            Some((min, max)) => {
                let mut out = args.tensor_mut(5)?;
                out.data_mut::<f32>()?.iter_mut().for_each(|v| *v = super::sgemm::clamp(*v, min, max));
                Ok(())
            }
            None => Ok(()),
        }
    };
    if !all_f32(args, &[0, 1, 2], 5)? || !shapes_ok {
        return fallback(ctx);
    }
    let (n, k, p) = (a.sizes()[0], a.sizes()[1], m.sizes()[mp]);
    if crate::shape::broadcast_shapes(bias.sizes(), &[n, p]).as_deref() != Some(&[n, p][..]) {
        return fallback(ctx);
    }
    let (Some(av), Some(mut mv)) = (view(&a)?, view(&m)?) else {
        return fallback(ctx);
    };
    if transposed {
        std::mem::swap(&mut mv.row, &mut mv.col);
    }
    let f = |s: Scalar| s.to_f64() as f32;
    let (beta, alpha) = (f(beta), f(alpha));
    let mut out = args.tensor_mut(5)?;
    out.resize(&[n, p])?;
    let s = out.strides();
    let bias_strides = broadcast_strides_ordered(bias.sizes(), bias.strides(), &[n, p]);
    let bias_data = bias.data::<f32>()?;
    let o = out.data_mut::<f32>()?;
    if beta == 1.0 && bias.sizes() == [p] && bias_data.len() == p {
        // The linear-layer case: the bias row is added in the GEMM's epilogue.
        return gemm_f32(ctx, 1, (n, k, p), av, mv, o, (0, s[0], s[1]), None, alpha, Some(bias_data), bounds, 5);
    }
    let keep = if beta == 0.0 {
        // PyTorch ignores `self` (even NaN) when beta is 0.
        None
    } else {
        let bad = KernelError::ShapeMismatch { arg: 0, reason: "bias outside its tensor" };
        let ostrides = crate::Shape::new(&[s[0], s[1]]).unwrap_or_default();
        for [io, ib] in StridedIter::new(&[n, p], [ostrides, bias_strides]) {
            *o.get_mut(io).ok_or(bad)? = *bias_data.get(ib).ok_or(bad)?;
        }
        Some(beta)
    };
    gemm_f32(ctx, 1, (n, k, p), av, mv, o, (0, s[0], s[1]), keep, alpha, None, bounds, 5)
}

/// Lanes of each dot product's partial sums: one AVX-512 register, two AVX2 ones (the compiler
/// vectorizes the lane-wise loop).
const DOT_LANES: usize = 16;

/// Rows of the weight read at once: several streams from memory in flight, and as many
/// independent chains of additions.
const DOT_ROWS: usize = 4;

/// `Σ x[k] · w[r][k]` for each of [`DOT_ROWS`] rows, summed in [`DOT_LANES`] lanes, then the lanes
/// pairwise (halves added until one is left). Every variant below runs this same code (lane-wise
/// multiplies and adds, no fused multiply-add), so the result depends neither on the CPU's
/// features nor on the thread split. The rows must be as long as `x`.
///
/// Why pairwise: the lanes summed in order were 15 dependent scalar additions per row, longer
/// than the products themselves for short rows (an LSTM's 32-wide recurrent step spent 27% of
/// its time there); halving is four vector additions.
#[inline(always)]
fn dot_rows_lanes(x: &[f32], w: [&[f32]; DOT_ROWS]) -> [f32; DOT_ROWS] {
    let mut lanes = [[0f32; DOT_LANES]; DOT_ROWS];
    let (xc, xr) = x.as_chunks::<DOT_LANES>();
    let wc = w.map(|w| w.as_chunks::<DOT_LANES>().0);
    for (c, xs) in xc.iter().enumerate() {
        for r in 0..DOT_ROWS {
            let ws = &wc[r][c];
            for l in 0..DOT_LANES {
                lanes[r][l] += xs[l] * ws[l];
            }
        }
    }
    let tail = xc.len() * DOT_LANES;
    for r in 0..DOT_ROWS {
        for ((l, &a), &b) in lanes[r].iter_mut().zip(xr).zip(&w[r][tail..]) {
            *l += a * b;
        }
    }
    lanes.map(sum_pairwise)
}

/// The lanes' sum by halves: `(l[0] + l[8]) + (l[4] + l[12]) + …`, each level one vector add.
#[inline(always)]
fn sum_pairwise(mut l: [f32; DOT_LANES]) -> f32 {
    let mut width = DOT_LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            l[i] += l[i + width];
        }
    }
    l[0]
}

/// [`dot_rows_lanes`] compiled for AVX-512. Only column groups that [`dot_rows16`] does not take
/// run it (fewer than 16 left over), so it stays the generic code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_rows_avx512(x: &[f32], w: [&[f32]; DOT_ROWS]) -> [f32; DOT_ROWS] {
    dot_rows_lanes(x, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_rows_avx2(x: &[f32], w: [&[f32]; DOT_ROWS]) -> [f32; DOT_ROWS] {
    dot_rows_lanes(x, w)
}

/// [`dot_rows_lanes`] in the widest vectors this CPU has (rows shorter than `x` are an error of
/// the caller: they would panic on the index).
fn dot_rows(x: &[f32], w: [&[f32]; DOT_ROWS]) -> [f32; DOT_ROWS] {
    match Kernel::best() {
        // SAFETY: `Kernel::best` returns `Avx512` only when the CPU reports AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { dot_rows_avx512(x, w) },
        // SAFETY: `Kernel::best` returns `Avx2` only when the CPU reports AVX2 (and FMA).
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { dot_rows_avx2(x, w) },
        Kernel::Portable => dot_rows_lanes(x, w),
    }
}

/// Rows [`dot_rows16`] takes at once.
const WIDE_ROWS: usize = 16;

/// [`dot_rows`] over the 16 rows `w[r * stride..][..x.len()]`, `w` holding all of them (else a
/// panic on the index: the caller checks). Each row's sum depends only on its own lanes, so the
/// results equal [`dot_rows`]'s, row by row, on every CPU.
fn dot_rows16(x: &[f32], w: &[f32], stride: usize) -> [f32; WIDE_ROWS] {
    #[cfg(target_arch = "x86_64")]
    if Kernel::best() == Kernel::Avx512 {
        // SAFETY: `Kernel::best` returns `Avx512` only when the CPU reports AVX-512F.
        return unsafe { dot_rows16_avx512(x, w, stride) };
    }
    let k = x.len();
    let row = |r: usize| &w[r * stride..r * stride + k];
    let mut out = [0f32; WIDE_ROWS];
    for (g, dots) in out.chunks_exact_mut(DOT_ROWS).enumerate() {
        let r = g * DOT_ROWS;
        dots.copy_from_slice(&dot_rows(x, [row(r), row(r + 1), row(r + 2), row(r + 3)]));
    }
    out
}

/// [`dot_rows16`] in AVX-512: 16 accumulators, then the 16 rows' lanes added by halves together,
/// transposing as they go (four levels of shuffles shared by all rows, where reducing each row
/// alone took four per row): at each level a row's lanes `i` and `i + width` are added, as in
/// [`sum_pairwise`], so the same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_rows16_avx512(x: &[f32], w: &[f32], stride: usize) -> [f32; WIDE_ROWS] {
    use std::arch::x86_64::*;
    let k = x.len();
    let span = (WIDE_ROWS - 1).checked_mul(stride).and_then(|n| n.checked_add(k));
    assert!(span.is_some_and(|n| n <= w.len()), "dot_rows16: rows outside the weight");
    // Raw pointers, bounds checked once above: slicing each row per load put 16 bounds checks
    // and 16 spilled row slices in a loop that runs twice for a 32-wide reduction.
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut acc = [_mm512_setzero_ps(); WIDE_ROWS];
    let full = k / DOT_LANES;
    for c in 0..full {
        let at = c * DOT_LANES;
        // SAFETY: `at + 16 <= k = x.len()` (one unaligned load).
        let xs = unsafe { _mm512_loadu_ps(xp.wrapping_add(at)) };
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: `r * stride + at + 16 <= 15 * stride + k <= w.len()` (asserted above).
            let ws = unsafe { _mm512_loadu_ps(wp.wrapping_add(r * stride + at)) };
            *a = _mm512_add_ps(*a, _mm512_mul_ps(xs, ws));
        }
    }
    let tail = k - full * DOT_LANES;
    if tail > 0 {
        let at = full * DOT_LANES;
        // `tail < 16`: the low `tail` lanes.
        let mask: __mmask16 = (1u16 << tail) - 1;
        // SAFETY: a masked load reads only the lanes its mask selects, `at..k` of `x`; the
        // other lanes are zero.
        let xs = unsafe { _mm512_maskz_loadu_ps(mask, xp.wrapping_add(at)) };
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: as for `xs`, up to `r * stride + k <= w.len()` (asserted above).
            let ws = unsafe { _mm512_maskz_loadu_ps(mask, wp.wrapping_add(r * stride + at)) };
            *a = _mm512_mask_add_ps(*a, mask, *a, _mm512_mul_ps(xs, ws));
        }
    }
    // Level 1, lanes i += i + 8: rows r and r + 8 share a register, their 128-bit quarters 0-1
    // and 2-3.
    let l1: [__m512; 8] = std::array::from_fn(|r| {
        let (a, b) = (acc[r], acc[r + 8]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(a, b), _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b))
    });
    // Level 2, i += i + 4: quarters hold rows r, r + 8, r + 4, r + 12.
    let l2: [__m512; 4] = std::array::from_fn(|r| {
        let (a, b) = (l1[r], l1[r + 4]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(a, b), _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b))
    });
    // Level 3, i += i + 2, within each quarter: two rows per quarter.
    let l3: [__m512; 2] = std::array::from_fn(|r| {
        let (a, b) = (l2[r], l2[r + 2]);
        _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(a, b), _mm512_shuffle_ps::<0b11_10_11_10>(a, b))
    });
    // Level 4, i += i + 1: one sum per lane, rows in the order 0 2 1 3, 8 10 9 11, 4 6 5 7,
    // 12 14 13 15, put back in order.
    let (a, b) = (l3[0], l3[1]);
    let sums = _mm512_add_ps(_mm512_shuffle_ps::<0b10_00_10_00>(a, b), _mm512_shuffle_ps::<0b11_01_11_01>(a, b));
    let order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    let mut out = [0f32; WIDE_ROWS];
    let sums = _mm512_permutexvar_ps(order, sums);
    // SAFETY: `out` holds 16 floats (one unaligned store).
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sums) };
    out
}

/// A one-row product whose right operand has contiguous columns (`mat2ᵀ` stored row-major: a
/// batch-1 linear layer's weight as the file holds it) as dot products over those columns, read
/// where they lie: one pass over the weight, nothing packed. `out[j] = keep * out[j] + scale *
/// a · m[:, j] + col_bias[j]`. `None` when the operands are not laid out so.
#[allow(clippy::too_many_arguments)]
fn row_times_columns(
    ctx: &KernelContext,
    (n, k, p): (usize, usize, usize),
    a: Mat<'_>,
    m: Mat<'_>,
    out: &mut [f32],
    oc: usize,
    keep: Option<f32>,
    scale: f32,
    col_bias: Option<&[f32]>,
    arg: usize,
) -> Option<Result<(), KernelError>> {
    if n != 1 || k == 0 || a.col != 1 || m.row != 1 || oc != 1 {
        return None;
    }
    let bad = KernelError::ShapeMismatch { arg, reason: "matrix view outside its tensor" };
    fn span(data: &[f32], at: Option<usize>, k: usize, bad: KernelError) -> Result<&[f32], KernelError> {
        let at = at.ok_or(bad)?;
        data.get(at..at.checked_add(k).ok_or(bad)?).ok_or(bad)
    }
    let result = (|| {
        let x = span(a.data, Some(0), k, bad)?;
        let dst = out.get_mut(..p).ok_or(bad)?;
        if col_bias.is_some_and(|b| b.len() < p) {
            return Err(bad);
        }
        let finish = |group: &mut [f32], first: usize, dots: &[f32]| {
            for (r, o) in group.iter_mut().enumerate() {
                let prev = keep.map_or(0.0, |beta| beta * *o);
                *o = prev + scale * dots[r] + col_bias.map_or(0.0, |b| b[first + r]);
            }
        };
        // Output columns `j0..j0 + chunk.len()`, [`WIDE_ROWS`] at a time, the rest
        // [`DOT_ROWS`] at a time (a short last group repeats its first column in the unused rows).
        // The weight span of 16 columns: from the first one's start to the last one's end.
        let wide_span = (WIDE_ROWS - 1).checked_mul(m.col).and_then(|l| l.checked_add(k));
        let fill = |j0: usize, chunk: &mut [f32]| -> Result<(), KernelError> {
            let wide = chunk.len() / WIDE_ROWS * WIDE_ROWS;
            let (wide_part, rest) = chunk.split_at_mut(wide);
            for (g, group) in wide_part.chunks_exact_mut(WIDE_ROWS).enumerate() {
                let first = j0 + g * WIDE_ROWS;
                let w = span(m.data, first.checked_mul(m.col), wide_span.ok_or(bad)?, bad)?;
                finish(group, first, &dot_rows16(x, w, m.col));
            }
            let j0 = j0 + wide;
            for (g, group) in rest.chunks_mut(DOT_ROWS).enumerate() {
                let first = j0 + g * DOT_ROWS;
                let column = |r: usize| {
                    let j = first.checked_add(r.min(group.len() - 1));
                    span(m.data, j.and_then(|j| j.checked_mul(m.col)), k, bad)
                };
                let w = [column(0)?, column(1)?, column(2)?, column(3)?];
                finish(group, first, &dot_rows(x, w));
            }
            Ok(())
        };
        if ctx.threads() > 1 && p.saturating_mul(k) >= PARALLEL_MIN_STREAMED {
            // Columns split over the pool, a few chunks per thread, whole cache lines of output each.
            let chunk = p.div_ceil(4 * ctx.threads()).next_multiple_of(16);
            ctx.install(|| dst.par_chunks_mut(chunk).enumerate().try_for_each(|(c, d)| fill(c * chunk, d)))
        } else {
            fill(0, dst)
        }
    })();
    Some(result)
}

/// Registers the optimized matrix products.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        ("aten::mm.out(Tensor self, Tensor mat2, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, mm_out),
        ("aten::bmm.out(Tensor self, Tensor mat2, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, bmm_out),
        (
            "aten::addmm.out(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            addmm_out,
        ),
    ];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::{Call, assert_close};

    /// Every dot-product variant this CPU runs gives the generic code's bits, for lengths with
    /// and without a lane tail (values of mixed sign and magnitude, so the summation order shows).
    #[test]
    fn dot_rows_variants_match_the_generic_order_bit_for_bit() {
        let value = |i: usize| ((i * 7919) % 1013) as f32 * if i.is_multiple_of(3) { -1.7e-3 } else { 2.3e3 };
        for k in [0, 1, 5, 15, 16, 17, 32, 33, 47, 64, 100] {
            let x: Vec<f32> = (0..k).map(value).collect();
            let rows: Vec<Vec<f32>> = (0..DOT_ROWS).map(|r| (0..k + r).map(|i| value(i * 31 + r)).collect()).collect();
            let w = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
            let want = dot_rows_lanes(&x, w).map(f32::to_bits);
            assert_eq!(dot_rows(&x, w).map(f32::to_bits), want, "k = {k}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F (detected just above).
                assert_eq!(unsafe { dot_rows_avx512(&x, w) }.map(f32::to_bits), want, "k = {k}");
            }
            // Sixteen rows at a stride (a weight's rows with padding between them).
            let stride = k + 3;
            let wide: Vec<f32> = (0..15 * stride + k).map(|i| value(i * 13 + 5)).collect();
            let got = dot_rows16(&x, &wide, stride).map(f32::to_bits);
            for (r, g) in got.iter().enumerate() {
                let row = &wide[r * stride..r * stride + k];
                assert_eq!(*g, dot_rows_lanes(&x, [row, row, row, row])[0].to_bits(), "k = {k}, row {r}");
            }
            // The old in-order lane sum differs for these values: the order is what is tested.
            if k == 100 {
                let in_order: f32 = x.iter().zip(w[0]).map(|(a, b)| a * b).sum();
                assert_ne!(in_order.to_bits(), want[0]);
            }
        }
    }

    /// `fused::linear` (`addmm` reading the untransposed weight: dot products for one row, the
    /// GEMM on a strided operand for more) against the portable `addmm` on the transposed weight,
    /// for odd sizes (lane and row-group tails), bias shapes, `beta`/`alpha`, and a 2-thread pool
    /// on a product large enough to split.
    #[test]
    fn linear_with_untransposed_weight_matches_portable_addmm() {
        let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"));
        // (n, k, p, bias is a full [n, p] matrix, beta, alpha)
        let cases: &[(usize, usize, usize, bool, f64, f64)] = &[
            (1, 1280, 1000, false, 1.0, 1.0),
            (1, 37, 11, false, 1.0, 1.0),
            (1, 16, 4, false, 1.0, 1.0),
            (1, 5, 3, false, 1.0, 1.0),
            (1, 1, 1, false, 1.0, 1.0),
            (1, 67, 9, true, 0.5, 2.0),
            (1, 70, 6, false, 0.0, 1.0),
            (1, 300, 1025, false, 1.0, 0.25),
            (3, 37, 11, false, 1.0, 1.0),
            (5, 64, 33, true, 2.0, 1.0),
        ];
        for &(n, k, p, full_bias, beta, alpha) in cases {
            let x: Vec<f32> = (0..n * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let w: Vec<f32> = (0..p * k).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
            let wt: Vec<f32> = (0..k * p).map(|i| w[(i % p) * k + i / p]).collect();
            let bias_sizes = if full_bias { vec![n, p] } else { vec![p] };
            let bias: Vec<f32> = (0..bias_sizes.iter().product()).map(|i| (i % 13) as f32 - 6.0).collect();
            let with_scalars = |c: Call| c.double(beta).double(alpha);
            let call = |mat2: (&[usize], &[f32])| {
                let c = Call::new().tensor(&bias_sizes, &bias).tensor(&[n, k], &x).tensor(mat2.0, mat2.1);
                with_scalars(c).out(DType::Float, &[n, p], n * p)
            };
            let (r, mut want) = call((&[k, p], &wt)).run(portable::linalg::addmm_out);
            r.expect("portable addmm");
            let (_, want) = want.tensor::<f32>(5);
            for threads in [1, 2] {
                let mut ctx = KernelContext::with_pool((threads > 1).then(|| pool.clone()));
                let mut got = call((&[p, k], &w)).prepare();
                got.run(super::super::fused::linear, &mut ctx)
                    .unwrap_or_else(|e| panic!("n {n} k {k} p {p} threads {threads}: {e}"));
                let (sizes, got) = got.tensor::<f32>(5);
                assert_eq!(sizes, [n, p]);
                // Sums ordered differently: rounding grows with the reduction's length (a wrong
                // column or a lost lane is off by O(1)).
                assert_close(&got, &want, 2e-6 * k as f32);
            }
        }
    }

    /// `fused::addmm_relu` and `fused::linear_relu` give the bits of the unfused product followed
    /// by a ReLU (NaN kept, as PyTorch's ReLU keeps it) on every path: one row (dot products),
    /// several rows (the GEMM, on one thread and split over two), `beta` other than 1, a full bias
    /// matrix. The unfused product is `addmm_out`, itself tested against the portable kernel.
    #[test]
    fn addmm_relu_is_the_product_then_relu_bit_for_bit() {
        let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"));
        // (n, k, p, bias is a full [n, p] matrix, beta, alpha)
        let cases: &[(usize, usize, usize, bool, f64, f64)] = &[
            (8, 256, 256, false, 1.0, 1.0),
            (1, 37, 11, false, 1.0, 1.0),
            (1, 300, 1025, false, 1.0, 1.0),
            (3, 37, 11, false, 1.0, 1.0),
            (5, 64, 33, true, 0.5, 1.0),
            (17, 40, 70, false, 0.0, 2.0),
        ];
        let relu = |v: f32| if v < 0.0 { 0.0 } else { v };
        for &(n, k, p, full_bias, beta, alpha) in cases {
            let mut x: Vec<f32> = (0..n * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            // A NaN in the last row (of several): its outputs stay NaN through the clamp.
            if n > 1 {
                x[(n - 1) * k] = f32::NAN;
            }
            let w: Vec<f32> = (0..p * k).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
            let wt: Vec<f32> = (0..k * p).map(|i| w[(i % p) * k + i / p]).collect();
            let bias_sizes = if full_bias { vec![n, p] } else { vec![p] };
            let bias: Vec<f32> = (0..bias_sizes.iter().product()).map(|i| (i % 13) as f32 - 6.0).collect();
            let call = |mat2: (&[usize], &[f32])| {
                let c = Call::new().tensor(&bias_sizes, &bias).tensor(&[n, k], &x).tensor(mat2.0, mat2.1);
                c.double(beta).double(alpha).out(DType::Float, &[n, p], n * p)
            };
            for threads in [1, 2] {
                let mut ctx = KernelContext::with_pool((threads > 1).then(|| pool.clone()));
                let forms = [
                    (addmm_out as KernelFn, super::super::fused::addmm_relu as KernelFn, (&[k, p][..], &wt[..])),
                    (super::super::fused::linear, super::super::fused::linear_relu, (&[p, k][..], &w[..])),
                ];
                for (form, (unfused, fused, mat2)) in forms.into_iter().enumerate() {
                    let at = format!("n {n} k {k} p {p} threads {threads} form {form}");
                    let mut plain = call(mat2).prepare();
                    plain.run(unfused, &mut ctx).unwrap_or_else(|e| panic!("{at}: {e}"));
                    let (_, plain) = plain.tensor::<f32>(5);
                    let mut got = call(mat2).prepare();
                    got.run(fused, &mut ctx).unwrap_or_else(|e| panic!("{at}: {e}"));
                    let (sizes, got) = got.tensor::<f32>(5);
                    assert_eq!(sizes, [n, p], "{at}");
                    let want: Vec<u32> = plain.iter().map(|&v| relu(v).to_bits()).collect();
                    assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "{at}");
                    // Both sides of the clamp occur.
                    assert!(got.contains(&0.0) && got.iter().any(|&v| v > 0.0), "{at}");
                    assert_eq!(got[(n - 1) * p].is_nan(), n > 1, "{at}");
                }
            }
        }
    }

    /// The fused kernel has no portable fallback: operands it cannot read are a typed error.
    #[test]
    fn linear_refuses_operands_it_cannot_read() {
        let (bias, x) = ([0f32; 3], [1f32; 4]);
        // Weight [3, 5] against x [1, 4]: the reduction sizes differ.
        let w = [1f32; 15];
        let (r, _) = Call::new()
            .tensor(&[3], &bias)
            .tensor(&[1, 4], &x)
            .tensor(&[3, 5], &w)
            .double(1.0)
            .double(1.0)
            .out(DType::Float, &[1, 3], 3)
            .run(super::super::fused::linear);
        assert!(matches!(r, Err(KernelError::ShapeMismatch { arg: 2, .. })), "{r:?}");
        // int64 operands.
        let (r, _) = Call::new()
            .tensor(&[3], &[0i64; 3])
            .tensor(&[1, 5], &[1i64; 5])
            .tensor(&[3, 5], &[1i64; 15])
            .int(1)
            .int(1)
            .out(DType::Long, &[1, 3], 3)
            .run(super::super::fused::linear);
        assert!(matches!(r, Err(KernelError::ShapeMismatch { arg: 2, .. })), "{r:?}");
    }
}

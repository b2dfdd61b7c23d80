//! Sums and means of float32 tensors over one contiguous block of dimensions (global average
//! pooling's `mean([-1, -2])`, a transformer's mean over tokens): the input is walked as
//! `[outer, reduced, inner]` rows instead of through the portable kernel's index arithmetic.
//! Accumulates in f64 like the portable kernel; everything else goes to the portable kernel.

use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::portable::reduce::{reduce_mask, reduced_shape};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};

/// Inner elements accumulated at once (f64 accumulators on the stack).
const INNER_CHUNK: usize = 256;

/// `[outer, reduced, inner]` when `mask` is one run of dimensions of a contiguous tensor.
fn block_of(sizes: &[usize], mask: u32) -> Option<(usize, usize, usize)> {
    let first = (0..sizes.len()).find(|&d| mask & (1 << d) != 0)?;
    let end = (first..sizes.len()).find(|&d| mask & (1 << d) == 0).unwrap_or(sizes.len());
    if (end..sizes.len()).any(|d| mask & (1 << d) != 0) {
        return None;
    }
    let product = |s: &[usize]| s.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
    Some((product(&sizes[..first])?, product(&sizes[first..end])?, product(&sizes[end..])?))
}

/// The fast case, or `None` for the portable kernel.
fn sum_block(args: &KernelArgs<'_>, mean: bool) -> Option<Result<(), KernelError>> {
    let x = args.tensor(0).ok()?;
    let mask = reduce_mask(args, 1, x.dim()).ok()?;
    let keepdim = args.bool(2).ok()?;
    let dtype = args.opt_dtype(3).ok()?;
    if x.dtype() != DType::Float || dtype.is_some_and(|d| d != DType::Float) || !x.dim_order().is_contiguous() {
        return None;
    }
    let (outer, reduced, inner) = block_of(x.sizes(), mask)?;
    if reduced == 0 || outer == 0 || inner == 0 {
        return None;
    }
    // Checked before borrowing the output: the portable kernel borrows it itself.
    if args.tensor_dtype(4).ok()? != DType::Float || !args.tensor_dim_order(4).ok()?.is_contiguous() {
        return None;
    }
    Some((|| {
        let mut out = args.tensor_mut(4)?;
        out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
        let short = KernelError::ShapeMismatch { arg: 0, reason: "tensor data shorter than its shape" };
        let total = outer.checked_mul(reduced).and_then(|n| n.checked_mul(inner)).ok_or(short)?;
        let src = x.data::<f32>()?.get(..total).ok_or(short)?;
        let dst = out.data_mut::<f32>()?.get_mut(..outer * inner).ok_or(short)?;
        let scale = if mean { 1.0 / reduced as f64 } else { 1.0 };
        if inner == 1 {
            // One sum per output, on this thread: spread over a pool, mobilenet_v2_w050's global
            // average pool (1280 rows of 49) cost more than it saved.
            if reduced <= SHORT_ROW {
                short_rows(src, reduced, dst, scale);
                return Ok(());
            }
            for (row, o) in src.chunks_exact(reduced).zip(dst.iter_mut()) {
                *o = (row_sum(row) * scale) as f32;
            }
            return Ok(());
        }
        for (block, o) in src.chunks_exact(reduced * inner).zip(dst.chunks_exact_mut(inner)) {
            for i0 in (0..inner).step_by(INNER_CHUNK) {
                let width = INNER_CHUNK.min(inner - i0);
                let mut acc = [0f64; INNER_CHUNK];
                for row in block.chunks_exact(inner) {
                    for (a, &v) in acc.iter_mut().zip(&row[i0..i0 + width]) {
                        *a += f64::from(v);
                    }
                }
                for (slot, a) in o[i0..i0 + width].iter_mut().zip(acc) {
                    *slot = (a * scale) as f32;
                }
            }
        }
        Ok(())
    })())
}

/// Rows up to this long are summed by [`short_rows`].
const SHORT_ROW: usize = 128;

/// Partial sums of [`short_row_sum`]: one vector of eight f64.
const SHORT_LANES: usize = 8;

widest_simd! {
    /// `dst[r] = sum(row r) * scale` for rows of `reduced` elements, each by [`short_row_sum`]:
    /// one vector of partial sums per row, rows after one another. mobilenet_v2's global average
    /// pool (1280 rows of 49): 29 µs through [`row_sum`]'s 32 lanes, 21 µs summing 8 rows side
    /// by side in order, 16-17 µs this way (`etch bench --trace`, one thread). The order differs
    /// from the portable kernel's sequential f64 sum only in f64 rounding.
    fn short_rows(src: &[f32], reduced: usize, dst: &mut [f32], scale: f64) => short_rows_with
}

#[inline(always)]
fn short_rows_with(src: &[f32], reduced: usize, dst: &mut [f32], scale: f64) {
    for (row, o) in src.chunks_exact(reduced.max(1)).zip(dst.iter_mut()) {
        *o = (short_row_sum(row) * scale) as f32;
    }
}

/// The f64 sum of a short `row` in [`SHORT_LANES`] partial sums, added by halves, then the last
/// elements in order.
#[inline(always)]
fn short_row_sum(row: &[f32]) -> f64 {
    let mut lanes = [0f64; SHORT_LANES];
    let (chunks, tail) = row.as_chunks::<SHORT_LANES>();
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += f64::from(v);
        }
    }
    let mut width = SHORT_LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    tail.iter().fold(lanes[0], |sum, &v| sum + f64::from(v))
}

/// Partial sums of [`row_sum`]: four vectors of eight f64 (one running sum is a chain of
/// dependent adds, 4 cycles each; one vector of eight partial sums still is, and took
/// inception_block's 64x32x32 global mean 8.4 µs).
const LANES: usize = 32;

widest_simd! {
    /// The f64 sum of `row`, in [`LANES`] partial sums: it differs from the portable kernel's
    /// sequential f64 sum only in f64 rounding, far below the f32 result's precision. The same on
    /// every SIMD level (the lanes and their order are fixed; only the instructions differ).
    fn row_sum(row: &[f32]) -> f64 => row_sum_with
}

#[inline(always)]
fn row_sum_with(row: &[f32]) -> f64 {
    let mut lanes = [0f64; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += f64::from(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// `aten::mean.out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None,
/// Tensor(a!) out)`
pub fn mean_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    sum_block(args, true).unwrap_or_else(|| portable::reduce::mean_out(ctx, args))
}

/// `aten::sum.IntList_out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None,
/// Tensor(a!) out)`
pub fn sum_intlist_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    sum_block(args, false).unwrap_or_else(|| portable::reduce::sum_intlist_out(ctx, args))
}

/// `mean(cat(tensors, dim), dims, keepdim, dtype)` in one call, arguments `tensors, dim, dims,
/// keepdim, dtype, out`: the mean must reduce trailing dimensions that all come after `dim`, so
/// that every output is the mean of one run of one input (global average pooling over an
/// Inception block's concatenated branches). Each input's rows are reduced where they lie into
/// the outputs the concatenation would have put them at; the concatenation is never written.
/// Bit-identical to `cat` then [`mean_out`] (each row reduced by the same code). float32
/// contiguous tensors only; anything else is an error (the engine fuses only what this covers).
///
/// Why: inception_block's tail copied its four branches into a 256 KB tensor (7.5 µs) that the
/// mean then read again (5.8 µs), both on one thread after the branches.
pub fn mean_of_cat(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let unsupported = |arg: usize, reason: &'static str| KernelError::ShapeMismatch { arg, reason };
    let list = args.tensor_list(0)?;
    let first = list.iter().next().ok_or(unsupported(0, "mean of an empty concatenation"))??;
    let rank = first.dim();
    let dim = crate::shape::wrap_dim(args.int(1)?, rank).ok_or(unsupported(1, "cat dim out of range"))?;
    let mut sizes = first.shape();
    let mut total = 0usize;
    // Each input's data and size along `dim`, for the tasks (up to MEAN_OF_CAT_PARTS inputs).
    let mut parts: [(&[f32], usize); MEAN_OF_CAT_PARTS] = [(&[], 0); MEAN_OF_CAT_PARTS];
    let mut count = 0usize;
    for t in list.iter() {
        let t = t?;
        if t.dtype() != DType::Float || t.dim() != rank || !t.dim_order().is_contiguous() {
            return Err(unsupported(0, "fused mean of a concatenation needs contiguous float32 inputs of one rank"));
        }
        if t.sizes().iter().enumerate().any(|(d, &n)| d != dim && n != sizes[d]) {
            return Err(unsupported(0, "cat inputs differ outside the cat dimension"));
        }
        if let Some(slot) = parts.get_mut(count) {
            *slot = (t.data::<f32>()?, t.sizes()[dim]);
        }
        count += 1;
        total = total.checked_add(t.sizes()[dim]).ok_or(KernelError::Overflow { arg: 0, what: "cat size" })?;
    }
    sizes.as_mut_slice()[dim] = total;
    let mask = reduce_mask(args, 2, rank)?;
    let keepdim = args.bool(3)?;
    if args.opt_dtype(4)?.is_some_and(|d| d != DType::Float) {
        return Err(unsupported(4, "fused mean of a concatenation computes float32"));
    }
    let (outer, reduced, inner) = block_of(&sizes[..], mask).ok_or(unsupported(2, "mean dims not one run"))?;
    // The reduced run is trailing (inner 1) and starts after the cat dimension.
    let first_reduced = (0..rank).find(|&d| mask & (1 << d) != 0).unwrap_or(rank);
    if inner != 1 || first_reduced <= dim || reduced == 0 {
        return Err(unsupported(2, "fused mean must reduce trailing dims after the cat dim"));
    }
    if count > MEAN_OF_CAT_PARTS {
        return Err(unsupported(0, "fused mean of a concatenation of too many inputs"));
    }
    if args.tensor_dtype(5)? != DType::Float || !args.tensor_dim_order(5)?.is_contiguous() {
        return Err(unsupported(5, "fused mean of a concatenation writes contiguous float32"));
    }
    let mut out = args.tensor_mut(5)?;
    out.resize(&reduced_shape(&sizes[..], mask, keepdim))?;
    let short = |arg: usize| KernelError::ShapeMismatch { arg, reason: "tensor data shorter than its shape" };
    let dst = out.data_mut::<f32>()?.get_mut(..outer).ok_or(short(5))?;
    let scale = 1.0 / reduced as f64;
    // Output rows: [before `dim`] x [`dim`: `total`] x [between `dim` and the reduced run].
    let between: usize = sizes[dim + 1..first_reduced].iter().product();
    let parts = &parts[..count];
    // Output rows `first..first + run.len()`, one stretch within one input at a time.
    let fill = |first: usize, run: &mut [f32]| -> Result<(), KernelError> {
        let mut done = 0;
        while done < run.len() {
            let r = first + done;
            let (b, within) = (r / (total * between), r % (total * between));
            let (c, k) = (within / between, within % between);
            // The input holding concatenated index `c`, and where it starts.
            let (mut at, mut part) = (0, None);
            for &(src, size) in parts {
                if c < at + size {
                    part = Some((src, size));
                    break;
                }
                at += size;
            }
            let (src, size) = part.ok_or(short(0))?;
            // Rows left in this input's block of batch `b`, and their first source row.
            let n = ((b * total + at + size) * between - r).min(run.len() - done);
            let row0 = (b * size + (c - at)) * between + k;
            let from = src.get(row0 * reduced..(row0 + n) * reduced).ok_or(short(0))?;
            let to = &mut run[done..done + n];
            // As `sum_block` with one output per row.
            if reduced <= SHORT_ROW {
                short_rows(from, reduced, to, scale);
            } else {
                for (row, o) in from.chunks_exact(reduced).zip(to.iter_mut()) {
                    *o = (row_sum(row) * scale) as f32;
                }
            }
            done += n;
        }
        Ok(())
    };
    if ctx.threads() > 1 && outer.saturating_mul(reduced) >= MEAN_OF_CAT_PARALLEL {
        let tasks = 2 * ctx.threads();
        crate::spread::for_each_chunk_run(ctx, dst, 1, tasks, fill)
    } else {
        fill(0, dst)
    }
}

/// Inputs [`mean_of_cat`] takes (the engine fuses no more).
pub const MEAN_OF_CAT_PARTS: usize = 16;

/// Elements read from which [`mean_of_cat`] splits its rows over the pool: inception_block's
/// 64 rows of 1024 (5.9 µs on one thread).
const MEAN_OF_CAT_PARALLEL: usize = 1 << 15;

/// Registers the fast reductions over the portable ones.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::{ALL_DTYPES, FLOAT_DTYPES};
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        (
            "aten::sum.IntList_out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            sum_intlist_out,
        ),
        (
            "aten::mean.out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            mean_out,
        ),
    ];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::{Call, assert_close};

    /// Means and sums over trailing dimensions (rows shorter than, equal to and longer than the
    /// partial sums) agree with the portable kernels.
    #[test]
    fn row_sums_match_portable() {
        let cases: &[(&[usize], &[i64])] = &[
            (&[1, 64, 32, 32], &[-1, -2]),
            (&[1, 1280, 7, 7], &[-1, -2]),
            (&[1, 13, 5, 5], &[-1, -2]),
            (&[3, 7], &[-1]),
            (&[2, 32], &[1]),
            (&[5, 33], &[-1]),
            (&[40, 1000], &[-1]),
            (&[1, 200_001], &[-1]),
        ];
        let kernels: [(KernelFn, KernelFn); 2] =
            [(mean_out, portable::reduce::mean_out), (sum_intlist_out, portable::reduce::sum_intlist_out)];
        for &(sizes, dims) in cases {
            let n: usize = sizes.iter().product();
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.61).sin() * 3.0 + 0.5).collect();
            let rows = n / sizes.last().copied().unwrap_or(1) / if dims.len() == 2 { sizes[2] } else { 1 };
            for (fast, slow) in kernels {
                let run = |kernel: KernelFn| {
                    let out_sizes = vec![1; sizes.len()];
                    let (r, mut done) = Call::new()
                        .tensor(sizes, &x)
                        .ints(dims)
                        .bool(true)
                        .none()
                        .out(DType::Float, &out_sizes, rows)
                        .run(kernel);
                    r.unwrap_or_else(|e| panic!("{sizes:?}: {e}"));
                    done.tensor::<f32>(4)
                };
                let (shape, got) = run(fast);
                let (want_shape, want) = run(slow);
                assert_eq!(shape, want_shape, "{sizes:?}");
                assert_close(&got, &want, 1e-6);
            }
        }
    }

    /// The mean of a concatenation, fused, gives the bits of `cat` then `mean` (the optimized
    /// kernels, themselves tested against the portable ones): rows shorter and longer than
    /// [`SHORT_ROW`], keepdim or not, a batch of two (inputs interleave in the output), and a
    /// mean over the last dimension only (several rows per channel), on one thread and over a
    /// pool. Misplaced rows, or a batch's rows taken from the wrong input, change the bits.
    #[test]
    fn mean_of_cat_is_cat_then_mean_bit_for_bit() {
        /// (batch, channels per input, trailing sizes, mean dims, keepdim)
        type Case<'a> = (usize, &'a [usize], &'a [usize], &'a [i64], bool);
        let cases: &[Case<'_>] = &[
            (1, &[3, 5, 1], &[7, 7], &[-1, -2], true),
            (1, &[16, 8, 24, 16], &[32, 32], &[-1, -2], true),
            (2, &[3, 2], &[5, 6], &[2, 3], false),
            (2, &[4, 1, 3], &[3, 50], &[-1], true),
            (2, &[5, 3], &[40, 200], &[-1], false),
            // Tasks' first rows fall inside a channel's rows (280 rows in four tasks).
            (1, &[5, 2], &[40, 200], &[-1], true),
        ];
        let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"));
        for &(batch, channels, trailing, dims, keepdim) in cases {
            let total: usize = channels.iter().sum();
            let inputs: Vec<(Vec<usize>, Vec<f32>)> = channels
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let sizes: Vec<usize> = [batch, c].iter().chain(trailing).copied().collect();
                    let n: usize = sizes.iter().product();
                    (sizes, (0..n).map(|k| ((k * 7 + i * 131) as f32 * 0.37).sin() * 2.0 + i as f32).collect())
                })
                .collect();
            let items: Vec<(&[usize], &[f32])> = inputs.iter().map(|(s, d)| (&s[..], &d[..])).collect();
            let cat_sizes: Vec<usize> = [batch, total].iter().chain(trailing).copied().collect();
            let cat_len: usize = cat_sizes.iter().product();
            let (r, mut cat) = Call::new()
                .tensor_list(&items)
                .int(1)
                .out(DType::Float, &cat_sizes, cat_len)
                .run(super::super::copy::cat_out);
            r.expect("cat");
            let (_, concatenated) = cat.tensor::<f32>(2);
            let rank = cat_sizes.len() as i64;
            let reduced = |d: usize| dims.iter().any(|&r| r.rem_euclid(rank) as usize == d);
            let out_sizes: Vec<usize> = (0..cat_sizes.len())
                .filter(|&d| keepdim || !reduced(d))
                .map(|d| if reduced(d) { 1 } else { cat_sizes[d] })
                .collect();
            let mean_of = |c: Call| c.ints(dims).bool(keepdim).none().out(DType::Float, &out_sizes, cat_len);
            let (r, mut want) = mean_of(Call::new().tensor(&cat_sizes, &concatenated)).run(mean_out);
            r.expect("mean");
            let (want_shape, want) = want.tensor::<f32>(4);
            // On one thread and split over a pool (the larger cases exceed MEAN_OF_CAT_PARALLEL).
            for threads in [1, 2] {
                let mut ctx = KernelContext::with_pool((threads > 1).then(|| pool.clone()));
                let mut got = mean_of(Call::new().tensor_list(&items).int(1)).prepare();
                got.run(mean_of_cat, &mut ctx).unwrap_or_else(|e| panic!("{channels:?} {trailing:?}: {e}"));
                let (shape, got) = got.tensor::<f32>(5);
                assert_eq!(shape, want_shape, "{channels:?} {trailing:?}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{channels:?} {trailing:?} threads {threads}");
            }
        }
        // A mean that reaches the cat dimension is refused, not computed wrongly.
        let x = [1f32; 8];
        let (r, _) = Call::new()
            .tensor_list(&[(&[1, 2, 2, 2], &x), (&[1, 2, 2, 2], &x)])
            .int(1)
            .ints(&[1, 2, 3])
            .bool(true)
            .none()
            .out(DType::Float, &[1, 1, 1, 1], 4)
            .run(mean_of_cat);
        assert!(matches!(r, Err(KernelError::ShapeMismatch { arg: 2, .. })), "{r:?}");
    }

    #[test]
    fn reduced_dimensions_must_be_one_run() {
        assert_eq!(block_of(&[2, 3, 4, 5], 0b1100), Some((6, 20, 1)));
        assert_eq!(block_of(&[2, 3, 4, 5], 0b0010), Some((2, 3, 20)));
        assert_eq!(block_of(&[2, 3, 4, 5], 0b1111), Some((1, 120, 1)));
        assert_eq!(block_of(&[2, 3, 4, 5], 0b1010), None);
        assert_eq!(block_of(&[2, 3], 0), None);
    }
}

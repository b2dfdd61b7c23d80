//! Fast layout copies (`permute_copy`, `cat`): the innermost dimension is copied as one run
//! (a `memcpy` when both sides are unit-stride) and the outer dimensions are walked once per run,
//! instead of once per element as the portable reference does.

use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::portable::elementwise::ALL_DTYPES;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, StridedIter, wrap_dim};
use etch_schema::MAX_RANK;

/// Copies elements of `elem` bytes: for every index of `shape`, `dst[o + Σ i·dst_strides]` =
/// `src[s + Σ i·src_strides]` (strides in elements). Fails instead of reading or writing out of
/// bounds.
#[allow(clippy::too_many_arguments)]
fn copy_runs(
    src: &[u8],
    src_offset: usize,
    src_strides: &[usize],
    dst: &mut [u8],
    dst_offset: usize,
    dst_strides: &[usize],
    shape: &[usize],
    elem: usize,
    arg: usize,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" };
    if shape.contains(&0) {
        return Ok(());
    }
    // Fewer, longer dimensions: size-1 dimensions dropped, and a dimension merged into the next
    // where both sides step over it as over one longer one (attention's permutes of
    // `[1, 4, 16, 16]`: the outer walk was a third of their time).
    let (mut dims, mut sst, mut dst_st) = ([0usize; MAX_RANK], [0usize; MAX_RANK], [0usize; MAX_RANK]);
    let mut rank = 0;
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let merges = rank > 0
            && sst[rank - 1] == shape[d].wrapping_mul(src_strides[d])
            && dst_st[rank - 1] == shape[d].wrapping_mul(dst_strides[d]);
        if merges {
            dims[rank - 1] = dims[rank - 1].checked_mul(shape[d]).ok_or(bad)?;
            sst[rank - 1] = src_strides[d];
            dst_st[rank - 1] = dst_strides[d];
        } else {
            if rank == MAX_RANK {
                return Err(bad);
            }
            (dims[rank], sst[rank], dst_st[rank]) = (shape[d], src_strides[d], dst_strides[d]);
            rank += 1;
        }
    }
    let (shape, src_strides, dst_strides) = (&dims[..rank], &sst[..rank], &dst_st[..rank]);
    if rank == 0 {
        let (s, d) = (src_offset * elem, dst_offset * elem);
        dst.get_mut(d..d + elem).ok_or(bad)?.copy_from_slice(src.get(s..s + elem).ok_or(bad)?);
        return Ok(());
    }
    let inner = shape[rank - 1];
    let (ss, ds) = (src_strides[rank - 1], dst_strides[rank - 1]);
    if rank >= 2 && ds == 1 && ss != 1 && src_strides[rank - 2] == 1 {
        return transpose_tiles(src, src_offset, src_strides, dst, dst_offset, dst_strides, shape, elem, arg);
    }
    let mut copy_run = |d0: usize, s0: usize| -> Result<(), KernelError> {
        let (d0, s0) = (dst_offset + d0, src_offset + s0);
        if ss == 1 && ds == 1 {
            let (a, b) = (s0 * elem, d0 * elem);
            let n = inner * elem;
            let (to, from) = (dst.get_mut(b..b + n).ok_or(bad)?, src.get(a..a + n).ok_or(bad)?);
            if n <= SHORT_RUN {
                // Short runs in a loop the compiler unrolls: a `memmove` call per 64-byte run
                // cost as much as the copy.
                for (t, f) in to.iter_mut().zip(from) {
                    *t = *f;
                }
            } else {
                to.copy_from_slice(from);
            }
            return Ok(());
        }
        // Check the run's last element once; then every element in between is in bounds.
        let last_s = (s0 + (inner - 1) * ss + 1) * elem;
        let last_d = (d0 + (inner - 1) * ds + 1) * elem;
        if last_s > src.len() || last_d > dst.len() {
            return Err(bad);
        }
        macro_rules! run {
            ($t:ty) => {{
                let s: &[$t] = bytemuck::try_cast_slice(src).map_err(|_| bad)?;
                let d: &mut [$t] = bytemuck::try_cast_slice_mut(dst).map_err(|_| bad)?;
                for i in 0..inner {
                    d[d0 + i * ds] = s[s0 + i * ss];
                }
            }};
        }
        match elem {
            1 => run!(u8),
            2 => run!(u16),
            4 => run!(u32),
            8 => run!(u64),
            _ => return Err(KernelError::NotImplemented("copy of this element size")),
        }
        Ok(())
    };
    if rank <= 3 {
        // Up to two outer dimensions as plain loops (attention's head permutes, `[16, 4, 16]`
        // to `[4, 16, 16]`: the general walk's per-run cost was most of their 0.8 µs).
        let outer = |d: usize| {
            if rank >= d + 2 {
                (shape[rank - 2 - d], src_strides[rank - 2 - d], dst_strides[rank - 2 - d])
            } else {
                (1, 0, 0)
            }
        };
        let ((n1, s1, d1), (n2, s2, d2)) = (outer(1), outer(0));
        for i in 0..n1 {
            for j in 0..n2 {
                copy_run(i * d1 + j * d2, i * s1 + j * s2)?;
            }
        }
        return Ok(());
    }
    let outer = Shape::new(&shape[..rank - 1]).ok_or(bad)?;
    let so = Shape::new(&src_strides[..rank - 1]).ok_or(bad)?;
    let dso = Shape::new(&dst_strides[..rank - 1]).ok_or(bad)?;
    for [d0, s0] in StridedIter::new(&outer, [dso, so]) {
        copy_run(d0, s0)?;
    }
    Ok(())
}

/// Runs of at most this many bytes are copied in a loop rather than by `memmove`.
const SHORT_RUN: usize = 128;

/// Side of the square tiles [`transpose_tiles`] copies: 16 rows of 16 elements, a cache line of
/// f32 each way.
const TILE: usize = 16;

/// [`copy_runs`] for copies whose last two dimensions are transposed (the output's rows are
/// contiguous, the input's columns are): tile by tile, so each cache line on either side is
/// fetched once, where a whole output row at a time read one element per input line and came
/// back to each line after it had left the cache. mobilenet_v2 transposes its classifier's
/// 1000×1280 weights at load (a folded `permute_copy` in front of `addmm`).
#[allow(clippy::too_many_arguments)]
fn transpose_tiles(
    src: &[u8],
    src_offset: usize,
    src_strides: &[usize],
    dst: &mut [u8],
    dst_offset: usize,
    dst_strides: &[usize],
    shape: &[usize],
    elem: usize,
    arg: usize,
) -> Result<(), KernelError> {
    let bad = KernelError::ShapeMismatch { arg, reason: "copy range outside the tensor" };
    let rank = shape.len();
    let (rows, cols) = (shape[rank - 2], shape[rank - 1]);
    // Source element (r, c) is at r + c * s_col; destination element (r, c) at r * d_row + c.
    let (s_col, d_row) = (src_strides[rank - 1], dst_strides[rank - 2]);
    let outer = Shape::new(&shape[..rank - 2]).ok_or(bad)?;
    let so = Shape::new(&src_strides[..rank - 2]).ok_or(bad)?;
    let dso = Shape::new(&dst_strides[..rank - 2]).ok_or(bad)?;
    for [d0, s0] in StridedIter::new(&outer, [dso, so]) {
        let (d0, s0) = (dst_offset + d0, src_offset + s0);
        // Strides are non-negative: the last element of each side is its largest offset.
        let last_s = (rows - 1).checked_add((cols - 1).checked_mul(s_col).ok_or(bad)?).ok_or(bad)?;
        let last_d = (rows - 1).checked_mul(d_row).and_then(|o| o.checked_add(cols - 1)).ok_or(bad)?;
        let fits = |base: usize, last: usize, len: usize| {
            base.checked_add(last)
                .and_then(|e| e.checked_add(1))
                .and_then(|e| e.checked_mul(elem))
                .is_some_and(|e| e <= len)
        };
        if !fits(s0, last_s, src.len()) || !fits(d0, last_d, dst.len()) {
            return Err(bad);
        }
        macro_rules! tiles {
            ($t:ty) => {{
                let s: &[$t] = bytemuck::try_cast_slice(src).map_err(|_| bad)?;
                let d: &mut [$t] = bytemuck::try_cast_slice_mut(dst).map_err(|_| bad)?;
                // A band of TILE input lines at a time, read front to back (a few sequential
                // streams); the output columns it fills (one short run per output row) stay in
                // L2 until the next band continues them.
                for c0 in (0..cols).step_by(TILE) {
                    for r0 in (0..rows).step_by(TILE) {
                        for c in c0..(c0 + TILE).min(cols) {
                            let s_at = s0 + c * s_col;
                            for r in r0..(r0 + TILE).min(rows) {
                                d[d0 + r * d_row + c] = s[s_at + r];
                            }
                        }
                    }
                }
            }};
        }
        match elem {
            1 => tiles!(u8),
            2 => tiles!(u16),
            4 => tiles!(u32),
            8 => tiles!(u64),
            _ => return Err(KernelError::NotImplemented("copy of this element size")),
        }
    }
    Ok(())
}

/// `aten::permute_copy.out` — same-dtype copies by runs; anything else to the portable kernel.
pub fn permute_copy_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dims = args.int_list(1)?;
    if args.tensor_dtype(2)? != x.dtype() || dims.len() != x.dim() || x.dim() == 0 {
        return portable::shape_ops::permute_copy_out(ctx, args);
    }
    let (xs, xstr) = (x.sizes(), x.strides());
    let (mut sizes, mut strides, mut seen) = (Shape::scalar(), Shape::scalar(), 0u32);
    for d in dims.iter() {
        let Some(d) = wrap_dim(d?, x.dim()) else { return portable::shape_ops::permute_copy_out(ctx, args) };
        if seen & (1 << d) != 0 {
            return portable::shape_ops::permute_copy_out(ctx, args);
        }
        seen |= 1 << d;
        sizes.push(xs[d]);
        strides.push(xstr[d]);
    }
    let mut out = args.tensor_mut(2)?;
    out.resize(&sizes)?;
    let ostr = out.strides();
    let elem = x.dtype().element_size().unwrap_or(1);
    copy_runs(x.bytes()?, 0, &strides, out.bytes_mut()?, 0, &ostr, &sizes, elem, 2)
}

/// `aten::unsqueeze_copy.out` — the input's bytes copied by runs into its sizes with a 1 inserted
/// at `dim` (one run for a contiguous input; element by element, transformer_layer's `[16, 1, 3,
/// 64]` input took 25 µs); anything else to the portable kernel.
pub fn unsqueeze_copy_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let dim = wrap_dim(args.int(1)?, x.dim() + 1);
    let Some(dim) = dim.filter(|_| args.tensor_dtype(2).is_ok_and(|d| d == x.dtype())) else {
        return portable::shape_ops::unsqueeze_copy_out(ctx, args);
    };
    let (xs, xstr) = (x.sizes(), x.strides());
    let (mut sizes, mut strides) = (Shape::scalar(), Shape::scalar());
    for d in 0..=x.dim() {
        // The new dimension has size 1: its stride is never stepped.
        let (size, stride) =
            if d == dim { (1, 0) } else { (xs[d - usize::from(d > dim)], xstr[d - usize::from(d > dim)]) };
        if !(sizes.push(size) && strides.push(stride)) {
            return portable::shape_ops::unsqueeze_copy_out(ctx, args);
        }
    }
    let mut out = args.tensor_mut(2)?;
    out.resize(&sizes)?;
    let ostr = out.strides();
    let elem = x.dtype().element_size().unwrap_or(1);
    copy_runs(x.bytes()?, 0, &strides, out.bytes_mut()?, 0, &ostr, &sizes, elem, 2)
}

/// `aten::cat.out` — inputs of the output's dtype copied by runs; anything else to the portable
/// kernel.
pub fn cat_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let list = args.tensor_list(0)?;
    let out_dtype = args.tensor_dtype(2)?;
    let Some(first) = list.iter().next().transpose()? else { return portable::shape_ops::cat_out(ctx, args) };
    let rank = first.dim();
    let simple =
        rank > 0 && list.iter().all(|t| t.is_ok_and(|t| t.dtype() == out_dtype && t.dim() == rank && t.numel() > 0));
    let Some(dim) = wrap_dim(args.int(1)?, rank).filter(|_| simple) else {
        return portable::shape_ops::cat_out(ctx, args);
    };
    let mut sizes = first.shape();
    let mut total = 0usize;
    for t in list.iter() {
        let t = t?;
        if t.sizes().iter().enumerate().any(|(d, &s)| d != dim && s != sizes[d]) {
            return Err(KernelError::ShapeMismatch { arg: 0, reason: "cat inputs differ outside the cat dimension" });
        }
        total = total.checked_add(t.sizes()[dim]).ok_or(KernelError::Overflow { arg: 0, what: "cat size" })?;
    }
    sizes.as_mut_slice()[dim] = total;
    let mut out = args.tensor_mut(2)?;
    out.resize(&sizes)?;
    let elem = out_dtype.element_size().unwrap_or(1);
    if out.dim_order().is_contiguous() && list.iter().all(|t| t.is_ok_and(|t| t.dim_order().is_contiguous())) {
        // Contiguous: each input is `outer` blocks, each one run of bytes in the output (one
        // block per input at batch 1). Element-wise run copies cost densenet's concatenations
        // of thirty small maps 8 µs each.
        let short = |arg: usize| KernelError::ShapeMismatch { arg, reason: "tensor data shorter than its shape" };
        let overflow = KernelError::Overflow { arg: 2, what: "cat size" };
        let outer: usize = sizes[..dim].iter().product();
        let inner = sizes[dim + 1..].iter().try_fold(elem, |a, &b| a.checked_mul(b)).ok_or(overflow)?;
        let out_row = total.checked_mul(inner).ok_or(overflow)?;
        let dst = out.bytes_mut()?;
        let mut at = 0usize;
        for t in list.iter() {
            let t = t?;
            let block = t.sizes()[dim] * inner;
            let src = t.bytes()?;
            for o in 0..outer {
                let from = src.get(o * block..(o + 1) * block).ok_or(short(0))?;
                let to = o * out_row + at;
                dst.get_mut(to..to + block).ok_or(short(2))?.copy_from_slice(from);
            }
            at += block;
        }
        return Ok(());
    }
    let ostr = out.strides();
    let mut at = 0usize;
    for t in list.iter() {
        let t = t?;
        copy_runs(t.bytes()?, 0, t.strides(), out.bytes_mut()?, at * ostr[dim], &ostr, t.sizes(), elem, 2)?;
        at += t.sizes()[dim];
    }
    Ok(())
}

/// Registers the optimized copies.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        (
            "aten::permute_copy.out(Tensor self, int[] dims, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            permute_copy_out,
        ),
        ("aten::cat.out(Tensor[] tensors, int dim=0, *, Tensor(a!) out) -> Tensor(a!)", ALL_DTYPES, cat_out),
        (
            "aten::unsqueeze_copy.out(Tensor self, int dim, *, Tensor(a!) out) -> Tensor(a!)",
            ALL_DTYPES,
            unsqueeze_copy_out,
        ),
    ];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::Call;

    fn permuted<T: crate::dtype::Element + Copy>(
        kernel: KernelFn,
        dtype: DType,
        sizes: &[usize],
        order: Option<&[u8]>,
        dims: &[i64],
        data: &[T],
    ) -> (Vec<usize>, Vec<T>) {
        let (r, mut done) = Call::new()
            .tensor_ordered(sizes, order, data)
            .ints(dims)
            .out(dtype, &vec![1; sizes.len()], data.len() * 8)
            .run(kernel);
        r.unwrap_or_else(|e| panic!("{sizes:?} {dims:?}: {e}"));
        done.tensor::<T>(2)
    }

    /// Unsqueeze by runs against the portable kernel: every position of the new dimension
    /// (negative ones too), contiguous and channels-last inputs, f32 and u8.
    #[test]
    fn unsqueezes_match_portable() {
        for (sizes, order) in
            [(&[16usize, 1, 3, 64][..], None), (&[2, 5, 7, 3][..], Some(&[0u8, 2, 3, 1][..])), (&[7][..], None)]
        {
            let n: usize = sizes.iter().product();
            let floats: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
            let bytes: Vec<u8> = (0..n).map(|i| (i * 11) as u8).collect();
            let rank = sizes.len() as i64;
            for dim in -(rank + 1)..=rank {
                let run = |kernel: KernelFn, float: bool| {
                    let call = Call::new();
                    let call = if float {
                        call.tensor_ordered(sizes, order, &floats)
                    } else {
                        call.tensor_ordered(sizes, order, &bytes)
                    };
                    let dtype = if float { DType::Float } else { DType::Byte };
                    let (r, mut done) = call.int(dim).out(dtype, &vec![1; sizes.len() + 1], n * 8).run(kernel);
                    r.unwrap_or_else(|e| panic!("{sizes:?} dim {dim}: {e}"));
                    if float {
                        let (s, d) = done.tensor::<f32>(2);
                        (s, d.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                    } else {
                        let (s, d) = done.tensor::<u8>(2);
                        (s, d.iter().map(|&v| u32::from(v)).collect())
                    }
                };
                for float in [true, false] {
                    let want = run(portable::shape_ops::unsqueeze_copy_out, float);
                    assert_eq!(run(unsqueeze_copy_out, float), want, "{sizes:?} {order:?} dim {dim}");
                }
            }
        }
    }

    /// The tiled transpose (last two dimensions swapped, odd sizes, batches, strided inputs)
    /// against the portable kernel, which copies element by element.
    #[test]
    fn transposes_match_portable() {
        // (input sizes, input dim order, permutation)
        type Case<'a> = (&'a [usize], Option<&'a [u8]>, &'a [i64]);
        let cases: &[Case<'_>] = &[
            (&[1000, 1280], None, &[1, 0]),
            (&[17, 33], None, &[1, 0]),
            (&[1, 1], None, &[1, 0]),
            (&[3, 16, 5], None, &[0, 2, 1]),
            (&[2, 3, 19, 21], None, &[1, 0, 3, 2]),
            (&[2, 31, 4, 4], Some(&[0, 2, 3, 1]), &[0, 2, 3, 1]),
            (&[2, 5, 7, 9], Some(&[0, 2, 3, 1]), &[0, 1, 3, 2]),
            // Runs whose outer dimensions merge or have size 1 (attention's permutes), short
            // runs and runs above the short-run length, identity permutations.
            (&[16, 4, 16], None, &[1, 0, 2]),
            (&[1, 4, 16, 16], None, &[2, 0, 1, 3]),
            (&[1, 16, 1, 3, 64], None, &[2, 3, 0, 1, 4]),
            (&[2, 3, 4, 5, 6], None, &[0, 1, 3, 2, 4]),
            (&[3, 2, 40], None, &[1, 0, 2]),
            (&[2, 3, 4], None, &[0, 1, 2]),
            (&[1, 1, 1], None, &[2, 1, 0]),
            // Two outer dimensions walked as plain loops, with strided and unit-stride runs.
            (&[5, 6, 7], None, &[2, 0, 1]),
            (&[6, 5, 3], None, &[1, 2, 0]),
            (&[4, 3, 9], Some(&[2, 0, 1]), &[1, 0, 2]),
        ];
        for &(sizes, order, dims) in cases {
            let n: usize = sizes.iter().product();
            let floats: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let want = permuted(portable::shape_ops::permute_copy_out, DType::Float, sizes, order, dims, &floats);
            let got = permuted(permute_copy_out, DType::Float, sizes, order, dims, &floats);
            assert_eq!(got, want, "f32 {sizes:?} order {order:?} dims {dims:?}");
            let bytes: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let want = permuted(portable::shape_ops::permute_copy_out, DType::Byte, sizes, order, dims, &bytes);
            let got = permuted(permute_copy_out, DType::Byte, sizes, order, dims, &bytes);
            assert_eq!(got, want, "u8 {sizes:?} order {order:?} dims {dims:?}");
        }
    }
}

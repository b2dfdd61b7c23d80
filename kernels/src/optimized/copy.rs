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
    let rank = shape.len();
    if shape.contains(&0) {
        return Ok(());
    }
    if rank == 0 {
        let (s, d) = (src_offset * elem, dst_offset * elem);
        dst.get_mut(d..d + elem).ok_or(bad)?.copy_from_slice(src.get(s..s + elem).ok_or(bad)?);
        return Ok(());
    }
    let inner = shape[rank - 1];
    let (ss, ds) = (src_strides[rank - 1], dst_strides[rank - 1]);
    let outer = Shape::new(&shape[..rank - 1]).ok_or(bad)?;
    let so = Shape::new(&src_strides[..rank - 1]).ok_or(bad)?;
    let dso = Shape::new(&dst_strides[..rank - 1]).ok_or(bad)?;
    for [d0, s0] in StridedIter::new(&outer, [dso, so]) {
        let (d0, s0) = (dst_offset + d0, src_offset + s0);
        if ss == 1 && ds == 1 {
            let (a, b) = (s0 * elem, d0 * elem);
            let n = inner * elem;
            dst.get_mut(b..b + n).ok_or(bad)?.copy_from_slice(src.get(a..a + n).ok_or(bad)?);
            continue;
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
    let ostr = out.strides();
    let elem = out_dtype.element_size().unwrap_or(1);
    let mut at = 0usize;
    for t in list.iter() {
        let t = t?;
        copy_runs(t.bytes()?, 0, &t.strides(), out.bytes_mut()?, at * ostr[dim], &ostr, t.sizes(), elem, 2)?;
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
    ];
    super::replace_table(r, table);
}

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
        for (block, o) in src.chunks_exact(reduced * inner).zip(dst.chunks_exact_mut(inner)) {
            if inner == 1 {
                // Eight f64 partial sums (one vector register; a single running sum is a chain of
                // dependent adds, 4 cycles each): the result differs from the portable kernel's
                // sequential f64 sum only in f64 rounding, far below the f32 result's precision.
                let mut lanes = [0f64; 8];
                let mut chunks = block.chunks_exact(8);
                for chunk in &mut chunks {
                    for (l, &v) in lanes.iter_mut().zip(chunk) {
                        *l += f64::from(v);
                    }
                }
                let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
                let s = lanes.iter().sum::<f64>() + tail;
                o[0] = (s * scale) as f32;
                continue;
            }
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
    use super::block_of;

    #[test]
    fn reduced_dimensions_must_be_one_run() {
        assert_eq!(block_of(&[2, 3, 4, 5], 0b1100), Some((6, 20, 1)));
        assert_eq!(block_of(&[2, 3, 4, 5], 0b0010), Some((2, 3, 20)));
        assert_eq!(block_of(&[2, 3, 4, 5], 0b1111), Some((1, 120, 1)));
        assert_eq!(block_of(&[2, 3, 4, 5], 0b1010), None);
        assert_eq!(block_of(&[2, 3], 0), None);
    }
}

//! Softmax of contiguous float32 rows along the last dimension: the portable kernel's arithmetic
//! (f64; the maximum, the sum of exponentials in element order, then each exponential over the
//! sum, so results are bit-identical), on slices, with each exponential computed once (rows up to
//! [`ROW_ON_STACK`] long keep them on the stack). The portable kernel computes every exponential
//! twice through strided iterators: transformer_layer's 64 rows of 16 took 19 µs. Everything
//! else goes to the portable kernel, which also reports the errors.

use super::contiguous;
use crate::args::KernelArgs;
use crate::dtype::DType;
use crate::error::KernelError;
use crate::portable;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};

/// Longest row whose exponentials are kept (on the stack) between the sum and the division.
const ROW_ON_STACK: usize = 256;

/// `aten::_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out)`
pub fn softmax_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    match fast_softmax(args) {
        Some(result) => result,
        None => portable::softmax::softmax_out(ctx, args),
    }
}

/// The fast case, or `None` (nothing borrowed mutably yet) for the portable kernel.
fn fast_softmax(args: &KernelArgs<'_>) -> Option<Result<(), KernelError>> {
    if !contiguous(args, 0, DType::Float) || !contiguous(args, 3, DType::Float) || args.bool(2).ok()? {
        return None;
    }
    let x = args.tensor(0).ok()?;
    let dim = crate::shape::wrap_dim(args.int(1).ok()?, x.dim())?;
    let row = *x.sizes().last()?;
    if dim + 1 != x.dim() || row == 0 || row > ROW_ON_STACK {
        return None;
    }
    Some((|| {
        let mut out = args.tensor_mut(3)?;
        out.resize(x.sizes())?;
        let src = x.data::<f32>()?;
        let dst = out.data_mut::<f32>()?;
        let short = KernelError::ShapeMismatch { arg: 3, reason: "output too small" };
        let dst = dst.get_mut(..src.len()).ok_or(short)?;
        let mut exps = [0f64; ROW_ON_STACK];
        for (xs, os) in src.chunks_exact(row).zip(dst.chunks_exact_mut(row)) {
            let max = xs.iter().map(|&v| f64::from(v)).fold(f64::NEG_INFINITY, f64::max);
            let exps = &mut exps[..row];
            for (e, &v) in exps.iter_mut().zip(xs) {
                *e = (f64::from(v) - max).exp();
            }
            let sum: f64 = exps.iter().sum();
            for (o, &e) in os.iter_mut().zip(exps.iter()) {
                *o = (e / sum) as f32;
            }
        }
        Ok(())
    })())
}

/// Registers the optimized softmax.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [DType], KernelFn)] = &[(
        "aten::_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out) -> Tensor(a!)",
        crate::portable::elementwise::FLOAT_DTYPES,
        softmax_out,
    )];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::Call;

    /// Bit-identical to the portable kernel on rows of 1 to 256 (with -inf entries, as masked
    /// attention has), any leading shape, negative dims; other dims and longer rows go to the
    /// portable kernel.
    #[test]
    fn softmax_matches_portable_bit_for_bit() {
        // (sizes, dim, scale of the values: 300 makes exp overflow without the max subtracted)
        let cases: &[(&[usize], i64, f32)] = &[
            (&[1, 4, 16, 16], -1, 1.0),
            (&[3, 7], 1, 1.0),
            (&[5], 0, 1.0),
            (&[2, 256], -1, 1.0),
            (&[2, 300], 1, 1.0),
            (&[4, 6, 5], 1, 1.0),
            (&[3, 16], -1, 300.0),
        ];
        for &(sizes, dim, scale) in cases {
            let n: usize = sizes.iter().product();
            let mut data: Vec<f32> = (0..n).map(|i| (((i * 7919) % 1009) as f32 / 97.0 - 5.0) * scale).collect();
            for i in (0..n).step_by(5) {
                data[i] = f32::NEG_INFINITY;
            }
            let run = |kernel: KernelFn| {
                let (r, mut done) =
                    Call::new().tensor(sizes, &data).int(dim).bool(false).out(DType::Float, sizes, n).run(kernel);
                r.unwrap_or_else(|e| panic!("{sizes:?} dim {dim}: {e}"));
                let (s, d) = done.tensor::<f32>(3);
                (s, d.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            assert_eq!(run(softmax_out), run(portable::softmax::softmax_out), "{sizes:?} dim {dim}");
        }
    }
}

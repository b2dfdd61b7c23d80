//! Pairwise distances: `_cdist_forward` (between two sets of row vectors, batched with
//! broadcasting) and `_pdist_forward` (between the rows of one matrix).
//!
//! Distances are accumulated in f64 directly from the differences. PyTorch computes Euclidean
//! `cdist` of large inputs through a matrix product (`|a|^2 + |b|^2 - 2ab`), which loses
//! precision for nearby points; the direct sum is the more accurate of the two.

use crate::args::KernelArgs;
use crate::dtype::Element;
use crate::error::KernelError;
use crate::portable::elementwise::{FLOAT_DTYPES, Src, broadcast_strides_ordered};
use crate::portable::spatial::short;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, StridedIter, broadcast_shapes};
use crate::tensor::{Tensor, TensorMut};

/// A row vector inside a tensor: element `k` is at `start + k * step`.
#[derive(Clone, Copy)]
struct Row<'a> {
    src: Src<'a>,
    start: usize,
    step: usize,
}

impl Row<'_> {
    fn get(&self, k: usize) -> f64 {
        self.src.get::<f64>(self.start + k * self.step)
    }
}

/// The p-norm of `a - b` over `len` elements (p = 0 counts non-zero differences, p = inf takes
/// the largest).
fn distance(a: Row<'_>, b: Row<'_>, len: usize, p: f64) -> f64 {
    let diffs = (0..len).map(|k| (a.get(k) - b.get(k)).abs());
    if p == 0.0 {
        diffs.filter(|&d| d != 0.0).count() as f64
    } else if p == 1.0 {
        diffs.sum()
    } else if p == 2.0 {
        diffs.map(|d| d * d).sum::<f64>().sqrt()
    } else if p == f64::INFINITY {
        diffs.fold(0.0, f64::max)
    } else {
        diffs.map(|d| d.powf(p)).sum::<f64>().powf(1.0 / p)
    }
}

/// Checks a floating input and an output of its dtype, and a non-negative `p`.
fn check(x: &Tensor<'_>, out: &TensorMut<'_>, p: f64, p_arg: usize) -> Result<(), KernelError> {
    if !x.dtype().is_floating_point() {
        return Err(KernelError::UnsupportedDtype { arg: x.arg(), dtype: x.dtype() });
    }
    if out.dtype() != x.dtype() {
        return Err(KernelError::DtypeMismatch { arg: out.arg(), expected: x.dtype(), found: out.dtype() });
    }
    if p.is_nan() || p < 0.0 {
        return Err(KernelError::InvalidArgument { arg: p_arg, reason: "p must be non-negative" });
    }
    Ok(())
}

/// Writes `v` at offset `at` of a floating output.
fn store(o: &mut TensorMut<'_>, at: usize, v: f64) -> Result<(), KernelError> {
    let (arg, dtype) = (o.arg(), o.dtype());
    crate::dispatch_dtype!(dtype, T => {
        *o.data_mut::<T>()?.get_mut(at).ok_or(short(arg))? = T::from_f64(v);
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype }))
}

/// `aten::_cdist_forward.out(Tensor x1, Tensor x2, float p, int? compute_mode, *,
/// Tensor(a!) out) -> Tensor(a!)`
///
/// `x1` `[*, P, M]` and `x2` `[*, R, M]` (batch dims broadcast) give `out` `[*, P, R]`.
pub fn cdist_forward_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (x1, x2) = (args.tensor(0)?, args.tensor(1)?);
    let p = args.double(2)?;
    if let Some(mode) = args.opt_int(3)?
        && !(0..=2).contains(&mode)
    {
        return Err(KernelError::ValueOutOfRange { arg: 3, value: mode, min: 0, max: 2 });
    }
    let mut out = args.tensor_mut(4)?;
    check(&x1, &out, p, 2)?;
    if x2.dtype() != x1.dtype() {
        return Err(KernelError::DtypeMismatch { arg: 1, expected: x1.dtype(), found: x2.dtype() });
    }
    let (r1, r2) = (x1.dim(), x2.dim());
    if r1 < 2 || r2 < 2 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "cdist needs inputs of rank 2 or more" });
    }
    let (s1, s2) = (x1.sizes(), x2.sizes());
    let m = s1[r1 - 1];
    if s2[r2 - 1] != m {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "x1 and x2 must have the same number of columns" });
    }
    let (rows1, rows2) = (s1[r1 - 2], s2[r2 - 2]);
    let batch = broadcast_shapes(&s1[..r1 - 2], &s2[..r2 - 2])
        .ok_or(KernelError::ShapeMismatch { arg: 1, reason: "batch dims do not broadcast" })?;
    let mut shape = batch;
    if !(shape.push(rows1) && shape.push(rows2)) {
        return Err(KernelError::InvalidArgument { arg: 0, reason: "too many dimensions" });
    }
    out.resize(&shape)?;
    let (t1, t2, to) = (x1.strides(), x2.strides(), out.strides());
    let part = |s: &[usize]| Shape::new(s).unwrap_or_default();
    let b1 = broadcast_strides_ordered(&s1[..r1 - 2], &t1[..r1 - 2], &batch);
    let b2 = broadcast_strides_ordered(&s2[..r2 - 2], &t2[..r2 - 2], &batch);
    let bo = part(&to[..batch.rank()]);
    let (a, b) = (Src::of(&x1)?, Src::of(&x2)?);
    let k = batch.rank();
    for [o0, a0, b0] in StridedIter::new(&batch, [bo, b1, b2]) {
        for i in 0..rows1 {
            for j in 0..rows2 {
                let row1 = Row { src: a, start: a0 + i * t1[r1 - 2], step: t1[r1 - 1] };
                let row2 = Row { src: b, start: b0 + j * t2[r2 - 2], step: t2[r2 - 1] };
                let d = distance(row1, row2, m, p);
                store(&mut out, o0 + i * to[k] + j * to[k + 1], d)?;
            }
        }
    }
    Ok(())
}

/// `aten::_pdist_forward.out(Tensor self, float p=2., *, Tensor(a!) out) -> Tensor(a!)`
///
/// `self` `[N, M]`; `out` holds the `N * (N - 1) / 2` distances between rows `i < j`, in
/// row-major order of the pairs.
pub fn pdist_forward_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let p = args.double(1)?;
    let mut out = args.tensor_mut(2)?;
    check(&x, &out, p, 1)?;
    if x.dim() != 2 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "pdist only supports 2-D tensors" });
    }
    let (n, m) = (x.sizes()[0], x.sizes()[1]);
    let pairs = n.checked_mul(n.saturating_sub(1)).ok_or(KernelError::Overflow { arg: 0, what: "pair count" })? / 2;
    out.resize(&[pairs])?;
    let (xs, os) = (x.strides(), out.strides());
    let a = Src::of(&x)?;
    let mut k = 0;
    for i in 0..n {
        for j in i + 1..n {
            let d = distance(
                Row { src: a, start: i * xs[0], step: xs[1] },
                Row { src: a, start: j * xs[0], step: xs[1] },
                m,
                p,
            );
            store(&mut out, k * os[0], d)?;
            k += 1;
        }
    }
    Ok(())
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        (
            "aten::_cdist_forward.out(Tensor x1, Tensor x2, float p, int? compute_mode, *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            cdist_forward_out,
        ),
        (
            "aten::_pdist_forward.out(Tensor self, float p=2., *, Tensor(a!) out) -> Tensor(a!)",
            FLOAT_DTYPES,
            pdist_forward_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::portable::test_support::Call;

    fn cdist(a: &[usize], b: &[usize], p: f64, mode: Option<i64>) -> Result<(), KernelError> {
        let c = Call::new().ramp(DType::Float, a, 0.5).ramp(DType::Float, b, 0.25).double(p);
        let c = match mode {
            Some(m) => c.int(m),
            None => c.none(),
        };
        c.out(DType::Float, &vec![1; a.len().max(b.len())], 256).run(cdist_forward_out).0
    }

    #[test]
    fn pdist_pairs_in_row_major_order() {
        let (r, mut done) = Call::new()
            .tensor(&[3, 2], &[0.0f32, 0.0, 3.0, 4.0, 6.0, 8.0])
            .double(2.0)
            .out(DType::Float, &[1], 3)
            .run(pdist_forward_out);
        r.unwrap();
        assert_eq!(done.tensor::<f32>(2).1, [5.0, 10.0, 5.0]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(cdist(&[2, 3, 4], &[1, 5, 4], 2.0, None).is_ok());
        assert!(cdist(&[3, 4], &[5, 3], 2.0, None).is_err(), "columns");
        assert!(cdist(&[2, 3, 4], &[3, 5, 4], 2.0, None).is_err(), "batch");
        assert!(cdist(&[4], &[5, 4], 2.0, None).is_err(), "rank");
        assert!(cdist(&[3, 4], &[5, 4], -1.0, None).is_err(), "p");
        assert!(cdist(&[3, 4], &[5, 4], f64::NAN, None).is_err(), "NaN p");
        assert!(cdist(&[3, 4], &[5, 4], 2.0, Some(3)).is_err(), "mode");
        assert!(cdist(&[3, 4], &[5, 4], f64::INFINITY, Some(2)).is_ok());
        let pdist = |x: &[usize], p: f64| {
            Call::new().ramp(DType::Float, x, 0.5).double(p).out(DType::Float, &[1], 64).run(pdist_forward_out).0
        };
        assert!(pdist(&[4, 3], 0.0).is_ok());
        assert!(pdist(&[4, 3, 1], 2.0).is_err(), "rank");
        assert!(pdist(&[4, 3], -2.0).is_err(), "p");
        assert!(pdist(&[0, 3], 2.0).is_ok(), "no rows");
    }
}

//! Boolean masks as attention builds them: `where` choosing between two float32 tensors of one
//! shape, under a condition of that shape or of one value per innermost row, `logical_not` of a
//! bool tensor, a float32 tensor compared with a scalar (`eq`, `ne`, `gt`, `ge`, `lt`, `le`), and
//! `any` over the innermost dimension of a bool tensor. Contiguous operands only; every element is
//! a copy, a negation, an IEEE comparison in float32 (the portable kernels' common type for a
//! float32 tensor and a scalar) or a test for non-zero, so results are identical to the portable
//! kernels, which take every other case (and report the errors). The portable kernels read each
//! element through strided iterators and a dtype conversion: transformer_layer's `where` over
//! 1,024 elements took 16 µs, its `logical_not` 9 µs, its `eq` 1.7 µs and `any` 2.0 µs.

use crate::args::KernelArgs;
use crate::dtype::{Bool, DType, Element};
use crate::error::KernelError;
use crate::portable;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::tensor::Tensor;
use crate::value::Scalar;

use super::contiguous;

fn short(arg: usize) -> KernelError {
    KernelError::ShapeMismatch { arg, reason: "tensor data shorter than its shape" }
}

/// `aten::where.self_out(Tensor condition, Tensor self, Tensor other, *, Tensor(a!) out)`
pub fn where_self_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    match fast_where(args) {
        Some(result) => result,
        None => portable::binary::where_self_out(ctx, args),
    }
}

/// `cond ? a : b` with both values 0-d (a causal mask built from `-inf` and `0`): the output
/// takes the condition's shape.
fn where_scalars(args: &KernelArgs<'_>, cond: &Tensor<'_>, a: &Tensor<'_>, b: &Tensor<'_>) -> Result<(), KernelError> {
    let (x, y) = (a.data::<f32>()?, b.data::<f32>()?);
    let (&x, &y) = (x.first().ok_or(short(1))?, y.first().ok_or(short(2))?);
    let mut out = args.tensor_mut(3)?;
    out.resize(cond.sizes())?;
    let n = out.numel();
    let cond = cond.data::<Bool>()?.get(..n).ok_or(short(0))?;
    let dst = out.data_mut::<f32>()?.get_mut(..n).ok_or(short(3))?;
    for (d, c) in dst.iter_mut().zip(cond) {
        *d = if c.0 != 0 { x } else { y };
    }
    Ok(())
}

/// The fast case, or `None` (nothing borrowed mutably yet) for the portable kernel.
fn fast_where(args: &KernelArgs<'_>) -> Option<Result<(), KernelError>> {
    let covered = contiguous(args, 0, DType::Bool)
        && contiguous(args, 1, DType::Float)
        && contiguous(args, 2, DType::Float)
        && contiguous(args, 3, DType::Float);
    if !covered {
        return None;
    }
    let (cond, a, b) = (args.tensor(0).ok()?, args.tensor(1).ok()?, args.tensor(2).ok()?);
    if a.dim() == 0 && b.dim() == 0 {
        return Some(where_scalars(args, &cond, &a, &b));
    }
    let sizes = a.sizes();
    let row = *sizes.last()?;
    if b.sizes() != sizes || row == 0 {
        return None;
    }
    // One condition per element, or one per innermost row (`[..., 1]`).
    let c = cond.sizes();
    let per_row = if c == sizes {
        false
    } else if c.len() == sizes.len() && c.last() == Some(&1) && c[..c.len() - 1] == sizes[..sizes.len() - 1] {
        true
    } else {
        return None;
    };
    Some((|| {
        let mut out = args.tensor_mut(3)?;
        out.resize(sizes)?;
        let n = out.numel();
        let (x, y, cond) = (a.data::<f32>()?, b.data::<f32>()?, cond.data::<Bool>()?);
        let (x, y) = (x.get(..n).ok_or(short(1))?, y.get(..n).ok_or(short(2))?);
        let dst = out.data_mut::<f32>()?.get_mut(..n).ok_or(short(3))?;
        if per_row {
            let cond = cond.get(..n / row).ok_or(short(0))?;
            let rows = dst.chunks_exact_mut(row).zip(x.chunks_exact(row)).zip(y.chunks_exact(row));
            for (((d, x), y), c) in rows.zip(cond) {
                d.copy_from_slice(if c.0 != 0 { x } else { y });
            }
        } else {
            let cond = cond.get(..n).ok_or(short(0))?;
            for (((d, &x), &y), c) in dst.iter_mut().zip(x).zip(y).zip(cond) {
                *d = if c.0 != 0 { x } else { y };
            }
        }
        Ok(())
    })())
}

/// `aten::logical_not.out(Tensor self, *, Tensor(a!) out)`
pub fn logical_not_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    if !(contiguous(args, 0, DType::Bool) && contiguous(args, 1, DType::Bool)) {
        return portable::unary::logical_not_out(ctx, args);
    }
    map_elements(args, 1, |s: Bool| Bool(u8::from(s.0 == 0)))
}

/// `out[i] = f(input[i])` for contiguous argument 0 and output `out_arg` of its shape.
fn map_elements<S: Element, D: Element>(
    args: &KernelArgs<'_>,
    out_arg: usize,
    f: impl Fn(S) -> D,
) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mut out = args.tensor_mut(out_arg)?;
    out.resize(x.sizes())?;
    let n = out.numel();
    let src = x.data::<S>()?.get(..n).ok_or(short(0))?;
    let dst = out.data_mut::<D>()?.get_mut(..n).ok_or(short(out_arg))?;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f(s);
    }
    Ok(())
}

/// A float32 tensor compared with a scalar into a bool tensor, or `None` for the portable
/// kernel: the scalar must be a float, or an integer that float32 holds exactly (the portable
/// kernel's conversion then cannot differ).
/// Generic in `op` (not a `fn` pointer): an indirect call per element was 1.4 ns of each.
fn compare_scalar(args: &KernelArgs<'_>, op: impl Fn(f32, f32) -> bool) -> Option<Result<(), KernelError>> {
    if !(contiguous(args, 0, DType::Float) && contiguous(args, 2, DType::Bool)) {
        return None;
    }
    let y = match args.scalar(1).ok()? {
        Scalar::Double(d) => d as f32,
        Scalar::Int(i) if i.unsigned_abs() <= 1 << f32::MANTISSA_DIGITS => i as f32,
        _ => return None,
    };
    Some(map_elements(args, 2, |v: f32| Bool(u8::from(op(v, y)))))
}

macro_rules! scalar_comparison {
    ($name:ident, $portable:path, $op:expr) => {
        #[doc = concat!("`", stringify!($name), "`: `(Tensor self, Scalar other, *, Tensor(a!) out)`")]
        pub fn $name(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
            match compare_scalar(args, $op) {
                Some(result) => result,
                None => $portable(ctx, args),
            }
        }
    };
}

scalar_comparison!(eq_scalar_out, portable::binary::eq_scalar_out, |x, y| x == y);
scalar_comparison!(ne_scalar_out, portable::binary::ne_scalar_out, |x, y| x != y);
scalar_comparison!(gt_scalar_out, portable::binary::gt_scalar_out, |x, y| x > y);
scalar_comparison!(ge_scalar_out, portable::binary::ge_scalar_out, |x, y| x >= y);
scalar_comparison!(lt_scalar_out, portable::binary::lt_scalar_out, |x, y| x < y);
scalar_comparison!(le_scalar_out, portable::binary::le_scalar_out, |x, y| x <= y);

/// `aten::any.out(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) out)`: the fast case is
/// a bool tensor reduced over its innermost dimension.
pub fn any_out(ctx: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    match fast_any(args) {
        Some(result) => result,
        None => portable::reduce::any_out(ctx, args),
    }
}

fn fast_any(args: &KernelArgs<'_>) -> Option<Result<(), KernelError>> {
    if !(contiguous(args, 0, DType::Bool) && contiguous(args, 3, DType::Bool)) {
        return None;
    }
    let x = args.tensor(0).ok()?;
    let sizes = x.sizes();
    let rank = i64::try_from(sizes.len()).ok()?;
    let dim = args.int(1).ok()?;
    if rank == 0 || (dim != -1 && dim != rank - 1) {
        return None;
    }
    let row = *sizes.last()?;
    if row == 0 {
        return None;
    }
    let keepdim = args.bool(2).ok()?;
    let mut shape = sizes[..sizes.len() - 1].to_vec();
    if keepdim {
        shape.push(1);
    }
    Some((|| {
        let mut out = args.tensor_mut(3)?;
        out.resize(&shape)?;
        let rows = out.numel();
        let n = rows.checked_mul(row).ok_or(short(0))?;
        let src = x.data::<Bool>()?.get(..n).ok_or(short(0))?;
        let dst = out.data_mut::<Bool>()?.get_mut(..rows).ok_or(short(3))?;
        for (d, r) in dst.iter_mut().zip(src.chunks_exact(row)) {
            *d = Bool(u8::from(r.iter().any(|b| b.0 != 0)));
        }
        Ok(())
    })())
}

/// Registers the optimized `where`, `logical_not`, scalar comparisons and `any`.
pub fn register(r: &mut KernelRegistry) {
    let all = portable::elementwise::ALL_DTYPES;
    let table: &[(&str, &'static [DType], KernelFn)] = &[
        (
            "aten::where.self_out(Tensor condition, Tensor self, Tensor other, *, Tensor(a!) out) -> Tensor(a!)",
            all,
            where_self_out,
        ),
        ("aten::logical_not.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)", all, logical_not_out),
        ("aten::eq.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", all, eq_scalar_out),
        ("aten::ne.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", all, ne_scalar_out),
        ("aten::gt.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", all, gt_scalar_out),
        ("aten::ge.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", all, ge_scalar_out),
        ("aten::lt.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", all, lt_scalar_out),
        ("aten::le.Scalar_out(Tensor self, Scalar other, *, Tensor(a!) out) -> Tensor(a!)", all, le_scalar_out),
        ("aten::any.out(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) out) -> Tensor(a!)", all, any_out),
    ];
    super::replace_table(r, table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portable::test_support::Call;

    fn bools(n: usize, seed: usize) -> Vec<Bool> {
        (0..n).map(|i| Bool(u8::from((i * 7 + seed).is_multiple_of(3)))).collect()
    }

    fn floats(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect()
    }

    /// Identical to the portable kernel: a condition per element and per innermost row, the
    /// condition with 0/1 and other nonzero bytes, and shapes the fast path leaves to the
    /// portable kernel (broadcast operands, a condition per column, empty rows).
    #[test]
    fn where_matches_portable() {
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[1, 4, 16, 1], &[1, 4, 16, 16], &[1, 4, 16, 16]),
            (&[2, 3, 5], &[2, 3, 5], &[2, 3, 5]),
            (&[7], &[7], &[7]),
            (&[3, 1], &[3, 4], &[3, 4]),
            (&[1, 4], &[3, 4], &[3, 4]),
            (&[3, 1], &[3, 4], &[1, 4]),
            (&[2, 0], &[2, 0], &[2, 0]),
            // Both values 0-d (a causal mask's -inf and 0).
            (&[16, 16], &[], &[]),
            (&[3], &[], &[]),
        ];
        for &(c, a, b) in cases {
            let (nc, na, nb) = (c.iter().product(), a.iter().product(), b.iter().product::<usize>());
            let mut cond = bools(nc, 1);
            if let Some(v) = cond.get_mut(2) {
                *v = Bool(7);
            }
            let (x, y) = (floats(na, 0.5), floats(nb, -2.0));
            let out = crate::shape::broadcast_shapes(a, b).and_then(|ab| crate::shape::broadcast_shapes(&ab, c));
            let out = out.expect("broadcast");
            let run = |kernel: KernelFn| {
                let (r, mut done) = Call::new()
                    .tensor(c, &cond)
                    .tensor(a, &x)
                    .tensor(b, &y)
                    .out(DType::Float, &vec![1; out.len()], out.iter().product::<usize>().max(1))
                    .run(kernel);
                r.unwrap_or_else(|e| panic!("{c:?} {a:?} {b:?}: {e}"));
                let (s, d) = done.tensor::<f32>(3);
                (s, d.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            assert_eq!(run(where_self_out), run(portable::binary::where_self_out), "{c:?} {a:?} {b:?}");
        }
    }

    /// Identical to the portable kernels: NaN, signed zeros and infinities on either side, float
    /// and integer scalars (a large integer and a bool scalar go to the portable kernel).
    #[test]
    fn scalar_comparisons_match_portable() {
        let mut x = floats(37, 0.25);
        x[..6].copy_from_slice(&[f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        let kernels: [(KernelFn, KernelFn); 6] = [
            (eq_scalar_out, portable::binary::eq_scalar_out),
            (ne_scalar_out, portable::binary::ne_scalar_out),
            (gt_scalar_out, portable::binary::gt_scalar_out),
            (ge_scalar_out, portable::binary::ge_scalar_out),
            (lt_scalar_out, portable::binary::lt_scalar_out),
            (le_scalar_out, portable::binary::le_scalar_out),
        ];
        let scalars: [fn(Call) -> Call; 7] = [
            |c| c.double(0.0),
            |c| c.double(-0.0),
            |c| c.double(f64::NAN),
            |c| c.double(x_at(7)),
            |c| c.int(1),
            |c| c.int((1 << 40) + 1),
            |c| c.bool(true),
        ];
        fn x_at(i: usize) -> f64 {
            f64::from(floats(37, 0.25)[i])
        }
        for (k, (fast, slow)) in kernels.iter().enumerate() {
            for (j, scalar) in scalars.iter().enumerate() {
                let run = |kernel: KernelFn| {
                    let (r, mut done) = scalar(Call::new().tensor(&[37], &x)).out(DType::Bool, &[1], 37).run(kernel);
                    r.unwrap_or_else(|e| panic!("comparison {k}, scalar {j}: {e}"));
                    let (s, d) = done.tensor::<Bool>(2);
                    (s, d.iter().map(|v| v.0).collect::<Vec<_>>())
                };
                assert_eq!(run(*fast), run(*slow), "comparison {k}, scalar {j}");
            }
        }
    }

    /// Identical to the portable kernel over the innermost dimension, with and without keepdim,
    /// bytes other than 0 and 1, and the cases it leaves to the portable kernel (another
    /// dimension, a scalar input, an empty row).
    #[test]
    fn any_matches_portable() {
        let cases: &[(&[usize], i64, bool)] = &[
            (&[1, 4, 16, 16], -1, true),
            (&[1, 4, 16, 16], 3, false),
            (&[5, 3], 1, true),
            (&[9], 0, false),
            (&[9], -1, true),
            (&[5, 3], 0, true),
            (&[4, 0], -1, false),
        ];
        for &(sizes, dim, keepdim) in cases {
            let n = sizes.iter().product();
            // Rows of all zeros (any = false) and a byte other than 1 (true).
            let row = sizes.last().copied().unwrap_or(1).max(1);
            let mut x: Vec<Bool> = (0..n).map(|i| Bool(u8::from((i / row) % 3 == 1 && i % 5 == 0))).collect();
            if let Some(v) = x.get_mut(1) {
                *v = Bool(9);
            }
            let run = |kernel: KernelFn| {
                let (r, mut done) = Call::new()
                    .tensor(sizes, &x)
                    .int(dim)
                    .bool(keepdim)
                    .out(DType::Bool, &vec![1; sizes.len() - usize::from(!keepdim)], n.max(8))
                    .run(kernel);
                r.unwrap_or_else(|e| panic!("{sizes:?} {dim} {keepdim}: {e}"));
                let (s, d) = done.tensor::<Bool>(3);
                (s, d.iter().map(|v| v.0).collect::<Vec<_>>())
            };
            let want = run(portable::reduce::any_out);
            assert!(want.1.contains(&0) || n == 0 || sizes.len() == 1, "{sizes:?}: no all-zero row");
            assert_eq!(run(any_out), want, "{sizes:?} {dim} {keepdim}");
        }
    }

    #[test]
    fn logical_not_matches_portable() {
        for sizes in [&[1, 4, 16, 16][..], &[5], &[3, 0]] {
            let n = sizes.iter().product();
            let mut x = bools(n, 2);
            if let Some(v) = x.get_mut(1) {
                *v = Bool(9);
            }
            let run = |kernel: KernelFn| {
                let (r, mut done) =
                    Call::new().tensor(sizes, &x).out(DType::Bool, &vec![1; sizes.len()], n.max(1)).run(kernel);
                r.unwrap_or_else(|e| panic!("{sizes:?}: {e}"));
                let (s, d) = done.tensor::<Bool>(1);
                (s, d.iter().map(|v| v.0).collect::<Vec<_>>())
            };
            assert_eq!(run(logical_not_out), run(portable::unary::logical_not_out), "{sizes:?}");
        }
    }
}

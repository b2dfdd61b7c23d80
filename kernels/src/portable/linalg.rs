//! Matrix products: `mm`, `bmm`, `addmm`. Reference loops; faster GEMM comes with the optimized
//! kernels.

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::{Operand, Src, broadcast_strides_ordered, result_type, scalar_fits};
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::tensor::{Tensor, TensorMut};
use crate::value::Scalar;

/// One (batched) matrix product `out[b] = beta * bias[b] + alpha * (a[b] @ m[b])`, all read through
/// strides so any dim order works. `a` is `[.., n, k]`, `m` is `[.., k, p]`, `out` is `[.., n, p]`.
struct Gemm<'a> {
    batch: usize,
    n: usize,
    k: usize,
    p: usize,
    a: (Src<'a>, [usize; 3]),
    m: (Src<'a>, [usize; 3]),
    bias: Option<(Src<'a>, [usize; 3])>,
    alpha: f64,
    beta: f64,
}

impl Gemm<'_> {
    fn run(&self, out: &mut TensorMut<'_>, ostr: [usize; 3]) -> Result<(), KernelError> {
        let arg = out.arg();
        let bad = KernelError::ShapeMismatch { arg, reason: "output too small" };
        if let (Src::F32(a), Src::F32(m), DType::Float) = (self.a.0, self.m.0, out.dtype())
            && self.m.1[2] == 1
            && ostr[2] == 1
        {
            return self.run_f32_rows(a, m, out.data_mut::<f32>()?, ostr).ok_or(bad);
        }
        crate::dispatch_dtype!(out.dtype(), D => {
            let o = out.data_mut::<D>()?;
            let ((a, asr), (m, msr)) = (self.a, self.m);
            for b in 0..self.batch {
                for i in 0..self.n {
                    for j in 0..self.p {
                        let (ai, mj) = (b * asr[0] + i * asr[1], b * msr[0] + j * msr[2]);
                        let bias_at = self.bias.as_ref().map(|(bs, bsr)| (bs, b * bsr[0] + i * bsr[1] + j * bsr[2]));
                        let v = if D::IS_FLOAT {
                            let acc: f64 = (0..self.k).map(|kk| a.get::<f64>(ai + kk * asr[2]) * m.get::<f64>(mj + kk * msr[1])).sum();
                            D::from_f64(self.alpha * acc + bias_at.map_or(0.0, |(bs, at)| self.beta * bs.get::<f64>(at)))
                        } else {
                            let acc = (0..self.k).fold(0i64, |acc, kk| {
                                acc.wrapping_add(a.get::<i64>(ai + kk * asr[2]).wrapping_mul(m.get::<i64>(mj + kk * msr[1])))
                            });
                            let bias = bias_at.map_or(0, |(bs, at)| (self.beta as i64).wrapping_mul(bs.get::<i64>(at)));
                            D::from_i64((self.alpha as i64).wrapping_mul(acc).wrapping_add(bias))
                        };
                        *o.get_mut(b * ostr[0] + i * ostr[1] + j * ostr[2]).ok_or(bad)? = v;
                    }
                }
            }
            Ok(())
        }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: out.dtype() }))
    }

    /// f32 with unit-stride rows in `m` and `out`: accumulate each output row as a sum of rows of
    /// `m` scaled by `a[i, k]` (i-k-j order, which the compiler vectorises). `None` when an index
    /// falls outside a slice (shapes were checked, so that would be a bug).
    fn run_f32_rows(&self, a: &[f32], m: &[f32], o: &mut [f32], ostr: [usize; 3]) -> Option<()> {
        let (asr, msr) = (self.a.1, self.m.1);
        let p = self.p;
        for b in 0..self.batch {
            for i in 0..self.n {
                let ob = b * ostr[0] + i * ostr[1];
                let row = o.get_mut(ob..ob + p)?;
                row.fill(0.0);
                for kk in 0..self.k {
                    let av = *a.get(b * asr[0] + i * asr[1] + kk * asr[2])?;
                    let mb = b * msr[0] + kk * msr[1];
                    for (r, &mv) in row.iter_mut().zip(m.get(mb..mb + p)?) {
                        *r += av * mv;
                    }
                }
                let (alpha, beta) = (self.alpha as f32, self.beta as f32);
                match &self.bias {
                    Some((bs, bsr)) => {
                        for (j, r) in row.iter_mut().enumerate() {
                            *r = alpha * *r + beta * bs.get::<f32>(b * bsr[0] + i * bsr[1] + j * bsr[2]);
                        }
                    }
                    None if alpha != 1.0 => row.iter_mut().for_each(|r| *r *= alpha),
                    None => {}
                }
            }
        }
        Some(())
    }
}

fn strides3(t: &Tensor<'_>) -> [usize; 3] {
    let s = t.strides();
    match t.dim() {
        3 => [s[0], s[1], s[2]],
        2 => [0, s[0], s[1]],
        _ => [0, 0, 0],
    }
}

fn check_same_dtype(ts: &[&Tensor<'_>], out: &TensorMut<'_>) -> Result<(), KernelError> {
    for t in ts {
        if t.dtype() != out.dtype() {
            return Err(KernelError::DtypeMismatch { arg: t.arg(), expected: out.dtype(), found: t.dtype() });
        }
    }
    if out.dtype() == DType::Bool {
        return Err(KernelError::UnsupportedDtype { arg: out.arg(), dtype: DType::Bool });
    }
    Ok(())
}

/// `aten::mm.out(Tensor self, Tensor mat2, *, Tensor(a!) out)`
pub fn mm_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, m) = (args.tensor(0)?, args.tensor(1)?);
    let mut out = args.tensor_mut(2)?;
    if a.dim() != 2 || m.dim() != 2 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "mm expects two 2-D tensors" });
    }
    if a.sizes()[1] != m.sizes()[0] {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "mat2 rows differ from self columns" });
    }
    check_same_dtype(&[&a, &m], &out)?;
    let (n, k, p) = (a.sizes()[0], a.sizes()[1], m.sizes()[1]);
    out.resize(&[n, p])?;
    let ostr = [0, out.strides()[0], out.strides()[1]];
    Gemm {
        batch: 1,
        n,
        k,
        p,
        a: (Src::of(&a)?, strides3(&a)),
        m: (Src::of(&m)?, strides3(&m)),
        bias: None,
        alpha: 1.0,
        beta: 0.0,
    }
    .run(&mut out, ostr)
}

/// `aten::bmm.out(Tensor self, Tensor mat2, *, Tensor(a!) out)`
pub fn bmm_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (a, m) = (args.tensor(0)?, args.tensor(1)?);
    let mut out = args.tensor_mut(2)?;
    if a.dim() != 3 || m.dim() != 3 {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "bmm expects two 3-D tensors" });
    }
    if a.sizes()[0] != m.sizes()[0] || a.sizes()[2] != m.sizes()[1] {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "batch or inner sizes differ" });
    }
    check_same_dtype(&[&a, &m], &out)?;
    let (b, n, k, p) = (a.sizes()[0], a.sizes()[1], a.sizes()[2], m.sizes()[2]);
    out.resize(&[b, n, p])?;
    let s = out.strides();
    let ostr = [s[0], s[1], s[2]];
    Gemm {
        batch: b,
        n,
        k,
        p,
        a: (Src::of(&a)?, strides3(&a)),
        m: (Src::of(&m)?, strides3(&m)),
        bias: None,
        alpha: 1.0,
        beta: 0.0,
    }
    .run(&mut out, ostr)
}

/// `aten::addmm.out(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1,
/// Tensor(a!) out)`: `beta * self + alpha * (mat1 @ mat2)`, `self` broadcast to the product.
pub fn addmm_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    let (bias, a, m) = (args.tensor(0)?, args.tensor(1)?, args.tensor(2)?);
    let (beta, alpha) = (args.scalar(3)?, args.scalar(4)?);
    let mut out = args.tensor_mut(5)?;
    if a.dim() != 2 || m.dim() != 2 {
        return Err(KernelError::ShapeMismatch { arg: 1, reason: "addmm expects 2-D mat1 and mat2" });
    }
    if a.sizes()[1] != m.sizes()[0] {
        return Err(KernelError::ShapeMismatch { arg: 2, reason: "mat2 rows differ from mat1 columns" });
    }
    check_same_dtype(&[&bias, &a, &m], &out)?;
    let common = result_type(&[Operand::Tensor(a), Operand::Tensor(m)]);
    for (s, arg) in [(beta, 3), (alpha, 4)] {
        if !scalar_fits(s, common) {
            return Err(KernelError::InvalidArgument { arg, reason: "scalar type does not fit the tensors' dtype" });
        }
    }
    let (n, k, p) = (a.sizes()[0], a.sizes()[1], m.sizes()[1]);
    if bias.dim() > 2 || crate::shape::broadcast_shapes(bias.sizes(), &[n, p]).as_deref() != Some(&[n, p][..]) {
        return Err(KernelError::ShapeMismatch { arg: 0, reason: "self does not broadcast to the product" });
    }
    out.resize(&[n, p])?;
    let bs = broadcast_strides_ordered(bias.sizes(), bias.strides(), &[n, p]);
    let ostr = [0, out.strides()[0], out.strides()[1]];
    let to_f = |s: Scalar| s.to_f64();
    Gemm {
        batch: 1,
        n,
        k,
        p,
        a: (Src::of(&a)?, strides3(&a)),
        m: (Src::of(&m)?, strides3(&m)),
        // PyTorch ignores `self` when beta is 0 (NaN and inf in it do not propagate).
        bias: (to_f(beta) != 0.0).then_some((Src::of(&bias)?, [0, bs[0], bs[1]])),
        alpha: to_f(alpha),
        beta: to_f(beta),
    }
    .run(&mut out, ostr)
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::REAL_DTYPES;
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
        ("aten::mm.out(Tensor self, Tensor mat2, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, mm_out),
        ("aten::bmm.out(Tensor self, Tensor mat2, *, Tensor(a!) out) -> Tensor(a!)", REAL_DTYPES, bmm_out),
        (
            "aten::addmm.out(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
            REAL_DTYPES,
            addmm_out,
        ),
    ];
    crate::portable::register_table(r, table);
}

//! Reductions over dimensions: `sum`, `mean` (more to come with the kernel library).

use crate::args::KernelArgs;
use crate::dtype::{DType, Element};
use crate::error::KernelError;
use crate::portable::elementwise::Src;
use crate::registry::{KernelContext, KernelFn, KernelRegistry};
use crate::shape::{Shape, StridedIter, wrap_dim};
use crate::tensor::{Tensor, TensorMut};

/// Which dimensions a reduction folds, as a bitmask (rank <= 16). `None` or `[]` means all.
pub fn reduce_mask(args: &KernelArgs<'_>, arg: usize, rank: usize) -> Result<u32, KernelError> {
    let all = if rank == 0 { 0 } else { (1u32 << rank) - 1 };
    let Some(list) = args.opt_int_list(arg)? else { return Ok(all) };
    if list.is_empty() {
        return Ok(all);
    }
    let mut mask = 0u32;
    for d in list.iter() {
        let d = wrap_dim(d?, rank).ok_or(KernelError::InvalidArgument { arg, reason: "dim out of range" })?;
        if mask & (1 << d) != 0 {
            return Err(KernelError::InvalidArgument { arg, reason: "dim appears twice" });
        }
        mask |= 1 << d;
    }
    Ok(if rank == 0 { 0 } else { mask })
}

/// Output sizes of a reduction: reduced dims become 1 (`keepdim`) or disappear.
pub fn reduced_shape(sizes: &[usize], mask: u32, keepdim: bool) -> Shape {
    let mut s = Shape::scalar();
    for (d, &n) in sizes.iter().enumerate() {
        if mask & (1 << d) == 0 {
            s.push(n);
        } else if keepdim {
            s.push(1);
        }
    }
    s
}

/// How to walk a reduction: an outer walk over kept dims (input and output offsets) and an inner
/// walk over the reduced dims (input offsets).
pub struct ReductionPlan {
    kept: Shape,
    kept_strides: Shape,
    out_strides: Shape,
    reduced: Shape,
    reduced_strides: Shape,
}

impl ReductionPlan {
    /// The plan for reducing `x` over `mask` into `out` (which has its reduced shape already).
    pub fn new(x: &Tensor<'_>, mask: u32, out: &TensorMut<'_>) -> ReductionPlan {
        let (sizes, strides) = (x.sizes(), x.strides());
        let ostr_all = out.strides();
        let keepdim = out.dim() == sizes.len() && mask != 0;
        let mut p = ReductionPlan {
            kept: Shape::scalar(),
            kept_strides: Shape::scalar(),
            out_strides: Shape::scalar(),
            reduced: Shape::scalar(),
            reduced_strides: Shape::scalar(),
        };
        let mut k = 0usize;
        for d in 0..sizes.len() {
            if mask & (1 << d) != 0 {
                p.reduced.push(sizes[d]);
                p.reduced_strides.push(strides[d]);
            } else {
                p.kept.push(sizes[d]);
                p.kept_strides.push(strides[d]);
                let o = if keepdim { d } else { k };
                p.out_strides.push(ostr_all.get(o).copied().unwrap_or(0));
                k += 1;
            }
        }
        p
    }

    /// Number of input elements folded into each output element.
    pub fn count(&self) -> usize {
        self.reduced.numel().unwrap_or(0)
    }

    /// Calls `f(out_offset, input_offsets)` for every output element.
    pub fn for_each(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
        for [io, base] in StridedIter::new(&self.kept, [self.out_strides, self.kept_strides]) {
            let mut inner = StridedIter::new(&self.reduced, [self.reduced_strides]).map(|[o]| base + o);
            f(io, &mut inner);
        }
    }
}

fn sum_like(args: &KernelArgs<'_>, mean: bool) -> Result<(), KernelError> {
    let x = args.tensor(0)?;
    let mask = reduce_mask(args, 1, x.dim())?;
    let keepdim = args.bool(2)?;
    let dtype = args.opt_dtype(3)?;
    let mut out = args.tensor_mut(4)?;
    let want = dtype.unwrap_or(if mean || x.dtype().is_floating_point() { x.dtype() } else { DType::Long });
    if out.dtype() != want {
        return Err(KernelError::DtypeMismatch { arg: 4, expected: want, found: out.dtype() });
    }
    if mean && !want.is_floating_point() {
        return Err(KernelError::UnsupportedDtype { arg: 4, dtype: want });
    }
    out.resize(&reduced_shape(x.sizes(), mask, keepdim))?;
    let plan = ReductionPlan::new(&x, mask, &out);
    let count = plan.count();
    let src = Src::of(&x)?;
    let arg = out.arg();
    crate::dispatch_dtype!(want, D => {
        let o = out.data_mut::<D>()?;
        let mut bad = false;
        plan.for_each(|io, inputs| {
            // Floats accumulate in f64, integers in i64 (wrapping), then convert once.
            let v = if D::IS_FLOAT {
                let s: f64 = inputs.map(|i| src.get::<f64>(i)).sum();
                D::from_f64(if mean { s / count as f64 } else { s })
            } else {
                D::from_i64(inputs.fold(0i64, |a, i| a.wrapping_add(src.get::<i64>(i))))
            };
            match o.get_mut(io) {
                Some(slot) => *slot = v,
                None => bad = true,
            }
        });
        if bad { Err(KernelError::ShapeMismatch { arg, reason: "output smaller than the reduction" }) } else { Ok(()) }
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: want }))
}

/// `aten::sum.IntList_out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None,
/// Tensor(a!) out)`
pub fn sum_intlist_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    sum_like(args, false)
}

/// `aten::mean.out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None,
/// Tensor(a!) out)`
pub fn mean_out(_: &mut KernelContext, args: &KernelArgs<'_>) -> Result<(), KernelError> {
    sum_like(args, true)
}

/// Registers this module's kernels.
pub fn register(r: &mut KernelRegistry) {
    use crate::portable::elementwise::{ALL_DTYPES, FLOAT_DTYPES};
    let table: &[(&str, &'static [crate::DType], KernelFn)] = &[
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
    crate::portable::register_table(r, table);
}

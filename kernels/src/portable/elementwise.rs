//! Shared machinery of elementwise kernels: operands (tensor or scalar), PyTorch's result-type
//! rules, broadcasting over any dim order, and typed loops with a same-dtype fast path.

use half::{bf16, f16};

use crate::dtype::{Bool, DType, Element, can_cast, promote_types};
use crate::error::KernelError;
use crate::shape::{MAX_RANK_SHAPE, Shape, StridedIter, broadcast_shapes};
use crate::tensor::{Tensor, TensorMut};
use crate::value::Scalar;

/// An input of an elementwise op: a tensor, or a scalar argument.
#[derive(Debug, Clone, Copy)]
pub enum Operand<'a> {
    Tensor(Tensor<'a>),
    Scalar(Scalar),
}

impl<'a> Operand<'a> {
    pub fn sizes(&self) -> &'a [usize] {
        match self {
            Operand::Tensor(t) => t.sizes(),
            Operand::Scalar(_) => &[],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    Bool,
    Integral,
    Floating,
}

#[inline]
fn category(t: DType) -> Category {
    if t == DType::Bool {
        Category::Bool
    } else if t.is_floating_point() {
        Category::Floating
    } else {
        Category::Integral
    }
}

/// PyTorch's `combine_categories`: keep `higher` unless `lower` is of a higher category.
fn combine(higher: Option<DType>, lower: Option<DType>) -> Option<DType> {
    match (higher, lower) {
        (None, l) => l,
        (h, None) => h,
        (Some(h), Some(l)) => {
            if h.is_floating_point() {
                Some(h)
            } else if h == DType::Bool || l.is_floating_point() {
                Some(promote_types(h, l))
            } else {
                Some(h)
            }
        }
    }
}

/// PyTorch's `result_type` over tensors and scalars: dimensioned tensors decide, zero-dim tensors
/// and then scalars only when they are of a higher category (bool < integral < floating).
pub fn result_type(operands: &[Operand<'_>]) -> DType {
    let (mut dim, mut zero, mut wrapped): (Option<DType>, Option<DType>, Option<DType>) = (None, None, None);
    let update = |slot: &mut Option<DType>, t: DType| {
        *slot = Some(match *slot {
            None => t,
            Some(s) => promote_types(s, t),
        })
    };
    for op in operands {
        match op {
            Operand::Tensor(t) if t.dim() > 0 => update(&mut dim, t.dtype()),
            Operand::Tensor(t) => update(&mut zero, t.dtype()),
            Operand::Scalar(s) => update(&mut wrapped, s.default_dtype()),
        }
    }
    combine(dim, combine(zero, wrapped)).unwrap_or(DType::Float)
}

/// [`result_type`] of two operands, with the common case (two tensors of one dtype) answered
/// without building an operand array (which costs a store-forwarding stall per call).
#[inline]
pub fn result_type2(a: &Operand<'_>, b: &Operand<'_>) -> DType {
    if let (Operand::Tensor(x), Operand::Tensor(y)) = (a, b)
        && x.dtype() == y.dtype()
    {
        return x.dtype();
    }
    result_type(&[*a, *b])
}

/// Whether a scalar's kind fits in the category of `t` (e.g. no float alpha for int tensors).
#[inline]
pub fn scalar_fits(s: Scalar, t: DType) -> bool {
    let c = match s {
        Scalar::Bool(_) => Category::Bool,
        Scalar::Int(_) => Category::Integral,
        Scalar::Double(_) => Category::Floating,
    };
    c <= category(t)
}

/// The type PyTorch computes in for a result of type `t`: f32 for 16/32-bit floats ("opmath"),
/// f64 for f64, i64 for integers and bool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    F32,
    F64,
    I64,
}

#[inline]
pub fn compute_for(t: DType) -> Compute {
    match t {
        DType::Double => Compute::F64,
        DType::Float | DType::Half | DType::BFloat16 => Compute::F32,
        _ => Compute::I64,
    }
}

/// A function of two values in each of PyTorch's compute ("opmath") types.
pub trait BinaryOp: Copy {
    fn f32(self, a: f32, b: f32) -> f32;
    fn f64(self, a: f64, b: f64) -> f64;
    fn i64(self, a: i64, b: i64) -> i64;
    /// Operators undefined on bool (PyTorch refuses `sub` on bool).
    const BOOL_OK: bool = true;
}

/// `op(a, b)` for two values of dtype `R`, computed in R's opmath type and converted back to `R`
/// (integers wrap, 16-bit floats round once).
#[inline(always)]
pub fn in_opmath<R: Element, O: BinaryOp>(op: O, a: R, b: R) -> R {
    match compute_for(R::DTYPE) {
        Compute::F32 => R::cast_from(op.f32(f32::cast_from(a), f32::cast_from(b))),
        Compute::F64 => R::cast_from(op.f64(f64::cast_from(a), f64::cast_from(b))),
        Compute::I64 => R::cast_from(op.i64(i64::cast_from(a), i64::cast_from(b))),
    }
}

/// `out = op(a, b)` in the common dtype `common`: each operand is first converted to it, as
/// PyTorch's TensorIterator does (so an integer scalar or zero-dim tensor wraps into a narrower
/// common type, and a float one rounds to a 16-bit one), then computed in opmath.
#[inline(always)]
pub fn binary_in<O: BinaryOp>(
    a: Operand<'_>,
    b: Operand<'_>,
    common: DType,
    out: &mut TensorMut<'_>,
    op: O,
) -> Result<(), KernelError> {
    if common == DType::Bool && !O::BOOL_OK {
        return Err(KernelError::UnsupportedDtype { arg: 0, dtype: DType::Bool });
    }
    crate::dispatch_dtype!(common, R => binary_map::<R, R>(a, b, out, |x, y| in_opmath(op, x, y)),
        _ => Err(KernelError::UnsupportedDtype { arg: 0, dtype: common }))
}

/// Checks that results of type `result` may be written into `out` (PyTorch's `canCast`).
#[inline]
pub fn check_out_cast(result: DType, out: &TensorMut<'_>) -> Result<(), KernelError> {
    if can_cast(result, out.dtype()) {
        Ok(())
    } else {
        Err(KernelError::DtypeMismatch { arg: out.arg(), expected: result, found: out.dtype() })
    }
}

/// A typed view of an operand's elements that converts each read to the compute type.
#[derive(Clone, Copy)]
pub enum Src<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I64(&'a [i64]),
    I32(&'a [i32]),
    I16(&'a [i16]),
    I8(&'a [i8]),
    U8(&'a [u8]),
    B(&'a [Bool]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    Const { f: f64, i: i64 },
}

impl<'a> Src<'a> {
    pub fn new(op: &Operand<'a>) -> Result<Src<'a>, KernelError> {
        Ok(match op {
            Operand::Scalar(s) => Src::Const { f: s.to_f64(), i: s.to_i64() },
            Operand::Tensor(t) => Src::of(t)?,
        })
    }

    pub fn of(t: &Tensor<'a>) -> Result<Src<'a>, KernelError> {
        Ok(match t.dtype() {
            DType::Float => Src::F32(t.data()?),
            DType::Double => Src::F64(t.data()?),
            DType::Long => Src::I64(t.data()?),
            DType::Int => Src::I32(t.data()?),
            DType::Short => Src::I16(t.data()?),
            DType::Char => Src::I8(t.data()?),
            DType::Byte => Src::U8(t.data()?),
            DType::Bool => Src::B(t.data()?),
            DType::Half => Src::F16(t.data()?),
            DType::BFloat16 => Src::BF16(t.data()?),
            other => return Err(KernelError::UnsupportedDtype { arg: t.arg(), dtype: other }),
        })
    }

    /// Element `i` converted to `C`.
    #[inline(always)]
    pub fn get<C: Element>(&self, i: usize) -> C {
        match self {
            Src::F32(s) => C::cast_from(s[i]),
            Src::F64(s) => C::cast_from(s[i]),
            Src::I64(s) => C::cast_from(s[i]),
            Src::I32(s) => C::cast_from(s[i]),
            Src::I16(s) => C::cast_from(s[i]),
            Src::I8(s) => C::cast_from(s[i]),
            Src::U8(s) => C::cast_from(s[i]),
            Src::B(s) => C::cast_from(s[i]),
            Src::F16(s) => C::cast_from(s[i]),
            Src::BF16(s) => C::cast_from(s[i]),
            Src::Const { f, i: int } => {
                if C::IS_FLOAT {
                    C::from_f64(*f)
                } else {
                    C::from_i64(*int)
                }
            }
        }
    }
}

/// Strides to read an operand of `sizes` in `order` as if it had the broadcast shape `out`.
fn operand_strides(op: &Operand<'_>, out: &[usize]) -> Shape {
    match op {
        Operand::Scalar(_) => Shape::new(&MAX_RANK_SHAPE[..out.len()]).unwrap_or_default(),
        Operand::Tensor(t) => broadcast_strides_ordered(t.sizes(), t.strides(), out),
    }
}

/// Strides of a tensor (from its dim order) lined up with the broadcast shape `out`:
/// missing leading dimensions and size-1 dimensions get stride 0.
pub fn broadcast_strides_ordered(sizes: &[usize], strides: &[usize], out: &[usize]) -> Shape {
    let mut s = Shape::new(&MAX_RANK_SHAPE[..out.len()]).unwrap_or_default();
    let off = out.len().saturating_sub(sizes.len());
    for (i, (&size, &stride)) in sizes.iter().zip(strides).enumerate() {
        if let Some(slot) = s.as_mut_slice().get_mut(i + off) {
            *slot = if size == 1 { 0 } else { stride };
        }
    }
    s
}

/// Broadcast shape of the operands, or a shape error naming `arg`.
pub fn broadcast_all(ops: &[Operand<'_>], arg: usize) -> Result<Shape, KernelError> {
    let mut shape = Shape::scalar();
    for op in ops {
        shape = broadcast_shapes(&shape, op.sizes())
            .ok_or(KernelError::ShapeMismatch { arg, reason: "operands cannot be broadcast together" })?;
    }
    Ok(shape)
}

/// The operand's value as `C` if it is a scalar or a one-element tensor of dtype `C` with at most
/// `other_rank` dimensions (so broadcasting it adds none).
#[inline(always)]
fn single_value<C: Element>(op: &Operand<'_>, other_rank: usize) -> Result<Option<C>, KernelError> {
    Ok(match op {
        Operand::Scalar(s) => Some(if C::IS_FLOAT { C::from_f64(s.to_f64()) } else { C::from_i64(s.to_i64()) }),
        Operand::Tensor(t) if t.dtype() == C::DTYPE && t.numel() == 1 && t.dim() <= other_rank => {
            t.data::<C>()?.first().copied()
        }
        _ => None,
    })
}

/// The common cases without broadcasting machinery: every tensor of dtype `C`, output of dtype
/// `O`, and either equal shapes in one layout, or one operand a single element (a 0-dim tensor,
/// a `[1]` tensor or a scalar) that does not add dimensions. Returns `false` when not applicable.
#[inline(always)]
fn binary_fast<C: Element, O: Element>(
    a: &Operand<'_>,
    b: &Operand<'_>,
    out: &mut TensorMut<'_>,
    f: &impl Fn(C, C) -> O,
) -> Result<bool, KernelError> {
    if out.dtype() != O::DTYPE {
        return Ok(false);
    }
    match (a, b) {
        (Operand::Tensor(x), Operand::Tensor(y))
            if x.dtype() == C::DTYPE
                && y.dtype() == C::DTYPE
                && crate::shape::same_sizes(x.sizes(), y.sizes())
                && x.dim_order() == y.dim_order() =>
        {
            out.resize(x.sizes())?;
            if out.dim_order() != x.dim_order() {
                return Ok(false);
            }
            let (x, y) = (x.data::<C>()?, y.data::<C>()?);
            for ((o, &x), &y) in out.data_mut::<O>()?.iter_mut().zip(x).zip(y) {
                *o = f(x, y);
            }
            Ok(true)
        }
        (Operand::Tensor(x), other) if x.dtype() == C::DTYPE => {
            let Some(y) = single_value::<C>(other, x.dim())? else { return Ok(false) };
            out.resize(x.sizes())?;
            if out.dim_order() != x.dim_order() {
                return Ok(false);
            }
            for (o, &x) in out.data_mut::<O>()?.iter_mut().zip(x.data::<C>()?) {
                *o = f(x, y);
            }
            Ok(true)
        }
        (other, Operand::Tensor(y)) if y.dtype() == C::DTYPE => {
            let Some(x) = single_value::<C>(other, y.dim())? else { return Ok(false) };
            out.resize(y.sizes())?;
            if out.dim_order() != y.dim_order() {
                return Ok(false);
            }
            for (o, &y) in out.data_mut::<O>()?.iter_mut().zip(y.data::<C>()?) {
                *o = f(x, y);
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `out = f(a, b)` elementwise with broadcasting. `f` computes in `C` and returns `O`; values are
/// converted into the output's dtype.
#[inline(always)]
pub fn binary_map<C: Element, O: Element>(
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut TensorMut<'_>,
    f: impl Fn(C, C) -> O,
) -> Result<(), KernelError> {
    if binary_fast(&a, &b, out, &f)? {
        return Ok(());
    }
    let shape = broadcast_all(&[a, b], out.arg())?;
    out.resize(&shape)?;
    let (sa, sb) = (Src::new(&a)?, Src::new(&b)?);
    let strides = [out.strides(), operand_strides(&a, &shape), operand_strides(&b, &shape)];
    let arg = out.arg();
    crate::dispatch_dtype!(out.dtype(), D => {
        let o = out.data_mut::<D>()?;
        for [io, ia, ib] in StridedIter::new(&shape, strides) {
            o[io] = D::cast_from(f(sa.get::<C>(ia), sb.get::<C>(ib)));
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: out.dtype() }))
}

/// `out = f(a, b, c)` elementwise with broadcasting (e.g. `where`); `f` reads the operands itself
/// from their [`Src`] at the given offsets.
pub fn ternary_map<D: Element>(
    ops: [Operand<'_>; 3],
    out: &mut TensorMut<'_>,
    f: impl Fn(&[Src<'_>; 3], [usize; 3]) -> D,
) -> Result<(), KernelError> {
    let shape = broadcast_all(&ops, out.arg())?;
    out.resize(&shape)?;
    let srcs = [Src::new(&ops[0])?, Src::new(&ops[1])?, Src::new(&ops[2])?];
    let strides = [
        out.strides(),
        operand_strides(&ops[0], &shape),
        operand_strides(&ops[1], &shape),
        operand_strides(&ops[2], &shape),
    ];
    let arg = out.arg();
    crate::dispatch_dtype!(out.dtype(), O => {
        let o = out.data_mut::<O>()?;
        for [io, i0, i1, i2] in StridedIter::new(&shape, strides) {
            o[io] = O::cast_from(f(&srcs, [i0, i1, i2]));
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: out.dtype() }))
}

/// `out = f(x)` elementwise; `f` computes in `C` and returns `O`.
pub fn unary_map<C: Element, O: Element>(
    x: Tensor<'_>,
    out: &mut TensorMut<'_>,
    f: impl Fn(C) -> O,
) -> Result<(), KernelError> {
    out.resize(x.sizes())?;
    if x.dtype() == C::DTYPE && out.dtype() == O::DTYPE && x.dim_order() == out.dim_order() {
        let xs = x.data::<C>()?;
        for (o, &v) in out.data_mut::<O>()?.iter_mut().zip(xs) {
            *o = f(v);
        }
        return Ok(());
    }
    let src = Src::of(&x)?;
    let shape = x.shape();
    let strides = [out.strides(), *x.strides()];
    let arg = out.arg();
    crate::dispatch_dtype!(out.dtype(), D => {
        let o = out.data_mut::<D>()?;
        for [io, ix] in StridedIter::new(&shape, strides) {
            o[io] = D::cast_from(f(src.get::<C>(ix)));
        }
        Ok(())
    }, _ => Err(KernelError::UnsupportedDtype { arg, dtype: out.dtype() }))
}

/// Floating dtypes etch's portable kernels compute on.
pub const FLOAT_DTYPES: &[DType] = &[DType::Half, DType::BFloat16, DType::Float, DType::Double];
/// Every dtype etch's portable kernels compute on.
pub const ALL_DTYPES: &[DType] = &crate::dtype::COMPUTE_DTYPES;
/// Integer and floating dtypes (no bool).
pub const REAL_DTYPES: &[DType] = &[
    DType::Byte,
    DType::Char,
    DType::Short,
    DType::Int,
    DType::Long,
    DType::Half,
    DType::BFloat16,
    DType::Float,
    DType::Double,
];

"""Reductions and scans: sum, mean, prod, var, var_mean, amax/amin, argmax/argmin, max/min
(with and without dim), any, cumsum, topk, across dtypes, dims (negative, several, none),
keepdim, empty inputs and NaN."""
import torch

from suite import A, ALL, BF16, BOOL, F16, F32, F64, I8, I16, I32, I64, U8, Case, T, sweep

SHAPE = (2, 3, 4)


def reduce_variants(op, dims_fn, tol, lo=-3, hi=3, unique=False, dtypes=ALL, empty=True, special=True, **kw):
    """`dims_fn(a, dim, keepdim)` with dims: None (all), one, negative, several."""
    yield from sweep(op, lambda a: dims_fn(a, 1, False), lambda dt: [T(SHAPE, dt, lo, hi, unique=unique)], dtypes, tol,
                     **kw)
    mk = lambda dt=F32, shape=SHAPE: [T(shape, dt, lo, hi, unique=unique)]  # noqa: E731
    yield Case(op, "f32_dim_neg_keepdim", lambda a: dims_fn(a, -1, True), mk(), tol=tol, **kw)
    yield Case(op, "i32_dim0_keepdim", lambda a: dims_fn(a, 0, True), mk(I32), tol=tol, **kw)
    yield Case(op, "f64_dim_neg3", lambda a: dims_fn(a, -3, False), mk(F64), tol=tol, **kw)
    yield Case(op, "f32_size1", lambda a: dims_fn(a, 1, False), mk(F32, (3, 1, 2)), tol=tol, **kw)
    yield Case(op, "f32_1d", lambda a: dims_fn(a, 0, False), mk(F32, (7,)), tol=tol, **kw)
    yield Case(op, "f32_zero_dim", lambda a: dims_fn(a, 0, False), mk(F32, ()), tol=tol, **kw)
    yield Case(op, "f16_long_row", lambda a: dims_fn(a, -1, False), mk(F16, (2, 64)), tol=tol, **kw)
    yield Case(op, "f32_channels_last", lambda a: dims_fn(a, 1, True),
               [T((2, 3, 2, 2), F32, lo, hi, unique=unique, channels_last=True)], tol=tol, **kw)
    if special:
        yield Case(op, "f32_special", lambda a: dims_fn(a, -1, False), [T((4, 5), F32, lo, hi, special=True)], tol=tol,
                   **kw)
        yield Case(op, "bf16_special", lambda a: dims_fn(a, 0, False), [T((4, 5), BF16, lo, hi, special=True)],
                   tol=tol, **kw)
    if empty:
        yield Case(op, "f32_empty_reduced", lambda a: dims_fn(a, 1, False), mk(F32, (3, 0)), tol=tol, **kw)
        yield Case(op, "f32_empty_kept", lambda a: dims_fn(a, 1, True), mk(F32, (0, 3)), tol=tol, **kw)


def cases():
    # sum / mean / prod
    yield from reduce_variants("aten::sum.IntList_out", lambda a, d, k: torch.sum(a, d, keepdim=k), "accum")
    yield Case("aten::sum.IntList_out", "f32_all", lambda a: a.sum(), [T(SHAPE)], tol="accum")
    yield Case("aten::sum.IntList_out", "f32_dims_neg", lambda a: a.sum((0, -1)), [T(SHAPE)], tol="accum")
    yield Case("aten::sum.IntList_out", "bool_all", lambda a: a.sum(), [T(SHAPE, BOOL)], tol="accum")
    yield Case("aten::sum.IntList_out", "i8_dtype_f64", lambda a: a.sum(1, dtype=torch.float64), [T(SHAPE, I8)],
               tol="accum")
    yield Case("aten::sum.IntList_out", "f16_dtype_f32", lambda a: a.sum(-1, dtype=torch.float32), [T(SHAPE, F16)],
               tol="accum")
    yield Case("aten::sum.IntList_out", "u8_dtype_u8", lambda a: a.sum(-1, dtype=torch.uint8),
               [T((2, 40), U8, 0, 255)], tol="accum")
    yield Case("aten::sum.IntList_out", "f32_empty_all", lambda a: a.sum(), [T((0, 4))], tol="accum")
    yield from reduce_variants("aten::mean.out", lambda a, d, k: torch.mean(a, d, keepdim=k), "accum")
    yield Case("aten::mean.out", "f32_dims", lambda a: a.mean((0, 2)), [T(SHAPE)], tol="accum")
    yield Case("aten::mean.out", "i32_dtype_f32", lambda a: a.mean(-1, dtype=torch.float32), [T(SHAPE, I32)],
               tol="accum")
    yield Case("aten::mean.out", "f16_dtype_f64", lambda a: a.mean(-1, dtype=torch.float64), [T(SHAPE, F16)],
               tol="accum")
    yield from sweep("aten::mean.dtype_out", lambda a: a.mean(dtype=torch.float32), lambda dt: [T(SHAPE, dt)], ALL,
                     "accum", prefix="to_f32_")
    yield Case("aten::mean.dtype_out", "f32_to_f64", lambda a: a.mean(dtype=torch.float64), [T(SHAPE)], tol="accum")
    yield Case("aten::mean.dtype_out", "bf16_to_bf16", lambda a: a.mean(dtype=torch.bfloat16), [T(SHAPE, BF16)],
               tol="accum")
    yield Case("aten::mean.dtype_out", "f32_empty", lambda a: a.mean(dtype=torch.float32), [T((0, 3))], tol="accum")
    yield Case("aten::mean.dtype_out", "f32_special", lambda a: a.mean(dtype=torch.float32),
               [T((2, 3), special=True)], tol="accum")
    yield from sweep("aten::prod.out", torch.prod, lambda dt: [T((2, 5), dt, -2, 2)], ALL, "accum")
    yield Case("aten::prod.out", "f32_empty", torch.prod, [T((0, 3))], tol="accum")
    yield Case("aten::prod.out", "f32_special", torch.prod, [T((2, 3), special=True)], tol="accum")
    yield Case("aten::prod.out", "i32_dtype_i64", lambda a: torch.prod(a, dtype=torch.int64), [T((2, 5), I32, -9, 9)],
               tol="accum")
    yield from reduce_variants("aten::prod.int_out", lambda a, d, k: torch.prod(a, d, keepdim=k), "accum", -2, 2)
    yield Case("aten::prod.int_out", "f32_dtype_f64", lambda a: torch.prod(a, 1, dtype=torch.float64), [T(SHAPE)],
               tol="accum")
    # var / var_mean
    for corr in (0, 1, 2):
        yield from sweep("aten::var.correction_out", lambda a, c=corr: torch.var(a, -1, correction=c),
                         lambda dt: [T(SHAPE, dt)], [F32, F64, F16, BF16], "accum", prefix=f"corr{corr}_")
    yield from reduce_variants("aten::var.correction_out", lambda a, d, k: torch.var(a, d, keepdim=k), "accum",
                               dtypes=[])
    yield Case("aten::var.correction_out", "f32_all", lambda a: torch.var(a), [T(SHAPE)], tol="accum")
    yield Case("aten::var.correction_out", "f32_dims", lambda a: torch.var(a, (0, -1), keepdim=True), [T(SHAPE)],
               tol="accum")
    yield Case("aten::var.correction_out", "f32_one_element", lambda a: torch.var(a, 1), [T((3, 1))], tol="accum")
    for unbiased in (True, False):
        yield from sweep("aten::var.out", lambda a, u=unbiased: A.var.dim(a, [1], u, False),
                         lambda dt: [T(SHAPE, dt)], [F32, F64, F16, BF16], "accum",
                         prefix=f"{'unbiased' if unbiased else 'biased'}_", preserve=[A.var.dim])
    yield Case("aten::var.out", "f32_keepdim_neg", lambda a: A.var.dim(a, [-1, 0], True, True), [T(SHAPE)], tol="accum",
               preserve=[A.var.dim])
    yield Case("aten::var.out", "f32_all", lambda a: A.var.dim(a, None, True, False), [T(SHAPE)], tol="accum",
               preserve=[A.var.dim])
    for corr in (0, 1):
        yield from sweep("aten::var_mean.correction_out", lambda a, c=corr: torch.var_mean(a, 1, correction=c),
                         lambda dt: [T(SHAPE, dt)], [F32, F64, F16, BF16], "accum", prefix=f"corr{corr}_",
                         exceptions=[A.var_mean.correction])
    yield Case("aten::var_mean.correction_out", "f32_dims_keepdim",
               lambda a: torch.var_mean(a, (0, -1), keepdim=True), [T(SHAPE)], tol="accum",
               exceptions=[A.var_mean.correction])
    yield Case("aten::var_mean.correction_out", "f32_special", lambda a: torch.var_mean(a, -1),
               [T((4, 5), special=True)], tol="accum", exceptions=[A.var_mean.correction])
    # amax / amin / argmax / argmin / max / min
    for name in ("amax", "amin"):
        fn = getattr(torch, name)
        yield from reduce_variants(f"aten::{name}.out", lambda a, d, k, fn=fn: fn(a, d, keepdim=k), "exact",
                                   empty=False)
        yield Case(f"aten::{name}.out", "f32_dims", lambda a, fn=fn: fn(a, (0, 2)), [T(SHAPE)], tol="exact")
        yield Case(f"aten::{name}.out", "f32_all", lambda a, fn=fn: fn(a, ()), [T(SHAPE)], tol="exact")
        yield Case(f"aten::{name}.out", "f32_empty_kept", lambda a, fn=fn: fn(a, 1), [T((0, 3))], tol="exact")
    for name in ("argmax", "argmin"):
        fn = getattr(torch, name)
        yield from reduce_variants(f"aten::{name}.out", lambda a, d, k, fn=fn: fn(a, d, keepdim=k), "exact",
                                   unique=True, empty=False, lo=-100, hi=100)
        yield Case(f"aten::{name}.out", "f32_all", lambda a, fn=fn: fn(a), [T(SHAPE, unique=True)], tol="exact")
        yield Case(f"aten::{name}.out", "i32_ties_first", lambda a, fn=fn: fn(a, 1),
                   [torch.tensor([[1, 3, 3, 0], [2, 2, 0, 0]], dtype=torch.int32)], tol="exact")
        yield Case(f"aten::{name}.out", "f32_empty_kept", lambda a, fn=fn: fn(a, 1), [T((0, 3))], tol="exact")
    for name in ("max", "min"):
        fn = getattr(torch, name)
        yield from reduce_variants(f"aten::{name}.dim_{name}", lambda a, d, k, fn=fn: fn(a, d, keepdim=k),
                                   "exact", unique=True, empty=False, lo=-100, hi=100)
        yield Case(f"aten::{name}.dim_{name}", "i32_ties_first", lambda a, fn=fn: fn(a, 1),
                   [torch.tensor([[1, 3, 3, 0], [2, 2, 0, 0]], dtype=torch.int32)], tol="exact")
        yield Case(f"aten::{name}.dim_{name}", "f32_empty_kept", lambda a, fn=fn: fn(a, 1), [T((0, 3))], tol="exact")
        yield from sweep(f"aten::{name}.unary_out", fn, lambda dt: [T(SHAPE, dt)], ALL, "exact")
        yield Case(f"aten::{name}.unary_out", "f32_special", fn, [T((4, 5), special=True)], tol="exact")
        yield Case(f"aten::{name}.unary_out", "f32_inf_only", fn,
                   [torch.tensor([float("-inf"), float("inf"), 0.0])], tol="exact")
        yield Case(f"aten::{name}.unary_out", "f32_zero_dim", fn, [T(())], tol="exact")
    # any
    yield from sweep("aten::any.all_out", torch.any, lambda dt: [T(SHAPE, dt, -1, 1)], ALL, "exact")
    yield Case("aten::any.all_out", "f32_sparse", torch.any, [torch.tensor([0.0, -0.0, 0.0, 1e-30])], tol="exact")
    yield Case("aten::any.all_out", "f32_nan", torch.any, [torch.tensor([0.0, float("nan")])], tol="exact")
    yield Case("aten::any.all_out", "bool_empty", torch.any, [T((0, 3), BOOL)], tol="exact")
    yield Case("aten::any.all_out", "bool_all_false", torch.any, [torch.zeros(2, 3, dtype=torch.bool)], tol="exact")
    yield from reduce_variants("aten::any.out", lambda a, d, k: torch.any(a, d, keepdim=k), "exact", -1, 1)
    yield from reduce_variants("aten::any.dims_out", lambda a, d, k: torch.any(a, (d,), keepdim=k), "exact", -1, 1)
    yield Case("aten::any.dims_out", "f32_two_dims", lambda a: torch.any(a, (0, -1)), [T(SHAPE, F32, -1, 1)], tol="exact")
    yield Case("aten::any.dims_out", "bool_all_dims", lambda a: torch.any(a, (0, 1, 2)), [T(SHAPE, BOOL)], tol="exact")
    # cumsum
    yield from reduce_variants("aten::cumsum.out", lambda a, d, k: torch.cumsum(a, d), "accum")
    yield Case("aten::cumsum.out", "i8_dtype_i8", lambda a: torch.cumsum(a, 1, dtype=torch.int8), [T((2, 30), I8, 0, 9)],
               tol="accum")
    yield Case("aten::cumsum.out", "i32_dtype_f32", lambda a: torch.cumsum(a, -1, dtype=torch.float32),
               [T(SHAPE, I32)], tol="accum")
    yield Case("aten::cumsum.out", "bool_dim0", lambda a: torch.cumsum(a, 0), [T(SHAPE, BOOL)], tol="accum")
    # topk: no ties (unique values), since PyTorch does not define the order among equal values.
    yield from sweep("aten::topk.values", lambda a: torch.topk(a, 2), lambda dt: [T((3, 6), dt, -60, 60, unique=True)],
                     [F32, F64, F16, BF16, U8, I8, I16, I32, I64], "exact")
    yield Case("aten::topk.values", "f32_smallest_dim0", lambda a: torch.topk(a, 3, dim=0, largest=False),
               [T((4, 5), unique=True)], tol="exact")
    yield Case("aten::topk.values", "f32_unsorted_k1", lambda a: torch.topk(a, 1, dim=-1, sorted=False),
               [T((4, 5), unique=True)], tol="exact")
    yield Case("aten::topk.values", "f32_k_all", lambda a: torch.topk(a, 5, dim=1), [T((2, 5), unique=True)],
               tol="exact")
    yield Case("aten::topk.values", "f32_k0", lambda a: torch.topk(a, 0, dim=1), [T((2, 5), unique=True)], tol="exact")
    yield Case("aten::topk.values", "f32_nan", lambda a: torch.topk(a, 2),
               [torch.tensor([[1.0, float("nan"), 3.0, -1.0], [float("inf"), 0.5, -2.0, 2.0]])], tol="exact")
    yield Case("aten::topk.values", "f32_zero_dim", lambda a: torch.topk(a, 1), [T(())], tol="exact")
    yield Case("aten::topk.values", "f32_3d_neg_dim", lambda a: torch.topk(a, 2, -2), [T(SHAPE, unique=True)],
               tol="exact")

"""Tensor factories: full, full_like, zeros, ones, arange, scalar_tensor, fill; every dtype,
empty and zero-dim shapes, int/float/bool fill values."""
import torch

from suite import A, ALL, BOOL, F16, F32, F64, I32, I64, U8, Case, T, short, sweep


def cases():
    for dt in ALL:
        yield Case("aten::full.out", short(dt), lambda dt=dt: torch.full((2, 3), True if dt == BOOL else 3, dtype=dt),
                   [], tol="exact")
    yield Case("aten::full.out", "f32_float_value", lambda: torch.full((2, 3), -2.5), [], tol="exact")
    yield Case("aten::full.out", "f16_inf", lambda: torch.full((2,), float("inf"), dtype=F16), [], tol="exact")
    yield Case("aten::full.out", "f32_nan", lambda: torch.full((2,), float("nan")), [], tol="exact")
    yield Case("aten::full.out", "i64_default_dtype", lambda: torch.full((3,), 7), [], tol="exact")
    yield Case("aten::full.out", "f32_empty", lambda: torch.full((0, 3), 1.0), [], tol="exact")
    yield Case("aten::full.out", "f32_zero_dim", lambda: torch.full((), 1.5), [], tol="exact")
    yield Case("aten::full.out", "u8_from_float", lambda: torch.full((2,), 3.7, dtype=U8), [], tol="exact")
    yield from sweep("aten::full_like.out", lambda a: torch.full_like(a, 2), lambda dt: [T((3, 4), dt)], ALL, "exact")
    yield Case("aten::full_like.out", "f32_with_dtype_i32", lambda a: torch.full_like(a, 7, dtype=torch.int32),
               [T((3, 4))], tol="exact")
    yield Case("aten::full_like.out", "i64_float_value_f64", lambda a: torch.full_like(a, 0.25, dtype=F64),
               [T((3, 4), I64)], tol="exact")
    yield Case("aten::full_like.out", "f32_empty", lambda a: torch.full_like(a, 1), [T((0, 2))], tol="exact")
    yield Case("aten::full_like.out", "f32_channels_last", lambda a: torch.full_like(a, -1.5),
               [T((2, 3, 2, 2), channels_last=True)], tol="exact")
    for name in ("zeros", "ones"):
        fn = getattr(torch, name)
        keep = [getattr(A, name).default]
        for dt in ALL:
            yield Case(f"aten::{name}.out", short(dt), lambda dt=dt, fn=fn: fn(2, 3, dtype=dt), [], tol="exact",
                       preserve=keep)
        yield Case(f"aten::{name}.out", "f32_empty", lambda fn=fn: fn(0, 2), [], tol="exact", preserve=keep)
        yield Case(f"aten::{name}.out", "f32_zero_dim", lambda fn=fn: fn(()), [], tol="exact", preserve=keep)
    ar = [A.arange.default]
    for dt in ALL:
        if dt != BOOL:
            yield Case("aten::arange.out", short(dt), lambda dt=dt: A.arange.default(5, dtype=dt), [], tol="exact",
                       preserve=ar)
    yield Case("aten::arange.out", "f32_fractional_end", lambda: A.arange.default(4.5), [], tol="exact", preserve=ar)
    yield Case("aten::arange.out", "i64_zero", lambda: A.arange.default(0, dtype=torch.int64), [], tol="exact",
               preserve=ar)
    for dt in ALL:
        if dt != BOOL:
            yield Case("aten::arange.start_out", short(dt), lambda dt=dt: torch.arange(1, 9, 2, dtype=dt), [],
                       tol="exact")
    yield Case("aten::arange.start_out", "f32_fractional_step", lambda: torch.arange(-1.0, 1.0, 0.25), [], tol="arith")
    yield Case("aten::arange.start_out", "f64_tenth_step", lambda: torch.arange(0.0, 1.0, 0.1, dtype=F64), [],
               tol="arith")
    yield Case("aten::arange.start_out", "i64_negative_step", lambda: torch.arange(5, -3, -2), [], tol="exact")
    yield Case("aten::arange.start_out", "i32_empty", lambda: torch.arange(3, 3, dtype=I32), [], tol="exact")
    yield Case("aten::arange.start_out", "f16_step", lambda: torch.arange(0, 3, 0.5, dtype=F16), [], tol="exact")
    for dt in ALL:
        yield Case("aten::scalar_tensor.out", short(dt),
                   lambda dt=dt: A.scalar_tensor(True if dt == BOOL else 2.5 if dt.is_floating_point else 7, dtype=dt),
                   [], tol="exact")
    yield Case("aten::scalar_tensor.out", "f32_nan", lambda: A.scalar_tensor(float("nan"), dtype=F32), [], tol="exact")
    yield Case("aten::scalar_tensor.out", "f32_from_int", lambda: A.scalar_tensor(3, dtype=F32), [], tol="exact")
    fs, ft = [A.fill.Scalar], [A.fill.Tensor]
    yield from sweep("aten::fill.Scalar_out", lambda a: A.fill.Scalar(a, 3), lambda dt: [T((3, 4), dt)], ALL, "exact",
                     preserve=fs)
    yield Case("aten::fill.Scalar_out", "f32_float_value", lambda a: A.fill.Scalar(a, -0.5), [T((3, 4))], tol="exact",
               preserve=fs)
    yield Case("aten::fill.Scalar_out", "i32_float_value", lambda a: A.fill.Scalar(a, 2.9), [T((3, 4), I32)],
               tol="exact", preserve=fs)
    yield Case("aten::fill.Scalar_out", "bool_int_value", lambda a: A.fill.Scalar(a, 0), [T((3, 4), BOOL)],
               tol="exact", preserve=fs)
    yield Case("aten::fill.Scalar_out", "f32_empty", lambda a: A.fill.Scalar(a, 1), [T((0, 4))], tol="exact",
               preserve=fs)
    yield from sweep("aten::fill.Tensor_out", lambda a, v: A.fill.Tensor(a, v), lambda dt: [T((3, 4), dt), T((), dt, salt=1)],
                     ALL, "exact", preserve=ft)
    yield Case("aten::fill.Tensor_out", "f32_from_i64", lambda a, v: A.fill.Tensor(a, v), [T((3, 4)), T((), I64)],
               tol="exact", preserve=ft)
    yield Case("aten::fill.Tensor_out", "i32_from_f32", lambda a, v: A.fill.Tensor(a, v), [T((3, 4), I32), T(())],
               tol="exact", preserve=ft)
    yield Case("aten::fill.Tensor_out", "f16_from_f64", lambda a, v: A.fill.Tensor(a, v), [T((2, 2), F16), T((), F64)],
               tol="exact", preserve=ft)

"""Comparisons (tensor-tensor and tensor-scalar overloads): bool results, promotion between
operand dtypes, broadcasting, NaN (unordered) and infinities."""
import torch

from suite import A, F32, I64, Case, T, binary_cases, idx, scalar_cases

OPS = ["eq", "ne", "lt", "le", "gt", "ge"]


def cases():
    for name in OPS:
        fn = getattr(torch, name)
        # Small integer ranges make equal elements common, so eq/le/ge see ties.
        yield from binary_cases(f"aten::{name}.Tensor_out", fn, -2, 2, tol="exact", scalars=(1, 0.5))
        yield Case(f"aten::{name}.Tensor_out", "i64_large", fn,
                   [idx([2 ** 53, 2 ** 53 + 1, -(2 ** 62)], I64), idx([2 ** 53 + 1, 2 ** 53 + 1, -(2 ** 62)], I64)],
                   tol="exact")
        yield Case(f"aten::{name}.Tensor_out", "i64_vs_f32", fn,
                   [idx([16777217, 3, -1], I64), idx([16777216.0, 3.0, -0.5], F32)], tol="exact")
        op = getattr(A, name).Scalar
        yield from scalar_cases(f"aten::{name}.Scalar_out", lambda a, s, op=op: op(a, s), (1, 0.5, True, -1), -2, 2,
                                tol="exact")
        yield Case(f"aten::{name}.Scalar_out", "f32_nan_scalar", lambda a, op=op: op(a, float("nan")),
                   [T((3, 4), F32, special=True)], tol="exact")
        yield Case(f"aten::{name}.Scalar_out", "f32_inf_scalar", lambda a, op=op: op(a, float("inf")),
                   [T((3, 4), F32, special=True)], tol="exact")

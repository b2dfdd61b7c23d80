"""Elementwise functions of one tensor: every dtype, NaN/inf, out-of-domain values, empty,
zero-dim, size-1 and channels-last inputs."""
import torch

from suite import ALL, Case, T, int_domain, sweep, unary_extras

# (operator, function, input range, tolerance kind, range that leaves the domain or None)
UNARY = [
    ("aten::abs.out", torch.abs, (-5, 5), "exact", None),
    ("aten::acos.out", torch.acos, (-1, 1), "transc", (-3, 3)),
    ("aten::acosh.out", torch.acosh, (1, 5), "transc", (-3, 3)),
    ("aten::asin.out", torch.asin, (-1, 1), "transc", (-3, 3)),
    ("aten::asinh.out", torch.asinh, (-5, 5), "transc", None),
    ("aten::atan.out", torch.atan, (-5, 5), "transc", None),
    ("aten::atanh.out", torch.atanh, (-0.99, 0.99), "transc", (-3, 3)),
    ("aten::ceil.out", torch.ceil, (-5, 5), "exact", None),
    ("aten::cos.out", torch.cos, (-5, 5), "transc", None),
    ("aten::cosh.out", torch.cosh, (-4, 4), "transc", None),
    ("aten::erf.out", torch.erf, (-3, 3), "transc", None),
    ("aten::exp.out", torch.exp, (-5, 5), "transc", (-100, 100)),
    ("aten::expm1.out", torch.expm1, (-3, 3), "transc", None),
    ("aten::floor.out", torch.floor, (-5, 5), "exact", None),
    ("aten::isinf.out", torch.isinf, (-5, 5), "exact", None),
    ("aten::isnan.out", torch.isnan, (-5, 5), "exact", None),
    ("aten::log.out", torch.log, (0.05, 5), "transc", (-3, 3)),
    ("aten::log10.out", torch.log10, (0.05, 5), "transc", (-3, 3)),
    ("aten::log1p.out", torch.log1p, (-0.9, 5), "transc", (-3, 3)),
    ("aten::log2.out", torch.log2, (0.05, 5), "transc", (-3, 3)),
    ("aten::logical_not.out", torch.logical_not, (-2, 2), "exact", None),
    ("aten::neg.out", torch.neg, (-5, 5), "exact", None),
    ("aten::reciprocal.out", torch.reciprocal, (0.2, 5), "arith", (-2, 2)),
    ("aten::relu.out", torch.relu, (-5, 5), "exact", None),
    ("aten::round.out", torch.round, (-5, 5), "exact", None),
    ("aten::rsqrt.out", torch.rsqrt, (0.05, 5), "transc", (-3, 3)),
    ("aten::sigmoid.out", torch.sigmoid, (-6, 6), "transc", (-100, 100)),
    ("aten::sign.out", torch.sign, (-5, 5), "exact", None),
    ("aten::sin.out", torch.sin, (-5, 5), "transc", None),
    ("aten::sinh.out", torch.sinh, (-4, 4), "transc", None),
    ("aten::sqrt.out", torch.sqrt, (0, 5), "transc", (-3, 3)),
    ("aten::tan.out", torch.tan, (-1.4, 1.4), "transc", None),
    ("aten::tanh.out", torch.tanh, (-4, 4), "transc", (-100, 100)),
    ("aten::trunc.out", torch.trunc, (-5, 5), "exact", None),
    ("aten::bitwise_not.out", torch.bitwise_not, (-20, 20), "exact", None),
]


def cases():
    for op, fn, (lo, hi), tol, wide in UNARY:
        yield from sweep(op, fn, lambda dt: [T((3, 5), dt, *int_domain(dt, lo, hi))], ALL, tol)
        yield from unary_extras(op, fn, lo, hi, tol, wide)
    # Round half to even.
    halves = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 1e7 + 0.5, 3.5])
    yield Case("aten::round.out", "f32_halves", torch.round, [halves], tol="exact")
    yield Case("aten::round.out", "f64_halves", torch.round, [halves.double()], tol="exact")
    # Integer inputs to float functions near their domain edges.
    yield Case("aten::sqrt.out", "i64_negative", torch.sqrt, [torch.tensor([-4, -1, 0, 1, 4, 9])], tol="transc")
    yield Case("aten::log.out", "u8_zero", torch.log, [torch.tensor([0, 1, 2, 255], dtype=torch.uint8)], tol="transc")
    yield Case("aten::reciprocal.out", "i32_zero", torch.reciprocal, [torch.tensor([0, 1, -2, 4], dtype=torch.int32)])
    yield Case("aten::abs.out", "i8_min", torch.abs, [torch.tensor([-128, -1, 0, 127], dtype=torch.int8)], tol="exact")
    yield Case("aten::neg.out", "i8_min", torch.neg, [torch.tensor([-128, -1, 0, 127], dtype=torch.int8)], tol="exact")
    yield Case("aten::exp.out", "f16_overflow", torch.exp, [torch.tensor([10.0, 11.0, 12.0, -20.0], dtype=torch.float16)],
               tol="transc")
    yield Case("aten::sign.out", "f32_zeros", torch.sign, [torch.tensor([0.0, -0.0, float("nan"), 1e-40])], tol="exact")
    yield Case("aten::logical_not.out", "f32_nan_zero", torch.logical_not,
               [torch.tensor([0.0, -0.0, float("nan"), float("inf"), 1e-40])], tol="exact")

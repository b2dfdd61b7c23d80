"""Pooling: avg_pool2d (stride, padding, ceil_mode, count_include_pad, divisor_override),
max_pool2d_with_indices (dilation, ceil_mode, padding, NaN), adaptive average pooling (divisible
and not), max_pool2d_with_indices_backward (called explicitly)."""
import torch
import torch.nn.functional as F

from suite import A, F32, F64, FLOATS, I64, REALS, Case, T, sweep

X = (2, 3, 5, 6)


def cases():
    yield from sweep("aten::avg_pool2d.out", lambda x: F.avg_pool2d(x, 2), lambda dt: [T(X, dt)], REALS, "accum")
    variants = {
        "k3_s2_p1": dict(kernel_size=3, stride=2, padding=1),
        "ceil": dict(kernel_size=2, ceil_mode=True),
        "ceil_pad_exclude": dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        "divisor_override": dict(kernel_size=2, divisor_override=3),
        "rect_kernel": dict(kernel_size=(1, 3), stride=(2, 1)),
    }
    for name, kw in variants.items():
        yield Case("aten::avg_pool2d.out", f"f32_{name}", lambda x, kw=kw: F.avg_pool2d(x, **kw), [T(X)], tol="accum")
    yield Case("aten::avg_pool2d.out", "f32_3d_input", lambda x: F.avg_pool2d(x, 2), [T((3, 4, 4))], tol="accum")
    yield Case("aten::avg_pool2d.out", "f32_channels_last", lambda x: F.avg_pool2d(x, 2, 1),
               [T(X, channels_last=True)], tol="accum")
    yield Case("aten::avg_pool2d.out", "f32_special", lambda x: F.avg_pool2d(x, 2), [T((1, 2, 4, 4), special=True)],
               tol="accum")
    yield Case("aten::avg_pool2d.out", "i64_divisor", lambda x: F.avg_pool2d(x, 2, divisor_override=3), [T(X, I64)],
               tol="accum")
    mp = lambda **kw: (lambda x: F.max_pool2d(x, return_indices=True, **kw))  # noqa: E731
    yield from sweep("aten::max_pool2d_with_indices.out", mp(kernel_size=2),
                     lambda dt: [T((1, 2, 4, 5), dt, -60, 60, unique=True)], REALS, "exact")
    variants = {
        "k3_s2_p1": dict(kernel_size=3, stride=2, padding=1),
        "ceil": dict(kernel_size=2, ceil_mode=True),
        "dilation2": dict(kernel_size=2, dilation=2),
        "rect": dict(kernel_size=(3, 1), stride=(1, 2), padding=(1, 0)),
    }
    for name, kw in variants.items():
        yield Case("aten::max_pool2d_with_indices.out", f"f32_{name}", mp(**kw), [T(X, unique=True)], tol="exact")
    yield Case("aten::max_pool2d_with_indices.out", "f32_nan", mp(kernel_size=2), [T((1, 2, 4, 4), special=True)],
               tol="exact")
    yield Case("aten::max_pool2d_with_indices.out", "f32_3d_input", mp(kernel_size=2), [T((3, 4, 4), unique=True)],
               tol="exact")
    yield Case("aten::max_pool2d_with_indices.out", "f32_channels_last", mp(kernel_size=2),
               [T(X, unique=True, channels_last=True)], tol="exact")
    yield Case("aten::max_pool2d_with_indices.out", "f32_values_only", lambda x: F.max_pool2d(x, 3, 1, 1),
               [T(X, unique=True)], tol="exact")
    ap = lambda size: (lambda x: F.adaptive_avg_pool2d(x, size))  # noqa: E731
    yield from sweep("aten::_adaptive_avg_pool2d.out", ap((2, 3)), lambda dt: [T(X, dt)], FLOATS, "accum")
    yield Case("aten::_adaptive_avg_pool2d.out", "f32_not_divisible", ap((3, 4)), [T(X)], tol="accum")
    yield Case("aten::_adaptive_avg_pool2d.out", "f32_to_1x2", ap((1, 2)), [T(X)], tol="accum")
    yield Case("aten::_adaptive_avg_pool2d.out", "f32_upsample", ap((7, 7)), [T(X)], tol="accum")
    yield Case("aten::_adaptive_avg_pool2d.out", "f32_3d_input", ap((2, 2)), [T((3, 5, 5))], tol="accum")
    yield Case("aten::_adaptive_avg_pool2d.out", "f32_channels_last", ap((2, 3)), [T(X, channels_last=True)],
               tol="accum")
    bw = [A.max_pool2d_with_indices_backward.default]

    def backward(k, s, p, ceil=False):
        def fn(grad, x):
            _, indices = F.max_pool2d(x, k, s, p, ceil_mode=ceil, return_indices=True)
            return A.max_pool2d_with_indices_backward(grad, x, [k, k], [s, s], [p, p], [1, 1], ceil, indices)
        return fn

    yield from sweep("aten::max_pool2d_with_indices_backward.grad_input", backward(2, 2, 0),
                     lambda dt: [T((2, 3, 2, 3), dt), T(X, dt, unique=True, salt=1)], [F32, F64], "arith", exceptions=bw)
    yield Case("aten::max_pool2d_with_indices_backward.grad_input", "f32_overlapping_windows", backward(3, 1, 1),
               [T(X), T(X, unique=True, salt=1)], tol="arith", exceptions=bw)

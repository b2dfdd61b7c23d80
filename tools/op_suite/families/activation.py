"""Activation functions with options: gelu (exact/tanh), elu (alpha, scale, input_scale),
leaky_relu, hardtanh (incl. relu6), glu (dims), logit (eps)."""
import torch
import torch.nn.functional as F

from suite import A, ALL, F32, Case, T, sweep, unary_extras


def cases():
    for approx in ("none", "tanh"):
        fn = lambda a, ap=approx: F.gelu(a, approximate=ap)  # noqa: E731
        yield from sweep("aten::gelu.out", fn, lambda dt: [T((3, 5), dt, -4, 4)], ALL, "transc", prefix=f"{approx}_")
    yield from unary_extras("aten::gelu.out", F.gelu, -4, 4, "transc")
    for name, kw in {"default": {}, "alpha2": {"alpha": 2.0}}.items():
        yield from sweep("aten::elu.out", lambda a, kw=kw: F.elu(a, **kw), lambda dt: [T((3, 5), dt)], ALL, "transc",
                         prefix=f"{name}_")
    yield Case("aten::elu.out", "f32_scale_input_scale", lambda a: A.elu(a, 1.5, 2.0, 0.5), [T((3, 5))], tol="transc")
    yield from unary_extras("aten::elu.out", F.elu, -3, 3, "transc")
    yield from sweep("aten::leaky_relu.out", lambda a: F.leaky_relu(a, 0.1), lambda dt: [T((3, 5), dt)], ALL)
    yield Case("aten::leaky_relu.out", "f32_default_slope", F.leaky_relu, [T((3, 5))])
    yield Case("aten::leaky_relu.out", "f32_negative_slope_2", lambda a: F.leaky_relu(a, 2.0), [T((3, 5))])
    yield from unary_extras("aten::leaky_relu.out", lambda a: F.leaky_relu(a, 0.2), -3, 3, "arith")
    yield from sweep("aten::hardtanh.out", lambda a: F.hardtanh(a, -0.5, 1.5), lambda dt: [T((3, 5), dt)], ALL, "exact")
    yield Case("aten::hardtanh.out", "f32_relu6", F.relu6, [T((3, 5), F32, -3, 9)], tol="exact")
    yield Case("aten::hardtanh.out", "i32_int_bounds", lambda a: F.hardtanh(a, -1, 2), [T((3, 5), torch.int32)],
               tol="exact")
    yield from unary_extras("aten::hardtanh.out", F.hardtanh, -3, 3, "exact")
    gl = [A.glu.default]
    yield from sweep("aten::glu.out", lambda a: F.glu(a, -1), lambda dt: [T((3, 4), dt)], ALL, "transc", preserve=gl)
    yield Case("aten::glu.out", "f32_dim0", lambda a: F.glu(a, 0), [T((4, 3))], tol="transc", preserve=gl)
    yield Case("aten::glu.out", "f32_dim1_3d", lambda a: F.glu(a, 1), [T((2, 6, 2))], tol="transc", preserve=gl)
    yield Case("aten::glu.out", "f32_special", lambda a: F.glu(a, -1), [T((4, 6), special=True)], tol="transc",
               preserve=gl)
    yield Case("aten::glu.out", "f32_empty", lambda a: F.glu(a, -1), [T((0, 4))], tol="transc", preserve=gl)
    lg = [A.logit.default]
    for name, eps in {"no_eps": None, "eps": 0.05}.items():
        yield from sweep("aten::logit.out", lambda a, e=eps: torch.logit(a, e), lambda dt: [T((3, 5), dt, 0.01, 0.99)],
                         ALL, "transc", prefix=f"{name}_", preserve=lg)
    yield Case("aten::logit.out", "f32_outside_no_eps", lambda a: torch.logit(a), [T((3, 5), F32, -0.5, 1.5)],
               tol="transc", preserve=lg)
    yield Case("aten::logit.out", "f32_outside_eps", lambda a: torch.logit(a, 0.1), [T((3, 5), F32, -0.5, 1.5)],
               tol="transc", preserve=lg)
    yield Case("aten::logit.out", "f32_special", lambda a: torch.logit(a), [T((4, 5), F32, 0, 1, special=True)],
               tol="transc", preserve=lg)

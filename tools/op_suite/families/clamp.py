"""clamp with scalar bounds (int/float, one side only, min > max, NaN) and with tensor bounds
(broadcasting, mixed dtypes, one side only)."""
import torch

from suite import ALL, F16, F32, I32, I64, U8, Case, T, sweep


def cases():
    yield from sweep("aten::clamp.out", lambda a: torch.clamp(a, -1, 2), lambda dt: [T((3, 4), dt)], ALL, "exact")
    for name, (lo, hi) in {"float_bounds": (-0.5, 1.5), "min_only": (0.25, None), "max_only": (None, -0.25),
                           "min_above_max": (2.0, -1.0), "nan_bound": (float("nan"), 1.0)}.items():
        yield Case("aten::clamp.out", f"f32_{name}", lambda a, lo=lo, hi=hi: torch.clamp(a, lo, hi), [T((3, 4))],
                   tol="exact")
    yield Case("aten::clamp.out", "i32_float_bounds", lambda a: torch.clamp(a, -1.5, 2.5), [T((3, 4), I32)],
               tol="exact")
    yield Case("aten::clamp.out", "u8_negative_min", lambda a: torch.clamp(a, -5, 2), [T((3, 4), U8)], tol="exact")
    yield Case("aten::clamp.out", "f32_special", lambda a: torch.clamp(a, -1, 1), [T((4, 5), special=True)],
               tol="exact")
    yield Case("aten::clamp.out", "f16_special", lambda a: torch.clamp(a, -1, 1), [T((4, 5), F16, special=True)],
               tol="exact")
    yield Case("aten::clamp.out", "f32_empty", lambda a: torch.clamp(a, -1, 1), [T((0, 3))], tol="exact")
    yield Case("aten::clamp.out", "i64_zero_dim", lambda a: torch.clamp(a, 0, 1), [T((), I64)], tol="exact")
    yield from sweep("aten::clamp.Tensor_out", lambda a, lo, hi: torch.clamp(a, lo, hi),
                     lambda dt: [T((3, 4), dt), T((3, 4), dt, -3, 0, salt=1), T((3, 4), dt, 0, 3, salt=2)], ALL,
                     "exact")
    yield Case("aten::clamp.Tensor_out", "f32_broadcast", lambda a, lo, hi: torch.clamp(a, lo, hi),
               [T((2, 3, 4)), T((4,), F32, -2, 0, salt=1), T((3, 1), F32, 0, 2, salt=2)], tol="exact")
    yield Case("aten::clamp.Tensor_out", "f32_min_only", lambda a, lo: torch.clamp(a, min=lo),
               [T((3, 4)), T((3, 4), salt=1)], tol="exact")
    yield Case("aten::clamp.Tensor_out", "f32_max_only", lambda a, hi: torch.clamp(a, max=hi),
               [T((3, 4)), T((1, 4), salt=1)], tol="exact")
    yield Case("aten::clamp.Tensor_out", "i32_f32_bounds", lambda a, lo, hi: torch.clamp(a, lo, hi),
               [T((3, 4), I32), T((3, 4), F32, -2, 0, salt=1), T((3, 4), F32, 0, 2, salt=2)], tol="exact")
    yield Case("aten::clamp.Tensor_out", "f32_special_bounds", lambda a, lo, hi: torch.clamp(a, lo, hi),
               [T((4, 5), special=True), T((4, 5), special=True, salt=1), T((4, 5), F32, 1, 2, salt=2)],
               tol="exact")
    yield Case("aten::clamp.Tensor_out", "f32_empty", lambda a, lo, hi: torch.clamp(a, lo, hi),
               [T((0, 3)), T((3,), salt=1), T((3,), salt=2)], tol="exact")

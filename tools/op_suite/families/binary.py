"""Elementwise arithmetic, bitwise and logical ops of two operands (tensor-tensor and
tensor-scalar overloads), with PyTorch's promotion and broadcasting."""
import torch

from suite import A, BOOL, F16, F32, I8, I32, I64, INTS, U8, Case, T, binary_cases, idx, nonzero, renamed, scalar_cases

BITS = INTS + [BOOL]
SHIFT = [A.bitwise_left_shift.Tensor, A.bitwise_right_shift.Tensor, A.bitwise_left_shift.Tensor_Scalar,
         A.bitwise_right_shift.Tensor_Scalar]


def cases():
    yield from binary_cases("aten::add.out", torch.add)
    yield Case("aten::add.out", "f32_alpha", lambda a, b: torch.add(a, b, alpha=0.5), [T((3, 4)), T((3, 4), salt=1)])
    yield Case("aten::add.out", "i32_alpha", lambda a, b: torch.add(a, b, alpha=3),
               [T((3, 4), I32), T((3, 4), I32, salt=1)])
    yield Case("aten::add.out", "bool_alpha", lambda a, b: torch.add(a, b, alpha=True),
               [T((3, 4), BOOL), T((3, 4), BOOL, salt=1)])
    yield Case("aten::add.out", "i8_overflow", torch.add,
               [idx([100, 127, -128, -100], I8), idx([100, 1, -1, -100], I8)], tol="exact")
    yield from binary_cases("aten::sub.out", torch.sub)
    yield Case("aten::sub.out", "f32_alpha", lambda a, b: torch.sub(a, b, alpha=2.5), [T((3, 4)), T((3, 4), salt=1)])
    yield Case("aten::sub.out", "i64_alpha", lambda a, b: torch.sub(a, b, alpha=-2),
               [T((3, 4), I64), T((3, 4), I64, salt=1)])
    yield Case("aten::sub.out", "u8_wrap", torch.sub, [idx([0, 1, 5, 255], U8), idx([1, 2, 5, 0], U8)], tol="exact")
    yield from binary_cases("aten::mul.out", torch.mul)
    yield from binary_cases("aten::div.out", torch.div, rhs=nonzero)
    yield Case("aten::div.out", "f32_by_zero", torch.div, [idx([1.0, -1.0, 0.0, float("nan")], torch.float32),
                                                            idx([0.0, 0.0, 0.0, 0.0], torch.float32)])
    yield Case("aten::div.out", "i32_by_zero", torch.div, [idx([1, -1, 0], I32), idx([0, 0, 0], I32)])
    for mode in ("floor", "trunc"):
        yield from renamed(f"{mode}_", binary_cases("aten::div.out_mode",
                                                    lambda a, b, m=mode: torch.div(a, b, rounding_mode=m), rhs=nonzero))
    yield from renamed("floor_divide_", binary_cases("aten::div.out_mode", torch.floor_divide, rhs=nonzero,
                                                     special=False))
    yield Case("aten::floor_divide.out", "i32", lambda a, b: A.floor_divide.default(a, b),
               [T((3, 4), I32, -9, 9), nonzero(T((3, 4), I32, -4, 4, salt=1))], preserve=[A.floor_divide.default])
    yield Case("aten::floor_divide.out", "f32", lambda a, b: A.floor_divide.default(a, b),
               [T((3, 4), F32, -9, 9), T((3, 4), F32, -4, 4, salt=1)], preserve=[A.floor_divide.default])
    yield from binary_cases("aten::remainder.Tensor_out", torch.remainder, -9, 9, rhs=nonzero)
    yield from binary_cases("aten::fmod.Tensor_out", torch.fmod, -9, 9, rhs=nonzero)
    yield from binary_cases("aten::pow.Tensor_Tensor_out", torch.pow, 0, 3, tol="transc")
    yield Case("aten::pow.Tensor_Tensor_out", "f32_negative_base", torch.pow,
               [T((3, 4), F32, -3, 3), T((3, 4), F32, -2, 2, salt=1)], tol="transc")
    yield Case("aten::pow.Tensor_Tensor_out", "f32_special_exponents", torch.pow,
               [idx([0.0, 0.0, -0.0, 2.0, -2.0, 1.0, float("nan"), float("inf"), 0.5], torch.float32),
                idx([0.0, -1.0, -1.0, float("inf"), 3.0, float("nan"), 0.0, -1.0, float("-inf")], torch.float32)],
               tol="transc")
    yield from binary_cases("aten::atan2.out", torch.atan2, tol="transc")
    yield from binary_cases("aten::maximum.out", torch.maximum, tol="exact", scalars=())
    yield from binary_cases("aten::minimum.out", torch.minimum, tol="exact", scalars=())
    for name in ("and", "or", "xor"):
        fn = getattr(torch, f"bitwise_{name}")
        yield from binary_cases(f"aten::bitwise_{name}.Tensor_out", fn, -20, 20, tol="exact", dtypes=BITS,
                                special=False, scalars=(5, True))
        yield from scalar_cases(f"aten::bitwise_{name}.Scalar_out",
                                lambda a, s, name=name: getattr(A, f"bitwise_{name}").Scalar(a, s), (6, True, -3),
                                -20, 20, tol="exact", dtypes=BITS, special=False)
        lfn = getattr(torch, f"logical_{name}")
        yield from binary_cases(f"aten::logical_{name}.out", lfn, -2, 2, tol="exact", scalars=())
    for name in ("left", "right"):
        op = f"bitwise_{name}_shift"
        yield from binary_cases(f"aten::{op}.Tensor_out", lambda a, b, op=op: getattr(A, op).Tensor(a, b), -20, 20,
                                tol="exact", dtypes=INTS, special=False, scalars=(), exceptions=SHIFT,
                                rhs=lambda t: t.abs().clamp(max=6) if t.dtype != BOOL else t)
        yield Case(f"aten::{op}.Tensor_out", "i32_overshift", lambda a, b, op=op: getattr(A, op).Tensor(a, b),
                   [idx([1, -1, 5, -5, 7, 1], I32), idx([31, 31, 32, 33, 40, 0], I32)], tol="exact", exceptions=SHIFT)
        yield Case(f"aten::{op}.Tensor_out", "i64_negative", lambda a, b, op=op: getattr(A, op).Tensor(a, b),
                   [idx([-(2 ** 40), -3, 2 ** 40 + 3], I64), idx([3, 1, 60], I64)], tol="exact", exceptions=SHIFT)
        yield from scalar_cases(f"aten::{op}.Tensor_Scalar_out",
                                lambda a, s, op=op: getattr(A, op).Tensor_Scalar(a, s), (2, 0, 5), -20, 20, tol="exact",
                                dtypes=INTS, special=False, exceptions=SHIFT)

    # Tensor-scalar overloads, called explicitly (Python `x + 2` lowers to add.out with a tensor).
    yield from scalar_cases("aten::add.Scalar_out", lambda a, s: A.add.Scalar(a, s), (2, 2.5, True))
    yield Case("aten::add.Scalar_out", "f32_alpha", lambda a: A.add.Scalar(a, 2, alpha=1.5), [T((3, 4))])
    yield Case("aten::add.Scalar_out", "i64_alpha", lambda a: A.add.Scalar(a, 2, alpha=-3), [T((3, 4), I64)])
    yield from scalar_cases("aten::sub.Scalar_out", lambda a, s: A.sub.Scalar(a, s), (2, 2.5))
    yield Case("aten::sub.Scalar_out", "f16_alpha", lambda a: A.sub.Scalar(a, 2, alpha=0.5), [T((3, 4), F16)])
    yield from scalar_cases("aten::mul.Scalar_out", lambda a, s: A.mul.Scalar(a, s), (2, 2.5, False))
    yield from scalar_cases("aten::div.Scalar_out", lambda a, s: A.div.Scalar(a, s), (2, 2.5, -0.5))
    for mode in ("floor", "trunc"):
        yield from renamed(f"{mode}_", scalar_cases("aten::div.Scalar_mode_out",
                                                    lambda a, s, m=mode: A.div.Scalar_mode(a, s, rounding_mode=m),
                                                    (2, -2.5), -9, 9))
    yield from scalar_cases("aten::remainder.Scalar_out", lambda a, s: A.remainder.Scalar(a, s), (3, -2.5), -9, 9)
    yield from scalar_cases("aten::fmod.Scalar_out", lambda a, s: A.fmod.Scalar(a, s), (3, -2.5), -9, 9)
    yield from scalar_cases("aten::pow.Tensor_Scalar_out", lambda a, s: torch.pow(a, s), (2, 3, 0.5, -1.5, 0), 0.1, 3,
                            tol="transc")
    yield Case("aten::pow.Tensor_Scalar_out", "i32_negative_base_2", lambda a: torch.pow(a, 2), [T((3, 4), I32, -5, 5)],
               tol="exact")
    yield from scalar_cases("aten::pow.Scalar_out", lambda a, s: torch.pow(s, a), (2, 0.5, -1.5), 0, 3, tol="transc")
    yield from scalar_cases("aten::rsub.Scalar_out", lambda a, s: A.rsub.Scalar(a, s), (2, 2.5), preserve=[A.rsub.Scalar])
    yield Case("aten::rsub.Scalar_out", "f32_alpha", lambda a: A.rsub.Scalar(a, 2, alpha=3), [T((3, 4))],
               preserve=[A.rsub.Scalar])

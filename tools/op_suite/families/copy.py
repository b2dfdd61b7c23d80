"""Copies and dtype/layout conversions: _to_dim_order_copy for every dtype pair, clones with dim
orders, the non-dim-order variants (_to_copy, clone, empty) exported with _skip_dim_order,
copy/copy_ (buffer writes), alias/detach copies, dropout's deterministic corners."""
import torch

from suite import A, ALL, BF16, BOOL, F16, F32, F64, I32, I64, U8, Case, T, idx, short, sweep


def conversion_input(src, dst):
    """Values every destination can hold: non-negative for unsigned targets, no NaN for ints."""
    lo = 0 if dst in (U8, BOOL) or src in (U8, BOOL) else -50
    return T((3, 4), src, lo, 100)


class BufferAdd(torch.nn.Module):
    """Writes a buffer, which the exporter turns into a final copy_ into the buffer. The buffer
    starts at zero: ExecuTorch does not serialize a mutable buffer's initial value (its runtime
    starts such buffers at zero too), so any other start would test the exporter, not copy_."""

    def __init__(self, dtype):
        super().__init__()
        self.register_buffer("state", torch.zeros(3, 4, dtype=dtype))

    def forward(self, x):
        self.state.add_(x)
        return self.state * 1


def cases():
    for dst in ALL:
        yield from sweep("dim_order_ops::_to_dim_order_copy.out", lambda a, d=dst: a.to(d),
                         lambda src, d=dst: [conversion_input(src, d)], ALL, "exact", prefix=f"to_{short(dst)}_from_")
    for dst in (F32, F16, BF16, F64, BOOL):
        yield Case("dim_order_ops::_to_dim_order_copy.out", f"f32_special_to_{short(dst)}", lambda a, d=dst: a.to(d),
                   [T((4, 5), special=True)], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "f32_to_f16_overflow", lambda a: a.to(F16),
               [torch.tensor([65504.0, 65520.0, 1e6, -1e6, 1e-8, 3.14159265])], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "f32_to_bf16_rounding", lambda a: a.to(BF16),
               [torch.tensor([1.00390625, 1.01171875, 3.4e38, -1e-40, 3.14159265])], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "i64_to_f32_rounding", lambda a: a.to(F32),
               [idx([2 ** 24 + 1, 2 ** 53 + 1, -(2 ** 62) - 1], I64)], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "i32_to_u8_wrap", lambda a: a.to(U8),
               [idx([-1, 256, 300, -200], I32)], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "f32_to_i32_trunc", lambda a: a.to(I32),
               [torch.tensor([-2.7, -0.5, 0.5, 2.7, 1e6])], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "f32_to_channels_last",
               lambda a: a.to(memory_format=torch.channels_last), [T((2, 3, 2, 2))], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "f32_channels_last_to_contiguous_f64",
               lambda a: a.to(torch.float64, memory_format=torch.contiguous_format),
               [T((2, 3, 2, 2), channels_last=True)], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "f32_empty", lambda a: a.to(F64), [T((0, 3))], tol="exact")
    yield Case("dim_order_ops::_to_dim_order_copy.out", "f32_zero_dim", lambda a: a.to(I64), [T(())], tol="exact")

    yield from sweep("dim_order_ops::_clone_dim_order.out", lambda a: a.clone(memory_format=torch.channels_last),
                     lambda dt: [T((2, 3, 2, 2), dt)], ALL, "exact", prefix="to_channels_last_")
    yield Case("dim_order_ops::_clone_dim_order.out", "f32_channels_last_to_contiguous",
               lambda a: a.clone(memory_format=torch.contiguous_format), [T((2, 3, 2, 2), channels_last=True)],
               tol="exact")
    yield Case("dim_order_ops::_clone_dim_order.out", "f32_plain", lambda a: a.clone(),
               [T((3, 4))], tol="exact")

    nodo = {"skip_dim_order": True}
    for src, dst in [(F32, F64), (F64, F16), (I64, F32), (F32, I32), (BOOL, F32), (F32, BOOL), (BF16, F32),
                     (F32, BF16), (U8, I64), (I32, U8), (F16, F16)]:
        yield Case("aten::_to_copy.out", f"{short(src)}_to_{short(dst)}", lambda a, d=dst: a.to(d),
                   [conversion_input(src, dst)], tol="exact", **nodo)
    yield Case("aten::_to_copy.out", "f32_special_to_f16", lambda a: a.to(F16), [T((4, 5), special=True)], tol="exact",
               **nodo)
    yield Case("aten::_to_copy.out", "f32_empty", lambda a: a.to(F64), [T((0, 2))], tol="exact", **nodo)
    yield from sweep("aten::clone.out", lambda a: a.clone(), lambda dt: [T((3, 4), dt)], ALL, "exact",
                     skip_dim_order=True)
    yield Case("aten::clone.out", "f32_empty", lambda a: a.clone(), [T((0, 4))], tol="exact", **nodo)
    yield Case("aten::clone.out", "f32_zero_dim", lambda a: a.clone(), [T(())], tol="exact", **nodo)
    for dt in (F32, I64, BOOL, BF16):
        # empty's contents are undefined: the cases fill it, so only its dtype and shape matter.
        yield Case("aten::empty.out", short(dt), lambda d=dt: torch.empty(3, 4, dtype=d).fill_(2), [], tol="exact",
                   **nodo)
        yield Case("dim_order_ops::_empty_dim_order.out", short(dt), lambda d=dt: torch.empty(3, 4, dtype=d).fill_(2),
                   [], tol="exact")
    yield Case("dim_order_ops::_empty_dim_order.out", "f32_channels_last",
               lambda a: torch.empty_like(a, memory_format=torch.channels_last).fill_(1) + a, [T((2, 3, 2, 2))],
               tol="exact", exceptions=[A.empty_permuted.default])

    yield from sweep("aten::copy.out", lambda a, b: A.copy(a, b), lambda dt: [T((3, 4), dt), T((3, 4), dt, salt=1)], ALL,
                     "exact")
    yield Case("aten::copy.out", "f32_broadcast_src", lambda a, b: A.copy(a, b), [T((3, 4)), T((4,), salt=1)],
               tol="exact")
    yield Case("aten::copy.out", "f32_from_i64", lambda a, b: A.copy(a, b), [T((3, 4)), T((3, 4), I64)], tol="exact")
    yield Case("aten::copy.out", "i32_from_f16", lambda a, b: A.copy(a, b), [T((3, 4), I32), T((1, 4), F16, 0, 9)],
               tol="exact")
    yield Case("aten::copy.out", "f32_empty", lambda a, b: A.copy(a, b), [T((0, 4)), T((4,))], tol="exact")
    yield Case("aten::copy.out", "f32_zero_dim_src", lambda a, b: A.copy(a, b), [T((2, 2)), T(())], tol="exact")
    for dt in (F32, I64, F16, BOOL):
        yield Case("aten::copy_", f"buffer_{short(dt)}", inputs=[T((3, 4), dt)], module=lambda d=dt: BufferAdd(d),
                   tol="exact")

    yield from sweep("aten::alias_copy.out", lambda a: A.alias_copy(a), lambda dt: [T((3, 4), dt)], ALL, "exact")
    yield Case("aten::alias_copy.out", "f32_empty", lambda a: A.alias_copy(a), [T((0, 4))], tol="exact")
    yield from sweep("aten::detach_copy.out", lambda a: A.detach_copy(a), lambda dt: [T((3, 4), dt)], ALL, "exact")
    yield Case("aten::detach_copy.out", "f32_zero_dim", lambda a: A.detach_copy(a), [T(())], tol="exact")

    # Dropout is random except at p = 0 (keep all) and p = 1 (drop all); only those are tested.
    for p in (0.0, 1.0):
        yield from sweep("aten::native_dropout.out", lambda a, p=p: A.native_dropout(a, p, True),
                         lambda dt: [T((3, 4), dt)], [F32, F64, F16, BF16], "exact", prefix=f"p{int(p)}_")
    yield Case("aten::native_dropout.out", "p0_eval", lambda a: A.native_dropout(a, 0.5, False), [T((3, 4))],
               tol="exact")
    yield Case("aten::native_dropout.out", "p1_empty", lambda a: A.native_dropout(a, 1.0, True), [T((0, 4))],
               tol="exact")

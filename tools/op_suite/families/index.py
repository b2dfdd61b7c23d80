"""Indexing, gathering and scattering: index (integer and bool indices, broadcast index tensors,
negative indices), index_put (accumulate), index_put_ (in place on a buffer), index_select,
gather, scatter (src/value), scatter_add, select/slice_scatter, masked_fill/scatter/select,
nonzero, embedding, where. Index tensors never repeat a destination where PyTorch's result would
depend on the write order (scatter, index_put without accumulate)."""
import torch
import torch.nn.functional as F

from suite import A, ALL, BOOL, F16, F32, I32, I64, U8, Case, T, idx, short, sweep

S = (3, 4)


class BufferIndexPut(torch.nn.Module):
    """In-place index_put_ on a buffer (the reinplace pass keeps it in place)."""

    def __init__(self, dtype):
        super().__init__()
        self.register_buffer("state", torch.zeros(4, 3, dtype=dtype))

    def forward(self, values, rows):
        self.state.index_put_((rows,), values)
        return self.state * 1


def perm_index(shape, dim, n, salt=0):
    """A 2-D index along `dim` whose every line is part of a permutation of range(n), so no
    destination is written twice (scatter's result would depend on the write order)."""
    g = torch.Generator().manual_seed(1234 + salt)
    rows, cols = shape if dim == 1 else shape[::-1]
    out = torch.stack([torch.randperm(n, generator=g)[:cols] for _ in range(rows)])
    return out if dim == 1 else out.t().contiguous()


def cases():
    # index.Tensor
    yield from sweep("aten::index.Tensor_out", lambda a, i: a[i], lambda dt: [T(S, dt), idx([2, 0, -1])], ALL, "exact")
    yield Case("aten::index.Tensor_out", "f32_second_dim", lambda a, i: a[:, i], [T(S), idx([3, 1])], tol="exact")
    yield Case("aten::index.Tensor_out", "f32_two_broadcast", lambda a, i, j: a[i, j],
               [T((3, 4, 2)), idx([[0], [2]]), idx([1, 3, -4])], tol="exact")
    yield Case("aten::index.Tensor_out", "f32_bool_mask", lambda a, m: a[m], [T(S), T((3,), BOOL)], tol="exact")
    yield Case("aten::index.Tensor_out", "f32_bool_mask_full", lambda a, m: a[m], [T(S), T(S, BOOL, salt=1)],
               tol="exact")
    yield Case("aten::index.Tensor_out", "f32_i32_indices", lambda a, i: a[i], [T(S), idx([1, 1, 0], I32)], tol="exact")
    yield Case("aten::index.Tensor_out", "f32_empty_index", lambda a, i: a[i], [T(S), idx([], I64)], tol="exact")
    yield Case("aten::index.Tensor_out", "f32_middle_index", lambda a, i: a[:, i, :], [T((2, 3, 4)), idx([[0, 2]])],
               tol="exact")
    yield Case("aten::index.Tensor_out", "f32_nonadjacent", lambda a, i, j: a[i, :, j],
               [T((3, 2, 4)), idx([0, 2]), idx([1, 3])], tol="exact")
    # index_put / index_put_
    yield from sweep("aten::index_put.out", lambda a, i, v: a.index_put((i,), v),
                     lambda dt: [T(S, dt), idx([2, 0]), T((2, 4), dt, salt=1)], ALL, "exact")
    yield Case("aten::index_put.out", "f32_accumulate_repeats", lambda a, i, v: a.index_put((i,), v, accumulate=True),
               [T(S), idx([1, 1, -1]), T((3, 4), salt=1)], tol="arith")
    yield Case("aten::index_put.out", "i64_accumulate", lambda a, i, v: a.index_put((i,), v, accumulate=True),
               [T(S, I64), idx([0, 0]), T((2, 4), I64, salt=1)], tol="exact")
    yield Case("aten::index_put.out", "f32_broadcast_value", lambda a, i, v: a.index_put((i,), v),
               [T(S), idx([1, 2]), T((4,), salt=1)], tol="exact")
    yield Case("aten::index_put.out", "f32_zero_dim_value", lambda a, i, v: a.index_put((i,), v),
               [T(S), idx([-1]), T((), salt=1)], tol="exact")
    yield Case("aten::index_put.out", "f32_two_indices", lambda a, i, j, v: a.index_put((i, j), v),
               [T(S), idx([0, 2, 1]), idx([3, 0, 1]), T((3,), salt=1)], tol="exact")
    yield Case("aten::index_put.out", "f32_bool_mask", lambda a, m, v: a.index_put((m,), v),
               [T(S), T(S, BOOL, salt=3), T((), salt=1)], tol="exact")
    yield Case("aten::index_put.out", "f32_value_f64", lambda a, i, v: a.index_put((i,), v),
               [T(S), idx([0]), T((4,), F32, salt=1)], tol="exact")
    for dt in (F32, I64, F16, BOOL):
        yield Case("aten::index_put_", f"buffer_{short(dt)}", inputs=[T((2, 3), dt), idx([3, 1])],
                   module=lambda d=dt: BufferIndexPut(d), tol="exact", reinplace=True)
    # index_select / gather
    yield from sweep("aten::index_select.out", lambda a, i: torch.index_select(a, 1, i),
                     lambda dt: [T(S, dt), idx([3, 0, 0])], ALL, "exact")
    yield Case("aten::index_select.out", "f32_neg_dim_i32", lambda a, i: torch.index_select(a, -2, i),
               [T(S), idx([2, 1], I32)], tol="exact")
    yield Case("aten::index_select.out", "f32_empty_index", lambda a, i: torch.index_select(a, 0, i),
               [T(S), idx([], I64)], tol="exact")
    yield Case("aten::index_select.out", "f32_zero_dim_self", lambda a, i: torch.index_select(a, 0, i),
               [T(()), idx([0])], tol="exact")
    yield Case("aten::index_select.out", "f32_zero_dim_index", lambda a, i: torch.index_select(a, 1, i),
               [T(S), torch.tensor(2)], tol="exact")
    yield from sweep("aten::gather.out", lambda a, i: torch.gather(a, 1, i),
                     lambda dt: [T(S, dt), T((3, 2), I64, 0, 3)], ALL, "exact")
    yield Case("aten::gather.out", "f32_neg_dim", lambda a, i: torch.gather(a, -2, i), [T((3, 4, 2)), T((2, 4, 2), I64, -3, 2)],
               tol="exact")
    yield Case("aten::gather.out", "f32_smaller_index", lambda a, i: torch.gather(a, 0, i), [T(S), T((2, 3), I64, 0, 2)],
               tol="exact")
    yield Case("aten::gather.out", "f32_empty_index", lambda a, i: torch.gather(a, 1, i), [T(S), T((3, 0), I64, 0, 3)],
               tol="exact")
    # scatter / scatter_add
    yield from sweep("aten::scatter.src_out", lambda a, i, s: torch.scatter(a, 1, i, s),
                     lambda dt: [T(S, dt), perm_index((3, 2), 1, 4), T((3, 3), dt, salt=1)], ALL, "exact")
    yield Case("aten::scatter.src_out", "f32_dim0_neg", lambda a, i, s: torch.scatter(a, -2, i, s),
               [T(S), perm_index((2, 4), 0, 3), T((2, 4), salt=1)], tol="exact")
    yield from sweep("aten::scatter.value_out", lambda a, i: torch.scatter(a, 1, i, 2),
                     lambda dt: [T(S, dt), T((3, 2), I64, 0, 3)], ALL, "exact")
    yield Case("aten::scatter.value_out", "f32_float_value", lambda a, i: torch.scatter(a, 0, i, -1.5),
               [T(S), T((2, 4), I64, 0, 2)], tol="exact")
    yield Case("aten::scatter.value_out", "f32_empty_index", lambda a, i: torch.scatter(a, 0, i, -1.5),
               [T(S), T((0, 4), I64, 0, 2)], tol="exact")
    yield from sweep("aten::scatter_add.out", lambda a, i, s: torch.scatter_add(a, 1, i, s),
                     lambda dt: [T(S, dt), T((3, 5), I64, 0, 3), T((3, 5), dt, salt=1)], ALL, "arith")
    yield Case("aten::scatter_add.out", "f32_neg_dim_small_src", lambda a, i, s: torch.scatter_add(a, -2, i, s),
               [T(S), T((2, 2), I64, 0, 2), T((3, 3), salt=1)], tol="arith")
    # select_scatter / slice_scatter
    yield from sweep("aten::select_scatter.out", lambda a, s: torch.select_scatter(a, s, 0, 1),
                     lambda dt: [T(S, dt), T((4,), dt, salt=1)], ALL, "exact", preserve=[A.select_scatter.default])
    yield Case("aten::select_scatter.out", "f32_neg_dim_neg_index", lambda a, s: torch.select_scatter(a, s, -1, -1),
               [T((2, 3, 4)), T((2, 3), salt=1)], tol="exact", preserve=[A.select_scatter.default])
    yield from sweep("aten::slice_scatter.out", lambda a, s: torch.slice_scatter(a, s, 1, 0, 2),
                     lambda dt: [T(S, dt), T((3, 2), dt, salt=1)], ALL, "exact")
    yield Case("aten::slice_scatter.out", "f32_step2", lambda a, s: torch.slice_scatter(a, s, 1, 0, 4, 2),
               [T(S), T((3, 2), salt=1)], tol="exact")
    yield Case("aten::slice_scatter.out", "f32_neg_dim_neg_start", lambda a, s: torch.slice_scatter(a, s, -2, -2),
               [T(S), T((2, 4), salt=1)], tol="exact")
    yield Case("aten::slice_scatter.out", "f32_end_clamped", lambda a, s: torch.slice_scatter(a, s, 0, 1, 100),
               [T(S), T((2, 4), salt=1)], tol="exact")
    # masked ops
    yield from sweep("aten::masked_fill.Scalar_out", lambda a, m: a.masked_fill(m, 1),
                     lambda dt: [T(S, dt), T(S, BOOL, salt=1)], ALL, "exact", preserve=[A.masked_fill.Scalar])
    yield Case("aten::masked_fill.Scalar_out", "f32_broadcast_mask", lambda a, m: a.masked_fill(m, -2.5),
               [T((2, 3, 4)), T((3, 1), BOOL, salt=1)], tol="exact", preserve=[A.masked_fill.Scalar])
    yield Case("aten::masked_fill.Scalar_out", "f32_nan_value", lambda a, m: a.masked_fill(m, float("nan")),
               [T(S), T(S, BOOL, salt=1)], tol="exact", preserve=[A.masked_fill.Scalar])
    yield Case("aten::masked_fill.Scalar_out", "i32_float_value", lambda a, m: a.masked_fill(m, 2.7),
               [T(S, I32), T(S, BOOL, salt=1)], tol="exact", preserve=[A.masked_fill.Scalar])
    yield Case("aten::masked_fill.Scalar_out", "f32_empty", lambda a, m: a.masked_fill(m, 1),
               [T((0, 4)), T((4,), BOOL)], tol="exact", preserve=[A.masked_fill.Scalar])
    yield from sweep("aten::masked_scatter.out", lambda a, m, s: a.masked_scatter(m, s),
                     lambda dt: [T(S, dt), T(S, BOOL, salt=1), T((12,), dt, salt=2)], ALL, "exact")
    yield Case("aten::masked_scatter.out", "f32_broadcast_mask", lambda a, m, s: a.masked_scatter(m, s),
               [T((2, 3)), T((3,), BOOL, salt=1), T((2, 4), salt=2)], tol="exact")
    ms = [A.masked_select.default]
    yield from sweep("aten::masked_select.out", lambda a, m: torch.masked_select(a, m),
                     lambda dt: [T(S, dt), T(S, BOOL, salt=1)], ALL, "exact", exceptions=ms)
    yield Case("aten::masked_select.out", "f32_broadcast", lambda a, m: torch.masked_select(a, m),
               [T((2, 3)), T((3,), BOOL, salt=1)], tol="exact", exceptions=ms)
    yield Case("aten::masked_select.out", "f32_none_selected", lambda a, m: torch.masked_select(a, m),
               [T(S), torch.zeros(S, dtype=torch.bool)], tol="exact", exceptions=ms)
    yield from sweep("aten::nonzero.out", torch.nonzero, lambda dt: [T(S, dt, -1, 1)], ALL, "exact")
    yield Case("aten::nonzero.out", "f32_3d_special", torch.nonzero, [T((2, 3, 2), special=True)], tol="exact")
    yield Case("aten::nonzero.out", "f32_zero_dim", torch.nonzero, [torch.tensor(1.5)], tol="exact")
    yield Case("aten::nonzero.out", "bool_none", torch.nonzero, [torch.zeros(2, 3, dtype=torch.bool)], tol="exact")
    yield Case("aten::nonzero.out", "f32_empty", torch.nonzero, [T((0, 3))], tol="exact")
    # embedding
    yield from sweep("aten::embedding.out", lambda w, i: F.embedding(i, w), lambda dt: [T((5, 3), dt), idx([4, 0, 2, 2])],
                     ALL, "exact")
    yield Case("aten::embedding.out", "f32_2d_indices_i32", lambda w, i: F.embedding(i, w),
               [T((5, 3)), idx([[0, 1], [4, 3]], I32)], tol="exact")
    yield Case("aten::embedding.out", "f32_padding_idx", lambda w, i: F.embedding(i, w, padding_idx=1),
               [T((5, 3)), idx([1, 0, 1])], tol="exact")
    yield Case("aten::embedding.out", "f32_empty_indices", lambda w, i: F.embedding(i, w), [T((5, 3)), idx([], I64)],
               tol="exact")
    yield Case("aten::embedding.out", "f32_zero_dim_index", lambda w, i: F.embedding(i, w), [T((5, 3)), torch.tensor(3)],
               tol="exact")
    # where
    yield from sweep("aten::where.self_out", lambda c, a, b: torch.where(c, a, b),
                     lambda dt: [T(S, BOOL, salt=2), T(S, dt), T(S, dt, salt=1)], ALL, "exact")
    yield Case("aten::where.self_out", "f32_broadcast", lambda c, a, b: torch.where(c, a, b),
               [T((3, 1), BOOL), T((1, 4)), T((2, 1, 1), salt=1)], tol="exact")
    yield Case("aten::where.self_out", "mixed_i32_f16", lambda c, a, b: torch.where(c, a, b),
               [T(S, BOOL), T(S, I32), T(S, F16, salt=1)], tol="exact")
    yield Case("aten::where.self_out", "mixed_u8_i8", lambda c, a, b: torch.where(c, a, b),
               [T(S, BOOL), T(S, U8), T(S, torch.int8, salt=1)], tol="exact")
    yield Case("aten::where.self_out", "f32_scalar_other", lambda c, a: torch.where(c, a, 0.5),
               [T(S, BOOL), T(S)], tol="exact")
    yield Case("aten::where.self_out", "i64_scalar_other_float", lambda c, a: torch.where(c, a, 0.5),
               [T(S, BOOL), T(S, I64)], tol="exact")
    yield Case("aten::where.self_out", "u8_condition", lambda c, a, b: torch.where(c, a, b),
               [T(S, U8, 0, 1), T(S), T(S, salt=1)], tol="exact")
    yield Case("aten::where.self_out", "f32_zero_dim_operands", lambda c, a, b: torch.where(c, a, b),
               [T(S, BOOL), T(()), T((), F32, salt=1)], tol="exact")
    yield Case("aten::where.self_out", "f32_special", lambda c, a, b: torch.where(c, a, b),
               [T((4, 5), BOOL), T((4, 5), special=True), T((4, 5), special=True, salt=1)], tol="exact")
    yield Case("aten::where.self_out", "f32_empty", lambda c, a, b: torch.where(c, a, b),
               [T((0, 4), BOOL), T((4,)), T((0, 1), salt=1)], tol="exact")
    yield Case("aten::where.self_out", "f32_channels_last", lambda c, a, b: torch.where(c, a, b),
               [T((2, 3, 2, 2), BOOL), T((2, 3, 2, 2), channels_last=True), T((2, 3, 2, 2), salt=1, channels_last=True)],
               tol="exact")

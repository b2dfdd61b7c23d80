"""Shape and layout ops: views that ExecuTorch materializes as copies, concatenation and
splitting, flips and rolls, triangular masks, repeats, pixel shuffles, unfold, complex views."""
import torch

from suite import A, ALL, BOOL, C64, F16, F32, I32, I64, U8, Case, T, idx, short, sweep

S = (2, 3, 4)


def cases():
    yield from sweep("aten::view_copy.out", lambda a: a.reshape(4, 6), lambda dt: [T(S, dt)], ALL, "exact")
    yield Case("aten::view_copy.out", "f32_infer", lambda a: a.view(-1, 2), [T(S)], tol="exact")
    yield Case("aten::view_copy.out", "f32_to_zero_dim", lambda a: a.view(()), [T((1, 1))], tol="exact")
    yield Case("aten::view_copy.out", "f32_from_zero_dim", lambda a: a.view(1, 1, 1), [T(())], tol="exact")
    yield Case("aten::view_copy.out", "f32_empty", lambda a: a.view(3, 0, 2), [T((0, 6))], tol="exact")
    yield from sweep("aten::permute_copy.out", lambda a: a.permute(2, 0, 1), lambda dt: [T(S, dt)], ALL, "exact")
    yield Case("aten::permute_copy.out", "f32_neg_dims", lambda a: a.permute(-1, -3, -2), [T(S)], tol="exact")
    yield Case("aten::permute_copy.out", "f32_empty", lambda a: a.permute(1, 0), [T((0, 3))], tol="exact")
    yield Case("aten::permute_copy.out", "f32_channels_last", lambda a: a.permute(0, 2, 3, 1),
               [T((2, 3, 2, 2), channels_last=True)], tol="exact")
    yield Case("aten::permute_copy.out", "f32_transpose", lambda a: a.transpose(0, 1), [T((3, 5))], tol="exact")
    yield from sweep("aten::expand_copy.out", lambda a: a.expand(2, 3, 4), lambda dt: [T((3, 1), dt)], ALL, "exact")
    yield Case("aten::expand_copy.out", "f32_keep_minus1", lambda a: a.expand(5, -1, 4), [T((1, 2, 1))], tol="exact")
    yield Case("aten::expand_copy.out", "f32_zero_dim", lambda a: a.expand(2, 3), [T(())], tol="exact")
    yield Case("aten::expand_copy.out", "f32_to_empty", lambda a: a.expand(0, 3), [T((1, 3))], tol="exact")
    yield Case("aten::expand_copy.out", "f32_explicit", lambda a: A.expand_copy(a, [2, 3, 4]), [T((3, 4))], tol="exact")
    # cat / stack
    yield from sweep("aten::cat.out", lambda a, b: torch.cat([a, b], 1), lambda dt: [T((2, 3), dt), T((2, 2), dt, salt=1)],
                     ALL, "exact")
    yield Case("aten::cat.out", "f32_three_neg_dim", lambda a, b, c: torch.cat([a, b, c], -1),
               [T((2, 1, 2)), T((2, 1, 3), salt=1), T((2, 1, 1), salt=2)], tol="exact")
    yield Case("aten::cat.out", "f32_dim0", lambda a, b: torch.cat([a, b]), [T((1, 3)), T((2, 3), salt=1)], tol="exact")
    yield Case("aten::cat.out", "mixed_i32_f32", lambda a, b: torch.cat([a, b]), [T((1, 3), I32), T((2, 3), F32)],
               tol="exact")
    yield Case("aten::cat.out", "mixed_bool_u8_f16", lambda a, b, c: torch.cat([a, b, c]),
               [T((1, 3), BOOL), T((2, 3), U8), T((1, 3), F16)], tol="exact")
    yield Case("aten::cat.out", "f32_empty_member", lambda a, b: torch.cat([a, b], 1), [T((2, 0)), T((2, 3))],
               tol="exact")
    yield Case("aten::cat.out", "f32_legacy_empty_1d", lambda a, b: torch.cat([a, b], 0), [T((0,)), T((2, 3))],
               tol="exact")
    yield Case("aten::cat.out", "f32_single", lambda a: torch.cat([a], 0), [T((2, 3))], tol="exact")
    yield Case("aten::cat.out", "f32_channels_last", lambda a, b: torch.cat([a, b], 1),
               [T((1, 2, 2, 2), channels_last=True), T((1, 3, 2, 2), salt=1, channels_last=True)], tol="exact")
    st = [A.stack.default]
    yield from sweep("aten::stack.out", lambda a, b: torch.stack([a, b], 1), lambda dt: [T((2, 3), dt), T((2, 3), dt, salt=1)],
                     ALL, "exact", preserve=st)
    yield Case("aten::stack.out", "f32_neg_dim", lambda a, b, c: torch.stack([a, b, c], -1),
               [T((2, 3)), T((2, 3), salt=1), T((2, 3), salt=2)], tol="exact", preserve=st)
    yield Case("aten::stack.out", "f32_zero_dim", lambda a, b: torch.stack([a, b]), [T(()), T((), salt=1)], tol="exact",
               preserve=st)
    yield Case("aten::stack.out", "f32_empty", lambda a, b: torch.stack([a, b], 0), [T((0, 3)), T((0, 3), salt=1)],
               tol="exact", preserve=st)
    yield Case("aten::stack.out", "mixed_i64_f32", lambda a, b: torch.stack([a, b]), [T((3,), I64), T((3,), F32)],
               tol="exact", preserve=st)
    # split / unbind / narrow / slice / select
    yield from sweep("aten::split_copy.Tensor_out", lambda a: A.split_copy.Tensor(a, 2, 1),
                     lambda dt: [T((2, 5), dt)], ALL, "exact")
    yield Case("aten::split_copy.Tensor_out", "f32_neg_dim_even", lambda a: A.split_copy.Tensor(a, 2, -1),
               [T((3, 4))], tol="exact")
    yield Case("aten::split_copy.Tensor_out", "f32_larger_than_dim", lambda a: A.split_copy.Tensor(a, 5, 0),
               [T((3, 2))], tol="exact")
    yield from sweep("aten::split_with_sizes_copy.out", lambda a: torch.split(a, [1, 3], -1), lambda dt: [T((2, 4), dt)],
                     ALL, "exact")
    yield Case("aten::split_with_sizes_copy.out", "f32_zero_piece", lambda a: torch.split(a, [0, 2, 1], 0),
               [T((3, 2))], tol="exact")
    yield Case("aten::split_with_sizes_copy.out", "f32_3d_dim1", lambda a: torch.split(a, [2, 1], 1), [T(S)],
               tol="exact")
    yield from sweep("aten::unbind_copy.int_out", lambda a: A.unbind_copy.int(a, 1), lambda dt: [T((2, 3), dt)], ALL,
                     "exact")
    yield Case("aten::unbind_copy.int_out", "f32_neg_dim", lambda a: A.unbind_copy.int(a, -1), [T(S)], tol="exact")
    yield Case("aten::unbind_copy.int_out", "f32_dim0", lambda a: A.unbind_copy.int(a, 0), [T(S)], tol="exact")
    yield from sweep("aten::narrow_copy.out", lambda a: A.narrow_copy(a, 1, 1, 2), lambda dt: [T((3, 4), dt)], ALL,
                     "exact")
    yield Case("aten::narrow_copy.out", "f32_neg_dim_neg_start", lambda a: A.narrow_copy(a, -1, -3, 2), [T(S)],
               tol="exact")
    yield Case("aten::narrow_copy.out", "f32_empty", lambda a: A.narrow_copy(a, 0, 1, 0), [T((3, 4))], tol="exact")
    yield from sweep("aten::slice_copy.Tensor_out", lambda a: a[:, 1:3], lambda dt: [T((3, 4), dt)], ALL, "exact")
    for name, fn in [("step2", lambda a: a[..., ::2]), ("neg_start", lambda a: a[-2:]),
                     ("end_clamped", lambda a: a[:, 1:100]), ("step3_offset", lambda a: a[:, 1::3]),
                     ("empty_range", lambda a: a[2:1]), ("neg_end", lambda a: a[:, :-1])]:
        yield Case("aten::slice_copy.Tensor_out", f"f32_{name}", fn, [T((3, 7))], tol="exact")
    yield Case("aten::slice_copy.Tensor_out", "f32_channels_last", lambda a: a[:, 1:],
               [T((2, 3, 2, 2), channels_last=True)], tol="exact")
    yield from sweep("aten::select_copy.int_out", lambda a: a[:, 1], lambda dt: [T((3, 4), dt)], ALL, "exact")
    yield Case("aten::select_copy.int_out", "f32_neg_index", lambda a: a[:, :, -1], [T(S)], tol="exact")
    yield Case("aten::select_copy.int_out", "f32_to_zero_dim", lambda a: a[2], [T((4,))], tol="exact")
    yield Case("aten::select_copy.int_out", "f32_explicit_neg_dim", lambda a: A.select_copy.int(a, -2, 0), [T(S)],
               tol="exact")
    # squeeze / unsqueeze / t / transpose
    sq = [A.squeeze_copy.dim]
    yield from sweep("aten::squeeze_copy.dim_out", lambda a: A.squeeze_copy.dim(a, 1), lambda dt: [T((3, 1, 2), dt)],
                     ALL, "exact", preserve=sq)
    yield Case("aten::squeeze_copy.dim_out", "f32_not_size1", lambda a: A.squeeze_copy.dim(a, 0), [T((3, 1, 2))],
               tol="exact", preserve=sq)
    yield Case("aten::squeeze_copy.dim_out", "f32_neg_dim", lambda a: A.squeeze_copy.dim(a, -1), [T((3, 2, 1))],
               tol="exact", preserve=sq)
    yield Case("aten::squeeze_copy.dim_out", "f32_zero_dim", lambda a: A.squeeze_copy.dim(a, 0), [T(())], tol="exact",
               preserve=sq)
    yield from sweep("aten::squeeze_copy.dims_out", lambda a: a.squeeze((1, 3)), lambda dt: [T((3, 1, 2, 1), dt)], ALL,
                     "exact")
    yield Case("aten::squeeze_copy.dims_out", "f32_all", lambda a: a.squeeze(), [T((1, 3, 1, 2))], tol="exact")
    yield Case("aten::squeeze_copy.dims_out", "f32_neg_and_not_size1", lambda a: a.squeeze((-1, 0)), [T((3, 1, 1))],
               tol="exact")
    yield Case("aten::squeeze_copy.dims_out", "f32_empty", lambda a: a.squeeze(1), [T((0, 1, 2))], tol="exact")
    yield from sweep("aten::unsqueeze_copy.out", lambda a: a.unsqueeze(1), lambda dt: [T((3, 4), dt)], ALL, "exact")
    yield Case("aten::unsqueeze_copy.out", "f32_neg_dim", lambda a: a.unsqueeze(-1), [T((3, 4))], tol="exact")
    yield Case("aten::unsqueeze_copy.out", "f32_zero_dim", lambda a: a.unsqueeze(0), [T(())], tol="exact")
    yield Case("aten::unsqueeze_copy.out", "f32_neg_first", lambda a: a.unsqueeze(-3), [T((3, 4))], tol="exact")
    tp = [A.t_copy.default]
    yield from sweep("aten::t_copy.out", lambda a: A.t_copy(a), lambda dt: [T((3, 4), dt)], ALL, "exact", preserve=tp)
    yield Case("aten::t_copy.out", "f32_1d", lambda a: A.t_copy(a), [T((5,))], tol="exact", preserve=tp)
    yield Case("aten::t_copy.out", "f32_zero_dim", lambda a: A.t_copy(a), [T(())], tol="exact", preserve=tp)
    yield Case("aten::t_copy.out", "f32_empty", lambda a: A.t_copy(a), [T((0, 3))], tol="exact", preserve=tp)
    tr = [A.transpose_copy.int]
    yield from sweep("aten::transpose_copy.int_out", lambda a: A.transpose_copy.int(a, 0, 2), lambda dt: [T(S, dt)],
                     ALL, "exact", preserve=tr)
    yield Case("aten::transpose_copy.int_out", "f32_neg_dims", lambda a: A.transpose_copy.int(a, -1, -2), [T(S)],
               tol="exact", preserve=tr)
    yield Case("aten::transpose_copy.int_out", "f32_same_dim", lambda a: A.transpose_copy.int(a, 1, 1), [T(S)],
               tol="exact", preserve=tr)
    # diagonal / as_strided
    yield from sweep("aten::diagonal_copy.out", lambda a: torch.diagonal(a), lambda dt: [T((3, 4), dt)], ALL, "exact")
    for name, fn in [("offset1", lambda a: torch.diagonal(a, 1)), ("offset_neg1", lambda a: torch.diagonal(a, -1)),
                     ("offset_out_of_range", lambda a: torch.diagonal(a, 5)),
                     ("dims_neg", lambda a: torch.diagonal(a, 0, -1, -3))]:
        yield Case("aten::diagonal_copy.out", f"f32_{name}", fn, [T((3, 4, 4)) if "dims" in name else T((3, 4))],
                   tol="exact")
    yield from sweep("aten::as_strided_copy.out", lambda a: torch.as_strided(a, (2, 2), (1, 2)), lambda dt: [T((3, 4), dt)],
                     ALL, "exact")
    yield Case("aten::as_strided_copy.out", "f32_offset", lambda a: torch.as_strided(a, (2, 3), (4, 1), 2), [T((3, 4))],
               tol="exact")
    yield Case("aten::as_strided_copy.out", "f32_overlapping", lambda a: torch.as_strided(a, (3, 3), (1, 1)),
               [T((3, 4))], tol="exact")
    yield Case("aten::as_strided_copy.out", "f32_zero_stride", lambda a: torch.as_strided(a, (2, 3), (0, 1)),
               [T((3, 4))], tol="exact")
    # flip / roll / tril / repeat
    yield from sweep("aten::flip.out", lambda a: torch.flip(a, (0,)), lambda dt: [T(S, dt)], ALL, "exact")
    yield Case("aten::flip.out", "f32_neg_dims", lambda a: torch.flip(a, (-1, 0)), [T(S)], tol="exact")
    yield Case("aten::flip.out", "f32_empty", lambda a: torch.flip(a, (1,)), [T((2, 0))], tol="exact")
    yield Case("aten::flip.out", "f32_zero_dim", lambda a: torch.flip(a, ()), [T(())], tol="exact")
    rl = [A.roll.default]
    yield from sweep("aten::roll.out", lambda a: torch.roll(a, 1, 1), lambda dt: [T(S, dt)], ALL, "exact", preserve=rl)
    yield Case("aten::roll.out", "f32_multi_neg", lambda a: torch.roll(a, (-1, 5), (-1, 0)), [T(S)], tol="exact",
               preserve=rl)
    yield Case("aten::roll.out", "f32_flat", lambda a: torch.roll(a, 3), [T((3, 4))], tol="exact", preserve=rl)
    yield Case("aten::roll.out", "f32_shift_over_size", lambda a: torch.roll(a, 7, 0), [T((3, 2))], tol="exact",
               preserve=rl)
    yield Case("aten::roll.out", "f32_empty", lambda a: torch.roll(a, 1, 0), [T((0, 2))], tol="exact", preserve=rl)
    tl = [A.tril.default]
    yield from sweep("aten::tril.out", lambda a: torch.tril(a), lambda dt: [T((4, 4), dt)], ALL, "exact", preserve=tl)
    for k in (1, -1, 5, -5):
        yield Case("aten::tril.out", f"f32_diag_{k}".replace("-", "m"), lambda a, k=k: torch.tril(a, k), [T((3, 5))],
                   tol="exact", preserve=tl)
    yield Case("aten::tril.out", "f32_batched", lambda a: torch.tril(a), [T((2, 3, 3))], tol="exact", preserve=tl)
    yield Case("aten::tril.out", "f32_empty", lambda a: torch.tril(a), [T((0, 3))], tol="exact", preserve=tl)
    yield from sweep("aten::repeat.out", lambda a: a.repeat(2, 1, 3), lambda dt: [T((2, 3), dt)], ALL, "exact")
    yield Case("aten::repeat.out", "f32_ones", lambda a: a.repeat(1, 1), [T((2, 3))], tol="exact")
    yield Case("aten::repeat.out", "f32_zero", lambda a: a.repeat(0, 2), [T((2, 3))], tol="exact")
    yield Case("aten::repeat.out", "f32_zero_dim", lambda a: a.repeat(3), [T(())], tol="exact")
    ri = [A.repeat_interleave.Tensor]
    for dt in (I32, I64):
        yield Case("aten::repeat_interleave.Tensor_out", short(dt),
                   lambda r: torch.repeat_interleave(r, output_size=6), [idx([1, 0, 3, 2], dt)], tol="exact",
                   exceptions=ri)
    yield Case("aten::repeat_interleave.Tensor_out", "i64_all_zero", lambda r: torch.repeat_interleave(r, output_size=0),
               [idx([0, 0], I64)], tol="exact", exceptions=ri)
    # pixel shuffle / unshuffle / unfold
    ps, pu = [A.pixel_shuffle.default], [A.pixel_unshuffle.default]
    yield from sweep("aten::pixel_shuffle.out", lambda a: torch.pixel_shuffle(a, 2), lambda dt: [T((1, 8, 2, 3), dt)],
                     ALL, "exact", preserve=ps)
    yield Case("aten::pixel_shuffle.out", "f32_factor3_batch", lambda a: torch.pixel_shuffle(a, 3),
               [T((2, 9, 2, 1))], tol="exact", preserve=ps)
    yield Case("aten::pixel_shuffle.out", "f32_extra_batch_dims", lambda a: torch.pixel_shuffle(a, 2),
               [T((2, 1, 4, 2, 2))], tol="exact", preserve=ps)
    yield from sweep("aten::pixel_unshuffle.out", lambda a: torch.pixel_unshuffle(a, 2), lambda dt: [T((1, 2, 4, 6), dt)],
                     ALL, "exact", preserve=pu)
    yield Case("aten::pixel_unshuffle.out", "f32_factor3", lambda a: torch.pixel_unshuffle(a, 3), [T((2, 1, 3, 6))],
               tol="exact", preserve=pu)
    uf = [A.unfold.default]
    yield from sweep("aten::unfold_copy.out", lambda a: a.unfold(1, 2, 1), lambda dt: [T((3, 5), dt)], ALL, "exact",
                     exceptions=uf)
    for name, (d, size, step) in {"step2_neg_dim": (-1, 3, 2), "full": (0, 3, 1), "size1": (1, 1, 3)}.items():
        yield Case("aten::unfold_copy.out", f"f32_{name}", lambda a, d=d, s=size, t=step: a.unfold(d, s, t),
                   [T((3, 5))], tol="exact", exceptions=uf)
    yield Case("aten::unfold_copy.out", "f32_zero_dim", lambda a: a.unfold(0, 1, 1), [T(())], tol="exact",
               exceptions=uf)
    # Complex views: etch has no complex dtypes; the cases exist for when it does.
    yield Case("aten::view_as_real_copy.out", "c64", lambda a: torch.view_as_real(a), [T((3, 4), C64)], tol="exact",
               exceptions=[A.view_as_real.default])
    yield Case("aten::_conj_physical.out", "c64", lambda a: torch.conj_physical(a), [T((3, 4), C64)], tol="exact",
               exceptions=[A._conj_physical.default])

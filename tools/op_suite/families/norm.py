"""Normalization and softmax: layer_norm (with/without affine, several normalized dims),
group_norm, batch_norm inference and training without running stats (instance norm), softmax
and log_softmax (dims, NaN/inf rows, half_to_float)."""
import torch
import torch.nn.functional as F

from suite import A, F16, F32, FLOATS, Case, T, sweep

X = (2, 4, 3, 5)


def cases():
    yield from sweep("aten::native_layer_norm.out", lambda x, w, b: F.layer_norm(x, (5,), w, b),
                     lambda dt: [T(X, dt), T((5,), dt, salt=1), T((5,), dt, salt=2)], FLOATS, "accum")
    ln = lambda x, w, b: A.native_layer_norm(x, [3, 5], w, b, 1e-5)  # noqa: E731
    yield Case("aten::native_layer_norm.out", "f32_all_outputs_two_dims", ln,
               [T(X), T((3, 5), salt=1), T((3, 5), salt=2)], tol="accum")
    yield Case("aten::native_layer_norm.out", "f32_no_affine", lambda x: F.layer_norm(x, (3, 5)), [T(X)], tol="accum")
    yield Case("aten::native_layer_norm.out", "f32_eps", lambda x: F.layer_norm(x, (5,), eps=0.5), [T(X)], tol="accum")
    yield Case("aten::native_layer_norm.out", "f32_constant_rows", lambda x: F.layer_norm(x, (4,)),
               [torch.ones(3, 4)], tol="accum")
    yield Case("aten::native_layer_norm.out", "f32_special", lambda x: F.layer_norm(x, (5,)), [T((4, 5), special=True)],
               tol="accum")
    yield Case("aten::native_layer_norm.out", "f32_empty_batch", lambda x: F.layer_norm(x, (5,)), [T((0, 5))],
               tol="accum")
    yield from sweep("aten::native_group_norm.out", lambda x, w, b: F.group_norm(x, 2, w, b),
                     lambda dt: [T(X, dt), T((4,), dt, salt=1), T((4,), dt, salt=2)], FLOATS, "accum")
    gn = lambda x, w, b: A.native_group_norm(x, w, b, 2, 4, 15, 2, 1e-5)  # noqa: E731
    yield Case("aten::native_group_norm.out", "f32_all_outputs", gn, [T(X), T((4,), salt=1), T((4,), salt=2)],
               tol="accum")
    yield Case("aten::native_group_norm.out", "f32_one_group_no_affine", lambda x: F.group_norm(x, 1), [T(X)],
               tol="accum")
    yield Case("aten::native_group_norm.out", "f32_group_per_channel", lambda x: F.group_norm(x, 4), [T(X)],
               tol="accum")
    yield Case("aten::native_group_norm.out", "f32_3d_input", lambda x: F.group_norm(x, 2), [T((2, 4, 6))],
               tol="accum")
    bn = lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False, eps=1e-3)  # noqa: E731
    yield from sweep("aten::_native_batch_norm_legit_no_training.out", bn,
                     lambda dt: [T(X, dt), T((4,), dt, salt=1), T((4,), dt, 0.1, 2, salt=2), T((4,), dt, salt=3),
                                 T((4,), dt, salt=4)], FLOATS, "accum")
    yield Case("aten::_native_batch_norm_legit_no_training.out", "f32_no_affine",
               lambda x, m, v: F.batch_norm(x, m, v), [T(X), T((4,), salt=1), T((4,), F32, 0.1, 2, salt=2)],
               tol="accum")
    yield Case("aten::_native_batch_norm_legit_no_training.out", "f32_3d_input",
               lambda x, m, v: F.batch_norm(x, m, v), [T((2, 4, 6)), T((4,), salt=1), T((4,), F32, 0.1, 2, salt=2)],
               tol="accum")
    yield Case("aten::_native_batch_norm_legit_no_training.out", "f32_channels_last",
               lambda x, m, v: F.batch_norm(x, m, v), [T(X, channels_last=True), T((4,), salt=1),
                                                       T((4,), F32, 0.1, 2, salt=2)], tol="accum")
    yield from sweep("aten::_native_batch_norm_legit.no_stats_out",
                     lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                     lambda dt: [T(X, dt), T((4,), dt, salt=1), T((4,), dt, salt=2)], FLOATS, "accum")
    yield Case("aten::_native_batch_norm_legit.no_stats_out", "f32_instance_norm", lambda x: F.instance_norm(x),
               [T(X)], tol="accum")
    yield Case("aten::_native_batch_norm_legit.no_stats_out", "f32_all_outputs",
               lambda x: A._native_batch_norm_legit.no_stats(x, None, None, True, 0.1, 1e-5), [T(X)], tol="accum")
    for name, fn in (("_softmax", F.softmax), ("_log_softmax", F.log_softmax)):
        op = f"aten::{name}.out"
        yield from sweep(op, lambda x, fn=fn: fn(x, -1), lambda dt: [T(X, dt, -5, 5)], FLOATS, "accum")
        yield Case(op, "f32_dim1", lambda x, fn=fn: fn(x, 1), [T(X, F32, -5, 5)], tol="accum")
        yield Case(op, "f32_large_values", lambda x, fn=fn: fn(x, -1), [T((3, 4), F32, 50, 100)], tol="accum")
        yield Case(op, "f32_special", lambda x, fn=fn: fn(x, -1), [T((4, 5), special=True)], tol="accum")
        yield Case(op, "f32_neg_inf_row", lambda x, fn=fn: fn(x, -1),
                   [torch.tensor([[float("-inf"), 0.0, 1.0], [float("-inf")] * 3])], tol="accum")
        yield Case(op, "f32_zero_dim", lambda x, fn=fn: fn(x, 0), [T(())], tol="accum")
        yield Case(op, "f32_empty", lambda x, fn=fn: fn(x, -1), [T((0, 3))], tol="accum")
        yield Case(op, "f32_size1_dim", lambda x, fn=fn: fn(x, 1), [T((3, 1))], tol="accum")
        yield Case(op, "f32_channels_last", lambda x, fn=fn: fn(x, 1), [T(X, channels_last=True)], tol="accum")
        aop = getattr(A, name).default
        yield Case(op, "f16_half_to_float", lambda x, aop=aop: aop(x, -1, True), [T((3, 4), F16)], tol="accum")

"""Convolution (1-D, 2-D, transposed; stride, padding, dilation, groups, depthwise, no bias,
output_padding, channels-last) and convolution_backward (called explicitly)."""
import torch
import torch.nn.functional as F

from suite import A, F32, F64, FLOATS, Case, T, sweep

X, W = (2, 4, 5, 6), (6, 4, 3, 3)


def cases():
    yield from sweep("aten::convolution.out", lambda x, w, b: F.conv2d(x, w, b),
                     lambda dt: [T(X, dt), T(W, dt, salt=1), T((6,), dt, salt=2)], FLOATS, "accum")
    variants = {
        "stride2_pad1": dict(stride=2, padding=1),
        "dilation2": dict(dilation=2, padding=2),
        "groups2": dict(groups=2),
        "asym_stride_pad": dict(stride=(1, 2), padding=(2, 0)),
        "pad_same": dict(padding="same"),
    }
    for name, kw in variants.items():
        w = (6, 2, 3, 3) if kw.get("groups") == 2 else W
        yield Case("aten::convolution.out", f"f32_{name}", lambda x, w, b, kw=kw: F.conv2d(x, w, b, **kw),
                   [T(X), T(w, salt=1), T((6,), salt=2)], tol="accum")
    yield Case("aten::convolution.out", "f32_no_bias", lambda x, w: F.conv2d(x, w), [T(X), T(W, salt=1)], tol="accum")
    yield Case("aten::convolution.out", "f32_depthwise", lambda x, w: F.conv2d(x, w, groups=4, padding=1),
               [T(X), T((8, 1, 3, 3), salt=1)], tol="accum")
    yield Case("aten::convolution.out", "f32_1x1", lambda x, w: F.conv2d(x, w), [T(X), T((3, 4, 1, 1), salt=1)],
               tol="accum")
    yield Case("aten::convolution.out", "f32_channels_last", lambda x, w, b: F.conv2d(x, w, b, padding=1),
               [T(X, channels_last=True), T(W, salt=1, channels_last=True), T((6,), salt=2)], tol="accum")
    yield Case("aten::convolution.out", "f32_special", lambda x, w: F.conv2d(x, w),
               [T((1, 2, 4, 4), special=True), T((2, 2, 2, 2), salt=1)], tol="accum")
    yield Case("aten::convolution.out", "f32_empty_batch", lambda x, w: F.conv2d(x, w), [T((0, 4, 5, 6)), T(W, salt=1)],
               tol="accum")
    yield Case("aten::convolution.out", "f32_conv1d", lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1),
               [T((2, 3, 9)), T((4, 3, 3), salt=1), T((4,), salt=2)], tol="accum")
    yield Case("aten::convolution.out", "f64_conv1d_dilation_groups",
               lambda x, w: F.conv1d(x, w, dilation=2, groups=3), [T((1, 3, 9), F64), T((6, 1, 3), F64, salt=1)],
               tol="accum")
    yield from sweep("aten::convolution.out", lambda x, w, b: F.conv_transpose2d(x, w, b),
                     lambda dt: [T((2, 4, 3, 3), dt), T((4, 3, 2, 2), dt, salt=1), T((3,), dt, salt=2)], FLOATS,
                     "accum", prefix="transposed_")
    yield Case("aten::convolution.out", "f32_transposed_stride_pad_outpad",
               lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
               [T((1, 4, 3, 3)), T((4, 2, 3, 3), salt=1)], tol="accum")
    yield Case("aten::convolution.out", "f32_transposed_groups_dilation",
               lambda x, w: F.conv_transpose2d(x, w, groups=2, dilation=2),
               [T((1, 4, 3, 3)), T((4, 3, 2, 2), salt=1)], tol="accum")
    yield Case("aten::convolution.out", "f32_transposed_1d", lambda x, w, b: F.conv_transpose1d(x, w, b, stride=3),
               [T((2, 3, 4)), T((3, 2, 3), salt=1), T((2,), salt=2)], tol="accum")
    bw = [A.convolution_backward.default]

    def backward(mask, stride=(1, 1), padding=(0, 0), groups=1, transposed=False):
        def fn(g, x, w):
            grads = A.convolution_backward(g, x, w, [w.shape[1] * groups if transposed else w.shape[0]], list(stride),
                                           list(padding), [1, 1], transposed, [0, 0], groups, mask)
            return tuple(t for t in grads if t is not None)  # masked-out gradients are None
        return fn

    yield from sweep("aten::convolution_backward.out", backward([True, True, True]),
                     lambda dt: [T((2, 6, 3, 4), dt), T(X, dt, salt=1), T(W, dt, salt=2)], [F32, F64], "accum",
                     exceptions=bw)
    yield Case("aten::convolution_backward.out", "f32_stride2_pad1", backward([True, True, True], (2, 2), (1, 1)),
               [T((2, 6, 3, 3)), T(X, salt=1), T(W, salt=2)], tol="accum", exceptions=bw)
    yield Case("aten::convolution_backward.out", "f32_groups2_input_only", backward([True, False, False], groups=2),
               [T((2, 6, 3, 4)), T(X, salt=1), T((6, 2, 3, 3), salt=2)], tol="accum", exceptions=bw)
    yield Case("aten::convolution_backward.out", "f32_weight_bias_only", backward([False, True, True]),
               [T((2, 6, 3, 4)), T(X, salt=1), T(W, salt=2)], tol="accum", exceptions=bw)

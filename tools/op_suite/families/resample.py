"""Resampling: nearest and bilinear upsampling (size and scale factor, align_corners, downscale),
antialiased bilinear, grid_sample (bilinear/nearest, zeros/border/reflection padding,
align_corners, out-of-range grid)."""
import torch
import torch.nn.functional as F

from suite import F32, F64, FLOATS, Case, T, sweep

X = (2, 3, 4, 5)


def cases():
    up = lambda **kw: (lambda x: F.interpolate(x, **kw))  # noqa: E731
    yield from sweep("aten::upsample_nearest2d.vec_out", up(scale_factor=2, mode="nearest"), lambda dt: [T(X, dt)],
                     FLOATS + [torch.uint8], "exact")
    for name, kw in {"size": dict(size=(7, 3)), "scale_fractional": dict(scale_factor=1.5),
                     "downscale": dict(size=(3, 2)), "rect_scale": dict(scale_factor=(2, 3))}.items():
        yield Case("aten::upsample_nearest2d.vec_out", f"f32_{name}", up(mode="nearest", **kw), [T(X)], tol="exact")
    yield Case("aten::upsample_nearest2d.vec_out", "f32_channels_last", up(scale_factor=2, mode="nearest"),
               [T(X, channels_last=True)], tol="exact")
    yield from sweep("aten::upsample_bilinear2d.vec_out", up(scale_factor=2, mode="bilinear"), lambda dt: [T(X, dt)],
                     FLOATS, "accum")
    for name, kw in {"align_corners": dict(size=(7, 9), align_corners=True),
                     "size": dict(size=(7, 3)), "scale_fractional": dict(scale_factor=1.5),
                     "downscale": dict(size=(3, 2)), "downscale_align": dict(size=(3, 2), align_corners=True),
                     "to_one": dict(size=(1, 1), align_corners=True)}.items():
        yield Case("aten::upsample_bilinear2d.vec_out", f"f32_{name}", up(mode="bilinear", **kw), [T(X)], tol="accum")
    yield Case("aten::upsample_bilinear2d.vec_out", "f32_channels_last", up(scale_factor=2, mode="bilinear"),
               [T(X, channels_last=True)], tol="accum")
    yield Case("aten::upsample_bilinear2d.vec_out", "f32_special", up(scale_factor=2, mode="bilinear"),
               [T((1, 1, 3, 3), special=True)], tol="accum")
    aa = lambda **kw: (lambda x: F.interpolate(x, mode="bilinear", antialias=True, **kw))  # noqa: E731
    yield from sweep("aten::_upsample_bilinear2d_aa.out", aa(size=(2, 3)), lambda dt: [T(X, dt)], [F32, F64], "accum")
    for name, kw in {"upscale": dict(size=(6, 8)), "align_corners": dict(size=(3, 2), align_corners=True),
                     "mixed": dict(size=(2, 9))}.items():
        yield Case("aten::_upsample_bilinear2d_aa.out", f"f32_{name}", aa(**kw), [T(X)], tol="accum")
    gs = lambda **kw: (lambda x, g: F.grid_sample(x, g, **kw))  # noqa: E731
    grid = lambda dt=F32, lo=-1.0, hi=1.0: T((2, 3, 4, 2), dt, lo, hi, salt=1)  # noqa: E731
    yield from sweep("aten::grid_sampler_2d.out", gs(align_corners=False), lambda dt: [T(X, dt), grid(dt)], FLOATS,
                     "accum")
    for mode in ("bilinear", "nearest", "bicubic"):
        for pad in ("zeros", "border", "reflection"):
            for ac in (False, True):
                yield Case("aten::grid_sampler_2d.out", f"f32_{mode}_{pad}_{'ac' if ac else 'noac'}",
                           gs(mode=mode, padding_mode=pad, align_corners=ac), [T(X), grid(F32, -1.3, 1.3)],
                           tol="accum")
    yield Case("aten::grid_sampler_2d.out", "f64_nan_grid", gs(align_corners=False),
               [T(X, F64), T((2, 3, 4, 2), F64, special=True, salt=1)], tol="accum")

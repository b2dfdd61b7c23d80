"""Padding: constant_pad_nd (any rank, negative pads crop, value), reflection and replication
padding in 1-D, 2-D and 3-D."""
import torch
import torch.nn.functional as F

from suite import A, ALL, FLOATS, REALS, Case, T, sweep


def cases():
    yield from sweep("aten::constant_pad_nd.out", lambda x: F.pad(x, (1, 2)), lambda dt: [T((2, 3), dt)], ALL, "exact")
    yield Case("aten::constant_pad_nd.out", "f32_value_3d", lambda x: F.pad(x, (1, 0, 0, 2, 1, 1), value=-1.5),
               [T((2, 3, 2))], tol="exact")
    yield Case("aten::constant_pad_nd.out", "f32_negative_crop", lambda x: F.pad(x, (-1, 2, 1, -1)), [T((3, 4))],
               tol="exact")
    yield Case("aten::constant_pad_nd.out", "f32_empty_input", lambda x: F.pad(x, (1, 1)), [T((2, 0))], tol="exact")
    yield Case("aten::constant_pad_nd.out", "i64_value", lambda x: F.pad(x, (2, 2), value=7), [T((2, 3), torch.int64)],
               tol="exact")
    yield Case("aten::constant_pad_nd.out", "f32_channels_last", lambda x: F.pad(x, (1, 1, 1, 1)),
               [T((1, 2, 2, 3), channels_last=True)], tol="exact")
    for mode in ("reflect", "replicate"):
        name = "reflection" if mode == "reflect" else "replication"
        for d, shape, pads, extra in ((1, (2, 3, 5), (2, 1), (1, 5)), (2, (1, 2, 4, 5), (1, 2, 3, 0), (2, 4, 5)),
                                      (3, (1, 2, 3, 4, 5), (1, 1, 2, 0, 0, 2), (2, 3, 4, 5))):
            op = f"aten::{name}_pad{d}d.out"
            keep = [getattr(A, f"{name}_pad{d}d").default]
            dtypes = FLOATS if mode == "reflect" else REALS
            yield from sweep(op, lambda x, p=pads, m=mode: F.pad(x, p, mode=m), lambda dt, s=shape: [T(s, dt)], dtypes,
                             "exact", preserve=keep)
            yield Case(op, "f32_unbatched", lambda x, p=pads, m=mode: F.pad(x, p, mode=m), [T(extra)], tol="exact",
                       preserve=keep)
            yield Case(op, "f32_zero_pad", lambda x, m=mode, d=d: F.pad(x, (0,) * (2 * d), mode=m), [T(shape)],
                       tol="exact", preserve=keep)
            yield Case(op, "f32_special", lambda x, p=pads, m=mode: F.pad(x, p, mode=m), [T(shape, special=True)],
                       tol="exact", preserve=keep)
            if mode == "reflect":
                yield Case(op, "f32_max_pad", lambda x, m=mode, d=d, s=shape: F.pad(
                    x, tuple(v for k in range(d) for v in (s[-1 - k] - 1,) * 2), mode=m), [T(shape)], tol="exact",
                    preserve=keep)

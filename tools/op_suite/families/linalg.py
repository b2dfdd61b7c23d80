"""Matrix products and distances: mm, bmm, addmm (beta/alpha, broadcast bias), cdist (p = 0, 1,
2, 3, inf), pdist."""
import torch

from suite import BF16, F16, F32, F64, I64, REALS, Case, T, sweep


def cases():
    yield from sweep("aten::mm.out", torch.mm, lambda dt: [T((3, 4), dt, -3, 3), T((4, 5), dt, -3, 3, salt=1)],
                     REALS, "accum")
    yield Case("aten::mm.out", "f32_empty_inner", torch.mm, [T((3, 0)), T((0, 2))], tol="accum")
    yield Case("aten::mm.out", "f32_empty_outer", torch.mm, [T((0, 4)), T((4, 2))], tol="accum")
    yield Case("aten::mm.out", "f32_vector_like", torch.mm, [T((1, 8)), T((8, 1), salt=1)], tol="accum")
    yield Case("aten::mm.out", "f32_special", torch.mm, [T((3, 4), special=True), T((4, 2), salt=1)], tol="accum")
    yield Case("aten::mm.out", "f32_transposed_input", lambda a, b: torch.mm(a.t(), b), [T((4, 3)), T((4, 5), salt=1)],
               tol="accum")
    yield Case("aten::mm.out", "f32_long_inner", torch.mm, [T((2, 64)), T((64, 3), salt=1)], tol="accum")
    yield from sweep("aten::bmm.out", torch.bmm, lambda dt: [T((2, 3, 4), dt), T((2, 4, 5), dt, salt=1)], REALS,
                     "accum")
    yield Case("aten::bmm.out", "f32_empty_batch", torch.bmm, [T((0, 3, 4)), T((0, 4, 2))], tol="accum")
    yield Case("aten::bmm.out", "f32_empty_inner", torch.bmm, [T((2, 3, 0)), T((2, 0, 2))], tol="accum")
    yield Case("aten::bmm.out", "f32_special", torch.bmm, [T((2, 3, 4), special=True), T((2, 4, 2), salt=1)],
               tol="accum")
    yield from sweep("aten::addmm.out", torch.addmm,
                     lambda dt: [T((3, 5), dt, salt=2), T((3, 4), dt), T((4, 5), dt, salt=1)], REALS, "accum")
    yield Case("aten::addmm.out", "f32_row_bias_beta_alpha", lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2.0),
               [T((5,)), T((3, 4)), T((4, 5), salt=1)], tol="accum")
    yield Case("aten::addmm.out", "f32_col_bias", lambda c, a, b: torch.addmm(c, a, b), [T((3, 1)), T((3, 4)),
                                                                                        T((4, 5), salt=1)], tol="accum")
    yield Case("aten::addmm.out", "f32_scalar_bias_beta0", lambda c, a, b: torch.addmm(c, a, b, beta=0),
               [torch.tensor(float("nan")), T((3, 4)), T((4, 5), salt=1)], tol="accum")
    yield Case("aten::addmm.out", "i64_beta_alpha", lambda c, a, b: torch.addmm(c, a, b, beta=2, alpha=3),
               [T((3, 5), I64), T((3, 4), I64), T((4, 5), I64, salt=1)], tol="accum")
    yield Case("aten::addmm.out", "f32_empty_inner", torch.addmm, [T((3, 2)), T((3, 0)), T((0, 2))], tol="accum")
    yield Case("aten::addmm.out", "f32_linear", lambda x, w, b: torch.nn.functional.linear(x, w, b),
               [T((3, 4)), T((5, 4), salt=1), T((5,), salt=2)], tol="accum")
    for p in (0.0, 1.0, 2.0, 3.0, float("inf")):
        tag = "inf" if p == float("inf") else str(int(p))
        yield from sweep("aten::_cdist_forward.out", lambda a, b, p=p: torch.cdist(a, b, p),
                         lambda dt: [T((3, 4), dt), T((5, 4), dt, salt=1)], [F32, F64], "accum", prefix=f"p{tag}_")
    yield Case("aten::_cdist_forward.out", "f32_batched", lambda a, b: torch.cdist(a, b),
               [T((2, 3, 4)), T((2, 5, 4), salt=1)], tol="accum")
    yield Case("aten::_cdist_forward.out", "f32_broadcast_batch", lambda a, b: torch.cdist(a, b),
               [T((2, 1, 3, 4)), T((3, 5, 4), salt=1)], tol="accum")
    yield Case("aten::_cdist_forward.out", "f32_empty", lambda a, b: torch.cdist(a, b), [T((0, 4)), T((5, 4), salt=1)],
               tol="accum")
    yield Case("aten::_cdist_forward.out", "f32_mm_mode", lambda a, b: torch.cdist(a, b, compute_mode=
                                                                                   "use_mm_for_euclid_dist"),
               [T((3, 4)), T((5, 4), salt=1)], tol="accum")
    yield Case("aten::_cdist_forward.out", "f16", lambda a, b: torch.cdist(a, b), [T((3, 4), F16), T((5, 4), F16, salt=1)],
               tol="accum")
    yield Case("aten::_cdist_forward.out", "bf16", lambda a, b: torch.cdist(a, b),
               [T((3, 4), BF16), T((5, 4), BF16, salt=1)], tol="accum")
    for p in (0.0, 1.0, 2.0, 3.0, float("inf")):
        tag = "inf" if p == float("inf") else str(int(p))
        yield from sweep("aten::_pdist_forward.out", lambda a, p=p: torch.nn.functional.pdist(a, p),
                         lambda dt: [T((4, 3), dt)], [F32, F64], "accum", prefix=f"p{tag}_")
    yield Case("aten::_pdist_forward.out", "f32_one_row", lambda a: torch.nn.functional.pdist(a), [T((1, 3))],
               tol="accum")
    yield Case("aten::_pdist_forward.out", "f16", lambda a: torch.nn.functional.pdist(a), [T((4, 3), F16)], tol="accum")

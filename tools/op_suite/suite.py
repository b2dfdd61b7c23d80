"""Shared vocabulary of the operator conformance suite: dtypes, seeded input makers, tolerance
rules and the `Case` record the family files produce.

A family file (`families/NAME.py`) defines `cases()`, a generator of `Case`s. Inputs are made by
`T(...)`, whose values depend only on its arguments (a fixed seed derived from them), so the same
input spec gives the same tensor in every case and every run, and shared inputs are stored once.
"""
import zlib

import torch

F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
U8, I8, I16, I32, I64, BOOL = torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool
C64 = torch.complex64

FLOATS = [F32, F64, F16, BF16]
INTS = [U8, I8, I16, I32, I64]
ALL = FLOATS + INTS + [BOOL]
REALS = FLOATS + INTS

SHORT = {F32: "f32", F64: "f64", F16: "f16", BF16: "bf16", U8: "u8", I8: "i8", I16: "i16", I32: "i32",
         I64: "i64", BOOL: "bool", C64: "c64"}
NAME = {F32: "float32", F64: "float64", F16: "float16", BF16: "bfloat16", U8: "uint8", I8: "int8",
        I16: "int16", I32: "int32", I64: "int64", BOOL: "bool", C64: "complex64"}

A = torch.ops.aten

# Tolerance rule, by output dtype and the kind of computation (atol, rtol); integer and bool
# outputs are always compared exactly.
#  exact:  data movement, selection, sign/abs/rounding, comparisons: the result is one of the
#          inputs or exactly representable, so any difference is a bug.
#  arith:  one correctly rounded arithmetic step (add, mul, div, ...): a few ulps.
#  transc: transcendental functions (libm vs Sleef/glibc differ by ulps; f32 and 16-bit results
#          that straddle a rounding boundary differ by one ulp of the output type).
#  accum:  sums of products and multi-step formulas (reductions, matmul, conv, norms, softmax,
#          interpolation): summation order differs.
# 16-bit floats compute in f32 and round once, so their bound is one or two ulps of the output
# type (f16: 2^-10 relative, bf16: 2^-7) plus an absolute term for results near zero; `accum`
# allows more because PyTorch rounds some intermediates (e.g. bf16 matmul partial sums).
TOLERANCES = {
    "exact": {F64: (0.0, 0.0), F32: (0.0, 0.0), F16: (0.0, 0.0), BF16: (0.0, 0.0)},
    "arith": {F64: (1e-12, 1e-12), F32: (1e-6, 1e-6), F16: (1e-3, 2e-3), BF16: (1e-2, 1.6e-2)},
    "transc": {F64: (1e-10, 1e-9), F32: (1e-5, 1e-4), F16: (2e-3, 2e-3), BF16: (1.6e-2, 1.6e-2)},
    "accum": {F64: (1e-9, 1e-9), F32: (1e-4, 1e-4), F16: (1e-2, 1e-2), BF16: (5e-2, 5e-2)},
}
TOLERANCE_RULE = (
    "integer/bool outputs exact; float outputs pass when |got-want| <= atol + rtol*|want| (NaN matches NaN, "
    "equal infinities match), with (atol, rtol) from the case's kind and its lowest-precision float output: "
    + "; ".join(f"{kind}: " + ", ".join(f"{NAME[d]} ({a:g}, {r:g})" for d, (a, r) in t.items())
                for kind, t in TOLERANCES.items()))


def tolerance(kind, output_dtypes):
    """(atol, rtol) for a case whose outputs have `output_dtypes`."""
    floats = [d for d in output_dtypes if d in (F64, F32, F16, BF16)]
    if not floats:
        return 0.0, 0.0
    order = [F64, F32, F16, BF16]
    worst = max(floats, key=order.index)
    return TOLERANCES[kind][worst]


class Case:
    """One method of a conformance program.

    op: the operator the case is about, qualified (`aten::add.out`); the exported method must call it.
    name: unique within the op; becomes the method name.
    fn: callable run on the inputs (eagerly for the expected outputs, and under torch.export), or
    module: a zero-argument factory of an nn.Module (for cases with buffers / state).
    tol: tolerance kind (see TOLERANCES).
    exceptions / preserve / skip_dim_order / reinplace: exporter options (EdgeCompileConfig's
    `_core_aten_ops_exception_list`, `preserve_ops`, `_skip_dim_order`, ExecutorchBackendConfig's
    `run_reinplace_pass`) needed to keep the target operator from being decomposed or rewritten.
    """

    def __init__(self, op, name, fn=None, inputs=(), tol="arith", module=None, exceptions=(), preserve=(),
                 skip_dim_order=False, reinplace=False):
        self.op, self.name, self.fn, self.inputs, self.tol = op, name, fn, list(inputs), tol
        self.module = module
        self.exceptions, self.preserve = tuple(exceptions), tuple(preserve)
        self.skip_dim_order, self.reinplace = skip_dim_order, reinplace
        self.family = None

    def config_key(self):
        return (tuple(str(o) for o in self.exceptions), tuple(str(o) for o in self.preserve), self.skip_dim_order,
                self.reinplace)

    def make_module(self):
        if self.module is not None:
            return self.module()
        return Fn(self.fn)


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def _rng(*spec):
    return torch.Generator().manual_seed(zlib.crc32(repr(spec).encode()))


def _int_range(dtype, lo, hi):
    info = torch.iinfo(dtype)
    return max(int(lo), info.min), min(int(hi), info.max)


SPECIALS = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0]


def T(shape, dtype=F32, lo=-3.0, hi=3.0, special=False, unique=False, salt=0, channels_last=False):
    """A seeded tensor of `shape` and `dtype`.

    Floats are uniform in [lo, hi) (rounded to the dtype); integers uniform in [lo, hi] clipped to
    the dtype; bools half true. `special` puts NaN, ±inf, 0 and -0 at seeded positions (floats).
    `unique` makes all values distinct (no ties for argmax/topk/sort-like ops). `salt` tells apart
    operands with otherwise equal specs. `channels_last` returns an NCHW tensor in NHWC memory.
    """
    shape = tuple(shape)
    g = _rng(shape, str(dtype), lo, hi, special, unique, salt)
    n = 1
    for s in shape:
        n *= s
    if dtype == BOOL:
        t = torch.rand(shape, generator=g) > 0.5
    elif dtype.is_floating_point:
        if unique and n > 0:
            # Distinct even after rounding to 16 bits: a permutation of spaced steps plus jitter.
            step = (hi - lo) / n
            base = torch.randperm(n, generator=g).double() * step + lo
            t = (base + torch.rand(n, generator=g, dtype=torch.float64) * step * 0.1).reshape(shape)
            if dtype in (F16, BF16):
                t = t.to(dtype)
                assert t.unique().numel() == n or n == 0, "not enough distinct 16-bit values; widen the range"
        else:
            t = torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo
        t = t.to(dtype)
        if special and n > 0:
            flat = t.reshape(-1)
            pos = torch.randperm(n, generator=g)[: min(len(SPECIALS), n)]
            for p, v in zip(pos.tolist(), SPECIALS):
                flat[p] = v
    elif dtype == C64:
        re = torch.rand(shape, generator=g) * (hi - lo) + lo
        im = torch.rand(shape, generator=g) * (hi - lo) + lo
        t = torch.complex(re, im)
    else:
        a, b = _int_range(dtype, lo, hi)
        if unique and n > 0:
            assert b - a + 1 >= n, "range too small for unique integers"
            t = (torch.randperm(b - a + 1, generator=g)[:n] + a).reshape(shape).to(dtype)
        else:
            t = torch.randint(a, b + 1, shape, generator=g, dtype=torch.int64).to(dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def idx(values, dtype=I64):
    """An index tensor with explicit values."""
    return torch.tensor(values, dtype=dtype)


def short(dtype):
    return SHORT[dtype]


def int_domain(dtype, lo, hi):
    """The part of [lo, hi] an integer dtype can hold (for unary ops with a restricted domain)."""
    if dtype.is_floating_point or dtype == BOOL:
        return lo, hi
    info = torch.iinfo(dtype)
    return max(lo, info.min), min(hi, info.max)


def sweep(op, fn, make, dtypes=ALL, tol="arith", prefix="", **kw):
    """One case per dtype: `make(dtype)` gives the inputs. Dtypes PyTorch rejects for the op are
    dropped by the generator (recorded in the manifest), so sweeping ALL is the way to cover
    "every dtype PyTorch supports"."""
    for dt in dtypes:
        yield Case(op, f"{prefix}{short(dt)}", fn, make(dt), tol=tol, **kw)


def unary_extras(op, fn, lo, hi, tol, wide=None, **kw):
    """Edge cases of a one-tensor op: NaN/±inf/±0 (f32, f16, bf16), out-of-domain values, empty,
    zero-dim, size-1 dims, a channels-last input."""
    yield Case(op, "f32_special", fn, [T((4, 5), F32, lo, hi, special=True)], tol=tol, **kw)
    yield Case(op, "f16_special", fn, [T((4, 5), F16, lo, hi, special=True)], tol=tol, **kw)
    yield Case(op, "bf16_special", fn, [T((4, 5), BF16, lo, hi, special=True)], tol=tol, **kw)
    if wide is not None:
        yield Case(op, "f32_wide", fn, [T((4, 6), F32, wide[0], wide[1])], tol=tol, **kw)
    yield Case(op, "f32_empty", fn, [T((0, 3), F32, lo, hi)], tol=tol, **kw)
    yield Case(op, "i64_empty", fn, [T((2, 0), I64, lo, hi)], tol=tol, **kw)
    yield Case(op, "f32_zero_dim", fn, [T((), F32, lo, hi)], tol=tol, **kw)
    yield Case(op, "i32_zero_dim", fn, [T((), I32, lo, hi)], tol=tol, **kw)
    yield Case(op, "f32_size1", fn, [T((1, 3, 1), F32, lo, hi)], tol=tol, **kw)
    yield Case(op, "f32_channels_last", fn, [T((2, 3, 2, 2), F32, lo, hi, channels_last=True)], tol=tol, **kw)


def nonzero(t):
    """`t` with zeros replaced by ones (integer divisors)."""
    t = t.clone()
    t[t == 0] = 1
    return t


MIXED = [(I32, F32), (U8, I8), (BOOL, I64), (BF16, F16)]


def binary_cases(op, fn, lo=-3.0, hi=3.0, tol="arith", dtypes=ALL, rhs=None, special=True, scalars=(2, 2.5),
                 **kw):
    """Cases of a tensor-tensor op: every dtype, broadcasting, mixed dtypes (PyTorch promotion,
    including zero-dim tensors and Python scalars), empty, size-1, NaN/inf, channels-last.
    `rhs(t)` adjusts the second operand (e.g. no integer zeros for division)."""
    rhs = rhs or (lambda t: t)

    def mk(shape, dt, salt=0, **k):
        t = T(shape, dt, lo, hi, salt=salt, **k)
        return rhs(t) if salt == 1 else t

    for dt in dtypes:
        yield Case(op, short(dt), fn, [mk((3, 4), dt), mk((3, 4), dt, 1)], tol=tol, **kw)
    yield Case(op, "f32_bcast", fn, [mk((2, 3, 4), F32), mk((3, 1), F32, 1)], tol=tol, **kw)
    yield Case(op, "i32_bcast_both", fn, [mk((1, 4), I32), mk((2, 3, 1), I32, 1)], tol=tol, **kw)
    for a, b in MIXED:
        yield Case(op, f"{short(a)}_{short(b)}", fn, [mk((3, 4), a), mk((3, 4), b, 1)], tol=tol, **kw)
    yield Case(op, "f32_zero_dim_f64", fn, [mk((3, 4), F32), mk((), F64, 1)], tol=tol, **kw)
    yield Case(op, "zero_dim_i64_i8", fn, [mk((), I64), mk((3, 4), I8, 1)], tol=tol, **kw)
    for s, dt in zip(scalars, (I32, F16)):
        tag = str(s).replace(".", "p").replace("-", "m")
        yield Case(op, f"{short(dt)}_scalar_{tag}", lambda a, s=s: fn(a, s), [mk((3, 4), dt)], tol=tol, **kw)
    yield Case(op, "f32_empty", fn, [mk((0, 4), F32), mk((4,), F32, 1)], tol=tol, **kw)
    yield Case(op, "f32_size1_zero_dim", fn, [mk((1, 1, 3), F32), mk((), F32, 1)], tol=tol, **kw)
    if special:
        for dt in (F32, F16):
            yield Case(op, f"{short(dt)}_special", fn,
                       [T((4, 5), dt, lo, hi, special=True), rhs(T((4, 5), dt, lo, hi, special=True, salt=1))],
                       tol=tol, **kw)
    yield Case(op, "f32_channels_last_bcast", fn,
               [mk((2, 3, 2, 2), F32, channels_last=True), mk((3, 1, 1), F32, 1)], tol=tol, **kw)


def scalar_cases(op, fn, scalars, lo=-3.0, hi=3.0, tol="arith", dtypes=ALL, special=True, **kw):
    """Cases of a tensor-scalar overload `fn(tensor, scalar)`: the first scalar with every dtype,
    the others (int, float, bool scalars promote differently) with a few; empty, zero-dim, NaN/inf."""
    for k, s in enumerate(scalars):
        tag = str(s).replace(".", "p").replace("-", "m")
        for dt in (dtypes if k == 0 else [d for d in (I32, F16, BOOL) if d in dtypes]):
            yield Case(op, f"{short(dt)}_{tag}", lambda a, s=s: fn(a, s), [T((3, 4), dt, lo, hi)], tol=tol, **kw)
    s = scalars[0]
    yield Case(op, "f32_empty", lambda a: fn(a, s), [T((0, 3), F32, lo, hi)], tol=tol, **kw)
    yield Case(op, "i64_zero_dim", lambda a: fn(a, s), [T((), I64, lo, hi)], tol=tol, **kw)
    if special:
        yield Case(op, "f32_special", lambda a: fn(a, s), [T((4, 5), F32, lo, hi, special=True)], tol=tol, **kw)


def renamed(prefix, cases):
    """The cases with `prefix` added to their names (several variants of one op)."""
    for c in cases:
        c.name = prefix + c.name
        yield c

#!/usr/bin/env python3
"""Generate etch's operator conformance suite from PyTorch.

usage: /work/venv/bin/python tools/op_suite/generate.py [FAMILY ...] [--jobs N] [--force]

Each family file (tools/op_suite/families/FAMILY.py) yields cases: a small function, seeded inputs
and the operator it is about. Cases of one operator (and one exporter configuration) become the
methods of one program, exported with the official toolchain (torch.export.export →
executorch.exir.to_edge → to_executorch, no delegates). Expected outputs are PyTorch eager results.
Writes tests/fixtures/ops/: FAMILY/*.pte, data/*.npy (content-addressed, shared between cases)
and manifest.json (see tests/fixtures/ops/README.md). Without FAMILY arguments every family is
regenerated; with them, the other families' entries are kept. A program whose exported graphs and
options are unchanged is not re-exported (the manifest keeps a key per program) unless --force.
"""
import argparse
import glob
import hashlib
import importlib
import io
import json
import multiprocessing
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.environ.get("OP_SUITE_OUT") or os.path.join(ROOT, "tests", "fixtures", "ops")
# Keys of programs already written (not committed): lets an interrupted run resume.
CACHE = os.path.join(HERE, ".cache", hashlib.sha1(OUT.encode()).hexdigest()[:8])
# Bump when the way programs are built changes, to invalidate every cached program.
GENERATOR_VERSION = 1

sys.path.insert(0, HERE)
import speedups  # noqa: E402

speedups.install()


def family_names():
    d = os.path.join(HERE, "families")
    return sorted(f[:-3] for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_"))


_CASES = {}


def family_cases(family):
    """The family's cases, grouped by program name (built once per process)."""
    if family not in _CASES:
        mod = importlib.import_module(f"families.{family}")
        programs, configs, seen = {}, {}, set()
        for case in mod.cases():
            case.family = family
            key = (case.op, case.name)
            if key in seen:
                raise SystemExit(f"{family}: duplicate case {case.op} {case.name}")
            seen.add(key)
            variants = configs.setdefault(case.op, [])
            if case.config_key() not in variants:
                variants.append(case.config_key())
            k = variants.index(case.config_key())
            prog = case.op.replace("::", ".") + ("" if k == 0 else f".v{k}")
            programs.setdefault(prog, []).append(case)
        _CASES[family] = programs
    return _CASES[family]


def method_name(case):
    return "".join(c if c.isalnum() or c == "_" else "_" for c in case.name)


def qualified(op):
    return f"{op.name}.{op.overload}" if op.overload else op.name


def flat_tensors(out):
    import torch
    leaves = torch.utils._pytree.tree_leaves(out)
    if not all(isinstance(t, torch.Tensor) for t in leaves):
        raise TypeError("an output is not a tensor")
    return leaves


def to_numpy(t):
    """(array, dtype name): bfloat16 is stored as float32 (numpy has no bfloat16)."""
    import torch
    from suite import NAME
    name = NAME[t.dtype]
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    return t.numpy().copy(), name


def first_line(e):
    s = f"{type(e).__name__}: {e}".strip().splitlines()
    return s[0][:300] if s else type(e).__name__


def export_key(eps, cases, config):
    import torch
    import executorch
    h = hashlib.sha256()
    h.update(repr((GENERATOR_VERSION, torch.__version__, getattr(executorch, "__version__", ""), config)).encode())
    for case in cases:
        ep = eps[method_name(case)]
        h.update(method_name(case).encode())
        h.update(ep.graph_module.code.encode())
        h.update(str(ep.graph_signature).encode())
        for t in case.inputs:
            h.update(repr((tuple(t.shape), str(t.dtype), tuple(t.stride()))).encode())
        for name, v in sorted(list(ep.state_dict.items()) + list(ep.constants.items()), key=lambda kv: kv[0]):
            h.update(name.encode())
            if isinstance(v, torch.Tensor):
                h.update(v.detach().contiguous().view(torch.uint8).numpy().tobytes() if v.numel() else b"")
                h.update(repr((tuple(v.shape), str(v.dtype))).encode())
    return h.hexdigest()[:24]


class _SetLikeList(list):
    """A list whose `extend` skips items it holds. executorch 1.5.1's verifiers extend the config's
    `preserve_ops` list with itself once per method (verifier.py: `_preserve_ops.extend(
    edge_compile_config.preserve_ops)` on the same list), doubling it each time: a program of 20
    methods with preserve_ops never finishes. Membership is all the list is used for."""

    def extend(self, items):
        for item in list(items):
            if item not in self:
                self.append(item)


def lower(eps, case0):
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge
    cfg = EdgeCompileConfig(_core_aten_ops_exception_list=_SetLikeList(case0.exceptions),
                            preserve_ops=_SetLikeList(case0.preserve), _skip_dim_order=case0.skip_dim_order)
    return to_edge(eps, compile_config=cfg).to_executorch(ExecutorchBackendConfig(run_reinplace_pass=case0.reinplace))


def operators_of(buffer):
    from executorch.exir._serialize._program import deserialize_pte_binary
    program = deserialize_pte_binary(buffer).program
    return {plan.name: [f"{o.name}.{o.overload}" if o.overload else o.name for o in plan.operators]
            for plan in program.execution_plan}


def build_program(job):
    """Worker: eager outputs, export and lowering of one program. Returns a plain dict."""
    family, prog, old_key, force = job
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases = family_cases(family)[prog]
    dropped, kept, eps, expected = [], [], {}, {}
    for case in cases:
        m = method_name(case)
        try:
            with torch.no_grad():
                outs = flat_tensors(case.make_module()(*[t.clone() for t in case.inputs]))
            expected[m] = [to_numpy(t) for t in outs]
        except Exception as e:
            dropped.append({"case": f"{case.op}/{m}", "stage": "eager", "reason": first_line(e)})
            continue
        try:
            eps[m] = torch.export.export(case.make_module(), tuple(t.clone() for t in case.inputs))
        except Exception as e:
            dropped.append({"case": f"{case.op}/{m}", "stage": "export", "reason": first_line(e)})
            continue
        kept.append(case)
    result = {"family": family, "program": f"{family}/{prog}.pte", "dropped": dropped, "cases": [], "pte": None}
    if not kept:
        return result
    config = kept[0].config_key()
    key = export_key(eps, kept, config)
    path = os.path.join(OUT, result["program"])
    buffer = None
    if not force and old_key == key and os.path.exists(path):
        with open(path, "rb") as f:
            buffer = f.read()
    else:
        for attempt in range(2):
            try:
                buffer = lower(eps, kept[0]).buffer
                break
            except Exception as e:
                if attempt or len(kept) == 1:
                    for c in kept:
                        dropped.append({"case": f"{c.op}/{method_name(c)}", "stage": "to_edge", "reason": first_line(e)})
                    kept = []
                    break
                # Find the methods the exporter refuses, drop them, lower the rest together.
                good = []
                for c in kept:
                    try:
                        lower({method_name(c): eps[method_name(c)]}, c)
                        good.append(c)
                    except Exception as e1:
                        dropped.append({"case": f"{c.op}/{method_name(c)}", "stage": "to_edge",
                                        "reason": first_line(e1)})
                kept = good
                eps = {method_name(c): eps[method_name(c)] for c in kept}
                key = export_key(eps, kept, config)
                if not kept:
                    break
        result["pte"] = buffer
    if not kept or buffer is None:
        result["pte"] = None
        return result
    ops = operators_of(buffer)
    # A case whose method does not call its operator tests nothing: drop it, loudly.
    for c in [c for c in kept if c.op not in ops.get(method_name(c), [])]:
        dropped.append({"case": f"{c.op}/{method_name(c)}", "stage": "target",
                        "reason": f"target operator not emitted; the method calls {ops.get(method_name(c))}"})
        kept.remove(c)
    result["key"] = key
    from suite import tolerance
    for c in kept:
        m = method_name(c)
        outs = expected[m]
        atol, rtol = tolerance(c.tol, [getattr(torch, d) for _, d in outs])
        result["cases"].append({
            "case": c, "method": m,
            "inputs": [to_numpy(t) for t in c.inputs],
            "outputs": outs,
            "atol": atol, "rtol": rtol, "operators": ops[m],
        })
    for r in result["cases"]:
        c = r.pop("case")
        r["name"] = f"{c.op}/{r['method']}"
        r["op"] = c.op
        r["family"] = c.family
        r["tol_kind"] = c.tol
    return result


def npy_bytes(arr):
    import numpy as np
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def store(arr, written):
    data = npy_bytes(arr)
    name = f"data/{hashlib.sha1(data).hexdigest()[:16]}.npy"
    if name not in written:
        path = os.path.join(OUT, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        written.add(name)
    return name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("families", nargs="*")
    ap.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("--force", action="store_true", help="re-export every program")
    a = ap.parse_args()
    all_families = family_names()
    families = a.families or all_families
    for f in families:
        if f not in all_families:
            raise SystemExit(f"no family {f}; families: {' '.join(all_families)}")
    os.makedirs(os.path.join(OUT, "data"), exist_ok=True)
    manifest_path = os.path.join(OUT, "manifest.json")
    old = {"cases": [], "programs": {}, "dropped": []}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = json.load(f)
    # Programs exported by an interrupted run are reused too: their keys are in the cache folder.
    keys = dict(old.get("programs", {}))
    for path in glob.glob(os.path.join(CACHE, "*", "*.key")):
        with open(path) as f:
            keys[os.path.relpath(path, CACHE)[:-4] + ".pte"] = f.read().strip()
    jobs = []
    for fam in families:
        for prog in family_cases(fam):
            path = f"{fam}/{prog}.pte"
            jobs.append((fam, prog, keys.get(path), a.force))
    print(f"{len(jobs)} programs, {sum(len(family_cases(j[0])[j[1]]) for j in jobs)} cases in {len(families)} families",
          flush=True)
    jobs.sort(key=lambda j: -len(family_cases(j[0])[j[1]]))
    started = time.time()
    results = []
    def arrived(r):
        # Write each program as soon as it is built, so an interrupted run loses nothing.
        if r["cases"] and r["pte"] is not None:
            path = os.path.join(OUT, r["program"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(r["pte"])
            key_path = os.path.join(CACHE, r["program"][:-4] + ".key")
            os.makedirs(os.path.dirname(key_path), exist_ok=True)
            with open(key_path, "w") as f:
                f.write(r["key"])
            r["pte"] = None

    if a.jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(a.jobs) as pool:
            for k, r in enumerate(pool.imap_unordered(build_program, jobs)):
                arrived(r)
                results.append(r)
                print(f"[{k + 1}/{len(jobs)} {time.time() - started:.0f}s] {r['program']}: {len(r['cases'])} cases"
                      + (f", {len(r['dropped'])} dropped" if r["dropped"] else ""), flush=True)
    else:
        for k, j in enumerate(jobs):
            r = build_program(j)
            arrived(r)
            results.append(r)
            print(f"[{k + 1}/{len(jobs)} {time.time() - started:.0f}s] {r['program']}: {len(r['cases'])} cases"
                  + (f", {len(r['dropped'])} dropped" if r["dropped"] else ""), flush=True)

    import torch
    import executorch
    from suite import TOLERANCE_RULE
    from not_exportable import NOT_EXPORTABLE
    keep = [c for c in old.get("cases", []) if c["family"] not in families]
    programs = {p: k for p, k in old.get("programs", {}).items() if p.split("/")[0] not in families}
    dropped = [d for d in old.get("dropped", []) if d.get("family") not in families]
    written = set()
    for r in sorted(results, key=lambda r: r["program"]):
        for d in r["dropped"]:
            d["family"] = r["family"]
        dropped += r["dropped"]
        if not r["cases"]:
            continue
        path = os.path.join(OUT, r["program"])
        if r["pte"] is not None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(r["pte"])
        programs[r["program"]] = r["key"]
        for c in r["cases"]:
            entry = {"name": c["name"], "family": c["family"], "op": c["op"], "program": r["program"],
                     "method": c["method"],
                     "inputs": [{"file": store(arr, written), "dtype": d, "shape": list(arr.shape)}
                                for arr, d in c["inputs"]],
                     "outputs": [{"file": store(arr, written), "dtype": d, "shape": list(arr.shape)}
                                 for arr, d in c["outputs"]],
                     "atol": c["atol"], "rtol": c["rtol"], "tolerance": c["tol_kind"],
                     "operators": c["operators"]}
            keep.append(entry)
    order = {f: i for i, f in enumerate(all_families)}
    keep.sort(key=lambda c: (order.get(c["family"], 99), c["program"]))
    # Files no longer referenced go away.
    referenced = {io_["file"] for c in keep for io_ in c["inputs"] + c["outputs"]}
    for name in os.listdir(os.path.join(OUT, "data")):
        if f"data/{name}" not in referenced:
            os.remove(os.path.join(OUT, "data", name))
    for fam in os.listdir(OUT):
        d = os.path.join(OUT, fam)
        if os.path.isdir(d) and fam != "data":
            for name in os.listdir(d):
                if f"{fam}/{name}" not in programs:
                    os.remove(os.path.join(d, name))
            if not os.listdir(d):
                os.rmdir(d)
    manifest = {
        "produced_by": f"tools/op_suite/generate.py with torch {torch.__version__}, executorch "
                       f"{getattr(executorch, '__version__', '1.5.1')}",
        "tolerance_rule": TOLERANCE_RULE,
        "not_exportable": [{"op": op, "reason": why} for op, why in sorted(NOT_EXPORTABLE.items())],
        "cases": keep,
        "programs": dict(sorted(programs.items())),
        "dropped": sorted(dropped, key=lambda d: d["case"]),
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    ops = {c["op"] for c in keep}
    for d in dropped:
        if d["family"] in families and d["stage"] in ("target", "export", "to_edge"):
            print(f"dropped ({d['stage']}) {d['case']}: {d['reason']}")
    print(f"wrote {len(keep)} cases of {len(ops)} operators, {len(programs)} programs; "
          f"{len([d for d in dropped if d['family'] in families])} cases dropped in this run "
          f"({time.time() - started:.0f}s)")


if __name__ == "__main__":
    main()

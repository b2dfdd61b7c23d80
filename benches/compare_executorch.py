#!/usr/bin/env python3
"""Side-by-side latency of etch, ExecuTorch (portable and XNNPACK) and ONNX Runtime on the same models.

usage (from the repository root, after `cargo build --release`):
    /work/venv/bin/python benches/compare_executorch.py [--only mobilenet_v2,mlp_towers] [--iters 50]
        [--portable-iters 3] [--rounds 3] [--threads 1,2] [--etch target/release/etch]
        [--cache DIR] [--rebuild] [--zoo NAME,...|all|none] [--runtimes et-portable,et-xnnpack,ort,etch]
        [--json results.json] [--list]
needs: pip install executorch==1.5.1 torch torchvision onnx onnxscript onnxruntime numpy

What one run does, per model:
  1. Builds the torch module with fixed seeds (weights made "trained-like" with tools/export_models.py's
     make_trained_like), makes its inputs, and computes the PyTorch eager outputs: the reference.
  2. Exports that same module and weights three ways (into --cache DIR, or a temporary directory):
     NAME.pte          portable program  (torch.export -> to_edge -> to_executorch)
     NAME.xnnpack.pte  XNNPACK-lowered   (to_edge_transform_and_lower(XnnpackPartitioner) -> to_executorch)
     NAME.onnx         ONNX              (torch.onnx.export, dynamo exporter, opset 18; legacy exporter
                                          at opset 17 if dynamo refuses)
     With --cache, exports are reused while the recipe stamp (versions + model description) matches.
  3. Runs every runtime once and compares its outputs with eager (max abs error, per-model atol/rtol).
     A runtime whose output is wrong is shown as WRONG and never counts as the fastest or in a ratio.
  4. Times, in --rounds rounds; each round visits every runtime in turn (the starting runtime rotates),
     so all runtimes share the machine's conditions. In a round each runtime loads fresh (timed: load
     time), does one first run plus 3 warm-up runs, then its share of the timed iterations:
       et-portable      ExecuTorch's own runtime (executorch.runtime), portable kernels (single-threaded)
       et-xnnpack@T     ExecuTorch's runtime, XNNPACK delegate, its threadpool reset to T threads
       ort@T            ONNX Runtime, intra_op_num_threads=T, sequential execution mode
       etch-seq@T       `etch bench NAME.pte --mode sequential --threads T` (one instruction at a time,
                        kernels spread over T threads)
       etch-par@T       `etch bench NAME.pte --mode parallel --threads T`
     Latency = median over all timed iterations (etch: median of its per-round medians; etch reports
     only statistics), min and p90 kept in the JSON. Load = median over rounds of program load + method
     init (ORT: InferenceSession creation). The Python runtimes reload in their long-lived process; so
     does etch: each `etch bench` process loads 3 times and reports the median of its 2 reloads (its
     first load, which also starts the thread pool, is in the JSON as first_load_ms). Runtimes whose single run exceeds 100 ms (ExecuTorch-portable
     on mobilenet_v2 takes ~1.6 s) get --portable-iters timed iterations instead of --iters.
  5. Prints one table per thread budget T: the best etch mode using at most T threads against et-xnnpack@T and ort@T; et-portable is single-threaded and appears in every
     table. Ratios are etch / other (below 1.0: etch is faster). --json FILE writes the same and more.
     "etch trip ns": the largest round trip of a cache line between two threads that `etch bench`
     measured before its rounds at that thread budget (2+ threads only), whichever mode won. On a VM whose host sometimes places
     the two vCPUs on different core complexes (this project's: 80-175 ns normally, 385-436 ns then)
     a high value marks a cell whose multi-threaded time is not comparable with the others.

Caveats: ExecuTorch and ONNX Runtime are timed from Python (a few microseconds of binding overhead per
run, visible on tiny models), etch inside its own process (`etch bench`). Numbers from a machine shared
with other work are noisy; compare ratios within one run, not across runs.

A runtime that fails (an exporter refusal, an operator etch lacks, a crash) is reported with its error
line and the run goes on. Exit status: 1 when some runtime's output differs from eager, else 0.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import export_models as zoo  # noqa: E402  (model builders and make_trained_like; imports torchvision)

SEED = 0
# Bump when a model definition or the export recipe changes, so --cache re-exports.
RECIPE_VERSION = 1
SLOW_RUN_MS = 100.0
WARMUP_RUNS = 3
ETCH_TIMEOUT_S = 1800
# Loads per `etch bench` process: its load time is the median of the reloads after the first, as
# the Python runtimes' is a reload in their long-lived process (the first load is kept in the JSON).
ETCH_LOADS = 3


# ---------------------------------------------------------------------------------------------------
# Models: one place per definition
# ---------------------------------------------------------------------------------------------------


@dataclass
class Model:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple]
    description: str
    atol: float = 1e-4
    rtol: float = 1e-4


class MlpTowers(nn.Module):
    """4 independent towers of 3 × (Linear(256, 256), ReLU), concatenated: (8, 256) -> (8, 1024)."""

    def __init__(self, towers: int = 4, width: int = 256, depth: int = 3):
        super().__init__()
        self.towers = nn.ModuleList(
            nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())]) for _ in range(towers)
        )

    def forward(self, x):
        return torch.cat([t(x) for t in self.towers], dim=1)


class InceptionBlock(nn.Module):
    """3x3 stem (3 -> 32), one GoogLeNet-style module (1x1 | 1x1->3x3 | 1x1->5x5 | maxpool->1x1, 64
    channels out), global mean, Linear(64, 10): (1, 3, 32, 32) -> (1, 10)."""

    def __init__(self):
        super().__init__()

        def conv(cin, cout, k):
            return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU())

        self.stem = conv(3, 32, 3)
        self.b1 = conv(32, 16, 1)
        self.b3 = nn.Sequential(conv(32, 16, 1), conv(16, 24, 3))
        self.b5 = nn.Sequential(conv(32, 8, 1), conv(8, 12, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(32, 12, 1))
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)
        return self.head(x.mean(dim=(2, 3)))


def image(size: int, channels: int = 3) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(1, channels, size, size, generator=g),)


# The named models; shapes as in ../shared/fixtures (same operators and sizes).
OWN_MODELS = [
    Model("mobilenet_v2", lambda: zoo.tvm.mobilenet_v2(), image(224),
          "torchvision mobilenet_v2 (1000 classes), 1x3x224x224", atol=1e-3, rtol=1e-3),
    Model("inception_block", InceptionBlock, image(32),
          "3x3 stem, one GoogLeNet-style module (4 branches, 64 channels), mean, Linear(64, 10); 1x3x32x32"),
    Model("mlp_towers", MlpTowers, lambda g: (torch.randn(8, 256, generator=g),),
          "4 towers of 3 x (Linear(256, 256), ReLU), concatenated; 8x256 -> 8x1024"),
    Model("res_block", lambda: zoo.BasicBlock(16, 16), image(12, channels=16),
          "torchvision ResNet BasicBlock(16, 16): conv-bn-relu-conv-bn + identity, relu; 1x16x12x12"),
    Model("transformer_layer",
          lambda: nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, dropout=0.0, batch_first=True),
          lambda g: (torch.randn(1, 16, 64, generator=g),),
          "nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, batch_first=True), 1x16x64"),
]

# Members of tools/export_models.py's zoo (the kernel issue's zoo) compared by default; --zoo changes it.
DEFAULT_ZOO = ["resnet18_narrow", "mobilenet_v3_small_w050", "vit_small", "bert_encoder", "gpt_decoder", "lstm"]


def zoo_model(spec) -> Model:
    return Model(spec.name, spec.build, spec.inputs, f"zoo: {spec.description}", spec.atol, spec.rtol)


def all_models(zoo_choice: str) -> tuple[list[Model], dict[str, Model]]:
    """(models compared by default, every model --only may name)."""
    known = {m.name: m for m in OWN_MODELS}
    for spec in zoo.ZOO:
        known.setdefault(spec.name, zoo_model(spec))
    if zoo_choice == "all":
        chosen_zoo = [s.name for s in zoo.ZOO if s.name not in {m.name for m in OWN_MODELS}]
    elif zoo_choice == "none":
        chosen_zoo = []
    elif zoo_choice:
        chosen_zoo = zoo_choice.split(",")
    else:
        chosen_zoo = DEFAULT_ZOO
    defaults = list(OWN_MODELS) + [known[n] for n in chosen_zoo if n in known and n not in {m.name for m in OWN_MODELS}]
    return defaults, known


# ---------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------


def flatten(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    result = []
    for item in out:
        result.extend(flatten(item))
    return result


@dataclass
class Prepared:
    model: Model
    inputs: tuple  # torch tensors
    input_files: list[str]
    expected: list[np.ndarray]
    pte: str | None = None
    xnnpack_pte: str | None = None
    onnx: str | None = None
    export_errors: dict = field(default_factory=dict)  # artifact -> error line
    export_seconds: dict = field(default_factory=dict)
    onnx_exporter: str | None = None


class RuntimeFailure(Exception):
    """A runtime's own error line (already says what failed)."""


def one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first if isinstance(e, RuntimeFailure) else f"{type(e).__name__}: {first}")[:400]


@contextlib.contextmanager
def native_log_captured():
    """Sends what native code writes to stderr (ExecuTorch logs every threadpool reset and cpuinfo
    probe) to a temporary file; yields a function returning its last line, for error messages."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            def last_line() -> str:
                tmp.seek(0)
                lines = [l.strip() for l in tmp.read().decode(errors="replace").splitlines() if l.strip()]
                return lines[-1] if lines else ""

            yield last_line
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def export_portable(model: nn.Module, inputs: tuple, path: str) -> None:
    from executorch.exir import to_edge

    with torch.no_grad():
        program = to_edge(torch.export.export(model, inputs)).to_executorch()
    with open(path, "wb") as f:
        f.write(program.buffer)


def export_xnnpack(model: nn.Module, inputs: tuple, path: str) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with torch.no_grad():
        exported = torch.export.export(model, inputs)
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    with open(path, "wb") as f:
        f.write(program.buffer)


def export_onnx(model: nn.Module, inputs: tuple, path: str) -> str:
    """The dynamo exporter first, the legacy TorchScript one if it refuses; returns which one worked."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, inputs, path, dynamo=True, opset_version=18, external_data=False, verbose=False)
        return "dynamo opset 18"
    except Exception as dynamo_error:  # noqa: BLE001 — fall back, report both if both fail
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, inputs, path, dynamo=False, opset_version=17)
            return f"legacy opset 17 (dynamo refused: {one_line(dynamo_error)})"
        except Exception as legacy_error:  # noqa: BLE001
            raise RuntimeError(f"dynamo: {one_line(dynamo_error)}; legacy: {one_line(legacy_error)}") from None


def build_reference(model: Model) -> tuple[nn.Module, tuple, list[np.ndarray]]:
    torch.manual_seed(SEED)
    module = model.build().eval()
    zoo.make_trained_like(module, model.inputs)
    inputs = model.inputs(torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        expected = [t.detach().numpy().copy() for t in flatten(module(*inputs))]
    return module, inputs, expected


def stamp_for(model: Model) -> dict:
    import executorch.version
    import onnx
    import torchvision

    return {
        "recipe": RECIPE_VERSION,
        "description": model.description,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "executorch": executorch.version.__version__,
        "onnx": onnx.__version__,
    }


def prepare(model: Model, cache: str, rebuild: bool, log) -> Prepared:
    module, inputs, expected = build_reference(model)
    input_files = []
    for j, x in enumerate(inputs):
        p = os.path.join(cache, f"{model.name}.in{j}.npy")
        np.save(p, x.numpy())
        input_files.append(p)
    prepared = Prepared(model, inputs, input_files, expected)

    stamp_path = os.path.join(cache, f"{model.name}.stamp.json")
    stamp = stamp_for(model)
    cached = {}
    if not rebuild and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            old = json.load(f)
        if old.get("stamp") == stamp:
            cached = old.get("artifacts", {})

    exporters = [
        ("pte", f"{model.name}.pte", lambda p: export_portable(module, inputs, p)),
        ("xnnpack_pte", f"{model.name}.xnnpack.pte", lambda p: export_xnnpack(module, inputs, p)),
        ("onnx", f"{model.name}.onnx", lambda p: export_onnx(module, inputs, p)),
    ]
    record = {}
    for key, filename, export in exporters:
        path = os.path.join(cache, filename)
        previous = cached.get(key)
        if previous and (previous.get("error") or os.path.exists(path)):
            record[key] = previous
        else:
            started = time.perf_counter()
            try:
                note = export(path)
                record[key] = {"ok": True, "note": note, "seconds": time.perf_counter() - started}
            except Exception as e:  # noqa: BLE001 — an exporter refusal is a result
                record[key] = {"error": one_line(e), "seconds": time.perf_counter() - started}
                if os.environ.get("COMPARE_TRACEBACK"):
                    traceback.print_exc()
            log(f"  exported {filename}: "
                + (f"error: {record[key]['error']}" if "error" in record[key] else f"{record[key]['seconds']:.1f} s"))
        if "error" in record[key]:
            prepared.export_errors[key] = record[key]["error"]
        else:
            setattr(prepared, key, path)
        prepared.export_seconds[key] = record[key].get("seconds")
        if key == "onnx" and record[key].get("note"):
            prepared.onnx_exporter = record[key]["note"]
    with open(stamp_path, "w") as f:
        json.dump({"stamp": stamp, "artifacts": record}, f, indent=1)
    return prepared


# ---------------------------------------------------------------------------------------------------
# Runtimes. Each runner: check() -> (outputs, first_run_ms, load_ms); timed_round(n) -> RoundResult.
# ---------------------------------------------------------------------------------------------------


@dataclass
class RoundResult:
    load_ms: float
    samples_ms: list[float] = field(default_factory=list)  # per iteration (Python runners)
    median_ms: float | None = None  # per-round statistics (etch)
    min_ms: float | None = None
    p90_ms: float | None = None
    first_load_ms: float | None = None  # etch: the process's first load, before the timed reloads
    # etch with 2+ threads: a cache line's round trip between two threads, measured by `etch bench`
    # before the round. Well above ~200 ns the VM's CPUs sit on different core complexes and
    # every multi-threaded number of that round is slow for it (see `etch bench`'s source).
    core_round_trip_ns: float | None = None


class PythonRunner:
    """Shared loop of the in-process runtimes: load, first run, warm-up, timed runs, release."""

    key = ""
    threads: int | None = None

    def load(self) -> None: ...

    def run(self) -> list[np.ndarray]: ...

    def release(self) -> None: ...

    def _timed_load(self) -> float:
        self.release()
        gc.collect()
        started = time.perf_counter()
        self.load()
        return (time.perf_counter() - started) * 1e3

    def check(self) -> tuple[list[np.ndarray], float, float]:
        load_ms = self._timed_load()
        started = time.perf_counter()
        outputs = self.run()
        first_ms = (time.perf_counter() - started) * 1e3
        self.release()
        return outputs, first_ms, load_ms

    def timed_round(self, iters: int, warmup: int) -> RoundResult:
        result = RoundResult(load_ms=self._timed_load())
        for _ in range(1 + warmup):
            self.run()
        for _ in range(iters):
            started = time.perf_counter()
            self.run()
            result.samples_ms.append((time.perf_counter() - started) * 1e3)
        self.release()
        return result


class ExecuTorchRunner(PythonRunner):
    """ExecuTorch's own runtime (executorch.runtime). With `threads`, the XNNPACK threadpool is reset to
    that size before loading (the delegate keeps a pointer to the pool, so the method is released first
    and loaded after every reset)."""

    def __init__(self, key: str, pte: str, inputs: tuple, threads: int | None):
        self.key, self.pte, self.inputs, self.threads = key, pte, list(inputs), threads
        self.program = self.method = None

    def load(self) -> None:
        from executorch.runtime import Runtime

        with native_log_captured() as native_log:
            try:
                if self.threads is not None:
                    from executorch.extension.pybindings import portable_lib

                    portable_lib._unsafe_reset_threadpool(self.threads)
                self.program = Runtime.get().load_program(self.pte)
                self.method = self.program.load_method("forward")
            except Exception as e:  # noqa: BLE001 — the reason is in ExecuTorch's log, not the exception
                raise RuntimeFailure(f"{one_line(e)} [log: {native_log()}]") from None

    def check(self) -> tuple[list[np.ndarray], float, float]:
        with native_log_captured() as native_log:
            try:
                return super().check()
            except RuntimeFailure:
                raise
            except Exception as e:  # noqa: BLE001
                raise RuntimeFailure(f"{one_line(e)} [log: {native_log()}]") from None

    def run(self) -> list[np.ndarray]:
        return [o.numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in self.method.execute(self.inputs)]

    def release(self) -> None:
        self.method = self.program = None


class OrtRunner(PythonRunner):
    """ONNX Runtime, CPU provider, all graph optimisations, intra_op_num_threads = threads, sequential."""

    def __init__(self, key: str, onnx_path: str, inputs: tuple, threads: int):
        self.key, self.onnx_path, self.threads = key, onnx_path, threads
        self.arrays = [x.numpy() for x in inputs]
        self.session = self.feed = None

    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self.onnx_path, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        if len(names) != len(self.arrays):
            raise RuntimeError(f"the ONNX graph takes {len(names)} inputs, the module {len(self.arrays)}")
        self.feed = dict(zip(names, self.arrays))

    def run(self) -> list[np.ndarray]:
        return self.session.run(None, self.feed)

    def release(self) -> None:
        self.session = self.feed = None


class EtchRunner:
    """The etch command line: `etch run` for the outputs, `etch bench --json` for timing (one process
    per round: load, first run, 3 warm-up runs, then the timed runs, all measured inside etch)."""

    def __init__(self, key: str, etch: str, pte: str, input_files: list[str], mode: str, threads: int | None,
                 scratch: str):
        self.key, self.etch, self.pte, self.input_files = key, etch, pte, input_files
        self.mode_args = ["--mode", mode] + (["--threads", str(threads)] if threads is not None else [])
        self.threads = threads or 1
        self.scratch = scratch

    def _call(self, args: list[str]) -> str:
        proc = subprocess.run([self.etch, *args], capture_output=True, text=True, timeout=ETCH_TIMEOUT_S)
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.strip().splitlines() if l.strip()] or [f"exit status {proc.returncode}"]
            raise RuntimeFailure(lines[-1] if proc.returncode != 101 else f"panic: {' '.join(lines)[:300]}")
        return proc.stdout

    def check(self) -> tuple[list[np.ndarray], float, float]:
        out_dir = os.path.join(self.scratch, self.key)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        self._call(["run", self.pte, "--inputs", ",".join(self.input_files), "--outputs", out_dir, *self.mode_args])
        outputs = []
        while os.path.exists(p := os.path.join(out_dir, f"run0_out{len(outputs)}.npy")):
            outputs.append(np.load(p))
        # Timing of the first run comes from a one-iteration bench (etch run prints no times).
        report = self._bench(1)
        return outputs, report["first_run_ms"], report["load_ms"]

    def _bench(self, iters: int) -> dict:
        out = self._call(["bench", self.pte, "--json", "--iters", str(iters), "--loads", str(ETCH_LOADS),
                          "--inputs", ",".join(self.input_files), *self.mode_args])
        return json.loads(out.strip().splitlines()[-1])

    def timed_round(self, iters: int, warmup: int) -> RoundResult:
        del warmup  # etch bench does its own first run and 3 warm-up runs
        r = self._bench(iters)
        return RoundResult(load_ms=r["load_ms"], median_ms=r["median_ms"], min_ms=r["min_ms"], p90_ms=r["p90_ms"],
                           first_load_ms=r.get("first_load_ms"), core_round_trip_ns=r.get("core_round_trip_ns"))


def make_runners(prepared: Prepared, args, scratch: str) -> tuple[list, dict]:
    """Every runner for a model, plus the errors of those that cannot exist (missing export or binary)."""
    runners, errors = [], {}
    wanted = set(args.runtimes.split(","))
    threads = args.thread_counts

    def need(artifact: str, keys: list[str]) -> bool:
        if getattr(prepared, artifact) is None:
            for k in keys:
                errors[k] = f"export failed: {prepared.export_errors.get(artifact, 'not exported')}"
            return False
        return True

    if "et-portable" in wanted and need("pte", ["et-portable"]):
        runners.append(ExecuTorchRunner("et-portable", prepared.pte, prepared.inputs, None))
    if "et-xnnpack" in wanted and need("xnnpack_pte", [f"et-xnnpack@{t}" for t in threads]):
        runners += [ExecuTorchRunner(f"et-xnnpack@{t}", prepared.xnnpack_pte, prepared.inputs, t) for t in threads]
    if "ort" in wanted and need("onnx", [f"ort@{t}" for t in threads]):
        runners += [OrtRunner(f"ort@{t}", prepared.onnx, prepared.inputs, t) for t in threads]
    if "etch" in wanted:
        keys = [f"etch-seq@{t}" for t in threads] + [f"etch-par@{t}" for t in threads]
        if not os.path.exists(args.etch):
            for k in keys:
                errors[k] = f"etch binary not found at {args.etch} (cargo build --release, or --etch PATH)"
        elif need("pte", keys):
            runners += [EtchRunner(f"etch-seq@{t}", args.etch, prepared.pte, prepared.input_files, "sequential", t, scratch)
                        for t in threads]
            runners += [EtchRunner(f"etch-par@{t}", args.etch, prepared.pte, prepared.input_files, "parallel", t, scratch)
                        for t in threads]
    return runners, errors


# ---------------------------------------------------------------------------------------------------
# Checking and timing
# ---------------------------------------------------------------------------------------------------


def compare(got: list[np.ndarray], want: list[np.ndarray], atol: float, rtol: float) -> tuple[bool, float | None, str]:
    """(matches, max abs error, what is wrong)."""
    if len(got) != len(want):
        return False, None, f"{len(got)} outputs, eager has {len(want)}"
    worst = 0.0
    problems = []
    for j, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        if g.shape != w.shape:
            problems.append(f"output {j} shape {list(g.shape)} != {list(w.shape)}")
            continue
        if g.dtype != w.dtype and not (g.dtype.kind == w.dtype.kind == "f"):
            problems.append(f"output {j} dtype {g.dtype} != {w.dtype}")
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        if diff.size:
            finite = np.isfinite(g.astype(np.float64)) == np.isfinite(w.astype(np.float64))
            worst = max(worst, float(np.nanmax(diff)) if np.all(finite) else float("inf"))
            if not np.all(np.abs(g.astype(np.float64) - w.astype(np.float64)) <= atol + rtol * np.abs(w.astype(np.float64))):
                problems.append(f"output {j} beyond atol {atol:g} rtol {rtol:g}")
    return not problems, worst, "; ".join(problems)


@dataclass
class Measurement:
    key: str
    threads: int | None
    error: str | None = None
    ok: bool | None = None  # output matches eager
    max_abs_error: float | None = None
    mismatch: str = ""
    first_run_ms: float | None = None
    rounds: list[RoundResult] = field(default_factory=list)

    def median_ms(self) -> float | None:
        samples = [s for r in self.rounds for s in r.samples_ms]
        if samples:
            return statistics.median(samples)
        medians = [r.median_ms for r in self.rounds if r.median_ms is not None]
        return statistics.median(medians) if medians else None

    def core_round_trip_ns(self) -> float | None:
        trips = [r.core_round_trip_ns for r in self.rounds if r.core_round_trip_ns is not None]
        return max(trips) if trips else None

    def min_ms(self) -> float | None:
        values = [s for r in self.rounds for s in r.samples_ms] + [r.min_ms for r in self.rounds if r.min_ms is not None]
        return min(values) if values else None

    def p90_ms(self) -> float | None:
        samples = sorted(s for r in self.rounds for s in r.samples_ms)
        if samples:
            return samples[min(len(samples) - 1, max(0, int(np.ceil(0.9 * len(samples))) - 1))]
        p90s = [r.p90_ms for r in self.rounds if r.p90_ms is not None]
        return statistics.median(p90s) if p90s else None

    def load_ms(self) -> float | None:
        loads = [r.load_ms for r in self.rounds]
        return statistics.median(loads) if loads else None

    def iterations(self) -> int:
        return sum(len(r.samples_ms) for r in self.rounds)

    def usable(self) -> bool:
        return self.error is None and self.ok is True and self.median_ms() is not None

    def to_json(self) -> dict:
        return {
            "threads": self.threads, "error": self.error, "output_matches": self.ok, "max_abs_error": self.max_abs_error,
            "mismatch": self.mismatch or None, "first_run_ms": self.first_run_ms, "median_ms": self.median_ms(),
            "min_ms": self.min_ms(), "p90_ms": self.p90_ms(), "load_ms": self.load_ms(),
            "rounds": [{"load_ms": r.load_ms, "first_load_ms": r.first_load_ms, "iters": len(r.samples_ms) or None, "median_ms": r.median_ms or
                        (statistics.median(r.samples_ms) if r.samples_ms else None)} for r in self.rounds],
        }


def measure_model(prepared: Prepared, args, scratch: str, log) -> dict[str, Measurement]:
    runners, errors = make_runners(prepared, args, scratch)
    results = {k: Measurement(k, None, error=e) for k, e in errors.items()}
    model = prepared.model

    # 1. Correctness (and the first-run time that decides the iteration count).
    live = []
    for runner in runners:
        m = Measurement(runner.key, runner.threads)
        results[runner.key] = m
        try:
            outputs, m.first_run_ms, _ = runner.check()
        except Exception as e:  # noqa: BLE001 — a failing runtime is reported, the run goes on
            m.error = one_line(e)
            log(f"  {runner.key:12s} ERROR {m.error}")
            continue
        m.ok, m.max_abs_error, m.mismatch = compare(outputs, prepared.expected, model.atol, model.rtol)
        verdict = "ok" if m.ok else f"MISMATCH ({m.mismatch})"
        log(f"  {runner.key:12s} max abs error {m.max_abs_error if m.max_abs_error is not None else '-':<10} "
            f"{verdict}; first run {m.first_run_ms:.2f} ms")
        live.append(runner)

    # 2. Timing: rounds over every live runner, the starting runner rotating, runtimes interleaved.
    plan = {}
    for runner in live:
        slow = results[runner.key].first_run_ms > SLOW_RUN_MS
        total = args.portable_iters if slow else args.iters
        per_round = [total // args.rounds + (1 if r < total % args.rounds else 0) for r in range(args.rounds)]
        plan[runner.key] = (per_round, 0 if slow else WARMUP_RUNS)
    for r in range(args.rounds):
        order = live[r % len(live):] + live[: r % len(live)] if live else []
        for runner in order:
            m = results[runner.key]
            per_round, warmup = plan[runner.key]
            if m.error is not None or per_round[r] == 0:
                continue
            try:
                m.rounds.append(runner.timed_round(per_round[r], warmup))
            except Exception as e:  # noqa: BLE001
                m.error = f"round {r}: {one_line(e)}"
                log(f"  {runner.key:12s} ERROR {m.error}")
    for runner in live:
        m = results[runner.key]
        if m.median_ms() is not None:
            firsts = [r.first_load_ms for r in m.rounds if r.first_load_ms is not None]
            first = f" (first in process {statistics.median(firsts):.2f})" if firsts else ""
            log(f"  {runner.key:12s} median {m.median_ms():9.3f} ms  min {m.min_ms():9.3f}  load {m.load_ms():8.2f} ms{first}")
    gc.collect()
    return results


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------


def table_rows(measurements: dict[str, dict[str, Measurement]], threads: int) -> list[dict]:
    rows = []
    for name, ms in measurements.items():
        def get(key):
            return ms.get(key)

        etch_candidates = [get(f"{mode}@{t}") for mode in ("etch-seq", "etch-par") for t in range(1, threads + 1)]
        usable = [m for m in etch_candidates if m is not None and m.usable()]
        best = min(usable, key=lambda m: m.median_ms()) if usable else None
        row = {"model": name, "threads": threads}
        for column, m in (("et_portable", get("et-portable")), ("et_xnnpack", get(f"et-xnnpack@{threads}")),
                          ("ort", get(f"ort@{threads}"))):
            row[column] = cell(m)
        row["etch"] = cell(best) if best else etch_failure(etch_candidates)
        row["etch_mode"] = best.key.removeprefix("etch-") if best else None
        # The conditions of this table's thread budget, whichever mode won.
        trips = [m.core_round_trip_ns() for m in (get(f"etch-seq@{threads}"), get(f"etch-par@{threads}")) if m is not None]
        trips = [t for t in trips if t is not None]
        row["etch_core_round_trip_ns"] = max(trips) if trips else None
        for column, other in (("etch_over_et_xnnpack", "et_xnnpack"), ("etch_over_et_portable", "et_portable"),
                              ("etch_over_ort", "ort")):
            a, b = row["etch"].get("ms"), row[other].get("ms")
            row[column] = a / b if a is not None and b else None
        rows.append(row)
    return rows


def cell(m: Measurement | None) -> dict:
    if m is None:
        return {"ms": None, "load_ms": None, "status": "not run"}
    if m.error is not None:
        return {"ms": None, "load_ms": None, "status": f"error: {m.error}"}
    if not m.ok:
        return {"ms": None, "wrong_ms": m.median_ms(), "load_ms": m.load_ms(),
                "status": f"WRONG: {m.mismatch} (max abs error {m.max_abs_error})"}
    return {"ms": m.median_ms(), "load_ms": m.load_ms(), "status": "ok"}


def etch_failure(candidates: list) -> dict:
    for m in candidates:
        if m is not None and m.error is None and m.ok is False:
            return cell(m)
    for m in candidates:
        if m is not None and m.error is not None:
            return cell(m)
    return {"ms": None, "load_ms": None, "status": "not run"}


def fmt_ms(c: dict) -> str:
    if c.get("ms") is not None:
        return f"{c['ms']:.3f}" if c["ms"] < 100 else f"{c['ms']:.1f}"
    if c.get("wrong_ms") is not None:
        return "WRONG"
    return "ERR" if c.get("status", "").startswith("error") else "-"


def fmt_ratio(x: float | None) -> str:
    return f"{x:.3f}" if x is not None else "-"


def fmt_load(c: dict) -> str:
    return f"{c['load_ms']:.1f}" if c.get("load_ms") is not None else "-"


def print_table(rows: list[dict], threads: int) -> None:
    print(f"\n== {threads} thread(s): latency ms (median), ratio etch/other (<1: etch faster), load ms")
    header = ["model", "ET-port", "ET-XNN", "ORT", "etch", "etch mode", "/ET-XNN", "/ET-port", "/ORT",
              "ld ET-port", "ld ET-XNN", "ld ORT", "ld etch", "etch trip ns"]
    lines = [header]
    for r in rows:
        trip = r.get("etch_core_round_trip_ns")
        lines.append([r["model"], fmt_ms(r["et_portable"]), fmt_ms(r["et_xnnpack"]), fmt_ms(r["ort"]), fmt_ms(r["etch"]),
                      r["etch_mode"] or "-", fmt_ratio(r["etch_over_et_xnnpack"]), fmt_ratio(r["etch_over_et_portable"]),
                      fmt_ratio(r["etch_over_ort"]), fmt_load(r["et_portable"]), fmt_load(r["et_xnnpack"]),
                      fmt_load(r["ort"]), fmt_load(r["etch"]), f"{trip:.0f}" if trip is not None else "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for k, line in enumerate(lines):
        print("  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(line, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def print_accuracy(measurements: dict[str, dict[str, Measurement]]) -> None:
    keys = []
    for ms in measurements.values():
        keys += [k for k in ms if k not in keys]
    print("\n== max abs error vs PyTorch eager (ERR: failed to run; WRONG: beyond the model's atol/rtol)")
    lines = [["model", *keys]]
    for name, ms in measurements.items():
        line = [name]
        for k in keys:
            m = ms.get(k)
            if m is None:
                line.append("-")
            elif m.error is not None:
                line.append("ERR")
            elif m.max_abs_error is None:
                line.append("WRONG")
            else:
                line.append(f"{m.max_abs_error:.1e}" + ("" if m.ok else " WRONG"))
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for k, line in enumerate(lines):
        print("  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(line, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def print_problems(measurements: dict[str, dict[str, Measurement]], prepared: dict[str, Prepared]) -> None:
    problems = []
    for name, p in prepared.items():
        for artifact, err in p.export_errors.items():
            problems.append(f"{name}: export {artifact}: {err}")
        if p.onnx_exporter and not p.onnx_exporter.startswith("dynamo"):
            problems.append(f"{name}: ONNX via {p.onnx_exporter}")
    for name, ms in measurements.items():
        # One line per distinct failure; the etch modes usually fail the same way.
        failures: dict[str, list[str]] = {}
        for key, m in ms.items():
            if m.error is not None and not m.error.startswith("export failed"):
                failures.setdefault(m.error, []).append(key)
            elif m.error is None and m.ok is False:
                failures.setdefault(f"OUTPUT MISMATCH vs eager: {m.mismatch} (max abs error {m.max_abs_error})",
                                    []).append(key)
        for error, keys in failures.items():
            problems.append(f"{name}: {', '.join(keys)}: {error}")
    if problems:
        print("\nProblems (a WRONG runtime never counts as fastest nor in a ratio):")
        for p in problems:
            print(f"  {p}")


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    try:
        import executorch.version
        import onnxruntime

        info.update(torch=torch.__version__, executorch=executorch.version.__version__, onnxruntime=onnxruntime.__version__)
    except Exception:  # noqa: BLE001
        pass
    return info


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated model names (any of --list, zoo members included)")
    parser.add_argument("--zoo", default="", help=f"zoo members to add: NAME,... | all | none "
                        f"(default {','.join(DEFAULT_ZOO)})")
    parser.add_argument("--iters", type=int, default=50, help="timed iterations per runtime (default 50)")
    parser.add_argument("--portable-iters", type=int, default=3,
                        help=f"timed iterations for a runtime whose single run takes over {SLOW_RUN_MS:.0f} ms (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternation rounds the iterations are split over")
    parser.add_argument("--threads", default="1,2", help="thread budgets, one table each (default 1,2)")
    parser.add_argument("--runtimes", default="et-portable,et-xnnpack,ort,etch")
    parser.add_argument("--etch", default=os.path.join(REPO, "target", "release", "etch"))
    parser.add_argument("--cache", help="keep exported programs here and reuse them (default: a temporary dir)")
    parser.add_argument("--rebuild", action="store_true", help="re-export even when the cache is up to date")
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    args = parser.parse_args()
    args.thread_counts = [int(t) for t in args.threads.split(",")]
    args.rounds = max(1, args.rounds)
    return args


def main() -> int:
    args = parse_args()
    defaults, known = all_models(args.zoo)
    if args.list:
        for m in known.values():
            print(f"{m.name:26s} {'default ' if m in defaults else '        '} {m.description}")
        return 0
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in known]
        if unknown:
            print(f"unknown models: {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        models = [known[n] for n in names]
    else:
        models = defaults

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    temp = None
    cache = args.cache
    if cache is None:
        temp = tempfile.TemporaryDirectory(prefix="compare_executorch_")
        cache = temp.name
    os.makedirs(cache, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="etch_out_")
    started = time.time()
    load_before = os.getloadavg()
    prepared, measurements = {}, {}
    try:
        for model in models:
            log(f"{model.name}: {model.description}")
            try:
                prepared[model.name] = prepare(model, cache, args.rebuild, log)
            except Exception as e:  # noqa: BLE001 — e.g. the module itself fails to build
                log(f"  ERROR preparing: {one_line(e)}")
                continue
            measurements[model.name] = measure_model(prepared[model.name], args, scratch, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()

    info = machine_info()
    print(f"\nmachine: {info.get('cpu')}, {info.get('cpus')} CPUs; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after (a loaded machine makes every number noisy; compare ratios within a run)")
    tables = {}
    for t in args.thread_counts:
        tables[str(t)] = table_rows(measurements, t)
        print_table(tables[str(t)], t)
    print_accuracy(measurements)
    print_problems(measurements, prepared)

    if args.json:
        report = {
            "produced_by": "benches/compare_executorch.py",
            "machine": info,
            "load_average": {"before": load_before, "after": load_after},
            "seconds": time.time() - started,
            "settings": {"iters": args.iters, "portable_iters": args.portable_iters, "rounds": args.rounds,
                         "threads": args.thread_counts, "etch": args.etch, "slow_run_ms": SLOW_RUN_MS},
            "models": {
                name: {
                    "description": prepared[name].model.description,
                    "atol": prepared[name].model.atol, "rtol": prepared[name].model.rtol,
                    "export_errors": prepared[name].export_errors, "onnx_exporter": prepared[name].onnx_exporter,
                    "runtimes": {k: m.to_json() for k, m in ms.items()},
                }
                for name, ms in measurements.items()
            },
            "tables": tables,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if temp is not None:
        temp.cleanup()
    wrong = any(m.error is None and m.ok is False for ms in measurements.values() for m in ms.values())
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Per-layer times of ExecuTorch's XNNPACK runtime and of etch on the same model, side by side.

usage (from the repository root, after `cargo build --release` and a compare_executorch.py run
with --cache DIR, which leaves NAME.pte, NAME.xnnpack.pte and NAME.in0.npy there):
    /work/venv/bin/python benches/layer_times.py DIR/NAME [--threads 2] [--iters 200]
        [--etch target/release/etch]
needs: pip install executorch==1.5.1 numpy

XNNPACK: runs NAME.xnnpack.pte through ExecuTorch's pybindings with ETDump enabled, its threadpool
reset to --threads, and reads the delegate's per-operator events with executorch.devtools'
Inspector (XNNPACK reports each operator it runs: 1x1 convolutions appear as "Fully Connected",
others as "Convolution ... IGEMM/DWConv"). etch: `etch bench NAME.pte --threads T --trace`, the
median span of each instruction over the second half of the timed runs (the spans carry the
instruction index; a fused call is reported under the index of the instruction it replaced).

The two lists are printed one after the other, in execution order, with their medians in
microseconds; they do not map one to one (XNNPACK transposes to NHWC and back, etch fuses
differently), so line them up by shape: that is how the layers where etch loses to XNNPACK were
found. Both sides run the same inputs; the sums of the medians are printed last.
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile


def xnnpack_layers(pte, inputs, threads, iters):
    import numpy as np
    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(threads)
    module = portable_lib._load_for_executorch(pte, enable_etdump=True, debug_buffer_size=0)
    args = tuple(torch.from_numpy(np.load(path)) for path in inputs)
    for _ in range(iters):
        module.forward(args)
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "run.etdump")
        module.write_etdump_result_to_file(dump)
        inspector = Inspector(etdump_path=dump)
    rows = []
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for event in block.events:
            # The delegate call and the execution as a whole are the operators' sum, not layers.
            if event.perf_data is not None and event.name not in ("DELEGATE_CALL", "Method::execute"):
                rows.append((event.name, event.perf_data.p50 * 1000.0))
    return rows


def etch_layers(etch, pte, inputs, threads, iters):
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.json")
        cmd = [etch, "bench", pte, "--threads", str(threads), "--iters", str(iters), "--trace", trace]
        if inputs:
            cmd += ["--inputs", ",".join(inputs)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(trace) as f:
            data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    spans = [e for e in events if e.get("name") == "instruction"]
    by_instruction = collections.defaultdict(list)
    for e in spans[len(spans) // 2 :]:
        by_instruction[(e["args"]["index"], e["args"]["op"])].append(e["dur"])
    return [(f"{index:4d} {op}", statistics.median(d)) for (index, op), d in sorted(by_instruction.items())]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stem", help="DIR/NAME: DIR/NAME.pte, DIR/NAME.xnnpack.pte, DIR/NAME.in*.npy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--etch", default="target/release/etch")
    args = parser.parse_args()
    inputs = []
    while os.path.exists(f"{args.stem}.in{len(inputs)}.npy"):
        inputs.append(f"{args.stem}.in{len(inputs)}.npy")
    if not inputs:
        sys.exit(f"no inputs {args.stem}.in0.npy (run compare_executorch.py with --cache first)")
    totals = {}
    for name, rows in [
        ("ExecuTorch XNNPACK", xnnpack_layers(f"{args.stem}.xnnpack.pte", inputs, args.threads, args.iters)),
        ("etch", etch_layers(args.etch, f"{args.stem}.pte", inputs, args.threads, args.iters)),
    ]:
        print(f"## {name}, {args.threads} thread(s), medians in us")
        for label, us in rows:
            print(f"{label:60s} {us:9.1f}")
        totals[name] = sum(us for _, us in rows)
        print()
    for name, total in totals.items():
        print(f"{name}: sum of per-layer medians {total / 1000.0:.3f} ms")


if __name__ == "__main__":
    main()

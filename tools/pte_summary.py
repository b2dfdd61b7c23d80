#!/usr/bin/env python3
"""Summarise .pte files with ExecuTorch's own deserializer, as reference data for etch's parser tests.

usage: pte_summary.py OUT_DIR FILE.pte...   (needs `pip install executorch==1.5.1`)
Writes OUT_DIR/NAME.json per program: methods with their values (kind, and for tensors dtype code,
sizes, dim order, dynamism, placement), inputs, outputs, operators, instructions and planned buffer sizes.
"""
import json, os, sys
from executorch.exir._serialize._program import deserialize_pte_binary


def value(v):
    k = type(v.val).__name__
    if k == "Tensor":
        t = v.val
        a = t.allocation_info
        return {"kind": k, "dtype": int(t.scalar_type), "sizes": list(t.sizes), "dim_order": list(t.dim_order),
                "dynamism": int(t.shape_dynamism), "data_buffer_idx": t.data_buffer_idx,
                "memory_id": a.memory_id if a else None,
                "offset": (a.memory_offset_low | (a.memory_offset_high << 32)) if a else None}
    if k in ("Int", "Bool", "Double"):
        return {"kind": k, "value": getattr(v.val, k.lower() + "_val")}
    if k in ("IntList", "TensorList", "OptionalTensorList", "DoubleList", "BoolList"):
        return {"kind": k, "items": list(v.val.items)}
    return {"kind": k}


def instruction(i):
    a = i.instr_args
    k = type(a).__name__
    d = {"kind": k}
    d.update({f: getattr(a, f) for f in a.__dataclass_fields__})
    return d


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for path in sys.argv[2:]:
        p = deserialize_pte_binary(open(path, "rb").read())
        prog = p.program if hasattr(p, "program") else p
        methods = []
        for ep in prog.execution_plan:
            methods.append({
                "name": ep.name,
                "values": [value(v) for v in ep.values],
                "inputs": list(ep.inputs), "outputs": list(ep.outputs),
                "operators": [o.name + ("." + o.overload if o.overload else "") for o in ep.operators],
                "instructions": [instruction(i) for c in ep.chains for i in c.instructions],
                "planned_buffer_sizes": list(ep.non_const_buffer_sizes[1:]),
                "delegates": [d.id for d in ep.delegates],
            })
        name = os.path.basename(path)
        for ext in (".pte",):
            name = name[: -len(ext)] if name.endswith(ext) else name
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"version": prog.version, "methods": methods}, f, indent=None, separators=(",", ":"))


if __name__ == "__main__":
    main()

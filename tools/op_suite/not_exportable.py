"""Portable operators the official exporter never emits from eager code, with the reason. The
conformance test accepts that these have no case."""

NOT_EXPORTABLE = {
    "aten::_native_batch_norm_legit.out":
        "training-mode batch norm with running stats: torch.export functionalizes the stats update into "
        "_native_batch_norm_legit_functional, which has no out variant (to_executorch: 'Missing out variants')",
    "aten::lift_fresh_copy.out":
        "torch.export lifts tensors created in forward to constants; an explicit lift_fresh_copy is lowered "
        "to a clone (_clone_dim_order), even with preserve_ops",
    "aten::rand.out": "random: no reproducible expected output (PyTorch's and ExecuTorch's generators differ)",
    "aten::randn.out": "random: no reproducible expected output (PyTorch's and ExecuTorch's generators differ)",
    "et_copy::_d2h_copy.out":
        "inserted only by ExecuTorch's device-placement passes for tensors on a non-CPU device; "
        "a CPU export never calls it",
    "et_copy::_h2d_copy.out":
        "inserted only by ExecuTorch's device-placement passes for tensors on a non-CPU device; "
        "a CPU export never calls it",
}

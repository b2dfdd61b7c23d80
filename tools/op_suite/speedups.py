"""Output-neutral speedups for exporting thousands of tiny methods (to_edge costs ~1 s a method,
mostly in bookkeeping that does not depend on the program):

- `_collect_all_valid_cia_ops` walks every aten operator on each `run_decompositions`; its result
  does not change within a process once torch and executorch are imported, so it is cached.
- `OperatorBase.py_impl` is called ~100k times per method; its nested function's annotations
  (`Callable[_P, _T]`) are evaluated on every call. The replacement is the same code without them.
"""
import functools
import inspect

import torch
import torch._export.utils as export_utils
import torch._ops as ops
import torch.export.decomp_utils as decomp_utils
import torch.export.exported_program as exported_program
from torch._C import DispatchKey


def install():
    cached_all = functools.cache(export_utils._collect_all_valid_cia_ops)
    cached_aten = functools.cache(export_utils._collect_all_valid_cia_ops_for_aten_namespace)
    for m in (export_utils, exported_program, decomp_utils):
        if hasattr(m, "_collect_all_valid_cia_ops"):
            m._collect_all_valid_cia_ops = cached_all
        if hasattr(m, "_collect_all_valid_cia_ops_for_aten_namespace"):
            m._collect_all_valid_cia_ops_for_aten_namespace = cached_aten

    TorchDispatchMode = ops.TorchDispatchMode
    TransformType = ops.TransformType

    def py_impl(self, k):
        def inner(fn):
            if inspect.isclass(k) and (issubclass(k, TorchDispatchMode) or issubclass(k, torch.Tensor)):
                if k in self.python_key_table:
                    raise AssertionError(f"{k} already registered in python_key_table")
                self.python_key_table[k] = fn
                self._dispatch_cache.clear()
                return fn
            if isinstance(k, TransformType):
                if k in self.functorch_table:
                    raise AssertionError(f"{k} already registered in functorch_table")
                self.functorch_table[k] = fn
                return fn
            if not isinstance(k, DispatchKey):
                raise AssertionError(f"expected DispatchKey, got {type(k)}")
            if k == DispatchKey.Python:
                raise AssertionError("Please register a mode for the DispatchKey.Python key instead.")
            if k in self.py_kernels:
                raise RuntimeError(f"Trying to override a python impl for {k} on operator {self.name()}")
            self.py_kernels[k] = fn
            self._dispatch_cache.clear()
            return fn

        return inner

    ops.OperatorBase.py_impl = py_impl

#!/usr/bin/env python3
"""Exports the one-operator programs that `benches/kernels.rs` times, one family per group
(elementwise, matmul, conv, reductions), at sizes real models run them at.

Each program has one method, `forward`, calling one ATen operator (plus nothing else the exporter
can avoid), with random weights where the operator has them. The bench feeds deterministic inputs;
correctness of these operators is checked elsewhere (tests/op_conformance.rs, the fixtures).

Usage (from the repository root, with `pip install executorch==1.5.1 torch`):
    python tools/export_kernel_benches.py            # writes benches/programs/*.pte
"""

import os
import sys

import torch
from executorch.exir import to_edge

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches", "programs")


class Fn(torch.nn.Module):
    def __init__(self, fn, params=None):
        super().__init__()
        self.fn = fn
        self.params = torch.nn.ParameterList([torch.nn.Parameter(p, requires_grad=False) for p in params or []])

    def forward(self, *xs):
        return self.fn(*xs, *self.params)


def r(*shape):
    return torch.randn(*shape)


def cases():
    # elementwise: activations of a mobilenet-sized feature map and broadcasting arithmetic.
    fm = (1, 64, 112, 112)
    yield "elementwise", "add_broadcast", Fn(lambda x, b: x + b, [r(1, 64, 1, 1)]), (r(*fm),)
    yield "elementwise", "add_same_shape", Fn(lambda x, y: x + y), (r(*fm), r(*fm))
    yield "elementwise", "mul_same_shape", Fn(lambda x, y: x * y), (r(*fm), r(*fm))
    yield "elementwise", "relu", Fn(torch.relu), (r(*fm),)
    yield "elementwise", "hardtanh", Fn(lambda x: torch.nn.functional.hardtanh(x, 0.0, 6.0)), (r(*fm),)
    yield "elementwise", "sigmoid", Fn(torch.sigmoid), (r(*fm),)
    yield "elementwise", "gelu", Fn(torch.nn.functional.gelu), (r(128, 3072),)
    # matmul: square, batch-1 linear layers (latency-bound), attention-shaped batched products.
    yield "matmul", "mm_512", Fn(lambda a, b: a @ b), (r(512, 512), r(512, 512))
    yield "matmul", "linear_b1_1280x1000", Fn(lambda x, w, b: torch.nn.functional.linear(x, w, b),
                                               [r(1000, 1280), r(1000)]), (r(1, 1280),)
    yield "matmul", "linear_b1_768x768", Fn(lambda x, w, b: torch.nn.functional.linear(x, w, b),
                                             [r(768, 768), r(768)]), (r(1, 768),)
    yield "matmul", "bmm_attention", Fn(lambda q, k: q @ k), (r(12, 128, 64), r(12, 64, 128))
    # conv: the shapes that dominate MobileNet v2 and ResNets.
    conv = torch.nn.functional.conv2d
    yield "conv", "stem_3x3_s2_3to32_224", Fn(lambda x, w, b: conv(x, w, b, stride=2, padding=1),
                                              [r(32, 3, 3, 3), r(32)]), (r(1, 3, 224, 224),)
    yield "conv", "pointwise_1x1_32to16_112", Fn(lambda x, w, b: conv(x, w, b), [r(16, 32, 1, 1), r(16)]), \
        (r(1, 32, 112, 112),)
    yield "conv", "depthwise_3x3_144_56", Fn(lambda x, w, b: conv(x, w, b, padding=1, groups=144),
                                             [r(144, 1, 3, 3), r(144)]), (r(1, 144, 56, 56),)
    yield "conv", "depthwise_3x3_s2_144_56", Fn(lambda x, w, b: conv(x, w, b, stride=2, padding=1, groups=144),
                                                [r(144, 1, 3, 3), r(144)]), (r(1, 144, 56, 56),)
    yield "conv", "pointwise_1x1_320to1280_7", Fn(lambda x, w, b: conv(x, w, b), [r(1280, 320, 1, 1), r(1280)]), \
        (r(1, 320, 7, 7),)
    yield "conv", "resnet_3x3_64_56", Fn(lambda x, w: conv(x, w, padding=1), [r(64, 64, 3, 3)]), (r(1, 64, 56, 56),)
    # reductions: over the last dim, over spatial dims, softmax rows.
    yield "reductions", "sum_last_dim", Fn(lambda x: x.sum(-1)), (r(256, 4096),)
    yield "reductions", "mean_spatial", Fn(lambda x: x.mean((2, 3))), (r(1, 1280, 7, 7),)
    yield "reductions", "mean_spatial_large", Fn(lambda x: x.mean((2, 3))), (r(1, 64, 112, 112),)
    yield "reductions", "amax_first_dim", Fn(lambda x: x.amax(0)), (r(1024, 1024),)
    yield "reductions", "softmax_rows", Fn(lambda x: torch.softmax(x, -1)), (r(128, 1024),)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    only = set(sys.argv[1:])
    for family, name, module, inputs in cases():
        if only and name not in only:
            continue
        program = to_edge(torch.export.export(module.eval(), inputs)).to_executorch()
        path = os.path.join(OUT, f"{family}.{name}.pte")
        with open(path, "wb") as f:
            f.write(program.buffer)
        print(f"{path}: {len(program.buffer)} bytes")


if __name__ == "__main__":
    main()

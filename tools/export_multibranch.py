#!/usr/bin/env python3
"""Exports etch's own multi-branch models (inter-op parallelism benchmarks) with the official
toolchain, with inputs and expected outputs, in the layout of ../shared/fixtures.

usage: /path/to/venv/bin/python tools/export_multibranch.py OUT_DIR
(needs `pip install executorch==1.5.1 torch`)

Models (random weights, seed 0, eval mode):
- wide_towers: 6 independent 3-layer MLP towers (batch 32, width 256) concatenated.
- inception_v1: two GoogLeNet-style inception modules (1x1, 1x1→3x3, 1x1→5x5, pool→1x1 branches).
- moe: a dense mixture-of-experts layer: 8 expert MLPs weighted by a softmax gate.
- inverted_residual: not multi-branch: mobilenet_v2's second block at 112x112 (1x1 expansion of
  16 to 96 channels, 3x3 depthwise at stride 2, 1x1 projection, each with a batch norm of random
  statistics, ReLU6 after the first two), whose 4.8 MB expansion etch fuses with the depthwise
  convolution (`pointwise_depthwise`).
- depthwise_separable: mobilenet_v2's first block after the stem, at 96x96: 3x3 depthwise on 32
  channels (batch norm, ReLU6), 1x1 projection to 16 (batch norm), which etch fuses
  (`depthwise_pointwise`).
- residual_block: not multi-branch: mobilenet_v2's third block at 56x56 (24 channels expanded to
  144, 3x3 depthwise, projection to 24, batch norms, ReLU6s) with its residual connection: etch
  fuses the depthwise convolution with the projection and the residual add into that call
  (`depthwise_pointwise_residual`).
- channels_last_block: a stride-2 3x3 stem (3 to 16 channels) and an inverted residual block (16
  to 96, depthwise, back to 16, with the residual) at 32x32, batch norms of random statistics,
  weights and input channels-last (`torch.channels_last`), as users export for XNNPACK: etch
  folds the batch norms into the channels-last convolutions and runs their 1x1 convolutions with
  the pixels as rows.

usage with names (`... OUT_DIR inverted_residual`) exports only those.
"""
import json, os, sys

import numpy as np
import torch
from torch import nn
from executorch.exir import to_edge
from executorch.exir._serialize._program import deserialize_pte_binary


class Tower(nn.Module):
    def __init__(self, width, depth):
        super().__init__()
        self.layers = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())])

    def forward(self, x):
        return self.layers(x)


class WideTowers(nn.Module):
    def __init__(self, towers=6, width=256, depth=3):
        super().__init__()
        self.towers = nn.ModuleList([Tower(width, depth) for _ in range(towers)])

    def forward(self, x):
        return torch.cat([t(x) for t in self.towers], dim=1)


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        conv = lambda a, b, k: nn.Sequential(nn.Conv2d(a, b, k, padding=k // 2), nn.ReLU())
        self.b1 = conv(cin, c1, 1)
        self.b3 = nn.Sequential(conv(cin, c3r, 1), conv(c3r, c3, 3))
        self.b5 = nn.Sequential(conv(cin, c5r, 1), conv(c5r, c5, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(cin, cp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class InceptionV1(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU())
        self.a = Inception(64, 32, 48, 64, 8, 16, 16)
        self.b = Inception(128, 64, 64, 96, 16, 48, 32)
        self.head = nn.Linear(240, 10)

    def forward(self, x):
        x = self.b(self.a(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


class MoE(nn.Module):
    def __init__(self, experts=8, dim=128, hidden=256):
        super().__init__()
        self.gate = nn.Linear(dim, experts)
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim)) for _ in range(experts)])

    def forward(self, x):
        w = torch.softmax(self.gate(x), dim=-1)
        out = self.experts[0](x) * w[:, 0:1]
        for i, e in enumerate(self.experts[1:], start=1):
            out = out + e(x) * w[:, i : i + 1]
        return out


class InvertedResidual(nn.Module):
    def __init__(self, cin=16, expand=6, cout=24):
        super().__init__()
        mid = cin * expand
        self.block = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        random_statistics(self)

    def forward(self, x):
        return self.block(x)


class ResidualBlock(nn.Module):
    def __init__(self, channels=24, expand=6):
        super().__init__()
        mid = channels * expand
        self.block = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )
        random_statistics(self)

    def forward(self, x):
        return x + self.block(x)


class DepthwiseSeparable(nn.Module):
    def __init__(self, channels=32, cout=16):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU6(),
            nn.Conv2d(channels, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        random_statistics(self)

    def forward(self, x):
        return self.block(x)


class ChannelsLastBlock(nn.Module):
    def __init__(self, cin=3, channels=16, expand=6):
        super().__init__()
        mid = channels * expand
        self.stem = nn.Sequential(
            nn.Conv2d(cin, channels, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU6(),
        )
        self.block = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )
        random_statistics(self)
        self.to(memory_format=torch.channels_last)

    def forward(self, x):
        y = self.stem(x)
        return y + self.block(y)


def random_statistics(model):
    """Batch norms with random statistics and affine parameters (not the identity they start as)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


MODELS = {
    "wide_towers": (WideTowers, lambda: (torch.randn(32, 256),)),
    "inception_v1": (InceptionV1, lambda: (torch.randn(1, 3, 28, 28),)),
    "moe": (MoE, lambda: (torch.randn(64, 128),)),
    "inverted_residual": (InvertedResidual, lambda: (torch.randn(1, 16, 112, 112),)),
    "depthwise_separable": (DepthwiseSeparable, lambda: (torch.randn(1, 32, 96, 96),)),
    "residual_block": (ResidualBlock, lambda: (torch.randn(1, 24, 56, 56),)),
    "channels_last_block": (
        ChannelsLastBlock, lambda: (torch.randn(1, 3, 64, 64).to(memory_format=torch.channels_last),),
    ),
}


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "programs"), exist_ok=True)
    cases = []
    only = set(sys.argv[2:])
    for name, (cls, make_inputs) in MODELS.items():
        if only and name not in only:
            continue
        torch.manual_seed(0)
        model = cls().eval()
        inputs = make_inputs()
        with torch.no_grad():
            expected = model(*inputs)
        program = to_edge(torch.export.export(model, inputs)).to_executorch()
        path = os.path.join("programs", f"{name}.pte")
        with open(os.path.join(out, path), "wb") as f:
            f.write(program.buffer)
        data = os.path.join("data", name)
        os.makedirs(os.path.join(out, data), exist_ok=True)
        ins = []
        for j, x in enumerate(inputs):
            p = os.path.join(data, f"run0_in{j}.npy")
            np.save(os.path.join(out, p), x.numpy())
            ins.append(p)
        p = os.path.join(data, "run0_out0.npy")
        np.save(os.path.join(out, p), expected.numpy())
        plan = deserialize_pte_binary(program.buffer)
        plan = plan.program if hasattr(plan, "program") else plan
        ops = sorted({o.name + ("." + o.overload if o.overload else "") for o in plan.execution_plan[0].operators})
        cases.append({
            "name": name, "program": path, "method": "forward", "category": "multibranch",
            "runs": [{"inputs": ins, "outputs": [p]}], "atol": 1e-3, "rtol": 1e-3,
            "operators": ops, "delegates": [], "stateful": False,
        })
        print(name, os.path.getsize(os.path.join(out, path)), "bytes", ops)
    manifest = os.path.join(out, "manifest.json")
    if only and os.path.exists(manifest):
        # Exporting some models: the others' cases stay.
        with open(manifest) as f:
            kept = [c for c in json.load(f)["cases"] if c["name"] not in only]
        cases = kept + cases
    with open(manifest, "w") as f:
        json.dump({"produced_by": f"torch {torch.__version__}, tools/export_multibranch.py", "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Export etch's model zoo: real model architectures with random weights, as ExecuTorch programs with
reference inputs and PyTorch eager outputs.

usage: export_models.py [--committed DIR] [--large DIR] [--only a,b] [--no-verify]
       (needs `pip install executorch==1.5.1 torch torchvision`)

Every program goes through the official toolchain — `torch.export.export` → `executorch.exir.to_edge`
→ `.to_executorch()` — with the portable operators only (no delegate). Each model is built with seed 0
and put in eval mode; its weights are made "trained-like" first (below), then one execution's inputs and
PyTorch eager outputs are saved next to the program, and the program is run once through ExecuTorch's
own runtime (`executorch.runtime`) to make sure the reference agrees with the official implementation.

Output layout (the same as tests/fixtures, so `conform.py` and tests/common read it):
  DIR/programs/NAME.pte, DIR/data/NAME/run0_inJ.npy, DIR/data/NAME/run0_outJ.npy, DIR/manifest.json

Two zoos:
  * committed (default tests/fixtures/zoo): narrowed members of each family — same blocks and operators
    as the canonical network, fewer channels, 100 classes — small enough to keep in git (each .pte at
    most MAX_COMMITTED_PTE, all of them at most MAX_COMMITTED_TOTAL) and fast enough for a debug-build
    `cargo test` with naive reference kernels.
  * large (default /work/zoo-large, not committed): the canonical torchvision configurations (resnet18,
    efficientnet_b0, convnext_tiny, ...) at 64×64, for manual checks with conform.py.

Models the exporter refuses are recorded in the manifest's `refused` list with the stage and error.

Why the weights are adjusted after construction: torchvision initialises some parameters to constants
(norm weights 1 and biases 0, ViT's classification head 0, ConvNeXt's layer scale 1e-6, ...). With those,
a kernel that ignored a norm's affine parameters, or a whole residual branch, would still match. So every
parameter that is constant gets seeded noise around its value, and batch-norm running statistics are
calibrated on random batches in train mode (as training would leave them), so that eval-mode batch norm
is neither the identity nor lets activations grow without bound through deep networks.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm
from torchvision.models import efficientnet as tv_efficientnet
from torchvision.models.convnext import CNBlockConfig
from torchvision.models.googlenet import BasicConv2d, Inception, InceptionAux
from torchvision.models.regnet import BlockParams
from torchvision.models.resnet import BasicBlock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 0
MAX_COMMITTED_PTE = 6 * 1024 * 1024
MAX_COMMITTED_TOTAL = 40 * 1024 * 1024
COMMITTED_CLASSES = 100


# ---------------------------------------------------------------------------------------------------
# Model builders
# ---------------------------------------------------------------------------------------------------


def resnet18_narrow(width: int = 16, num_classes: int = COMMITTED_CLASSES) -> nn.Module:
    """resnet18's structure (BasicBlock ×[2,2,2,2], 7×7 stem, max pool) at a quarter of its width.

    torchvision's ResNet hard-codes widths 64..512 for BasicBlock, so the stages are rebuilt with its own
    `_make_layer` at widths `width`..8·`width`.
    """
    m = tvm.ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
    m.inplanes = width
    m.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    m.bn1 = nn.BatchNorm2d(width)
    m.layer1 = m._make_layer(BasicBlock, width, 2)
    m.layer2 = m._make_layer(BasicBlock, 2 * width, 2, stride=2)
    m.layer3 = m._make_layer(BasicBlock, 4 * width, 2, stride=2)
    m.layer4 = m._make_layer(BasicBlock, 8 * width, 2, stride=2)
    m.fc = nn.Linear(8 * width, num_classes)
    return m


def efficientnet_b0_narrow(width_mult: float = 0.5, num_classes: int = COMMITTED_CLASSES) -> nn.Module:
    """EfficientNet-B0's MBConv stages (same depth) at half width."""
    setting, last_channel = tv_efficientnet._efficientnet_conf(
        "efficientnet_b0", width_mult=width_mult, depth_mult=1.0
    )
    return tvm.EfficientNet(setting, dropout=0.2, num_classes=num_classes, last_channel=last_channel)


def googlenet_narrow(divisor: int = 4, num_classes: int = COMMITTED_CLASSES) -> nn.Module:
    """GoogLeNet (Inception v1, no aux heads) with every convolution `divisor` times narrower.

    GoogLeNet takes its conv block and Inception classes as constructor arguments; the Inception modules
    build every convolution through their own `conv_block` argument, so dividing the channels there (and
    handing it to the Inception modules too) narrows the whole network.
    """

    def narrow_conv(in_channels: int, out_channels: int, **kwargs) -> nn.Module:
        cin = in_channels if in_channels == 3 else in_channels // divisor
        return BasicConv2d(cin, out_channels // divisor, **kwargs)

    m = tvm.GoogLeNet(
        num_classes=num_classes, aux_logits=False, init_weights=True, blocks=[narrow_conv, partial(Inception, conv_block=narrow_conv), InceptionAux]
    )
    m.fc = nn.Linear(1024 // divisor, num_classes)
    return m


def regnet_y_narrow(num_classes: int = COMMITTED_CLASSES) -> nn.Module:
    """RegNetY (grouped bottlenecks with squeeze-excitation), regnet_y_400mf's depth, narrower widths."""
    params = BlockParams.from_init_params(depth=16, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25)
    return tvm.RegNet(params, num_classes=num_classes, stem_width=16, norm_layer=partial(nn.BatchNorm2d, eps=1e-05, momentum=0.1))


def regnet_y_400mf() -> nn.Module:
    return tvm.regnet_y_400mf()


def convnext_narrow(num_classes: int = COMMITTED_CLASSES) -> nn.Module:
    """ConvNeXt-Tiny's stages (depths 3, 3, 9, 3) at a sixth of its width (16..128 channels)."""
    setting = [
        CNBlockConfig(16, 32, 3),
        CNBlockConfig(32, 64, 3),
        CNBlockConfig(64, 128, 9),
        CNBlockConfig(128, None, 3),
    ]
    return tvm.ConvNeXt(setting, num_classes=num_classes)


def vit_small(num_classes: int = COMMITTED_CLASSES) -> nn.Module:
    """torchvision's VisionTransformer at 32×32, 8×8 patches, 2 layers of width 64."""
    return tvm.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=num_classes
    )


class BertStyleEncoder(nn.Module):
    """A small BERT: word + position + token-type embeddings, post-norm encoder layers with multi-head
    self-attention under a padding mask (HuggingFace's additive `finfo.min` mask), exact GELU, and the
    tanh pooler over the first token. Written out like HuggingFace's eager BERT attention."""

    def __init__(self, vocab=512, hidden=64, layers=2, heads=4, intermediate=128, max_positions=32):
        super().__init__()
        self.heads = heads
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_positions, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.embed_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    "query": nn.Linear(hidden, hidden),
                    "key": nn.Linear(hidden, hidden),
                    "value": nn.Linear(hidden, hidden),
                    "attn_out": nn.Linear(hidden, hidden),
                    "attn_norm": nn.LayerNorm(hidden, eps=1e-12),
                    "intermediate": nn.Linear(hidden, intermediate),
                    "output": nn.Linear(intermediate, hidden),
                    "out_norm": nn.LayerNorm(hidden, eps=1e-12),
                }
            )
            for _ in range(layers)
        )
        self.pooler = nn.Linear(hidden, hidden)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        return x.view(b, t, self.heads, h // self.heads).transpose(1, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        b, t = input_ids.shape
        positions = torch.arange(t, device=input_ids.device).unsqueeze(0)
        token_types = torch.zeros_like(input_ids)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_types)
        x = self.embed_norm(x)
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            q = self.split_heads(layer["query"](x))
            k = self.split_heads(layer["key"](x))
            v = self.split_heads(layer["value"](x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            probs = torch.softmax(scores + additive_mask, dim=-1)
            context = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, -1)
            x = layer["attn_norm"](x + layer["attn_out"](context))
            ffn = layer["output"](F.gelu(layer["intermediate"](x)))
            x = layer["out_norm"](x + ffn)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return x, pooled


class GptStyleDecoder(nn.Module):
    """A small GPT-2: token + position embeddings, pre-norm decoder blocks with causal self-attention
    (`scaled_dot_product_attention(is_causal=True)`), tanh-approximated GELU, final norm and a language
    model head tied to the token embedding."""

    def __init__(self, vocab=256, hidden=64, layers=2, heads=4, max_positions=32):
        super().__init__()
        self.heads = heads
        self.token = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_positions, hidden)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "ln_1": nn.LayerNorm(hidden),
                    "c_attn": nn.Linear(hidden, 3 * hidden),
                    "c_proj": nn.Linear(hidden, hidden),
                    "ln_2": nn.LayerNorm(hidden),
                    "c_fc": nn.Linear(hidden, 4 * hidden),
                    "mlp_proj": nn.Linear(4 * hidden, hidden),
                }
            )
            for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = self.token.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        positions = torch.arange(t, device=idx.device)
        x = self.token(idx) + self.position(positions)
        hidden = x.shape[-1]
        for block in self.blocks:
            q, k, v = block["c_attn"](block["ln_1"](x)).split(hidden, dim=2)
            q, k, v = (y.view(b, t, self.heads, hidden // self.heads).transpose(1, 2) for y in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + block["c_proj"](y.transpose(1, 2).reshape(b, t, hidden))
            x = x + block["mlp_proj"](F.gelu(block["c_fc"](block["ln_2"](x)), approximate="tanh"))
        return self.lm_head(self.ln_f(x))


class Recurrent(nn.Module):
    """A two-layer batch-first LSTM or GRU returning its output sequence and final states."""

    def __init__(self, kind: str, input_size=16, hidden=32, layers=2):
        super().__init__()
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(input_size, hidden, num_layers=layers, batch_first=True)

    def forward(self, x: torch.Tensor):
        out, state = self.rnn(x)
        if isinstance(state, tuple):
            return (out, *state)
        return out, state


# ---------------------------------------------------------------------------------------------------
# The zoo
# ---------------------------------------------------------------------------------------------------


def image(size: int) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(1, 3, size, size, generator=g),)


def token_ids_and_mask(vocab: int, length: int, padding: int) -> Callable[[torch.Generator], tuple]:
    def make(g):
        ids = torch.randint(0, vocab, (1, length), generator=g, dtype=torch.int64)
        mask = torch.ones(1, length, dtype=torch.int64)
        mask[:, length - padding :] = 0
        return ids, mask

    return make


def token_ids(vocab: int, length: int) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randint(0, vocab, (1, length), generator=g, dtype=torch.int64),)


def sequence(length: int, features: int) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(1, length, features, generator=g),)


@dataclass
class Spec:
    name: str
    family: str
    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple]
    committed: bool
    description: str
    atol: float = 1e-3
    rtol: float = 1e-3


C = COMMITTED_CLASSES
ZOO = [
    # --- committed: narrowed family members --------------------------------------------------------
    Spec("resnet18_narrow", "ResNet", resnet18_narrow, image(64), True,
         "resnet18's BasicBlock stages [2,2,2,2] at widths 16-128, 100 classes, 64x64"),
    Spec("mobilenet_v2_w050", "MobileNet v2", lambda: tvm.mobilenet_v2(width_mult=0.5, num_classes=C), image(64), True,
         "torchvision mobilenet_v2(width_mult=0.5), 100 classes, 64x64"),
    Spec("mobilenet_v3_small_w050", "MobileNet v3", lambda: tvm.mobilenet_v3_small(width_mult=0.5, num_classes=C),
         image(64), True, "torchvision mobilenet_v3_small(width_mult=0.5), 100 classes, 64x64"),
    Spec("efficientnet_b0_w050", "EfficientNet", efficientnet_b0_narrow, image(64), True,
         "EfficientNet-B0 configuration with width_mult=0.5, depth_mult=1.0, 100 classes, 64x64"),
    Spec("shufflenet_v2_x0_5", "ShuffleNet v2", lambda: tvm.shufflenet_v2_x0_5(num_classes=C), image(64), True,
         "torchvision shufflenet_v2_x0_5, 100 classes, 64x64"),
    Spec("squeezenet1_1", "SqueezeNet", lambda: tvm.squeezenet1_1(num_classes=C), image(64), True,
         "torchvision squeezenet1_1, 100 classes, 64x64"),
    Spec("densenet121_narrow", "DenseNet", lambda: tvm.DenseNet(growth_rate=8, block_config=(6, 12, 24, 16),
         num_init_features=16, num_classes=C), image(64), True,
         "densenet121's blocks (6,12,24,16) with growth rate 8 and 16 initial features, 100 classes, 64x64"),
    Spec("regnet_y_narrow", "RegNet", regnet_y_narrow, image(64), True,
         "RegNetY (SE, group width 8) depth 16, w_0=16, w_a=8, w_m=2, stem 16, 100 classes, 64x64"),
    Spec("googlenet_narrow", "GoogLeNet", googlenet_narrow, image(64), True,
         "torchvision GoogLeNet without aux heads, every convolution 4x narrower, 100 classes, 64x64"),
    Spec("mnasnet0_5", "MNASNet", lambda: tvm.mnasnet0_5(num_classes=C), image(64), True,
         "torchvision mnasnet0_5, 100 classes, 64x64"),
    Spec("convnext_narrow", "ConvNeXt", convnext_narrow, image(64), True,
         "ConvNeXt-Tiny's depths (3,3,9,3) at widths 16-128, 100 classes, 64x64"),
    Spec("vit_small", "ViT", vit_small, image(32), True,
         "torchvision VisionTransformer image 32, patch 8, 2 layers, 4 heads, width 64, MLP 128, 100 classes"),
    Spec("bert_encoder", "BERT", BertStyleEncoder, token_ids_and_mask(512, 16, 4), True,
         "BERT-style encoder: vocab 512, width 64, 2 layers, 4 heads, sequence 16 with 4 padding tokens masked"),
    Spec("gpt_decoder", "GPT", GptStyleDecoder, token_ids(256, 16), True,
         "GPT-2-style decoder: vocab 256, width 64, 2 causal blocks, 4 heads, sequence 16, tied LM head"),
    Spec("lstm", "LSTM", lambda: Recurrent("lstm"), sequence(8, 16), True,
         "nn.LSTM(16, 32, num_layers=2, batch_first=True), sequence 8"),
    Spec("gru", "GRU", lambda: Recurrent("gru"), sequence(8, 16), True,
         "nn.GRU(16, 32, num_layers=2, batch_first=True), sequence 8"),
    # --- large: canonical torchvision configurations (not committed) -------------------------------
    Spec("resnet18", "ResNet", tvm.resnet18, image(64), False, "torchvision resnet18, 64x64"),
    Spec("mobilenet_v2", "MobileNet v2", tvm.mobilenet_v2, image(64), False, "torchvision mobilenet_v2, 64x64"),
    Spec("mobilenet_v3_small", "MobileNet v3", tvm.mobilenet_v3_small, image(64), False,
         "torchvision mobilenet_v3_small, 64x64"),
    Spec("efficientnet_b0", "EfficientNet", tvm.efficientnet_b0, image(64), False, "torchvision efficientnet_b0, 64x64"),
    Spec("shufflenet_v2_x1_0", "ShuffleNet v2", tvm.shufflenet_v2_x1_0, image(64), False,
         "torchvision shufflenet_v2_x1_0, 64x64"),
    Spec("densenet121", "DenseNet", tvm.densenet121, image(64), False, "torchvision densenet121, 64x64"),
    Spec("regnet_y_400mf", "RegNet", regnet_y_400mf, image(64), False, "torchvision regnet_y_400mf, 64x64"),
    Spec("googlenet", "GoogLeNet", lambda: tvm.googlenet(aux_logits=False, init_weights=True), image(64), False,
         "torchvision googlenet (no aux heads), 64x64"),
    Spec("mnasnet1_0", "MNASNet", tvm.mnasnet1_0, image(64), False, "torchvision mnasnet1_0, 64x64"),
    Spec("convnext_tiny", "ConvNeXt", tvm.convnext_tiny, image(64), False, "torchvision convnext_tiny, 64x64"),
    Spec("vit_b_16", "ViT", lambda: tvm.vit_b_16(image_size=64), image(64), False,
         "torchvision vit_b_16 at image_size 64 (16 patches)"),
]


# ---------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------


def make_trained_like(model: nn.Module, inputs: Callable[[torch.Generator], tuple]) -> None:
    """Noise on constant-initialised parameters, then batch-norm statistics from random batches."""
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for p in model.parameters():
            flat = p.detach().flatten()
            if flat.numel() > 0 and bool(torch.all(flat == flat[0])):
                centre = flat[0].item() if abs(flat[0].item()) >= 0.5 else 0.0
                p.copy_(centre + 0.1 * torch.randn(p.shape, generator=g))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(4):
            batch = tuple(torch.cat(parts) for parts in zip(*[inputs(g) for _ in range(4)]))
            model(*batch)
    for m in norms:
        m.momentum = 0.1
    model.eval()


def flops(model: nn.Module, args: tuple) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*args)
    return int(counter.get_total_flops())


def flatten_outputs(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    result = []
    for item in out:
        result.extend(flatten_outputs(item))
    return result


def close(got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and bool(
        np.all(np.abs(got.astype(np.float64) - want.astype(np.float64)) <= atol + rtol * np.abs(want.astype(np.float64)))
    )


def verify_with_executorch(pte: str, inputs: tuple, expected: list, atol: float, rtol: float) -> str | None:
    """Run the program through ExecuTorch's own runtime; None when it agrees with eager."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(pte).load_method("forward")
    got = [o.numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in method.execute(list(inputs))]
    if len(got) != len(expected):
        return f"executorch returned {len(got)} outputs, eager {len(expected)}"
    for j, (g, w) in enumerate(zip(got, expected)):
        if not close(g, w, atol, rtol):
            worst = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if g.shape == w.shape else None
            return f"output {j} differs from eager (max abs error {worst})"
    return None


def export_one(spec: Spec, root: str, verify: bool) -> dict:
    torch.manual_seed(SEED)
    model = spec.build()
    model.eval()
    make_trained_like(model, spec.inputs)
    inputs = spec.inputs(torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        expected = [t.detach().numpy() for t in flatten_outputs(model(*inputs))]
    case = {
        "name": spec.name,
        "family": spec.family,
        "description": spec.description,
        "params": sum(p.numel() for p in model.parameters()),
        "flops": flops(model, inputs),
    }

    stage = "torch.export.export"
    try:
        with torch.no_grad():
            exported = torch.export.export(model, inputs)
        stage = "executorch.exir.to_edge"
        from executorch.exir import to_edge

        edge = to_edge(exported)
        stage = "to_executorch"
        program = edge.to_executorch()
    except Exception as e:  # the exporter's refusal is a result to report, not a crash
        case["refused"] = {"stage": stage, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
        traceback.print_exc()
        return case

    os.makedirs(os.path.join(root, "programs"), exist_ok=True)
    data_dir = os.path.join(root, "data", spec.name)
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    pte = os.path.join(root, "programs", f"{spec.name}.pte")
    with open(pte, "wb") as f:
        f.write(program.buffer)
    run = {"inputs": [], "outputs": []}
    for j, t in enumerate(inputs):
        path = f"data/{spec.name}/run0_in{j}.npy"
        np.save(os.path.join(root, path), t.numpy())
        run["inputs"].append(path)
    for j, a in enumerate(expected):
        path = f"data/{spec.name}/run0_out{j}.npy"
        np.save(os.path.join(root, path), a)
        run["outputs"].append(path)

    plan = program.executorch_program.execution_plan[0]
    operators = sorted({f"{op.name}.{op.overload}" if op.overload else op.name for op in plan.operators})
    case.update(
        {
            "program": f"programs/{spec.name}.pte",
            "method": "forward",
            "category": "model",
            "delegates": sorted({d.id for d in plan.delegates}),
            "operators": operators,
            "runs": [run],
            "stateful": False,
            "atol": spec.atol,
            "rtol": spec.rtol,
            "bytes": os.path.getsize(pte),
        }
    )
    if verify:
        problem = verify_with_executorch(pte, inputs, expected, spec.atol, spec.rtol)
        case["executorch_agrees"] = problem is None
        if problem:
            case["executorch_problem"] = problem
    return case


def write_manifest(root: str, cases: list, refused: list) -> None:
    import executorch
    import torchvision

    version = getattr(executorch, "__version__", "1.5.1")
    manifest = {
        "produced_by": f"tools/export_models.py: torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"executorch {version} (torch.export -> to_edge -> to_executorch, portable operators), seed {SEED}",
        "cases": cases,
        "refused": refused,
    }
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--committed", default=os.path.join(REPO, "tests", "fixtures", "zoo"))
    parser.add_argument("--large", default="/work/zoo-large")
    parser.add_argument("--only", help="comma-separated model names (others keep their manifest entries)")
    parser.add_argument("--no-verify", action="store_true", help="skip the check against executorch.runtime")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    unknown = (only or set()) - {s.name for s in ZOO}
    if unknown:
        parser.error(f"unknown models: {', '.join(sorted(unknown))}")

    ok = True
    for committed, root in ((True, args.committed), (False, args.large)):
        specs = [s for s in ZOO if s.committed == committed]
        if only is not None and not any(s.name in only for s in specs):
            continue
        os.makedirs(root, exist_ok=True)
        # With --only, the other models keep their entries from the existing manifest.
        old_cases, old_refused = {}, {}
        manifest_path = os.path.join(root, "manifest.json")
        if only is not None and os.path.exists(manifest_path):
            with open(manifest_path) as f:
                old = json.load(f)
            old_cases = {c["name"]: c for c in old["cases"]}
            old_refused = {r["name"]: r for r in old.get("refused", [])}
        cases, refused = [], []
        for spec in specs:
            if only is not None and spec.name not in only:
                if spec.name in old_cases:
                    cases.append(old_cases[spec.name])
                elif spec.name in old_refused:
                    refused.append(old_refused[spec.name])
                continue
            started = time.time()
            case = export_one(spec, root, verify=not args.no_verify)
            seconds = time.time() - started
            if "refused" in case:
                print(f"{spec.name}: REFUSED at {case['refused']['stage']}: {case['refused']['error']}", flush=True)
                refused.append({"name": spec.name, "family": spec.family, "description": spec.description,
                                **case["refused"]})
                continue
            agrees = {True: "executorch agrees", False: f"EXECUTORCH DISAGREES ({case.get('executorch_problem')})",
                      None: "not verified"}[case.get("executorch_agrees")]
            print(f"{spec.name}: {case['bytes'] / 1e6:.2f} MB, {case['params'] / 1e6:.2f} M params, "
                  f"{case['flops'] / 1e6:.0f} MFLOP, {len(case['operators'])} operators, {agrees}, {seconds:.0f} s",
                  flush=True)
            if case.get("executorch_agrees") is False:
                ok = False
            cases.append(case)
        if committed:
            total = 0
            for case in cases:
                total += case["bytes"]
                if case["bytes"] > MAX_COMMITTED_PTE:
                    print(f"{case['name']}: {case['bytes']} bytes is over the committed limit", file=sys.stderr)
                    ok = False
            if total > MAX_COMMITTED_TOTAL:
                print(f"committed zoo is {total} bytes, over {MAX_COMMITTED_TOTAL}", file=sys.stderr)
                ok = False
        write_manifest(root, cases, refused)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

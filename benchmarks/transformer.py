"""Training-step benchmark of a two-layer Transformer encoder: compiled from a spec, hand-written nanoGPT-style,
and torch.nn.TransformerEncoder, on the same weights and tokens.

Usage::

    python benchmarks/transformer.py                 # one fresh process, one thread
    python benchmarks/transformer.py --processes 3   # 3 fresh processes: the median ratio and its range
    python benchmarks/transformer.py --quick         # smoke run

The model is ``specs/examples/transformer_encoder.yaml`` (embedding, sinusoidal positions scaled by √d, two
post-norm encoder layers included as the block twice, a linear head per position, cross-entropy) with
``--size``, ``--heads``, ``--ffn``, dropout 0 and no label smoothing set as overrides, on random tokens of one
length (no padding, so every model runs unmasked). The models start from the same weights; their outputs, losses and
gradients are checked to agree before anything is timed. A training step is forward + loss + backward +
Adam step; after a warm-up the models alternate (A, B, C, A, B, C, ...) and each one's time per step is the
median over rounds. ``compiled, fused`` is the compiled model with its attentions called with
``need_weights=False`` (the fused kernel): what the generated code will call once the compiler tells a
component that nothing reads its ``weights`` (compiler v2, issue 24); the plain ``compiled`` row is what a
built model runs today.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import attngraph

SPEC = Path(__file__).resolve().parent.parent / "specs" / "examples" / "transformer_encoder.yaml"
VOCAB = 12
AGREE = 1e-4


class Block(nn.Module):
    """One post-norm encoder layer, nanoGPT style: fused qkv, SDPA, (B, nh, T, hs) heads."""

    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.fc, self.out = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x):  # (B, T, d)
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, -1)
        q, k, v = (t.view(B, T, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, d)
        x = self.ln1(x + self.proj(y))
        return self.ln2(x + self.out(F.relu(self.fc(x))))


class HandEncoder(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, layers: int = 2):
        super().__init__()
        self.emb, self.head = nn.Embedding(VOCAB, d), nn.Linear(d, VOCAB)
        self.blocks = nn.ModuleList(Block(d, heads, ffn) for _ in range(layers))
        self.register_buffer("pe", sinusoidal(512, d), persistent=False)

    def encode(self, tokens):  # (B, T) -> (B, T, d)
        return self.emb(tokens) * math.sqrt(self.emb.embedding_dim) + self.pe[:tokens.shape[1]]

    def forward(self, tokens):  # (B, T) -> (B, T, vocab)
        x = self.encode(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class TorchEncoder(HandEncoder):
    """The same embedding and head around torch.nn.TransformerEncoder."""

    def __init__(self, d: int, heads: int, ffn: int, layers: int = 2):
        super().__init__(d, heads, ffn, 0)
        layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.0, batch_first=True)
        self.stack = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, tokens):
        return self.head(self.stack(self.encode(tokens)))


def sinusoidal(length: int, d: int) -> torch.Tensor:
    pos, i = torch.arange(length)[:, None].double(), torch.arange(0, d, 2).double()
    angle = pos / 10000 ** (i / d)
    return torch.stack([angle.sin(), angle.cos()], -1).flatten(-2)[:, :d].float()


def copy_weights(compiled: nn.Module, hand: HandEncoder, torch_model: TorchEncoder) -> None:
    nodes = compiled.nodes
    with torch.no_grad():
        for model in (hand, torch_model):
            model.emb.weight.copy_(nodes["emb"].table.weight)
            model.head.weight.copy_(nodes["head"].proj.weight)
            model.head.bias.copy_(nodes["head"].proj.bias)
        for i, name in enumerate(("enc1", "enc2")):
            ours, block, layer = nodes[name]["layer"], hand.blocks[i], torch_model.stack.layers[i]
            pairs = [(ours["att"].qkv, block.qkv), (ours["att"].out, block.proj), (ours["norm1"].norm, block.ln1),
                     (ours["norm2"].norm, block.ln2), (ours["ff1"].proj, block.fc), (ours["ff2"].proj, block.out)]
            torch_pairs = [(ours["att"].out, layer.self_attn.out_proj), (ours["norm1"].norm, layer.norm1),
                           (ours["norm2"].norm, layer.norm2), (ours["ff1"].proj, layer.linear1),
                           (ours["ff2"].proj, layer.linear2)]
            for src, dst in pairs + torch_pairs:
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
            layer.self_attn.in_proj_weight.copy_(ours["att"].qkv.weight)
            layer.self_attn.in_proj_bias.copy_(ours["att"].qkv.bias)


def fused(compiled: nn.Module) -> nn.Module:
    """The compiled model with every multihead_attention called with need_weights=False."""
    for module in compiled.modules():
        if type(module).__name__ == "MultiheadAttention" and module.__module__.startswith("attngraph"):
            module.forward = functools.partial(type(module).forward, module, need_weights=False)
    return compiled


def step_fn(model: nn.Module, compiled: bool, batch: dict) -> tuple:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def loss():
        if compiled:
            return model.loss(model(batch), batch)[0]
        return F.cross_entropy(model(batch["x"]).movedim(-1, 1), batch["y"])

    def step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    return loss, step


def check_agreement(models: dict[str, tuple], names: dict[str, nn.Module]) -> None:
    losses = {k: float(fn[0]().detach()) for k, fn in models.items()}
    first = next(iter(losses.values()))
    for name, value in losses.items():
        if abs(value - first) > AGREE:
            raise SystemExit(f"{name}: loss {value} differs from {first}")
    grads = {}
    for name, model in names.items():
        model.zero_grad()
        models[name][0]().backward()
        grads[name] = model.head.weight.grad if hasattr(model, "head") else model.nodes["head"].proj.weight.grad
    ref = next(iter(grads.values()))
    for name, g in grads.items():
        if (g - ref).abs().max() > AGREE * ref.abs().max():
            raise SystemExit(f"{name}: head gradient differs")


def measure(args) -> dict[str, float]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    over = [f"model.{n}.with.{k}={v}" for n in ("enc1", "enc2") for k, v in
            (("size", args.size), ("heads", args.heads), ("ffn", args.ffn), ("dropout", 0.0))]
    spec = attngraph.load(SPEC, [*over, f"model.emb.size={args.size}", "outputs.y.label_smoothing=0.0"])
    compiled = attngraph.build(spec)
    compiled_fused = attngraph.build(spec)
    compiled_fused.load_state_dict(compiled.state_dict())
    fused(compiled_fused)
    hand, torch_model = HandEncoder(args.size, args.heads, args.ffn), TorchEncoder(args.size, args.heads, args.ffn)
    copy_weights(compiled, hand, torch_model)
    gen = torch.Generator().manual_seed(1)
    batch = {"x": torch.randint(0, VOCAB, (args.batch, args.length), generator=gen),
             "y": torch.randint(0, VOCAB, (args.batch, args.length), generator=gen)}
    names = {"compiled": compiled, "compiled, fused": compiled_fused, "hand-written (nanoGPT style)": hand,
             "nn.TransformerEncoder": torch_model}
    models = {n: step_fn(m, n.startswith("compiled"), batch) for n, m in names.items()}
    check_agreement(models, names)
    for _ in range(args.warmup):
        for _, step in models.values():
            step()
    times: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(args.rounds):
        for name, (_, step) in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="fresh processes; the median ratio of them")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 1, 1
    if args.child:
        print(json.dumps(measure(args)))
        return
    argv = [f"--{k}={getattr(args, k)}" for k in ("batch", "length", "size", "heads", "ffn", "rounds", "steps", "warmup")]
    runs = []
    for _ in range(args.processes):  # every measurement in a fresh process
        out = subprocess.run([sys.executable, __file__, *argv, "--child"], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    hand = "hand-written (nanoGPT style)"
    print(f"two-layer Transformer encoder, d={args.size}, heads={args.heads}, ffn={args.ffn}, batch={args.batch}, "
          f"T={args.length}, 1 thread, {args.processes} process(es)")
    print(f"| model | ms / step | ÷ {hand} | ÷ nn.TransformerEncoder |")
    print("|---|---|---|---|")
    for name in runs[0]:
        ms = statistics.median(r[name] for r in runs) * 1e3
        ratios = [r[name] / r[hand] for r in runs], [r[name] / r["nn.TransformerEncoder"] for r in runs]
        text = [f"{statistics.median(x):.3f}" + (f" ({min(x):.3f}–{max(x):.3f})" if len(x) > 1 else "") for x in ratios]
        print(f"| {name} | {ms:.1f} | {text[0]} | {text[1]} |")


if __name__ == "__main__":
    main()

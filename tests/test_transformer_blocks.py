"""The shipped Transformer blocks, built from specs through the compiler, against torch.nn's layers with the
same weights: outputs and every parameter gradient, with padded sequences, post-norm and pre-norm."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import attngraph

D, HEADS, FFN, B, S, T = 16, 4, 24, 3, 7, 5
SRC_LENGTHS, TGT_LENGTHS = [7, 5, 2], [5, 3, 1]
ENCODER = """\
attngraph: 1
name: enc
inputs: {{x: {{size: {d}}}}}
model:
  enc:
    include: blocks/transformer_encoder_layer.yaml
    with: {{input: x, size: {d}, heads: {h}, ffn: {f}, dropout: 0.0, norm: {norm}, activation: {act}}}
outputs: {{y: {{from: enc, loss: none}}}}
"""
DECODER = """\
attngraph: 1
name: dec
inputs: {{tgt: {{size: {d}}}, mem: {{size: {d}}}}}
model:
  dec:
    include: blocks/transformer_decoder_layer.yaml
    with: {{input: tgt, memory: mem, size: {d}, heads: {h}, ffn: {f}, dropout: 0.0, norm: {norm}, activation: {act}}}
outputs: {{y: {{from: dec, loss: none}}}}
"""
# our parameter (under nodes.<include>.layer.) -> torch's
COMMON = {"ff1.proj.weight": "linear1.weight", "ff1.proj.bias": "linear1.bias",
          "ff2.proj.weight": "linear2.weight", "ff2.proj.bias": "linear2.bias",
          **{f"norm{i}.norm.{w}": f"norm{i}.{w}" for i in (1, 2, 3) for w in ("weight", "bias")}}
ATTENTION = {"qkv.weight": "in_proj_weight", "qkv.bias": "in_proj_bias", "out.weight": "out_proj.weight",
             "out.bias": "out_proj.bias"}
ENCODER_NAMES = {**COMMON, **{f"att.{k}": f"self_attn.{v}" for k, v in ATTENTION.items()}}
DECODER_NAMES = {**COMMON, **{f"self_att.{k}": f"self_attn.{v}" for k, v in ATTENTION.items()},
                 "cross_att.out.weight": "multihead_attn.out_proj.weight",
                 "cross_att.out.bias": "multihead_attn.out_proj.bias"}


def build(tmp_path: Path, template: str, norm: str, act: str):
    path = tmp_path / "spec.yaml"
    path.write_text(template.format(d=D, h=HEADS, f=FFN, norm=norm, act=act))
    return attngraph.build(path).double()


def mask_of(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def copy_weights(ours: nn.Module, prefix: str, ref: nn.Module, names: dict[str, str]) -> None:
    """Ours gets random weights; torch's module gets the same ones (cross-attention's q and kv are split
    from torch's in-projection)."""
    theirs = dict(ref.named_parameters())
    mine = {k[len(prefix):]: v for k, v in ours.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in mine.values():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype) * 0.3)
        for name, param in mine.items():
            if name in names:
                theirs[names[name]].copy_(param)
        if "cross_att.q.weight" in mine:
            theirs["multihead_attn.in_proj_weight"].copy_(torch.cat([mine["cross_att.q.weight"], mine["cross_att.kv.weight"]]))
            theirs["multihead_attn.in_proj_bias"].copy_(torch.cat([mine["cross_att.q.bias"], mine["cross_att.kv.bias"]]))
    assert set(names.values()) | {n for n in theirs if "multihead_attn.in_proj" in n} == set(theirs)  # all mapped


def compare_grads(ours: nn.Module, prefix: str, ref: nn.Module, names: dict[str, str]) -> None:
    theirs = dict(ref.named_parameters())
    mine = {k[len(prefix):]: v for k, v in ours.named_parameters()}
    for name, theirs_name in names.items():
        torch.testing.assert_close(mine[name].grad, theirs[theirs_name].grad, msg=name)
    if "cross_att.q.weight" in mine:
        grad = theirs["multihead_attn.in_proj_weight"].grad
        torch.testing.assert_close(torch.cat([mine["cross_att.q.weight"].grad, mine["cross_att.kv.weight"].grad]), grad)


def probe_loss(out: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A weighted sum over the valid positions (the padded ones are no one's output)."""
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    return (out * probe * mask.unsqueeze(-1)).sum()


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_encoder_layer_matches_torch(tmp_path, norm, act) -> None:
    model = build(tmp_path, ENCODER, norm, act)
    ref = nn.TransformerEncoderLayer(D, HEADS, FFN, dropout=0.0, activation=act, batch_first=True,
                                     norm_first=norm == "pre", dtype=torch.float64)
    prefix = "nodes.enc.layer."
    names = {k: v for k, v in ENCODER_NAMES.items() if not k.startswith("norm3")}
    copy_weights(model, prefix, ref, names)
    x = torch.randn(B, S, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = mask_of(SRC_LENGTHS, S)
    out = model({"x": x, "x.mask": mask})["y"]
    expected = ref(x, src_key_padding_mask=~mask)
    torch.testing.assert_close(out * mask.unsqueeze(-1), expected * mask.unsqueeze(-1))
    probe_loss(out, mask).backward()
    probe_loss(expected, mask).backward()
    compare_grads(model, prefix, ref, names)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_decoder_layer_matches_torch(tmp_path, norm) -> None:
    model = build(tmp_path, DECODER, norm, "relu")
    ref = nn.TransformerDecoderLayer(D, HEADS, FFN, dropout=0.0, batch_first=True, norm_first=norm == "pre",
                                     dtype=torch.float64)
    prefix = "nodes.dec.layer."
    copy_weights(model, prefix, ref, DECODER_NAMES)
    gen = torch.Generator().manual_seed(2)
    tgt, mem = (torch.randn(B, n, D, generator=gen, dtype=torch.float64) for n in (T, S))
    tgt_mask, mem_mask = mask_of(TGT_LENGTHS, T), mask_of(SRC_LENGTHS, S)
    out = model({"tgt": tgt, "mem": mem, "tgt.mask": tgt_mask, "mem.mask": mem_mask})["y"]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # True: may not attend
    expected = ref(tgt, mem, tgt_mask=causal, tgt_key_padding_mask=~tgt_mask, memory_key_padding_mask=~mem_mask)
    torch.testing.assert_close(out * tgt_mask.unsqueeze(-1), expected * tgt_mask.unsqueeze(-1))
    probe_loss(out, tgt_mask).backward()
    probe_loss(expected, tgt_mask).backward()
    compare_grads(model, prefix, ref, DECODER_NAMES)


def test_example_stacks_two_encoder_layers_with_their_own_parameters() -> None:
    spec = Path(__file__).resolve().parents[1] / "specs" / "examples" / "transformer_encoder.yaml"
    model = attngraph.build(spec)
    names = [n for n, _ in model.named_parameters()]
    assert "nodes.enc1.layer.att.qkv.weight" in names and "nodes.enc2.layer.att.qkv.weight" in names
    batch = {"x": torch.randint(0, 12, (2, 6)), "y": torch.randint(0, 12, (2, 6))}
    model.eval()
    loss, _ = model.loss(model(batch), batch)
    loss.backward()
    assert torch.isfinite(loss) and model.nodes["enc1"]["layer"]["att"].qkv.weight.grad.abs().sum() > 0


def test_inspect_records_every_layers_attention() -> None:
    spec = Path(__file__).resolve().parents[1] / "specs" / "examples" / "transformer_encoder.yaml"
    model = attngraph.build(spec).eval()
    outputs, records = model.record({"x": torch.randint(0, 12, (1, 6))})
    for layer in ("enc1", "enc2"):
        weights = records[f"{layer}.layer.att.weights"]
        assert weights.shape == (1, 6, 6)
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, 6))


SEQ2SEQ = """\
attngraph: 1
name: seq2seq
inputs: {{src: {{size: {d}}}, tgt: {{size: {d}}}}}
model:
  enc1:
    include: blocks/transformer_encoder_layer.yaml
    with: {{input: src, size: {d}, heads: {h}, ffn: {f}, dropout: 0.0, norm: {norm}}}
  enc2:
    include: blocks/transformer_encoder_layer.yaml
    with: {{input: enc1, size: {d}, heads: {h}, ffn: {f}, dropout: 0.0, norm: {norm}}}
  enc_norm: {{kind: layer_norm, in: enc2}}
  dec1:
    include: blocks/transformer_decoder_layer.yaml
    with: {{input: tgt, memory: enc_norm, size: {d}, heads: {h}, ffn: {f}, dropout: 0.0, norm: {norm}}}
  dec2:
    include: blocks/transformer_decoder_layer.yaml
    with: {{input: dec1, memory: enc_norm, size: {d}, heads: {h}, ffn: {f}, dropout: 0.0, norm: {norm}}}
  dec_norm: {{kind: layer_norm, in: dec2}}
outputs: {{y: {{from: dec_norm, loss: none}}}}
"""


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_decoder_stack_matches_torch_transformer(tmp_path, norm) -> None:
    """Two encoder and two decoder layers (each block included twice) with the final layer norms, against
    torch.nn.Transformer: teacher-forced, causal target, padded source and target."""
    model = build(tmp_path, SEQ2SEQ, norm, "relu")
    ref = nn.Transformer(D, HEADS, 2, 2, FFN, dropout=0.0, batch_first=True, norm_first=norm == "pre",
                         dtype=torch.float64)
    names = {f"nodes.enc{i + 1}.layer.{k}": f"encoder.layers.{i}.{v}" for i in range(2)
             for k, v in ENCODER_NAMES.items() if not k.startswith("norm3")}
    names |= {f"nodes.dec{i + 1}.layer.{k}": f"decoder.layers.{i}.{v}" for i in range(2) for k, v in DECODER_NAMES.items()}
    names |= {f"nodes.{n}_norm.norm.{w}": f"{t}coder.norm.{w}" for n, t in (("enc", "en"), ("dec", "de"))
              for w in ("weight", "bias")}
    copy_weights(model, "", ref, names)
    for i in range(2):  # the cross-attentions' fused q and kv
        mine = model.nodes[f"dec{i + 1}"]["layer"]["cross_att"]
        theirs = ref.decoder.layers[i].multihead_attn
        with torch.no_grad():
            theirs.in_proj_weight.copy_(torch.cat([mine.q.weight, mine.kv.weight]))
            theirs.in_proj_bias.copy_(torch.cat([mine.q.bias, mine.kv.bias]))
    gen = torch.Generator().manual_seed(3)
    src, tgt = (torch.randn(B, n, D, generator=gen, dtype=torch.float64) for n in (S, T))
    src_mask, tgt_mask = mask_of(SRC_LENGTHS, S), mask_of(TGT_LENGTHS, T)
    out = model({"src": src, "tgt": tgt, "src.mask": src_mask, "tgt.mask": tgt_mask})["y"]
    expected = ref(src, tgt, tgt_mask=torch.ones(T, T, dtype=torch.bool).triu(1), src_key_padding_mask=~src_mask,
                   tgt_key_padding_mask=~tgt_mask, memory_key_padding_mask=~src_mask)
    torch.testing.assert_close(out * tgt_mask.unsqueeze(-1), expected * tgt_mask.unsqueeze(-1))
    probe_loss(out, tgt_mask).backward()
    probe_loss(expected, tgt_mask).backward()
    compare_grads(model, "", ref, names)
    for i in range(2):
        grad = ref.decoder.layers[i].multihead_attn.in_proj_weight.grad
        mine = model.nodes[f"dec{i + 1}"]["layer"]["cross_att"]
        torch.testing.assert_close(torch.cat([mine.q.weight.grad, mine.kv.weight.grad]), grad)

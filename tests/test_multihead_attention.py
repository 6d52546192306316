"""multihead_attention against torch.nn.MultiheadAttention on the same weights (outputs, weights and every
gradient, with padding and causal masks, dropout off), and rotary positions against a hand-written
complex-number form."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from attngraph.components.base import REGISTRY, ShapeError, VType

MHA = REGISTRY["multihead_attention"]
B, T, S, E, H = 3, 5, 7, 12, 3
LENGTHS = [7, 4, 1]


def params(**overrides) -> SimpleNamespace:
    p = SimpleNamespace(**{name: param.default for name, param in MHA.params.items()})
    p.heads = H
    for name, value in overrides.items():
        setattr(p, name, value)
    return p


def build(ins: dict[str, VType], seed: int = 0, **overrides):
    p = params(**overrides)
    module = MHA(p, ins, MHA.infer(p, ins, False)).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64) * 0.5)
    return module


def reference(module, kdim: int | None = None, vdim: int | None = None) -> nn.MultiheadAttention:
    """torch's module with ours' weights: in_proj_weight = [W_q; W_k; W_v] where the sizes agree."""
    ref = nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        w, b = our_in_projection(module)
        if ref._qkv_same_embed_dim:
            ref.in_proj_weight.copy_(torch.cat(w))
        else:
            ref.q_proj_weight.copy_(w[0])
            ref.k_proj_weight.copy_(w[1])
            ref.v_proj_weight.copy_(w[2])
        ref.in_proj_bias.copy_(torch.cat(b))
        ref.out_proj.weight.copy_(module.out.weight)
        ref.out_proj.bias.copy_(module.out.bias)
    return ref


def our_in_projection(module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Our (W_q, W_k, W_v) and (b_q, b_k, b_v), split out of the fused maps."""
    inner = H * module.head_size
    if module.fused:
        return list(module.qkv.weight.split(inner)), list(module.qkv.bias.split(inner))
    if hasattr(module, "kv"):
        return [module.q.weight, *module.kv.weight.split(inner)], [module.q.bias, *module.kv.bias.split(inner)]
    return [module.q.weight, module.k.weight, module.v.weight], [module.q.bias, module.k.bias, module.v.bias]


def mask_of(lengths: list[int], steps: int = S) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, requires_grad=True)


def grads(outputs: torch.Tensor, tensors: list[torch.Tensor], seed: int = 9) -> list[torch.Tensor]:
    probe = torch.randn(outputs.shape, generator=torch.Generator().manual_seed(seed), dtype=outputs.dtype)
    return list(torch.autograd.grad((outputs * probe).sum(), tensors))


def our_grads(module, out, inputs):
    g = grads(out, [*inputs, *module.parameters()])
    names = [n for n, _ in module.named_parameters()]
    return g[:len(inputs)], dict(zip(names, g[len(inputs):]))


def as_ours(module, ref, ref_grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch's parameter gradients under our parameter names."""
    if ref._qkv_same_embed_dim:
        w = list(ref_grads["in_proj_weight"].chunk(3))
    else:
        w = [ref_grads["q_proj_weight"], ref_grads["k_proj_weight"], ref_grads["v_proj_weight"]]
    b = list(ref_grads["in_proj_bias"].chunk(3))
    if module.fused:
        mapped = {"qkv.weight": torch.cat(w), "qkv.bias": torch.cat(b)}
    elif hasattr(module, "kv"):
        mapped = {"q.weight": w[0], "kv.weight": torch.cat(w[1:]), "q.bias": b[0], "kv.bias": torch.cat(b[1:])}
    else:
        mapped = {"q.weight": w[0], "k.weight": w[1], "v.weight": w[2], "q.bias": b[0], "k.bias": b[1], "v.bias": b[2]}
    return {**mapped, "out.weight": ref_grads["out_proj.weight"], "out.bias": ref_grads["out_proj.bias"]}


def ref_grads_of(ref, out, inputs):
    g = grads(out, [*inputs, *ref.parameters()])
    return g[:len(inputs)], dict(zip([n for n, _ in ref.named_parameters()], g[len(inputs):]))


def assert_close_dicts(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], msg=name)


# ------------------------------------------------------------------------------------------- self-attention
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
def test_self_attention_matches_torch_with_padding(causal: bool, need_weights: bool) -> None:
    module = build({"in": VType(E, "x")}, causal=causal)
    ref = reference(module)
    x, mask = randn(B, S, E, seed=1), mask_of(LENGTHS)
    out, weights = module(x, mask=mask, need_weights=need_weights)
    causal_mask = torch.ones(S, S, dtype=torch.bool).triu(1) if causal else None
    expected, ref_weights = ref(x, x, x, key_padding_mask=~mask, attn_mask=causal_mask)
    torch.testing.assert_close(out, expected)
    if need_weights:
        torch.testing.assert_close(weights, ref_weights)
    else:
        assert weights is None
    (gx,), ours = our_grads(module, out, [x])
    (rx,), theirs = ref_grads_of(ref, expected, [x])
    torch.testing.assert_close(gx, rx)
    assert_close_dicts(ours, as_ours(module, ref, theirs))


def test_causal_without_padding_matches_torch_and_the_explicit_form() -> None:
    module = build({"in": VType(E, "x")}, causal=True)
    ref = reference(module)
    x = randn(B, S, E, seed=2)
    fused, _ = module(x, need_weights=False)
    explicit, weights = module(x)
    expected, _ = ref(x, x, x, attn_mask=torch.ones(S, S, dtype=torch.bool).triu(1))
    torch.testing.assert_close(fused, expected)
    torch.testing.assert_close(explicit, expected)
    assert torch.all(weights.triu(1) == 0)  # no weight on a later position


# ------------------------------------------------------------------------------------------ cross-attention
@pytest.mark.parametrize("kdim,vdim", [(E, None), (8, None), (8, 10)])
def test_cross_attention_matches_torch(kdim: int, vdim: int | None) -> None:
    ins = {"in": VType(kdim, "x"), "query": VType(E, "y")}
    if vdim is not None:
        ins["values"] = VType(vdim, "x")
    module = build(ins)
    ref = reference(module, kdim=kdim, vdim=vdim or kdim)
    q, k, mask = randn(B, T, E, seed=3), randn(B, S, kdim, seed=4), mask_of(LENGTHS)
    v = randn(B, S, vdim, seed=5) if vdim is not None else None
    out, weights = module(k, q, v, mask=mask)
    expected, ref_weights = ref(q, k, k if v is None else v, key_padding_mask=~mask)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, ref_weights)
    inputs = [q, k] + ([v] if v is not None else [])
    ours_in, ours = our_grads(module, out, inputs)
    theirs_in, theirs = ref_grads_of(ref, expected, inputs)
    for a, b in zip(ours_in, theirs_in):
        torch.testing.assert_close(a, b)
    assert_close_dicts(ours, as_ours(module, ref, theirs))


def test_a_vector_query_attends_once() -> None:
    module = build({"in": VType(E, "x"), "query": VType(E)})
    ref = reference(module)
    q, k, mask = randn(B, E, seed=6), randn(B, S, E, seed=7), mask_of(LENGTHS)
    out, weights = module(k, q, mask=mask)
    expected, ref_weights = ref(q.unsqueeze(1), k, k, key_padding_mask=~mask)
    assert out.shape == (B, E) and weights.shape == (B, S)
    torch.testing.assert_close(out, expected.squeeze(1))
    torch.testing.assert_close(weights, ref_weights.squeeze(1))


# ------------------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
def test_an_example_without_valid_positions_gives_zeros_and_finite_gradients(causal: bool, need_weights: bool) -> None:
    module = build({"in": VType(E, "x")}, causal=causal)
    x, mask = randn(B, S, E, seed=8), mask_of([7, 0, 3])
    out, weights = module(x, mask=mask, need_weights=need_weights)
    assert torch.all(out[1] == 0)
    if need_weights:
        assert torch.all(weights[1] == 0)
    gx, = grads(out, [x])
    assert torch.isfinite(gx).all() and torch.all(gx[1] == 0)


def test_padding_never_reaches_the_valid_positions() -> None:
    module = build({"in": VType(E, "x")})
    x, mask = randn(B, S, E, seed=10), mask_of(LENGTHS)
    garbage = x.detach().clone()
    for i, n in enumerate(LENGTHS):
        garbage[i, n:] = 1e3
    a, _ = module(x, mask=mask)
    b, _ = module(garbage, mask=mask)
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(a[i, :n], b[i, :n])


def test_dropout_acts_in_training_only() -> None:
    module = build({"in": VType(E, "x")}, dropout=0.5)
    x = randn(B, S, E, seed=11)
    module.eval()
    torch.testing.assert_close(module(x)[0], reference(module)(x, x, x)[0])
    module.train()
    torch.manual_seed(0)
    dropped, _ = module(x)
    assert not torch.allclose(dropped, module.eval()(x)[0])


# ------------------------------------------------------------------------------------------------- rotary
def rope_reference(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, d): the pair (x_i, x_{i+d/2}) as the complex number x_i + i·x_{i+d/2}, times e^{i·m·θ_i}."""
    d = x.shape[-1]
    half = d // 2
    theta = torch.tensor([10000.0 ** (-2 * i / d) for i in range(half)], dtype=torch.float64)
    m = torch.arange(x.shape[-2], dtype=torch.float64)[:, None]
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(m * theta), m * theta)
    return torch.cat([z.real, z.imag], -1)


def test_rotary_matches_the_complex_form() -> None:
    module = build({"in": VType(E, "x")}, rotary=True, causal=True)
    x = randn(B, S, E, seed=12)
    q, k, v = (t.detach() for t in module._project(x, None, None))
    q, k = rope_reference(q), rope_reference(k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(module.head_size) + torch.full((S, S), -math.inf).triu(1)
    context = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, S, -1)
    expected = context @ module.out.weight.T + module.out.bias
    torch.testing.assert_close(module(x)[0], expected)
    torch.testing.assert_close(module(x, need_weights=False)[0], expected)


def test_rotary_scores_depend_on_the_offset_alone() -> None:
    from attngraph.components.multihead import rotate

    q, k = (torch.randn(1, 1, 1, 8, dtype=torch.float64).expand(1, 1, 6, 8) for _ in range(2))
    scores = rotate(q) @ rotate(k).transpose(-2, -1)  # (1, 1, 6, 6): the same vectors at every position
    for offset in range(-5, 6):
        diagonal = torch.diagonal(scores[0, 0], offset)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal))


# ---------------------------------------------------------------------------------------- dimension rules
@pytest.mark.parametrize("ins,overrides,message", [
    ({"in": VType(10, "x")}, {"heads": 3}, "heads (3) must divide the query size (10)"),
    ({"in": VType(12)}, {}, "'in' must be a sequence to attend over, but it is one vector per example (12)"),
    ({"in": VType(12, "x"), "query": VType(12)}, {"causal": True},
     "causal: true compares positions of one sequence, but the query is one vector per example (12) and in is on "
     "time axis x"),
    ({"in": VType(12, "x"), "query": VType(12, "y")}, {"rotary": True},
     "rotary: true compares positions of one sequence, but the query is on time axis y (seq[y]×12) and in is on "
     "time axis x"),
    ({"in": VType(12, "x")}, {"rotary": True, "heads": 4},
     "rotary: true turns pairs of features, so the head size must be even, but it is 3"),
    ({"in": VType(12, "x"), "values": VType(4, "y")}, {},
     "'values' must be a sequence on in's time axis (x), but it is seq[y]×4"),
    ({"in": VType(12, "x", index=True)}, {}, "'in' holds class indices (seq[x]×index<12>); attention needs feature "
                                             "vectors"),
])
def test_dimension_rules(ins, overrides, message) -> None:
    with pytest.raises(ShapeError) as err:
        MHA.infer(params(**overrides), ins, False)
    assert err.value.message == message


def test_head_size_and_size_set_the_shapes() -> None:
    module = build({"in": VType(E, "x")}, heads=2, head_size=5, size=7)
    out, weights = module(randn(B, S, E, seed=13), mask=mask_of(LENGTHS))
    assert module.qkv.weight.shape == (30, E) and out.shape == (B, S, 7) and weights.shape == (B, S, S)


DECODER = """\
attngraph: 1
name: mha-decoder
inputs: {src: {size: 12}}
targets: {tgt: {classes: 7}}
model:
  dec:
    kind: decode
    target: tgt
    max_length: 4
    body:
      emb: {kind: embedding, size: 5, in: prev(dec)}
      att: {kind: multihead_attention, query: prev(rnn), in: src, heads: 3}
      rnn: {kind: gru, size: 12, in: [emb, att]}
      logits: {kind: linear, size: 7, in: rnn}
    output: logits
outputs:
  tgt: {from: dec, loss: cross_entropy}
"""


def test_inside_a_decoder_step_it_matches_a_hand_written_loop(tmp_path) -> None:
    """A vector query per decoder step (the previous GRU state) over a padded source, teacher-forced,
    against nn.MultiheadAttention and nn.GRUCell in a Python loop on the same weights."""
    import attngraph

    path = tmp_path / "dec.yaml"
    path.write_text(DECODER)
    model = attngraph.build(path).double()
    body = model.nodes["dec"]
    gen = torch.Generator().manual_seed(4)
    src, mask = torch.randn(B, S, E, generator=gen, dtype=torch.float64), mask_of(LENGTHS)
    tgt = torch.randint(0, 7, (B, 4), generator=gen)
    out = model({"src": src, "src.mask": mask, "tgt": tgt})["tgt"]  # (B, 4, 7)
    ref = reference(body["att"])
    gru = nn.GRUCell(5 + E, E, dtype=torch.float64)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(gru, name).copy_(getattr(body["rnn"].rnn, name + "_l0"))
    h, token, steps = torch.zeros(B, E, dtype=torch.float64), torch.ones(B, dtype=torch.long), []
    for t in range(4):
        context, _ = ref(h.unsqueeze(1), src, src, key_padding_mask=~mask)
        h = gru(torch.cat([body["emb"].table(token), context.squeeze(1)], -1), h)
        steps.append(body["logits"].proj(h))
        token = tgt[:, t]
    torch.testing.assert_close(out, torch.stack(steps, 1))

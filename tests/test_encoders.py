"""Encoders: bidirectional rnn / lstm / gru over padded batches, and pool (a sequence to one vector).

The references are written here by hand from tensor arithmetic (gate orders as PyTorch documents them) and the
module's own weights, read from its state dict under torch's names (weight_ih_l0, weight_ih_l0_reverse, ...):
no attngraph component code and no torch.nn recurrent modules. Each example runs alone on its unpadded steps.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import attngraph
from attngraph.components.base import REGISTRY, ShapeError, VType

ROOT = Path(__file__).resolve().parents[1]
LSTM_SEQ = ROOT / "specs" / "examples" / "lstm_seq.yaml"
LOOP_LSTM = Path(__file__).resolve().parent / "good_specs" / "loop_lstm.yaml"

LENGTHS = [5, 2, 4]
IN, SIZE = 3, 4


# ----------------------------------------------------------------------------------------------- hand math
def affine(x, w, b):
    return x @ w.T + b


def sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh):
    """Gates in PyTorch's order: input, forget, cell candidate, output. state = (h, c)."""
    h, c = state
    i, f, g, o = (affine(x, w_ih, b_ih) + affine(h, w_hh, b_hh)).chunk(4, -1)
    c = sigmoid(f) * c + sigmoid(i) * torch.tanh(g)
    h = sigmoid(o) * torch.tanh(c)
    return h, (h, c)


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """Gates in PyTorch's order: reset, update, new; the reset gate scales the hidden part of the candidate."""
    xr, xz, xn = affine(x, w_ih, b_ih).chunk(3, -1)
    hr, hz, hn = affine(h, w_hh, b_hh).chunk(3, -1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    h = (1 - z) * torch.tanh(xn + r * hn) + z * h
    return h, h


def rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    h = torch.tanh(affine(x, w_ih, b_ih) + affine(h, w_hh, b_hh))
    return h, h


CELLS = {"lstm": lstm_cell, "gru": gru_cell, "rnn": rnn_cell}


def hand_bidirectional(sd: dict, kind: str, layers: int, xs: torch.Tensor, init) -> torch.Tensor:
    """One example's unpadded steps xs (L, in) -> (L, 2·H): per layer a forward pass and a backward pass from
    the last step to the first, their features concatenated (forward first) as the next layer's input.

    ``init(layer, direction)`` gives the initial state: (h, c) for an LSTM, h otherwise, each (H,)."""
    cell = CELLS[kind]
    for layer in range(layers):
        outs = []
        for direction, suffix in enumerate(("", "_reverse")):
            w = [sd[f"rnn.{n}_l{layer}{suffix}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            state, seq = init(layer, direction), [None] * len(xs)
            order = range(len(xs)) if direction == 0 else reversed(range(len(xs)))
            for t in order:
                seq[t], state = cell(xs[t], state, *w)
            outs.append(torch.stack(seq))
        xs = torch.cat(outs, -1)
    return xs


def hand_initial(sd: dict, kind: str, hidden: int, init):
    """The initial state by the documented layout of state0: state fastest, then direction, then layer."""
    per = 2 if kind == "lstm" else 1

    def at(layer: int, direction: int):
        first = (layer * 2 + direction) * per
        if init == "learned":
            rows = [sd["state0"][first + s] for s in range(per)]
        else:
            rows = [torch.full((hidden,), 0.0 if init == "zeros" else float(init)) for _ in range(per)]
        return tuple(rows) if per == 2 else rows[0]

    return at


# ------------------------------------------------------------------------------------------------ helpers
def make(kind: str, ins: dict, **params):
    cls = REGISTRY[kind]
    p = SimpleNamespace(**{name: param.default for name, param in cls.params.items()})
    for name, value in params.items():
        setattr(p, name, value)
    outs = cls.infer(p, ins, False)
    return cls(p, ins, outs), outs


def recurrent(kind: str, **params):
    base = dict(size=SIZE, layers=2, bidirectional=True, init="zeros")
    if kind == "rnn":
        base["nonlinearity"] = "tanh"
    return make(kind, {"in": VType(IN, "x")}, **{**base, **params})


def randomise(module: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.rand(param.shape, generator=gen) - 0.5)


def padded(lengths: list[int], features: int, seed: int = 1) -> torch.Tensor:
    """A batch whose padded steps hold large garbage values (they must never reach a valid output)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), features, generator=gen)
    for i, n in enumerate(lengths):
        x[i, n:] = 1e3 * torch.randn(max(lengths) - n, features, generator=gen)
    return x


# ------------------------------------------------------------------------------------------ bidirectional
@pytest.mark.parametrize("kind, init", [("lstm", "zeros"), ("gru", "zeros"), ("lstm", "learned"), ("gru", 0.3),
                                        ("rnn", "learned")])
def test_bidirectional_matches_hand_equations_per_example(kind, init):
    module, outs = recurrent(kind, init=init)
    assert outs["out"] == VType(2 * SIZE, "x")
    randomise(module)
    sd = module.state_dict()
    if init == "learned":
        assert sd["state0"].shape == ((2 if kind == "lstm" else 1) * 2 * 2, SIZE)  # states·layers·directions
    x = padded(LENGTHS, IN)
    out = module(x, torch.tensor(LENGTHS))
    assert out.shape == (3, max(LENGTHS), 2 * SIZE)
    for i, n in enumerate(LENGTHS):
        ref = hand_bidirectional(sd, kind, 2, x[i, :n], hand_initial(sd, kind, SIZE, init))
        torch.testing.assert_close(out[i, :n], ref, atol=1e-5, rtol=1e-5, msg=f"example {i} (length {n})")


def test_bidirectional_without_lengths_runs_the_full_sequence():
    module, _ = recurrent("lstm", init=-0.2)
    randomise(module)
    sd, x = module.state_dict(), padded([4, 4], IN)
    out = module(x)
    for i in range(2):
        torch.testing.assert_close(out[i], hand_bidirectional(sd, "lstm", 2, x[i], hand_initial(sd, "lstm", SIZE, -0.2)),
                                   atol=1e-5, rtol=1e-5)


def test_bidirectional_gradients_reach_both_directions_and_the_learned_state():
    module, _ = recurrent("gru", init="learned")
    randomise(module)
    module(padded(LENGTHS, IN), torch.tensor(LENGTHS)).sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("init", ["zeros", "learned"])
def test_unidirectional_state_dict_is_unchanged(kind, init):
    """Checkpoints saved before `bidirectional` existed still load: the same keys and shapes."""
    module, outs = recurrent(kind, bidirectional=False, init=init)
    assert outs["out"] == VType(SIZE, "x")
    torch_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
    expected = {f"rnn.{k}": v.shape for k, v in torch_cls(IN, SIZE, 2, batch_first=True).state_dict().items()}
    if init == "learned":
        expected["state0"] = torch.Size(((2 if kind == "lstm" else 1) * 2, SIZE))
    assert {k: v.shape for k, v in module.state_dict().items()} == expected


def test_static_type_doubles_for_bidirectional():
    cls = REGISTRY["lstm"]
    assert cls.static_type(SimpleNamespace(size=5, bidirectional=True), "out") == VType(10)
    assert cls.static_type(SimpleNamespace(size=5, bidirectional=False), "out") == VType(5)
    assert cls.static_type(SimpleNamespace(size=5, bidirectional=True), "other") is None


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_bidirectional_in_a_loop_is_a_shape_error(kind):
    cls = REGISTRY[kind]
    p = SimpleNamespace(size=SIZE, layers=1, bidirectional=True, init="zeros", nonlinearity="tanh")
    with pytest.raises(ShapeError) as err:
        cls.infer(p, {"in": VType(IN)}, True)
    assert err.value.message == (f"a bidirectional {kind} reads the whole sequence; it cannot run one step at a "
                                 f"time inside a loop")
    assert err.value.hint == "use it outside the loop, as an encoder"
    p.bidirectional = False
    assert cls.infer(p, {"in": VType(IN)}, True) == {"out": VType(SIZE)}


def test_bidirectional_compiled_model_masks_padding():
    """Through the compiler: the head reads 2·size features, and a padded batch equals each example alone."""
    torch.manual_seed(0)
    model = attngraph.build(attngraph.load(LSTM_SEQ, ["model.ctrl.bidirectional=true", "model.ctrl.size=6",
                                                      "model.ctrl.layers=2"]))
    assert model.state_dict()["nodes.head.proj.weight"].shape == (8, 12)
    model.eval()
    x = padded([6, 2, 4], 9)
    masked = model({"x": x, "x.mask": torch.arange(6)[None] < torch.tensor([6, 2, 4])[:, None]})["y"]
    for i, n in enumerate([6, 2, 4]):
        torch.testing.assert_close(masked[i, :n], model({"x": x[i:i + 1, :n]})["y"][0], atol=1e-5, rtol=1e-5)


def test_bidirectional_inside_a_loop_is_reported_by_the_checker():
    with pytest.raises(attngraph.SpecError, match="a bidirectional lstm reads the whole sequence"):
        attngraph.load(LOOP_LSTM, ["model.seq.body.ctrl.bidirectional=true"])


# --------------------------------------------------------------------------------------------------- pool
def hand_pool(x: torch.Tensor, lengths: list[int], mode: str) -> torch.Tensor:
    rows = []
    for i, n in enumerate(lengths):
        steps = x[i, :n]
        if mode == "last":
            rows.append(steps[n - 1])
        elif mode == "first":
            rows.append(steps[0])
        elif mode == "mean":
            rows.append(steps.sum(0) / n)
        else:
            rows.append(torch.stack([steps[:, f].max() for f in range(steps.shape[1])]))
    return torch.stack(rows)


def pool(mode: str, ins=None):
    return make("pool", ins or {"in": VType(5, "x")}, mode=mode)


@pytest.mark.parametrize("mode", ["last", "first", "mean", "max"])
def test_pool_matches_hand_computation_with_a_mask(mode):
    module, outs = pool(mode)
    assert outs == {"out": VType(5, None)}
    x = padded(LENGTHS, 5)
    mask = torch.arange(max(LENGTHS))[None] < torch.tensor(LENGTHS)[:, None]
    torch.testing.assert_close(module(x, mask=mask), hand_pool(x, LENGTHS, mode))
    # no mask: every step is valid, as with a full mask
    full = [max(LENGTHS)] * len(LENGTHS)
    torch.testing.assert_close(module(x), hand_pool(x, full, mode))
    torch.testing.assert_close(module(x), module(x, mask=torch.ones_like(mask)))


@pytest.mark.parametrize("mode", ["last", "first", "mean", "max"])
def test_pool_gives_zeros_for_an_empty_example_and_no_nan_gradients(mode):
    module, _ = pool(mode)
    x = padded([3, 1, 2], 5).requires_grad_(True)
    mask = torch.arange(3)[None] < torch.tensor([3, 0, 2])[:, None]
    out = module(x, mask=mask)
    torch.testing.assert_close(out[1], torch.zeros(5))
    torch.testing.assert_close(out[[0, 2]], hand_pool(x.detach()[[0, 2]], [3, 2], mode))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[~mask] == 0).all()  # padding never contributes


def test_pool_shape_errors():
    with pytest.raises(ShapeError) as err:
        REGISTRY["pool"].infer(SimpleNamespace(mode="last"), {"in": VType(5)}, False)
    assert err.value.message == "needs a sequence but receives one vector per example (5)"
    assert err.value.input == "in"
    with pytest.raises(ShapeError) as err:  # inside a loop a node's value is one step
        REGISTRY["pool"].infer(SimpleNamespace(mode="mean"), {"in": VType(5)}, True)
    assert err.value.message == "needs a sequence but receives one vector per example (5)"
    with pytest.raises(ShapeError) as err:
        REGISTRY["pool"].infer(SimpleNamespace(mode="last"), {"in": VType(7, "x", index=True)}, False)
    assert err.value.message == "needs feature vectors but receives class indices (seq[x]×index<7>)"
    assert err.value.hint == "put an embedding in between"


POOL_SPEC = """\
attngraph: 1
name: pool-encoder
inputs:
  x: {size: 3}
targets:
  y: {size: 2, time: false}
model:
  enc: {kind: lstm, size: 4, in: x, bidirectional: true}
  summary: {kind: pool, in: enc, mode: MODE}
  head: {kind: linear, size: 2, in: summary}
outputs:
  y: {from: head, loss: bce}
"""


@pytest.mark.parametrize("mode", ["last", "mean", "max"])
def test_pool_compiled_model_ignores_padding(tmp_path, mode):
    """Through the compiler: the mask reaches pool, so a padded batch equals each example run alone."""
    path = tmp_path / "pool.yaml"
    path.write_text(POOL_SPEC.replace("MODE", mode))
    torch.manual_seed(0)
    model = attngraph.build(attngraph.load(path))
    model.eval()
    x = padded(LENGTHS, 3)
    mask = torch.arange(max(LENGTHS))[None] < torch.tensor(LENGTHS)[:, None]
    out = model({"x": x, "x.mask": mask})["y"]
    assert out.shape == (3, 2)
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(out[i], model({"x": x[i:i + 1, :n]})["y"][0], atol=1e-5, rtol=1e-5)

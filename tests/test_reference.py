"""Compiled models against independent references written here by hand.

The references use only tensor arithmetic (matmuls, sigmoid, tanh; gate orders as PyTorch documents them)
and the compiled model's weights, read from its state dict: no attngraph component code and no torch.nn
recurrent modules. Outputs and the gradients of a loss with respect to every parameter must agree.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import attngraph

ROOT = Path(__file__).resolve().parents[1]
LSTM_SEQ = ROOT / "specs" / "examples" / "lstm_seq.yaml"
LOOP_FEEDBACK = ROOT / "specs" / "examples" / "loop_feedback.yaml"
GOOD = Path(__file__).resolve().parent / "good_specs"
LOOP_LSTM = GOOD / "loop_lstm.yaml"

Params = dict[str, torch.Tensor]
Reference = Callable[[Params, dict[str, torch.Tensor]], torch.Tensor]


# ----------------------------------------------------------------------------------------------- hand math
def affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    y = x @ w.T
    return y if b is None else y + b


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates in PyTorch's order: input, forget, cell candidate, output."""
    i, f, g, o = (affine(x, w_ih, b_ih) + affine(h, w_hh, b_hh)).chunk(4, -1)
    c = sigmoid(f) * c + sigmoid(i) * torch.tanh(g)
    return sigmoid(o) * torch.tanh(c), c


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    """Gates in PyTorch's order: reset, update, new; the reset gate scales the hidden part of the candidate."""
    xr, xz, xn = affine(x, w_ih, b_ih).chunk(3, -1)
    hr, hz, hn = affine(h, w_hh, b_hh).chunk(3, -1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity: str = "tanh") -> torch.Tensor:
    pre = affine(x, w_ih, b_ih) + affine(h, w_hh, b_hh)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.clamp(pre, min=0)


def bce_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Elementwise, in the numerically stable form max(z, 0) - z y + log(1 + exp(-|z|))."""
    return torch.clamp(z, min=0) - z * y + torch.log1p(torch.exp(-z.abs()))


def masked_mean(per: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per.sum() / per.numel()
    return (per * mask).sum() / mask.sum()


@dataclass
class HandRecurrent:
    """A stack of recurrent cells reading its weights (nn.RNNBase names) from ``params`` under ``prefix``."""

    params: Params
    prefix: str  # e.g. "nodes.seq.ctrl": weights at prefix.rnn.weight_ih_l0, learned state at prefix.state0
    kind: str = "lstm"
    layers: int = 1
    init: str | float = "zeros"
    nonlinearity: str = "tanh"

    def weights(self, layer: int) -> list[torch.Tensor]:
        return [self.params[f"{self.prefix}.rnn.{n}_l{layer}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def initial(self, batch: int) -> list:
        """Per layer (h, c) for an LSTM, h otherwise. A learned state0 is laid out h0, c0, h1, c1, ..."""
        hidden = self.params[f"{self.prefix}.rnn.weight_hh_l0"].shape[1]
        per = 2 if self.kind == "lstm" else 1
        if self.init == "learned":
            rows = [row.expand(batch, hidden) for row in self.params[f"{self.prefix}.state0"]]
        else:
            value = 0.0 if self.init == "zeros" else float(self.init)
            rows = [torch.full((batch, hidden), value) for _ in range(per * self.layers)]
        return [tuple(rows[per * i:per * i + per]) if per == 2 else rows[i] for i in range(self.layers)]

    def step(self, x: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        new = []
        for layer in range(self.layers):
            w = self.weights(layer)
            if self.kind == "lstm":
                x, c = lstm_cell(x, *state[layer], *w)
                new.append((x, c))
            else:
                x = gru_cell(x, state[layer], *w) if self.kind == "gru" else rnn_cell(x, state[layer], *w, self.nonlinearity)
                new.append(x)
        return x, new

    def sequence(self, xs: torch.Tensor) -> torch.Tensor:
        """(B, T, in) -> (B, T, hidden), stepping forwards from the initial state."""
        state, outs = self.initial(xs.shape[0]), []
        for t in range(xs.shape[1]):
            out, state = self.step(xs[:, t], state)
            outs.append(out)
        return torch.stack(outs, 1)


# -------------------------------------------------------------------------------------------- harness
def build(path: Path, overrides: list[str] = (), seed: int = 0) -> attngraph.CompiledModel:
    """Build a spec and give every parameter (learned initial values included) a non-trivial value."""
    torch.manual_seed(seed)
    model = attngraph.build(attngraph.load(path, list(overrides)))
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-0.5, 0.5)
    return model


def build_decisive(path: Path, overrides: list[str] = (), seed: int = 0) -> attngraph.CompiledModel:
    """A float64 model with weights drawn from N(0, 0.8²), larger than the default init: decisive argmaxes and
    distinct beams for the decoder references."""
    torch.manual_seed(seed)
    model = attngraph.build(attngraph.load(path, list(overrides))).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.8)
    return model


def leaf_params(model: attngraph.CompiledModel) -> Params:
    """Independent copies of the model's weights, as leaves that collect the reference's gradients."""
    return {name: value.detach().clone().requires_grad_(True) for name, value in model.state_dict().items()}


def feature_batch(batch: int, steps: int, n_in: int, n_out: int, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(batch, steps, n_in, generator=gen),
            "y": torch.randint(0, 2, (batch, steps, n_out), generator=gen).float()}


def lengths_mask(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def assert_matches_reference(model: attngraph.CompiledModel, batch: dict[str, torch.Tensor], reference: Reference,
                             output: str = "y") -> None:
    """Same outputs, same bce loss, and the same gradient for every parameter."""
    params = leaf_params(model)
    out = model(batch)[output]
    ref = reference(params, batch)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    loss, _ = model.loss({output: out}, batch)
    ref_loss = masked_mean(bce_with_logits(ref, batch[output]).sum(-1), None)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    loss.backward()
    ref_loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"no gradient for {name}"
        torch.testing.assert_close(param.grad, params[name].grad, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


def input_size(model: attngraph.CompiledModel) -> int:
    return next(iter(model.ir.inputs.values())).types["out"].size


# ------------------------------------------------------------------------------ (a) sequence-mode LSTM
SEQUENCE_VARIANTS = [
    pytest.param([], id="lstm"),
    pytest.param(["model.ctrl.layers=2"], id="lstm-2-layers"),
    pytest.param(["model.ctrl.layers=2", "model.ctrl.init=learned"], id="lstm-2-layers-learned-state"),
    pytest.param(["model.ctrl.init=0.25"], id="lstm-constant-state"),
    pytest.param(["model.ctrl.kind=gru", "model.ctrl.layers=2"], id="gru-2-layers"),
    pytest.param(["model.ctrl.kind=rnn", "model.ctrl.init=learned"], id="rnn-learned-state"),
]


def sequence_reference(overrides: list[str]) -> Reference:
    """lstm_seq.yaml by hand: the recurrent stack over the whole sequence, then the linear head."""
    options = dict(o.removeprefix("model.ctrl.").split("=") for o in overrides)

    def reference(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rnn = HandRecurrent(params, "nodes.ctrl", options.get("kind", "lstm"), int(options.get("layers", 1)),
                            options.get("init", "zeros"))
        return affine(rnn.sequence(batch["x"]), params["nodes.head.proj.weight"], params["nodes.head.proj.bias"])

    return reference


@pytest.mark.parametrize("overrides", SEQUENCE_VARIANTS)
def test_sequence_recurrent_matches_hand_equations(overrides):
    model = build(LSTM_SEQ, overrides)
    assert_matches_reference(model, feature_batch(4, 7, 9, 8), sequence_reference(overrides))


def test_sequence_lstm_state_dict_uses_torch_names():
    names = set(build(LSTM_SEQ, ["model.ctrl.layers=2"]).state_dict())
    assert {f"nodes.ctrl.rnn.{w}_l{i}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for i in (0, 1)} <= names


# --------------------------------------------------------------------------------- (b, d) cells in a loop
LOOP_VARIANTS = [
    pytest.param([], id="lstm"),
    pytest.param(["model.seq.body.ctrl.layers=2"], id="lstm-2-layers"),
    pytest.param(["model.seq.body.ctrl.init=learned", "model.seq.body.ctrl.layers=2"], id="lstm-2-layers-learned-state"),
    pytest.param(["model.seq.reverse=true"], id="lstm-reverse"),
    pytest.param(["model.seq.body.ctrl.kind=gru"], id="gru"),
    pytest.param(["model.seq.body.ctrl.kind=gru", "model.seq.body.ctrl.layers=2"], id="gru-2-layers"),
    pytest.param(["model.seq.body.ctrl.kind=gru", "model.seq.body.ctrl.init=0.5"], id="gru-constant-state"),
    pytest.param(["model.seq.body.ctrl.kind=rnn"], id="rnn-tanh"),
    pytest.param(["model.seq.body.ctrl.kind=rnn", "model.seq.body.ctrl.nonlinearity=relu",
                  "model.seq.body.ctrl.layers=2"], id="rnn-relu-2-layers"),
]


def loop_reference(overrides: list[str]) -> Reference:
    """loop_lstm.yaml by hand: a Python loop over the steps, the cell then the head at every step."""
    options = dict(o.removeprefix("model.").removeprefix("seq.body.ctrl.").split("=") for o in overrides)
    reverse = options.get("seq.reverse") == "true"

    def reference(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cell = HandRecurrent(params, "nodes.seq.ctrl", options.get("kind", "lstm"), int(options.get("layers", 1)),
                             options.get("init", "zeros"), options.get("nonlinearity", "tanh"))
        x = batch["x"]
        state, ys = cell.initial(x.shape[0]), {}
        for t in reversed(range(x.shape[1])) if reverse else range(x.shape[1]):
            h, state = cell.step(x[:, t], state)
            ys[t] = affine(h, params["nodes.seq.head.proj.weight"], params["nodes.seq.head.proj.bias"])
        return torch.stack([ys[t] for t in range(x.shape[1])], 1)

    return reference


@pytest.mark.parametrize("overrides", LOOP_VARIANTS)
def test_loop_cell_matches_hand_written_loop(overrides):
    model = build(LOOP_LSTM, overrides)
    assert_matches_reference(model, feature_batch(3, 6, 5, 3), loop_reference(overrides))


def feedback_reference(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """loop_feedback.yaml by hand: the cell reads [x_t, y_{t-1}], y_{-1} is the learned initial value."""
    x = batch["x"]
    cell = HandRecurrent(params, "nodes.seq.ctrl")
    state = cell.initial(x.shape[0])
    y = params["nodes.seq.y.prev_init"].expand(x.shape[0], -1)
    ys = []
    for t in range(x.shape[1]):
        h, state = cell.step(torch.cat([x[:, t], y], -1), state)
        y = affine(h, params["nodes.seq.y.proj.weight"], params["nodes.seq.y.proj.bias"])
        ys.append(y)
    return torch.stack(ys, 1)


def test_loop_feedback_matches_hand_written_loop():
    model = build(LOOP_FEEDBACK)
    assert "nodes.seq.y.prev_init" in dict(model.named_parameters())
    assert_matches_reference(model, feature_batch(3, 6, 9, 8), feedback_reference)


def test_node_names_that_shadow_builtins():
    """Nodes named len, zip, tuple, range must not shadow the builtins the generated forward calls."""
    reference = build(LOOP_LSTM)
    model = attngraph.build(attngraph.load(GOOD / "builtin_names.yaml"))
    renamed = {k.replace("nodes.seq.ctrl.", "nodes.zip.tuple.").replace("nodes.seq.head.", "nodes.zip.range."): v
               for k, v in reference.state_dict().items()}
    model.load_state_dict(renamed)
    batch = feature_batch(3, 6, 5, 3)
    mask = lengths_mask([6, 2, 4], 6)
    torch.testing.assert_close(model({"len": batch["x"]})["y"], reference(batch)["y"])
    torch.testing.assert_close(model({"len": batch["x"], "len.mask": mask})["y"],
                               reference({"x": batch["x"], "x.mask": mask})["y"])


# -------------------------------------------------------------------------------------------- (c) masks
def assert_valid_steps_match_alone(model: attngraph.CompiledModel, x: torch.Tensor, lengths: list[int]) -> None:
    """Outputs of the padded, masked batch at valid steps == each example run alone, truncated."""
    model.eval()
    masked = model({"x": x, "x.mask": lengths_mask(lengths, x.shape[1])})["y"]
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        alone = model({"x": x[i:i + 1, :n]})["y"][0]
        torch.testing.assert_close(masked[i, :n], alone, atol=1e-5, rtol=1e-5, msg=f"example {i} (length {n})")


MASKED_MODELS = [
    pytest.param(LOOP_LSTM, [], id="loop-lstm"),
    pytest.param(LOOP_LSTM, ["model.seq.body.ctrl.kind=gru", "model.seq.body.ctrl.layers=2",
                             "model.seq.body.ctrl.init=learned"], id="loop-gru-2-layers-learned-state"),
    pytest.param(LOOP_LSTM, ["model.seq.reverse=true"], id="loop-reverse"),
    pytest.param(LOOP_FEEDBACK, [], id="loop-feedback"),
    pytest.param(LSTM_SEQ, [], id="sequence-lstm"),
    pytest.param(LSTM_SEQ, ["model.ctrl.layers=2", "model.ctrl.init=learned"], id="sequence-lstm-2-layers-learned"),
    pytest.param(LSTM_SEQ, ["model.ctrl.kind=gru", "model.ctrl.init=0.5"], id="sequence-gru-constant-state"),
]


@pytest.mark.parametrize("path, overrides", MASKED_MODELS)
def test_masked_batch_matches_examples_run_alone(path, overrides):
    model = build(path, overrides)
    x = torch.randn(4, 7, input_size(model), generator=torch.Generator().manual_seed(2))
    assert_valid_steps_match_alone(model, x, [7, 3, 1, 5])


@pytest.mark.parametrize("path, overrides", MASKED_MODELS)
def test_masked_batch_with_an_empty_sequence(path, overrides):
    """A length-0 example (all padding) neither crashes the batch nor changes the other examples."""
    model = build(path, overrides)
    x = torch.randn(3, 5, input_size(model), generator=torch.Generator().manual_seed(3))
    assert_valid_steps_match_alone(model, x, [5, 0, 2])


def test_masked_loss_and_gradients_match_hand_written_loop():
    """With a mask, the loss averages over valid steps only and the gradients match the hand-written loop."""
    model = build(LOOP_LSTM)
    batch = feature_batch(4, 6, 5, 3)
    batch["x.mask"] = mask = lengths_mask([6, 2, 4, 1], 6)
    params = leaf_params(model)
    out = model(batch)["y"]
    ref = loop_reference([])(params, batch)
    torch.testing.assert_close(out[mask], ref[mask], atol=1e-5, rtol=1e-5)
    loss, _ = model.loss({"y": out}, batch)
    ref_loss = masked_mean(bce_with_logits(ref, batch["y"]).sum(-1), mask.float())
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
    loss.backward()
    ref_loss.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, params[name].grad, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


def test_padding_values_do_not_leak_into_valid_steps():
    model = build(LSTM_SEQ, ["model.ctrl.layers=2"])
    x = torch.randn(3, 6, 9)
    mask = lengths_mask([6, 2, 4], 6)
    noisy = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    a, b = model({"x": x, "x.mask": mask})["y"], model({"x": noisy, "x.mask": mask})["y"]
    torch.testing.assert_close(a[mask], b[mask])


# -------------------------------------------------------------------------------------------- (e) losses
def loss_inputs(seed: int = 4) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"logits": torch.randn(3, 5, 4, generator=gen), "bits": torch.randint(0, 2, (3, 5, 4), generator=gen).float(),
            "values": torch.randn(3, 5, 4, generator=gen), "classes": torch.randint(0, 4, (3, 5), generator=gen),
            "mask": lengths_mask([5, 1, 3], 5)}


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_losses_match_torch_functional(masked):
    d = loss_inputs()
    mask = d["mask"] if masked else None
    weights = d["mask"].float() if masked else torch.ones(3, 5)
    expected = {
        "bce": F.binary_cross_entropy_with_logits(d["logits"], d["bits"], reduction="none").sum(-1),
        "mse": F.mse_loss(d["logits"], d["values"], reduction="none").sum(-1),
        "cross_entropy": F.cross_entropy(d["logits"].reshape(-1, 4), d["classes"].reshape(-1), reduction="none").view(3, 5),
    }
    targets = {"bce": d["bits"], "mse": d["values"], "cross_entropy": d["classes"]}
    for name, per in expected.items():
        value = attngraph.LOSSES[name](d["logits"], targets[name], mask)
        torch.testing.assert_close(value, (per * weights).sum() / weights.sum(), msg=name)


def test_losses_without_time_axis():
    d = loss_inputs()
    logits, classes = d["logits"][:, 0], d["classes"][:, 0]
    torch.testing.assert_close(attngraph.LOSSES["cross_entropy"](logits, classes), F.cross_entropy(logits, classes))
    torch.testing.assert_close(attngraph.LOSSES["bce"](logits, d["bits"][:, 0]),
                               F.binary_cross_entropy_with_logits(logits, d["bits"][:, 0], reduction="sum") / 3)


def test_model_loss_weights_outputs():
    model = build(GOOD / "classify.yaml")
    gen = torch.Generator().manual_seed(5)
    batch = {"x": torch.randn(6, 5, generator=gen), "c": torch.randint(0, 3, (6,), generator=gen),
             "v": torch.randn(6, 2, generator=gen)}
    out = model(batch)
    total, parts = model.loss(out, batch)
    ce = F.cross_entropy(out["c"], batch["c"])
    mse = ((out["v"] - batch["v"]) ** 2).sum(-1).mean()
    torch.testing.assert_close(parts["c"], ce)
    torch.testing.assert_close(parts["v"], mse)
    torch.testing.assert_close(total, 0.5 * ce + 2.0 * mse)


def test_model_loss_of_token_model_with_mask():
    model = build(GOOD / "tokens.yaml")
    gen = torch.Generator().manual_seed(6)
    mask = lengths_mask([5, 2, 4], 5)
    batch = {"tok": torch.randint(0, 11, (3, 5), generator=gen), "next": torch.randint(0, 11, (3, 5), generator=gen),
             "tok.mask": mask}
    out = model(batch)
    total, _ = model.loss(out, batch)
    torch.testing.assert_close(total, F.cross_entropy(out["next"][mask], batch["next"][mask]))


def test_token_model_matches_hand_equations():
    model = build(GOOD / "tokens.yaml")
    tok = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(7))
    params = leaf_params(model)
    emb = params["nodes.emb.table.weight"][tok]
    ref = affine(HandRecurrent(params, "nodes.ctrl").sequence(emb), params["nodes.head.proj.weight"],
                 params["nodes.head.proj.bias"])
    torch.testing.assert_close(model({"tok": tok})["next"], ref, atol=1e-5, rtol=1e-5)

"""Hand-written PyTorch models with the same math as the benchmark specs in ``benchmarks/specs/``.

Each is the conventional, idiomatic implementation one would write without attngraph: ``nn.LSTM`` over the
whole sequence, or ``nn.LSTMCell`` / ``nn.GRUCell`` stepped by a Python loop with the linear head applied at
every step (as the spec's loop body does). ``weight_map`` maps each compiled-model parameter name to the
hand-written one, so both models can start from identical weights.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits, summed over features, mean over examples and steps (as ``loss: bce``)."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1).mean()


class LSTMSeq(nn.Module):
    """(1) ``nn.LSTM`` over the sequence, then ``nn.Linear`` on every step."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.ctrl.rnn", 1, "lstm", cells=False), **_linear_map("nodes.head.proj", "head")}


class LoopLSTM(nn.Module):
    """(2) ``nn.LSTMCell`` stepped by a Python loop, ``nn.Linear`` head at every step."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.hidden = hidden
        self.cell = nn.LSTMCell(n_in, hidden)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], self.hidden)
        ys = []
        for x_t in x.unbind(1):
            h, c = self.cell(x_t, (h, c))
            ys.append(self.head(h))
        return torch.stack(ys, 1)

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.seq.ctrl.rnn", 1, "cell", cells=True), **_linear_map("nodes.seq.head.proj", "head")}


class LoopFeedback(nn.Module):
    """(3) Like LoopLSTM, with the previous prediction concatenated to the input (learned initial prediction)."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.hidden = hidden
        self.cell = nn.LSTMCell(n_in + n_out, hidden)
        self.head = nn.Linear(hidden, n_out)
        self.y0 = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], self.hidden)
        y = self.y0.expand(x.shape[0], -1)
        ys = []
        for x_t in x.unbind(1):
            h, c = self.cell(torch.cat([x_t, y], -1), (h, c))
            y = self.head(h)
            ys.append(y)
        return torch.stack(ys, 1)

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.seq.ctrl.rnn", 1, "cell", cells=True), **_linear_map("nodes.seq.y.proj", "head"),
                "nodes.seq.y.prev_init": "y0"}


class LoopGRU2(nn.Module):
    """(4) Two stacked ``nn.GRUCell`` stepped by a Python loop, ``nn.Linear`` head at every step."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.hidden = hidden
        self.cells = nn.ModuleList([nn.GRUCell(n_in, hidden), nn.GRUCell(hidden, hidden)])
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hs = [x.new_zeros(x.shape[0], self.hidden) for _ in self.cells]
        ys = []
        for x_t in x.unbind(1):
            inp = x_t
            for i, cell in enumerate(self.cells):
                hs[i] = inp = cell(inp, hs[i])
            ys.append(self.head(inp))
        return torch.stack(ys, 1)

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.seq.ctrl.rnn", 2, "cells", cells=True), **_linear_map("nodes.seq.head.proj", "head")}


def _rnn_map(prefix: str, layers: int, name: str, cells: bool) -> dict[str, str]:
    """nn.RNNBase names (``weight_ih_l0``) -> an nn.LSTM's (same names) or per-layer cells' (``weight_ih``)."""
    out = {}
    for layer in range(layers):
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if not cells:
                out[f"{prefix}.{w}_l{layer}"] = f"{name}.{w}_l{layer}"
            else:
                out[f"{prefix}.{w}_l{layer}"] = f"{name}.{layer}.{w}" if layers > 1 else f"{name}.{w}"
    return out


def _linear_map(prefix: str, name: str) -> dict[str, str]:
    return {f"{prefix}.weight": f"{name}.weight", f"{prefix}.bias": f"{name}.bias"}


def load_compiled_weights(hand: nn.Module, compiled_state: dict[str, torch.Tensor]) -> None:
    """Copy a compiled model's parameters into ``hand`` (every parameter on both sides must be mapped)."""
    mapping = type(hand).weight_map()
    if set(mapping) != set(compiled_state):
        raise KeyError(f"weight map mismatch: {sorted(set(mapping) ^ set(compiled_state))}")
    hand.load_state_dict({mapping[k]: v for k, v in compiled_state.items()}, strict=True)

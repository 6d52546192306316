"""Recurrent controllers: rnn, lstm, gru, optionally stacked.

Outside a loop a recurrent node runs over its whole input sequence with PyTorch's fused ``nn.RNN`` /
``nn.LSTM`` / ``nn.GRU``. Inside a loop body it is a cell: one step per loop iteration, using the same
weights (so a state_dict is the same either way) through ``torch.lstm_cell`` and friends.

``bidirectional: true`` runs a second stack backwards over each example's valid steps (an encoder); its
output concatenates the forward and backward features (2·size, torch's layout). It reads the whole
sequence, so it cannot be a cell inside a loop.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..spec.params import Bool, Choice, Int, Param
from .base import IN, Component, ShapeError, VType, component

_PARAMS = {
    "size": Param(Int(min=1), doc="hidden units per layer"),
    **IN,
    "layers": Param(Int(min=1), 1, "number of stacked layers"),
    "bidirectional": Param(Bool(), False, "also run backwards over the sequence (outside a loop only); the output "
                                          "is the forward then the backward features, 2·size"),
}


class _Recurrent(Component):
    """Shared machinery; subclasses set ``_torch_cls``, ``_states`` (tensors per layer) and ``_cell``."""

    _torch_cls: type[nn.RNNBase]
    _states = 1

    @classmethod
    def infer(cls, p, ins, step):
        t = ins["in"]
        if step and p.bidirectional:
            raise ShapeError(f"a bidirectional {cls.kind} reads the whole sequence; it cannot run one step at a "
                             f"time inside a loop", hint="use it outside the loop, as an encoder")
        if t.index:
            raise ShapeError(f"needs feature vectors but receives class indices ({t})", "in",
                             hint="put an embedding in between")
        if step and t.time:
            raise ShapeError(f"inside a loop, {cls.kind} takes one step at a time but receives a whole "
                             f"sequence ({t})", "in", hint="loop over it with 'over:' instead")
        if not step and not t.time:
            raise ShapeError(f"outside a loop, {cls.kind} runs over a sequence but receives one vector per "
                             f"example ({t})", "in", hint="put it in a loop body to use it as a cell")
        return {"out": VType(p.size * (2 if p.bidirectional else 1), t.time)}

    @classmethod
    def static_type(cls, p, port):
        t = super().static_type(p, port)
        return VType(2 * t.size) if t is not None and p.bidirectional is True else t

    def __init__(self, p, ins, outs):
        super().__init__()
        self.size, self.layers = p.size, p.layers
        self.directions = 2 if p.bidirectional else 1
        self.rnn = self._make(ins["in"].size, p)
        self._flat = self.rnn._flat_weights
        self.init_kind = p.init
        if p.init == "learned":
            self.state0 = nn.Parameter(torch.zeros(self._states * p.layers * self.directions, p.size))

    def _make(self, in_size: int, p) -> nn.RNNBase:
        return self._torch_cls(in_size, p.size, p.layers, batch_first=True, bidirectional=p.bidirectional)

    def init_state(self, batch, like):
        """``states·layers·directions`` tensors (B, size), state fastest, then direction, then layer: (h_0, c_0,
        h_1, c_1, ...) for a unidirectional LSTM, (h_0f, c_0f, h_0b, c_0b, h_1f, ...) for a bidirectional one."""
        if self.init_kind == "learned":
            return tuple(s.expand(batch, -1) for s in self.state0.to(like.dtype))
        value = 0.0 if self.init_kind == "zeros" else float(self.init_kind)
        count = self._states * self.layers * self.directions
        return tuple(like.new_full((batch, self.size), value) for _ in range(count))

    def _weights(self) -> list[torch.Tensor]:
        """(w_ih, w_hh, b_ih, b_hh) of every layer, flat: the list nn.RNNBase keeps in sync and its fused
        forward uses (a plain attribute, so a cell step does not pay four Module.__getattr__ per layer). Kept
        on this module too, since torch.compile will not trace into an nn.RNNBase (see compile_steps)."""
        return self._flat

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._flat = self.rnn._flat_weights  # .to() / .double() give nn.RNNBase a new list
        return out

    def _sequence_state(self, x):
        """Initial state in nn.RNNBase's (layers·directions, B, H) layout, or None for zeros."""
        if self.init_kind == "zeros":
            return None
        flat = torch.stack(self.init_state(x.shape[0], x), 0)  # (states·layers·directions, B, H)
        return flat if self._states == 1 else (flat[0::2].contiguous(), flat[1::2].contiguous())

    def forward(self, x, lengths=None):  # (B, T, in) -> (B, T, size), or (B, T, 2·size) when bidirectional
        h0 = self._sequence_state(x)
        if lengths is None:
            return self.rnn(x, h0)[0]
        # pack_padded_sequence rejects empty sequences: run those for one step, at a position the mask excludes
        packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed, h0)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


@component("lstm", "controller", dict(_PARAMS), stateful=True,
           doc="Long short-term memory (Hochreiter & Schmidhuber 1997), optionally stacked.")
class LSTM(_Recurrent):
    _torch_cls = nn.LSTM
    _states = 2  # state layout: (h_0, c_0, h_1, c_1, ...)

    def step(self, state, x):  # x: (B, in); state: 2*layers tensors (B, size) -> (B, size)
        weights, new = self._weights(), []
        for layer in range(self.layers):
            h, c = torch.lstm_cell(x, (state[2 * layer], state[2 * layer + 1]), *weights[4 * layer:4 * layer + 4])
            new += (h, c)
            x = h
        return x, tuple(new)


class _OneStateCell(_Recurrent):
    """A cell whose state is one tensor per layer (GRU, Elman RNN); ``_cell`` is torch's fused cell."""

    def step(self, state, x):  # x: (B, in); state: layers tensors (B, size) -> (B, size)
        weights, new = self._weights(), []
        for layer in range(self.layers):
            x = self._cell(x, state[layer], *weights[4 * layer:4 * layer + 4])
            new.append(x)
        return x, tuple(new)


@component("gru", "controller", dict(_PARAMS), stateful=True,
           doc="Gated recurrent unit (Cho et al. 2014), optionally stacked.")
class GRU(_OneStateCell):
    _torch_cls = nn.GRU
    _cell = staticmethod(torch.gru_cell)


@component("rnn", "controller", {**_PARAMS, "nonlinearity": Param(Choice("tanh", "relu"), "tanh",
                                                                    "the cell's nonlinearity")},
           stateful=True, doc="Elman recurrent network, optionally stacked.")
class RNN(_OneStateCell):
    _torch_cls = nn.RNN

    def _make(self, in_size, p):
        self._cell = torch.rnn_tanh_cell if p.nonlinearity == "tanh" else torch.rnn_relu_cell
        return nn.RNN(in_size, p.size, p.layers, nonlinearity=p.nonlinearity, batch_first=True,
                      bidirectional=p.bidirectional)

"""``pick``: the element of a sequence at a chosen position, the input a pointer network feeds back.

In a pointer network (Vinyals et al. 2015) the decoder's answer is a position of its input sequence, and
the next decoder step reads the input *at* that position. A decoder writing a ``points_to:`` target gives
``prev(<decode>)`` as such a position; ``pick`` looks it up::

    dec:
      kind: decode
      target: y                                            # targets: {y: {points_to: x}}
      body:
        chosen: {kind: pick, from: x, at: prev(dec)}       # x at the position chosen last
        rnn:    {kind: lstm, size: 128, in: chosen}
        ptr:    {kind: attention, score: additive, query: rnn, keys: enc}
      output: ptr.scores                                   # scores over the positions of x

``at`` holds one position per example (B,) inside a loop, or one per step (B, T) for a sequence of
positions; ``from`` is (B, S, F). The value is (B, F), or (B, T, F). No gradient reaches ``at`` (a choice);
gradients reach ``from`` at the picked positions.
"""
from __future__ import annotations

import torch

from ..spec.params import Param, RefList
from .base import Component, ShapeError, VType, component


@component("pick", "layer", {
    "from": Param(RefList(), doc="the sequence to pick from (B, S, F)"),
    "at": Param(RefList(), doc="a position in it: a pointer's choice, e.g. prev(<decode>) for a points_to: target"),
}, doc="The element of a sequence at a chosen position (the input a pointer network feeds back).")
class Pick(Component):
    accepts = {"at": "positions"}

    @classmethod
    def infer(cls, p, ins, step):
        seq, at = ins["from"], ins["at"]
        if seq.index or seq.layout is not None:
            raise ShapeError(f"'from' must be a sequence of feature vectors, but it is {seq}", "from",
                             hint="embed class indices first")
        if seq.time is None:
            raise ShapeError(f"'from' must be a sequence to pick from, but it is one vector per example ({seq})",
                             "from", hint="name a sequence, e.g. an input declared with time: true")
        if at.layout is None or at.layout[0] != "positions" or not at.index:
            raise ShapeError(f"'at' must be a position (a pointer's choice), but it is {at}", "at",
                             hint="a decoder writing a points_to: target gives one as prev(<decode>)")
        if at.layout[1] != seq.time:
            raise ShapeError(f"'at' is a position of '{at.layout[1]}' but 'from' runs over '{seq.time}'", "at",
                             hint=f"pick from a sequence on the time axis of '{at.layout[1]}'")
        return {"out": VType(seq.size, at.time)}

    def __init__(self, p, ins, outs):
        super().__init__()

    def forward(self, seq: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """seq (B, S, F), at (B,) or (B, T) long -> (B, F) or (B, T, F)."""
        index = at.unsqueeze(-1) if at.dim() == 1 else at
        out = seq.gather(1, index.unsqueeze(-1).expand(*index.shape, seq.shape[-1]))
        return out.squeeze(1) if at.dim() == 1 else out

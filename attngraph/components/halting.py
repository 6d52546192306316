"""``halting_unit``: the sigmoid unit a halting scope (``act``, ``pondernet``) reads to decide when to stop.

Graves 2016 eq. (6): h = σ(W s + b) on the state s of the step it follows, one scalar per example; ``bias`` is
b's initial value (the paper uses 1.0, so that early in training the network halts after few steps). In a
``pondernet`` scope the same unit gives λ_n, the probability of halting at step n given that it did not halt
before (Banino et al. 2021).
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec.params import Float, Param, RefList
from .base import Component, ShapeError, VType, component


@component("halting_unit", "halting", {
    "in": Param(RefList(), doc="the state the unit reads (several are concatenated), e.g. the controller"),
    "bias": Param(Float(), 1.0, "initial value of the bias b (Graves 2016 uses 1.0)"),
}, doc="Halting probability σ(W s + b), one per example, for a halting scope's halt:.")
class HaltingUnit(Component):
    @classmethod
    def infer(cls, p, ins, step):
        t = ins["in"]
        if t.index:
            raise ShapeError(f"needs feature vectors but receives class indices ({t})", "in",
                             hint="read the controller's state")
        return {"out": VType(1, t.time)}

    def __init__(self, p, ins, outs):
        super().__init__()
        self.proj = nn.Linear(ins["in"].size, 1)
        nn.init.constant_(self.proj.bias, p.bias)

    def forward(self, x):  # (B, [T,] in) -> (B, [T,] 1) in (0, 1)
        return torch.sigmoid(self.proj(x))

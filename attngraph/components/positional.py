"""Positional encodings of a sequence (Vaswani et al. 2017, §3.5): what tells self-attention where a
position is.

``encoding: sinusoidal`` is the fixed table of the paper, for position t and feature j of d::

    P[t, 2i]   = sin(t / base^(2i/d))
    P[t, 2i+1] = cos(t / base^(2i/d))         (base = 10000; an odd d ends on a sine)

``encoding: learned`` is a learned table P of ``max_length`` × d (initialised N(0, 0.02²), as GPT-2), for
sequences of at most ``max_length`` positions. ``mode: add`` gives x + P (d = the input size);
``mode: concat`` gives [x; P] (d = ``size``). ``scale_input: true`` multiplies x by √(input size) first,
as the paper does to its embeddings. Positions count from 0 at the first element of every example.

On a whole sequence only: inside a loop or decoder a component sees one step, and giving it the step's
position needs the whole-sequence frames of compiler v2 (issue 24).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..spec.params import Bool, Choice, Float, Int, Param, RefList
from .base import Component, ShapeError, VType, component


def sinusoidal(length: int, size: int, base: float = 10000.0, dtype=torch.float32, device=None) -> torch.Tensor:
    """The table P (length, size) of Vaswani et al. (2017, §3.5), see the module docstring."""
    position = torch.arange(length, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    rate = base ** (-torch.arange(0, size, 2, dtype=torch.float64, device=device) / size)  # (⌈d/2⌉,)
    angle = position * rate  # (T, ⌈d/2⌉)
    table = torch.stack([angle.sin(), angle.cos()], -1).flatten(-2)[:, :size]  # sin, cos interleaved
    return table.to(dtype)


@component("positional_encoding", "encoder", {
    "in": Param(RefList(), doc="a sequence of features; several are concatenated on the feature axis"),
    "encoding": Param(Choice("sinusoidal", "learned"), "sinusoidal",
                      "sinusoidal: the fixed table of Vaswani et al.; learned: a learned table of max_length rows"),
    "mode": Param(Choice("add", "concat"), "add", "add: x + P; concat: [x; P], P of size features"),
    "size": Param(Int(min=1), None, "features of P with mode: concat (with add, P has the input's size)"),
    "max_length": Param(Int(min=1), None, "learned: the most positions a sequence may have (required)"),
    "base": Param(Float(min=1.0, open_min=True), 10000.0, "sinusoidal: the base of the wavelengths"),
    "scale_input": Param(Bool(), False, "multiply the input by √(input size) first (Vaswani et al. §3.4)"),
}, doc="Positional encoding of a sequence (Vaswani et al. 2017): x + P or [x; P], P sinusoidal or learned")
class PositionalEncoding(Component):
    @classmethod
    def infer(cls, p, ins, step):
        t = ins["in"]
        if t.index:
            raise ShapeError(f"needs feature vectors but receives class indices ({t})", "in",
                             hint="put an embedding in between")
        if t.time is None:
            where = "a loop step's value is one vector: positions inside a loop or decoder need compiler v2 " \
                    "(issue 24)" if step else "name a sequence"
            raise ShapeError(f"needs a sequence but receives one vector per example ({t})", "in", hint=where)
        if p.encoding == "learned" and p.max_length is None:
            raise ShapeError("encoding: learned needs max_length, the rows of its table", "max_length",
                             hint="e.g. max_length: 512, the longest sequence it will see")
        if p.encoding == "sinusoidal" and p.max_length is not None:
            raise ShapeError("max_length sizes a learned table; a sinusoidal encoding has any length", "max_length",
                             hint="remove max_length, or set encoding: learned")
        if p.mode == "add" and p.size is not None and p.size != t.size:
            raise ShapeError(f"mode: add adds P to the input, so size must be the input size ({t.size}), but it is "
                             f"{p.size}", "size", hint="remove size, or use mode: concat")
        if p.mode == "concat" and p.size is None:
            raise ShapeError("mode: concat needs size, the features of P", "size", hint="e.g. size: 16")
        return {"out": VType(t.size + p.size if p.mode == "concat" else t.size, t.time)}

    @classmethod
    def static_type(cls, p, port):
        return None  # the size comes from the input

    def __init__(self, p, ins, outs):
        super().__init__()
        self.mode, self.base, self.max_length = p.mode, p.base, p.max_length
        self.size = p.size if p.mode == "concat" else ins["in"].size
        self.scale = math.sqrt(ins["in"].size) if p.scale_input else None
        self.table = None
        if p.encoding == "learned":
            self.table = nn.Parameter(torch.randn(p.max_length, self.size) * 0.02)  # (max_length, d)

    def forward(self, x):  # (B, T, F) -> (B, T, F) (add) or (B, T, F + size) (concat)
        length = x.shape[1]
        if self.table is None:
            table = sinusoidal(length, self.size, self.base, x.dtype, x.device)
        elif length > self.max_length:
            raise ValueError(f"positional_encoding: a sequence of {length} positions is longer than max_length = "
                             f"{self.max_length}, the rows of the learned table (raise max_length)")
        else:
            table = self.table[:length]
        if self.scale is not None:
            x = x * self.scale
        if self.mode == "add":
            return x + table
        return torch.cat([x, table.to(x.dtype).expand(x.shape[0], -1, -1)], -1)

"""Pointwise layers: linear, mlp, embedding, concat, sum, layer_norm, dropout.

Each applies to the last axis, so it works on a vector per example ``(B, F)`` and on a sequence
``(B, T, F)`` alike, inside or outside a loop.
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec.params import Bool, Choice, Float, Int, IntList, Param, RefList
from .base import IN, Component, ShapeError, VType, component

ACTIVATIONS = {
    "none": None, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "gelu": nn.functional.gelu, "softplus": nn.functional.softplus, "elu": nn.functional.elu,
    "leaky_relu": nn.functional.leaky_relu,
}
ACTIVATION = Choice(*ACTIVATIONS)


def _features(t: VType, what: str = "in") -> VType:
    if t.index:
        raise ShapeError(f"needs feature vectors but receives class indices ({t})", what,
                         hint="put an embedding in between")
    return t


@component("linear", "layer", {
    "size": Param(Int(min=1), doc="output features"),
    **IN,
    "activation": Param(ACTIVATION, "none", "nonlinearity applied after the affine map"),
    "bias": Param(Bool(), True, "learn an additive bias"),
}, doc="Affine map y = act(W x + b) on the last axis.")
class Linear(Component):
    @classmethod
    def infer(cls, p, ins, step):
        return {"out": VType(p.size, _features(ins["in"]).time)}

    def __init__(self, p, ins, outs):
        super().__init__()
        self.proj = nn.Linear(ins["in"].size, p.size, bias=p.bias)
        self.act = ACTIVATIONS[p.activation]

    def forward(self, x):  # (B, [T,] in) -> (B, [T,] size)
        y = self.proj(x)
        return y if self.act is None else self.act(y)


@component("mlp", "controller", {
    "hidden": Param(IntList(min=1), doc="sizes of the hidden layers, e.g. [100, 100]"),
    "size": Param(Int(min=1), doc="output features"),
    **IN,
    "activation": Param(ACTIVATION, "relu", "nonlinearity after each hidden layer"),
    "out_activation": Param(ACTIVATION, "none", "nonlinearity after the output layer"),
}, doc="Feed-forward network (also a feed-forward controller).")
class MLP(Component):
    @classmethod
    def infer(cls, p, ins, step):
        return {"out": VType(p.size, _features(ins["in"]).time)}

    def __init__(self, p, ins, outs):
        super().__init__()
        sizes = [ins["in"].size, *p.hidden, p.size]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act, self.out_act = ACTIVATIONS[p.activation], ACTIVATIONS[p.out_activation]

    def forward(self, x):  # (B, [T,] in) -> (B, [T,] size)
        for layer in self.layers[:-1]:
            x = layer(x)
            x = x if self.act is None else self.act(x)
        x = self.layers[-1](x)
        return x if self.out_act is None else self.out_act(x)


@component("embedding", "encoder", {
    "size": Param(Int(min=1), doc="embedding features"),
    "in": Param(RefList(), doc="class indices (an input declared with vocab:)"),
}, doc="Table lookup of class indices (tokens) into learned vectors; the vocabulary comes from the input.")
class Embedding(Component):
    @classmethod
    def infer(cls, p, ins, step):
        t = ins["in"]
        if not t.index:
            raise ShapeError(f"needs class indices (an input declared with vocab:) but receives features ({t})", "in",
                             hint="feature vectors go through a linear layer instead")
        return {"out": VType(p.size, t.time)}

    def __init__(self, p, ins, outs):
        super().__init__()
        self.table = nn.Embedding(ins["in"].size, p.size)

    def forward(self, x):  # (B, [T]) long -> (B, [T,] size)
        return self.table(x)


@component("concat", "layer", {"in": Param(RefList(), doc="nodes to concatenate on the feature axis")},
           doc="Concatenation on the feature axis.")
class Concat(Component):
    @classmethod
    def infer(cls, p, ins, step):
        return {"out": _features(ins["in"])}

    def __init__(self, p, ins, outs):
        super().__init__()

    def forward(self, x):  # the inputs arrive already concatenated
        return x


@component("sum", "layer", {"in": Param(RefList(), doc="nodes of equal size to add")}, concat=False,
           doc="Elementwise sum of inputs of equal size.")
class Sum(Component):
    @classmethod
    def infer(cls, p, ins, step):
        first = ins["in"][0]
        for i, t in enumerate(ins["in"]):
            if t.index:
                raise ShapeError(f"needs feature vectors but receives class indices ({t})", "in", i,
                                 "put an embedding in between")
            if t.size != first.size:
                raise ShapeError(f"size mismatch: {t.size} here but {first.size} at in[0]", "in", i,
                                 "sum adds inputs of equal size")
            if t.time != first.time:
                raise ShapeError(f"time axis mismatch: {t} here but {first} at in[0]", "in", i,
                                 "sum adds inputs that are all sequences on one time axis or all single vectors")
        return {"out": first}

    def __init__(self, p, ins, outs):
        super().__init__()

    def forward(self, xs):
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total


@component("layer_norm", "layer", {
    **IN,
    "eps": Param(Float(min=0.0, open_min=True), 1e-5, "added to the variance for stability"),
    "affine": Param(Bool(), True, "learn a gain and a bias"),
}, doc="Layer normalisation over the feature axis.")
class LayerNorm(Component):
    @classmethod
    def infer(cls, p, ins, step):
        return {"out": _features(ins["in"])}

    def __init__(self, p, ins, outs):
        super().__init__()
        self.norm = nn.LayerNorm(ins["in"].size, eps=p.eps, elementwise_affine=p.affine)

    def forward(self, x):
        return self.norm(x)


@component("dropout", "layer", {
    **IN,
    "p": Param(Float(min=0.0, max=1.0), 0.1, "probability of zeroing a feature (training only)"),
}, doc="Dropout (active in training mode only).")
class Dropout(Component):
    @classmethod
    def infer(cls, p, ins, step):
        return {"out": _features(ins["in"])}

    def __init__(self, p, ins, outs):
        super().__init__()
        self.drop = nn.Dropout(p.p)

    def forward(self, x):
        return self.drop(x)


@component("pool", "layer", {
    "in": Param(RefList(), doc="a sequence of features; several are concatenated on the feature axis"),
    "mode": Param(Choice("last", "first", "mean", "max"), "last",
                  "last: the last valid step; first: step 0; mean / max: over the valid steps (padding excluded)"),
}, doc="Summarises a sequence as one vector per example (e.g. an encoder's last state, the fixed-length vector "
       "of a seq2seq baseline)")
class Pool(Component):
    mask_for = "in"  # padded steps never enter the summary

    @classmethod
    def infer(cls, p, ins, step):
        t = _features(ins["in"])
        if not t.time:  # also inside a loop, where a node's own value is one step
            raise ShapeError(f"needs a sequence but receives one vector per example ({t})", "in",
                             hint="pool summarises a sequence over its time axis; read a sequence, e.g. an encoder "
                                  "run outside the loop")
        return {"out": VType(t.size, None)}

    def __init__(self, p, ins, outs):
        super().__init__()
        self.mode = p.mode

    def forward(self, x, mask=None):  # x: (B, T, F), mask: (B, T) bool or None -> (B, F)
        if mask is None:
            if self.mode == "last":
                return x[:, -1]
            if self.mode == "first":
                return x[:, 0]
            return x.mean(1) if self.mode == "mean" else x.amax(1)
        valid = mask.any(1, keepdim=True)  # (B, 1): an example with no valid step gives zeros
        if self.mode == "last":
            steps = torch.arange(x.shape[1], device=x.device)
            last = torch.where(mask, steps, -1).amax(1).clamp_min(0)  # (B,) the last valid position
            out = x[torch.arange(x.shape[0], device=x.device), last]
        elif self.mode == "first":
            out = x[:, 0]
        elif self.mode == "mean":
            m = mask.unsqueeze(-1).to(x.dtype)
            out = (x * m).sum(1) / m.sum(1).clamp_min(1)
        else:
            out = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        return torch.where(valid, out, out.new_zeros(()))

"""A third-party component used by the plug-in tests: multiplies its input by a learned scalar."""
import torch
from torch import nn

from attngraph import Component, Float, Param, RefList, VType, component


@component("test_scale", "layer", {
    "in": Param(RefList(), doc="input node(s)"),
    "start": Param(Float(), 1.0, "initial scale"),
}, doc="Multiply by a learned scalar (test plug-in).")
class Scale(Component):
    @classmethod
    def infer(cls, p, ins, step):
        return {"out": VType(ins["in"].size, ins["in"].time)}

    def __init__(self, p, ins, outs):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(p.start))

    def forward(self, x):
        return x * self.scale

"""Per-node parameter counts and shapes (``attngraph summary``)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .api import Spec
from .compiler.module import CompiledModel


@dataclass
class Row:
    path: str
    kind: str
    inputs: str
    outputs: str
    params: int


def rows(spec: Spec, model: CompiledModel) -> list[Row]:
    """One row per input, component and scope, depth first in spec order."""
    out = [Row(name, "input", "", str(n.types["out"]), 0) for name, n in spec.ir.inputs.items()]
    for node in spec.ir.nodes():
        module: nn.Module = model.node_module(node.dotted)
        count = sum(p.numel() for p in module.parameters())
        ins = ", ".join(f"{k}={_types(v)}" for k, v in node.in_types.items()) if not node.is_scope else \
            ", ".join(f"{k}={_types([e.type for e in v])}" for k, v in node.inputs.items())
        outs = ", ".join(f"{p}={t}" if p != "out" else str(t) for p, t in node.types.items())
        depth = len(node.path) - 1
        out.append(Row("  " * depth + node.name, node.kind, ins, outs, count))
    return out


def _types(value) -> str:
    return "[" + ", ".join(str(v) for v in value) + "]" if isinstance(value, list) else str(value)


def format_table(spec: Spec, model: CompiledModel) -> str:
    table = rows(spec, model)
    header = Row("node", "kind", "inputs", "outputs", 0)
    widths = [max(len(getattr(r, f)) for r in [header, *table]) for f in ("path", "kind", "inputs", "outputs")]
    lines = []
    for i, r in enumerate([header, *table]):
        count = "params" if i == 0 else f"{r.params:,}"
        cells = [r.path, r.kind, r.inputs, r.outputs]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + count.rjust(10))
        if i == 0:
            lines.append("-" * len(lines[0]))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append("-" * len(lines[0]))
    lines.append(f"total parameters: {total:,} ({trainable:,} trainable)")
    return "\n".join(lines)

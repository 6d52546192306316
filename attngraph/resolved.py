"""The resolved spec: includes expanded, overrides applied, every default filled in (``attngraph show``)."""
from __future__ import annotations

from typing import Any

from .api import Spec
from .components.base import VType
from .ir import NodeIR, ScopeIR
from .spec.params import Ref


def resolved(spec: Spec) -> dict[str, Any]:
    """Plain data for the spec as attngraph understood it (round-trips through ``attngraph check``)."""
    ir = spec.ir
    out: dict[str, Any] = {"attngraph": 1, "name": spec.name}
    doc = spec.tree.get("doc")
    if doc is not None and doc.value:
        out["doc"] = doc.value
    out["inputs"] = {name: _decl(n, "vocab") for name, n in ir.inputs.items()}
    if ir.targets:
        out["targets"] = {name: _target(t) for name, t in ir.targets.items()}
    out["model"] = _body(ir.root)
    out["outputs"] = {name: {"from": str(o.edge.ref), "loss": o.loss, **({"target": o.target} if o.target else {}),
                             "weight": o.weight, **({"reward": o.reward} if o.reward else {}), **o.options}
                      for name, o in ir.outputs.items()}
    for key, node in spec.tree.value.items():
        if key not in out and key not in ("targets",):
            out[key] = node.plain_value()
    return out


def _target(t: VType) -> dict[str, Any]:
    if t.layout and t.layout[0] == "positions":  # a pointer's answer: positions in an input, sized at run time
        shape: dict[str, Any] = {"points_to": t.layout[1]}
    else:
        shape = {"classes": t.size} if t.index else {"size": t.size}
    return shape | {"time": t.time is not None}


def _decl(node: NodeIR, index_key: str) -> dict[str, Any]:
    t = node.types["out"]
    shared = t.time is not None and t.time != node.name  # on another input's time axis
    if t.layout and t.layout[0] == "image":
        return {"image": list(t.layout[1:])}  # an image has no time axis
    return {index_key if t.index else "size": t.size, "time": t.time if shared else t.time is not None}


def _body(scope: ScopeIR) -> dict[str, Any]:
    return {name: _node(n) for name, n in scope.nodes.items() if not n.is_input}


def _node(node: NodeIR) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": node.kind}
    for key, value in vars(node.p).items():
        if value is not None:  # None: the parameter was left unset (its default says what that means)
            out[key] = _plain(value)
    if node.body is not None:
        out["body"] = _body(node.body)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Ref):
        return value.text
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value

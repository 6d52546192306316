"""Static dimension inference over the IR, frame by frame in execution order.

Each component's ``infer`` gives its output types from its input types and parameters, before any tensor
exists; a mismatch is reported on the edge where it happens. A ``prev()`` edge met before its source is
typed from a first guess (the source's ``size`` parameter) that is checked once the source is inferred.
"""
from __future__ import annotations

from typing import Any

from .components.base import ShapeError, VType
from .ir import IR, Edge, NodeIR, ScopeIR
from .spec.diagnostics import Diagnostics
from .spec.params import INVALID


class Inferer:
    """Static dimension inference, frame by frame in execution order (types of prev() from a first guess)."""

    def __init__(self, ir: IR, diags: Diagnostics):
        self.ir, self.diags = ir, diags
        self.guesses: list[Edge] = []

    def run(self) -> None:
        self.frame(self.ir.root, step=False)
        for out in self.ir.outputs.values():
            self.edge_type(out.edge)
        for edge in self.ir.ponders.values():
            self.edge_type(edge)
        if not self.diags.errors:
            self.check_inferred()
        for edge in self.guesses:
            real = edge.src.types.get(edge.port)
            if real is not None and real != edge.type:
                self.diags.error(edge.ref.pos, edge.label,
                                 f"size mismatch on recurrent edge {edge.ref} -> {edge.dst.name}: assumed {edge.type} "
                                 f"before '{edge.src.name}' was inferred, but it gives {real}")

    def check_inferred(self) -> None:
        """Every component must have been typed: a value read before it is computed would otherwise pass
        unnoticed and only fail when the model is built."""
        for node in self.ir.nodes():
            if not node.is_scope and not node.types:
                self.diags.error(node.pos, node.ypath, f"cannot infer the sizes of what '{node.name}' reads",
                                 "one of the values it reads is not computed before it")
                return

    def frame(self, frame: ScopeIR, step: bool) -> None:
        for unit in self.ir.units(frame):
            if unit.is_scope:
                self.scope(unit, step)
            else:
                self.component(unit, step)

    def edge_type(self, edge: Edge) -> VType | None:
        if edge.element_of is not None:
            t = edge.element_of.cls.element_type(edge.element_of, edge)
            if t is not None:
                edge.type = t
                return t
        t = edge.src.types.get(edge.port)
        if t is None and edge.prev:
            t = _static_guess(edge.src, edge.port)
            if t is None:
                self.diags.error(edge.ref.pos, edge.label,
                                 f"cannot infer the size of {edge.ref} before '{edge.src.name}' is computed",
                                 f"'{edge.src.kind}' has no size parameter to read it from")
                return None
            self.guesses.append(edge)
        if t is None:
            if edge.src.types and not edge.src.is_scope and not edge.src.is_input:  # typed, but not this port
                why, hint = edge.src.cls.missing_port(edge.src.p, edge.port) or (
                    f"'{edge.src.kind}' gives no '{edge.port}' with these parameters", "")
                self.diags.error(edge.ref.pos, edge.label, f"'{edge.ref}' does not exist here: {why}", hint)
            return None
        leaves = [s for s in edge.into if not s.cls.inline]
        if (edge.prev or leaves) and edge.port in getattr(edge.src.cls, "step_local", ()):
            what = f"'{edge.ref}'" if edge.ref.parts[-1] == edge.src.name else f"'{edge.ref}' ('{edge.src.name}')"
            where = "through prev()" if edge.prev else f"out of '{leaves[-1].name}'"
            self.diags.error(edge.ref.pos, edge.label, f"{what} is {t}, which cannot be read {where}: it lives "
                             "within one step", "only the ntm_memory it writes to reads it, as 'writes:'")
            return None
        for scope_node in reversed(edge.into):
            if scope_node.cls.inline:
                continue
            if t.time is not None:
                self.diags.error(edge.ref.pos, edge.label,
                                 f"'{edge.ref}' is a sequence inside a sequence (nested loops)",
                                 f"read it through an output of '{scope_node.name}' that has one vector per step")
                return None
            t = scope_node.cls.output_type(scope_node, t)
        edge.type = t
        return t

    def inputs(self, node: NodeIR) -> dict[str, Any] | None:
        ins: dict[str, Any] = {}
        ok = True
        for param, edges in node.inputs.items():
            types = [self.edge_type(e) for e in edges]
            if any(t is None for t in types) or not edges:
                ok = False
                continue
            if not node.is_scope and not self.structured_ok(node, param, edges, types):
                ok = False
                continue
            if node.is_scope or not node.cls.concat:
                ins[param] = types
                continue
            ins[param] = self.concat(node, param, edges, types)
            ok = ok and ins[param] is not None
        return ins if ok else None

    def structured_ok(self, node: NodeIR, param: str, edges: list[Edge], types: list[VType]) -> bool:
        """A structured value (a memory, a write) goes only where a component accepts that kind."""
        want = node.cls.accepts.get(param)
        for e, t in zip(edges, types):
            if t.layout is not None and t.layout[0] != want:
                takers = {"memory": "it is read by ntm_read / ntm_write 'memory:'",
                          "image": "it is read by a conv_encoder, which turns it into a sequence of grid positions",
                          "ntm_write": "it is read by ntm_memory 'writes:'",
                          "alignment": "an attention's weights over the source are for 'attngraph inspect' and "
                                       "the doubly_stochastic penalty; its context (the node itself) is the value "
                                       "to read",
                          "logp": "a hard attention's logp is for an output with loss: reinforce",
                          "ponder": "a halting scope's cost is for an output with loss: ponder_cost (weight: τ or β)",
                          "positions": "a position of a sequence (a pointer's choice) is read by pick 'at:'; scores "
                                       "over positions are a decoder's output for a points_to: target"}
                self.diags.error(e.ref.pos, e.label, f"'{e.ref}' is {t}, which '{node.kind}' cannot take as '{param}'",
                                 takers.get(t.layout[0], "no component here takes it"))
                return False
        return True

    def concat(self, node: NodeIR, param: str, edges: list[Edge], types: list[VType]) -> VType | None:
        if len(types) == 1:
            return types[0]
        for e, t in zip(edges, types):
            if t.index:
                self.diags.error(e.ref.pos, e.label,
                                 f"cannot concatenate '{e.ref}': it holds class indices ({t})", "embed it first")
                return None
            if t.time != types[0].time:
                self.diags.error(e.ref.pos, e.label,
                                 f"cannot concatenate '{e.ref}' ({t}) with '{edges[0].ref}' ({types[0]})",
                                 "inputs concatenated together need the same time axis")
                return None
        return VType(sum(t.size for t in types), types[0].time)

    def component(self, node: NodeIR, step: bool) -> None:
        ins = self.inputs(node)
        if ins is None or any(v is INVALID for v in vars(node.p).values()):
            return
        try:
            types = node.cls.infer(node.p, ins, step)
        except ShapeError as err:
            self.report(node, err, ins)
            return
        node.in_types = ins
        node.types = dict(types)

    def report(self, node: NodeIR, err: ShapeError, ins: dict[str, Any]) -> None:
        if err.input is not None and err.input not in node.inputs and err.input in node.value_pos:
            # a conflict of plain parameters (not edges): reported at the parameter's value
            self.diags.error(node.value_pos[err.input], f"{node.ypath}.{err.input}", err.message, err.hint)
            return
        param = err.input or next(iter(node.inputs), None)
        edges = node.inputs.get(param, []) if param else []
        if edges:
            edge = edges[err.index or 0] if err.index is not None and err.index < len(edges) else edges[0]
            sub = f"{node.ypath}.{param}" + (f"[{edge.index}]" if len(edges) > 1 else "")
            src = ", ".join(str(e.ref) for e in edges) if err.index is None else str(edge.ref)
            self.diags.error(edge.ref.pos, sub, f"on edge {src} -> {node.name}: {err.message}", err.hint)
        else:
            self.diags.error(node.pos, node.ypath, err.message, err.hint)

    def scope(self, node: NodeIR, step: bool) -> None:
        ins = self.inputs(node)
        if ins is None or any(v is INVALID for v in vars(node.p).values()):
            return
        if node.cls.check(node, self.diags, self.ir):
            self.frame(node.body, step=True)
            node.cls.after_body(node, self.diags, self.ir)


def _static_guess(node: NodeIR, port: str, depth: int = 0) -> VType | None:
    """The type of a prev() edge met before its source (components only: inputs and scopes have none):
    from its parameters, or (``guess_type``) from what it reads, e.g. a read head's size is its memory's width."""
    if node.is_scope or node.is_input or depth > 8:
        return None
    t = node.cls.static_type(node.p, port)
    if t is None:
        def type_of(edge: Edge) -> VType | None:
            return edge.src.types.get(edge.port) or _static_guess(edge.src, edge.port, depth + 1)
        t = node.cls.guess_type(node.p, node.inputs, port, type_of)
    return t

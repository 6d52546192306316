"""``loop``: run a step subgraph once per element of one or more sequences; ``group``: a plain namespace."""
from __future__ import annotations

from ..components.base import VType
from ..spec.params import Bool, Param, RefList
from .base import ScopeKind, scope


@scope("group")
class Group(ScopeKind):
    """A namespace of nodes run in the enclosing order (what an include becomes)."""

    inline = True

    @classmethod
    def emit(cls, node, gen):  # never called: an inline scope's nodes are units of the enclosing frame
        raise AssertionError("group scopes are emitted inline")


@scope("loop")
class Loop(ScopeKind):
    """Runs its body once per time step of the sequences in ``over``; inside the body each names one step.

    Body nodes read from outside are stacked on the time axis (``loop.node``). Recurrent components in the
    body carry their state from step to step, and ``prev(node)`` reads a body node's previous value.
    With masks, state and prev values stop changing after a sequence's last valid step.
    """

    params = {
        "over": Param(RefList(), doc="the sequence(s) to step through, all on one time axis"),
        "reverse": Param(Bool(), False, "step from the last element to the first (outputs keep input order)"),
    }

    @classmethod
    def check(cls, node, diags, ir=None) -> bool:
        edges = node.inputs.get("over", [])
        if not edges:
            return False
        first = edges[0]
        for edge in edges:
            if edge.type.time is None:
                diags.error(edge.ref.pos, edge.label, f"'{edge.ref}' is not a sequence ({edge.type})",
                            "a loop steps through values with a time axis")
                return False
            if edge.type.time != first.type.time:
                diags.error(edge.ref.pos, edge.label,
                            f"'{edge.ref}' ({edge.type}) and '{first.ref}' ({first.type}) have different time axes",
                            "a loop steps through sequences of one length")
                return False
        return True

    @classmethod
    def axis(cls, node) -> str:
        return node.inputs["over"][0].type.time

    @classmethod
    def element_type(cls, node, edge) -> VType | None:
        return next((o.type.with_time(None) for o in node.inputs["over"] if o.key() == edge.key()), None)

    @classmethod
    def output_type(cls, node, inner: VType) -> VType:
        return inner.with_time(cls.axis(node))

    @classmethod
    def emit(cls, node, gen) -> None:
        gen.emit_loop(node, [gen.expr(e) for e in node.inputs["over"]], cls.axis(node), reverse=node.p.reverse)

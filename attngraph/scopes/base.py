"""The scope registry: a scope is a node with a ``body`` of nodes that it runs in its own way.

A scope kind declares its parameters, whether it is *inline* (its body runs in the enclosing execution
order, like ``group``) or opens its own *frame* (``loop``: the body is a step function, ``prev()`` is
allowed in it), how values cross its boundary (``element_type``, ``output_type``) and how it is turned
into code (``emit``). Later scopes (decode, halting, program steps, repeat) plug in here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from ..components.base import VType
from ..spec.params import Param, Str

if TYPE_CHECKING:
    from ..compiler.codegen import CodeGen
    from ..ir import IR, Edge, NodeIR

OUTPUT = Param(Str(), None, "the body node this scope's value defaults to (name.port allowed)")


class ScopeKind:
    kind: ClassVar[str] = ""
    family: ClassVar[str] = "scope"
    doc: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    inline: ClassVar[bool] = False
    feeds_back: ClassVar[bool] = False  # prev(<this scope>) inside its body is its previous output (a decoder's token)
    halting: ClassVar[bool] = False  # repeats its body within one step of the enclosing frame and carries its state on
    # values of the scope itself, read as <scope>.<port>: name -> (where it is read: "inside" its body or "outside",
    # what it is); their types are set by check()
    ports: ClassVar[dict[str, tuple[str, str]]] = {}
    body_refs: ClassVar[tuple[str, ...]] = ()  # Str parameters naming a body node, resolved like output (node.refs)

    @classmethod
    def check(cls, node: NodeIR, diags, ir: IR | None = None) -> bool:
        """Validate the scope's own inputs once they are typed; return False to skip its body."""
        return True

    @classmethod
    def after_body(cls, node: NodeIR, diags, ir: IR | None = None) -> None:
        """Validate what needs the body's types (e.g. what the scope's output must be), once inferred."""

    @classmethod
    def element_type(cls, node: NodeIR, edge: Edge) -> VType | None:
        """The type a reference from inside the body sees when it resolves to ``edge``'s target, if the
        scope changes it (a loop hands its body one element of the sequence it runs over)."""
        return None

    @classmethod
    def output_type(cls, node: NodeIR, inner: VType) -> VType:
        """The type of a body value read from outside the scope."""
        return inner

    @classmethod
    def emit(cls, node: NodeIR, gen: CodeGen) -> None:
        raise NotImplementedError(f"scope '{cls.kind}' must define emit()")


def check_body_vector(node: NodeIR, param: str, size: int, must: str, diags, outside_hint: str, type_hint: str) -> None:
    """A ``body_refs`` parameter (an act's ``halt:``, a program's ``ops:``) names a value of the scope's own body
    that is ``size`` numbers per example; ``must`` says what it is for the message (errors at where it is written)."""
    found = node.refs.get(param)
    if found is None:
        return  # reported where it is written
    label, pos = f"{node.ypath}.{param}", node.value_pos.get(param, node.pos)
    inner, port, through = found
    if through or inner.is_scope:
        diags.error(pos, label, f"the {param} of {node.kind} '{node.name}' must be a node of its own body", outside_hint)
        return
    got = inner.types.get(port)
    if got is not None and (got.index or got.layout is not None or got.time is not None or got.size != size):
        diags.error(pos, label, f"'{getattr(node.p, param)}' is {got}, but the {param} of {node.kind} '{node.name}' must "
                    f"be {must}", type_hint if got.time is None and not got.index else
                    "read one vector per example, e.g. an attention's context or a pool")


SCOPES: dict[str, type[ScopeKind]] = {}


def scope(kind: str) -> Callable[[type[ScopeKind]], type[ScopeKind]]:
    """Register a scope kind."""

    def register(cls: type[ScopeKind]) -> type[ScopeKind]:
        if kind in SCOPES and SCOPES[kind] is not cls:
            raise ValueError(f"scope kind '{kind}' is registered twice")
        cls.kind = kind
        cls.params = {**cls.params, "output": OUTPUT}
        cls.doc = cls.doc or (cls.__doc__ or "").strip().split("\n")[0]
        SCOPES[kind] = cls
        return cls

    return register

"""The graph IR: nodes with resolved edges, scopes, an execution order per frame and inferred types.

One IR feeds the module builder, the renderer, ``show`` and ``summary``. ``graph`` (a networkx DiGraph over
node paths) holds every edge, recurrent ones marked ``prev=True``. :mod:`attngraph.resolve` builds it from
a spec tree and :mod:`attngraph.infer` fills in the types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import networkx as nx

from .components.base import VType
from .spec.diagnostics import Pos
from .spec.params import Ref


@dataclass(eq=False)
class NodeIR:
    name: str
    path: tuple[str, ...]  # from the model root, e.g. ("seq", "ctrl")
    ypath: str  # key path in the spec, e.g. model.seq.body.ctrl
    pos: Pos
    kind: str
    cls: Any  # a Component subclass, a ScopeKind subclass, or None for a model input
    p: SimpleNamespace
    scope: ScopeIR | None
    inputs: dict[str, list[Edge]] = field(default_factory=dict)
    types: dict[str, VType] = field(default_factory=dict)
    body: ScopeIR | None = None
    in_types: dict[str, Any] = field(default_factory=dict)  # inferred input types, as the module receives them
    key_pos: dict[str, Pos] = field(default_factory=dict)
    value_pos: dict[str, Pos] = field(default_factory=dict)  # where each parameter's value is written
    default: tuple[NodeIR, str, tuple[NodeIR, ...]] | None = None  # a scope's output: body node, port, scopes entered
    refs: dict[str, tuple[NodeIR, str, tuple[NodeIR, ...]]] = field(default_factory=dict)  # a scope's body_refs, resolved

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def is_scope(self) -> bool:
        return self.body is not None

    @property
    def is_input(self) -> bool:
        return self.cls is None

    @property
    def family(self) -> str:
        return "input" if self.cls is None else self.cls.family

    def edges(self) -> list[Edge]:
        return [e for edges in self.inputs.values() for e in edges]


@dataclass(eq=False)
class Edge:
    src: NodeIR
    port: str
    ref: Ref
    param: str  # the input parameter of the destination that holds this reference
    index: int  # position in that parameter's list
    dst: NodeIR | None = None
    into: tuple[NodeIR, ...] = ()  # scopes entered, outermost first, to reach src (scope outputs)
    element_of: NodeIR | None = None  # the scope whose per-step element this reads
    type: VType | None = None
    label: str = ""  # the key path of the reference, e.g. model.head.in[1]

    @property
    def prev(self) -> bool:
        return self.ref.prev

    def key(self) -> tuple:
        return (self.src, self.port, tuple(self.into))


@dataclass(eq=False)
class ScopeIR:
    owner: NodeIR | None
    parent: ScopeIR | None
    nodes: dict[str, NodeIR] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # names declared here that failed (already reported)
    complete: bool = True  # False when the declarations could not be read: any name may be among them

    @property
    def inline(self) -> bool:
        return self.owner is not None and self.owner.cls.inline

    @property
    def frame(self) -> ScopeIR:
        return self.parent.frame if self.inline else self


@dataclass
class Output:
    name: str
    edge: Edge
    loss: str
    target: str | None
    weight: float
    pos: Pos
    reward: str | None = None  # reinforce: the output whose per-example log-likelihood is the reward
    options: dict = field(default_factory=dict)  # the loss's settings (Loss.options), e.g. huber's delta


@dataclass
class IR:
    root: ScopeIR
    inputs: dict[str, NodeIR]
    targets: dict[str, VType]
    outputs: dict[str, Output]
    order: dict[ScopeIR, list[NodeIR]]  # frame scope -> execution units in order
    graph: nx.DiGraph
    edges: list[Edge]  # every resolved reference, outputs' included
    name: str = "model"
    ponders: dict[str, Edge] = field(default_factory=dict)  # halting scope (dotted) -> its ponder steps read from the root

    def nodes(self) -> list[NodeIR]:
        """Every component and scope node, depth first in spec order."""
        out: list[NodeIR] = []

        def walk(s: ScopeIR) -> None:
            for n in s.nodes.values():
                if n.is_input:
                    continue
                out.append(n)
                if n.body is not None:
                    walk(n.body)

        walk(self.root)
        return out

    def units(self, frame: ScopeIR) -> list[NodeIR]:
        return self.order[frame]


def scope_chain(scope: ScopeIR):
    while scope is not None:
        yield scope
        scope = scope.parent


def frame_units(frame: ScopeIR):
    """Execution units of a frame: its components and non-inline scopes, looking through inline scopes."""
    for node in frame.nodes.values():
        if node.is_input:
            continue
        if node.is_scope and node.cls.inline:
            yield from frame_units(node.body)
        else:
            yield node


def nodes_in(scope: ScopeIR):
    for node in scope.nodes.values():
        yield node
        if node.body is not None:
            yield from nodes_in(node.body)


def edges_within(unit: NodeIR):
    """The unit's edges, and for a scope every edge of its body (those that come from outside matter)."""
    yield from unit.edges()
    if unit.is_scope:
        for node in nodes_in(unit.body):
            yield from node.edges()


def unit_in(node: NodeIR, frame: ScopeIR) -> NodeIR | None:
    """The execution unit of ``frame`` that computes ``node`` (None if computed outside the frame)."""
    cur = node
    while cur.scope is not None:
        if cur.scope.frame is frame:
            return None if cur.is_input else cur
        if cur.scope.owner is None:
            return None
        cur = cur.scope.owner
    return None

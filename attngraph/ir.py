"""The graph IR: nodes with resolved edges, scopes, an execution order per frame and inferred types.

One IR feeds the module builder, the renderer, ``show`` and ``summary``. ``graph`` (a networkx DiGraph over
node paths) holds every edge, recurrent ones marked ``prev=True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import networkx as nx

from .components.base import REGISTRY, ShapeError, VType
from .components.losses import LOSSES
from .scopes.base import SCOPES, ScopeKind
from .spec.diagnostics import Diagnostics, Pos, did_you_mean
from .spec.document import BROKEN
from .spec.params import INVALID, Bool, Choice, Float, Int, Param, Ref, RefList, RefType, Str, check_mapping
from .spec.yamlload import Node

RESERVED = {"prev", "self", "batch", "torch", "B", "t"}


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

    @property
    def prev(self) -> bool:
        return self.ref.prev

    def key(self) -> tuple:
        return (id(self.src), self.port, tuple(id(s) for s in self.into))


@dataclass(eq=False)
class ScopeIR:
    owner: NodeIR | None
    parent: ScopeIR | None
    nodes: dict[str, NodeIR] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # names of includes that failed (already reported)

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


@dataclass
class IR:
    root: ScopeIR
    inputs: dict[str, NodeIR]
    targets: dict[str, VType]
    outputs: dict[str, Output]
    order: dict[int, list[NodeIR]]  # id(frame scope) -> execution units in order
    graph: nx.DiGraph
    edges: list[Edge]  # every resolved reference, outputs' included
    name: str = "model"

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
        return self.order[id(frame)]


_INPUT_SCHEMA = {
    "size": Param(Int(min=1), None, "feature vector size"),
    "vocab": Param(Int(min=1), None, "number of token classes (values are integer indices)"),
    "time": Param(Bool(), True, "the input is a sequence (B, T, ...); false: one vector per example"),
}
_TARGET_SCHEMA = {
    "size": Param(Int(min=1), None, "feature vector size"),
    "classes": Param(Int(min=1), None, "number of classes (values are integer indices)"),
    "time": Param(Bool(), True, "the target is a sequence"),
}
_OUTPUT_SCHEMA = {
    "from": Param(RefType(), doc="the node (or node.port) this output reads"),
    "loss": Param(Choice(*LOSSES, "none"), "none", "training loss against the target"),
    "target": Param(Str(), None, "the target it is compared with (default: the output's own name)"),
    "weight": Param(Float(min=0.0), 1.0, "weight of this loss in the total"),
}


class Builder:
    """Builds the IR from the expanded spec tree, reporting every problem to ``diags``."""

    def __init__(self, diags: Diagnostics):
        self.diags = diags
        self.graph = nx.DiGraph()
        self.all_edges: list[Edge] = []

    # ----------------------------------------------------------------------------------------- declarations
    def build(self, root: Node) -> IR | None:
        scope = ScopeIR(None, None)
        inputs = self._decls(root.get("inputs"), "inputs", _INPUT_SCHEMA, ("size", "vocab"), scope)
        targets = {n.name: n.types["out"] for n in
                   self._decls(root.get("targets"), "targets", _TARGET_SCHEMA, ("size", "classes"), None).values()}
        model = root.get("model")
        if model is None or not model.is_map or not model.value:
            if model is not None:
                self.diags.error(model.pos, "model", "expected a mapping of named nodes", "e.g. ctrl: {kind: lstm, ...}")
            return None
        self._body(model, "model", (), scope)
        for node in self._walk(scope):
            self._resolve_node(node)
        outputs = self._outputs(root.get("outputs"), scope, targets)
        order: dict[int, list[NodeIR]] = {}
        self._order(scope, order)
        ir = IR(scope, inputs, targets, outputs, order, self.graph, self.all_edges)
        if not self.diags.errors:
            Inferer(ir, self.diags).run()
            self._check_outputs(ir)
        if not self.diags.errors:  # with errors, "unused" is mostly a cascade of a node that failed to build
            self._warn_unused(ir)
        return ir

    def _decls(self, node: Node | None, section: str, schema, either: tuple[str, str],
               scope: ScopeIR | None) -> dict[str, NodeIR]:
        out: dict[str, NodeIR] = {}
        if node is None:
            return out
        if not node.is_map:
            self.diags.error(node.pos, section, f"expected a mapping of named {section}")
            return out
        for name, decl in node.value.items():
            path = f"{section}.{name}"
            if not self._check_name(name, node.key_pos[name], path):
                continue
            if not decl.is_map:
                self.diags.error(decl.pos, path, f"expected a mapping such as {{{either[0]}: 8}}")
                continue
            p = check_mapping(decl, schema, path, self.diags, f"an entry of '{section}'")
            given = [k for k in either if p.get(k) not in (None, INVALID)]
            if len(given) != 1:
                if not any(p.get(k) is INVALID for k in either):
                    self.diags.error(decl.pos, path, f"give exactly one of '{either[0]}' or '{either[1]}'")
                continue
            size = p[given[0]]
            vt = VType(size, name if p["time"] is True else None, given[0] != "size")
            ir = NodeIR(name, (name,), path, node.key_pos[name], "input", None, SimpleNamespace(**p), scope,
                        types={"out": vt})
            out[name] = ir
            if scope is not None:
                scope.nodes[name] = ir
                self.graph.add_node(ir.dotted, ir=ir)
        return out

    def _check_name(self, name: str, pos: Pos, path: str) -> bool:
        from .spec.params import NAME_RE
        if not NAME_RE.match(name):
            self.diags.error(pos, path, f"'{name}' is not a valid name", "use letters, digits and _, not starting with a digit")
            return False
        if name in RESERVED:
            self.diags.error(pos, path, f"'{name}' is a reserved word", "choose another name")
            return False
        return True

    def _body(self, body: Node, ypath: str, path: tuple[str, ...], scope: ScopeIR) -> None:
        for name, decl in body.value.items():
            sub = f"{ypath}.{name}"
            pos = body.key_pos.get(name, decl.pos)
            if not self._check_name(name, pos, sub):
                continue
            if name in scope.nodes:
                self.diags.error(pos, sub, f"'{name}' is already a model input", "give the node another name")
                continue
            node = self._node(name, decl, sub, (*path, name), pos, scope)
            if node is not None:
                scope.nodes[name] = node
                self.graph.add_node(node.dotted, ir=node)

    def _node(self, name, decl: Node, ypath, path, pos, scope) -> NodeIR | None:
        if not decl.is_map:
            self.diags.error(decl.pos, ypath, "expected a node: a mapping with a 'kind'", "e.g. {kind: linear, size: 8, in: x}")
            return None
        kind_node = decl.get("kind")
        if kind_node is None:
            self.diags.error(decl.pos, ypath, "missing 'kind'", "every node names its kind; 'attngraph list' shows them")
            return None
        kind = kind_node.value
        if kind == BROKEN:
            scope.broken.add(name)
            return None
        cls = REGISTRY.get(kind) if isinstance(kind, str) else None
        cls = cls or (SCOPES.get(kind) if isinstance(kind, str) else None)
        if cls is None:
            self.diags.error(kind_node.pos, f"{ypath}.kind", f"unknown kind '{kind_node.text or kind}'",
                             did_you_mean(str(kind), [*REGISTRY, *SCOPES]))
            return None
        is_scope = isinstance(cls, type) and issubclass(cls, ScopeKind)
        schema = cls.params
        p = check_mapping(decl, schema, ypath, self.diags, f"kind '{kind}'", skip=("kind", "body") if is_scope else ("kind",))
        node = NodeIR(name, path, ypath, pos, kind, cls, SimpleNamespace(**p), scope, key_pos=dict(decl.key_pos))
        if is_scope:
            body = decl.get("body")
            node.body = ScopeIR(node, scope)
            if body is None or not body.is_map or not body.value:
                self.diags.error((body or decl).pos, f"{ypath}.body", f"a '{kind}' scope needs a body: a mapping of nodes")
            else:
                self._body(body, f"{ypath}.body", path, node.body)
        elif "body" in decl.value:
            self.diags.error(decl.key_pos["body"], f"{ypath}.body", f"'{kind}' is a component, not a scope: it has no body")
        return node

    def _walk(self, scope: ScopeIR):
        for node in list(scope.nodes.values()):
            if not node.is_input:
                yield node
            if node.body is not None:
                yield from self._walk(node.body)

    # ------------------------------------------------------------------------------------------- references
    def _resolve_node(self, node: NodeIR) -> None:
        for param, spec in node.cls.params.items():
            value = getattr(node.p, param)
            if not isinstance(spec.type, (RefType, RefList)) or value is INVALID or value is None:
                continue
            refs = value if isinstance(value, list) else [value]
            edges = []
            for i, ref in enumerate(refs):
                label = f"{node.ypath}.{param}" + (f"[{i}]" if isinstance(spec.type, RefList) and len(refs) > 1 else "")
                edge = self.resolve(ref, node.scope, label, node, param, i)
                if edge is not None:
                    edges.append(edge)
            node.inputs[param] = edges

    def resolve(self, ref: Ref, scope: ScopeIR, label: str, dst: NodeIR | None, param: str, index: int) -> Edge | None:
        start = scope
        for _ in range(ref.up):
            if start.parent is None:
                self.diags.error(ref.pos, label, f"'{ref}' reaches outside the model", "too many '^'")
                return None
            start = start.parent
        crossed: list[NodeIR] = []
        s, first = start, ref.parts[0]
        while s is not None and first not in s.nodes:
            if s.owner is not None:
                crossed.append(s.owner)
            s = s.parent
        if s is None:
            if any(first in sc.broken for sc in _chain(start)):
                return None
            visible = sorted({n for sc in _chain(start) for n in sc.nodes})
            self.diags.error(ref.pos, label, f"unknown node '{first}'", did_you_mean(first, visible))
            return None
        target, into, i = s.nodes[first], [], 1
        while target.is_scope and i < len(ref.parts):
            name = ref.parts[i]
            if name not in target.body.nodes:
                self.diags.error(ref.pos, label, f"scope '{target.name}' has no node '{name}'",
                                 did_you_mean(name, target.body.nodes))
                return None
            into.append(target)
            target, i = target.body.nodes[name], i + 1
        port = "out"
        if i < len(ref.parts):
            name, ports = ref.parts[i], (("out",) if target.is_input else target.cls.ports)
            if i < len(ref.parts) - 1 or name not in ports:
                what = "a model input" if target.is_input else f"'{target.kind}'"
                self.diags.error(ref.pos, label, f"node '{target.name}' ({what}) has no port '{'.'.join(ref.parts[i:])}'",
                                 f"its ports: {', '.join(ports)}")
                return None
            port = name
        while target.is_scope:
            default = target.p.output
            if not default or default is INVALID:
                self.diags.error(ref.pos, label, f"scope '{target.name}' has no default output",
                                 f"write {target.name}.<node> (one of: {', '.join(target.body.nodes)}) or set output:")
                return None
            parts = default.split(".")
            if parts[0] not in target.body.nodes:
                self.diags.error(target.key_pos.get("output", target.pos), f"{target.ypath}.output",
                                 f"scope '{target.name}' has no node '{parts[0]}'", did_you_mean(parts[0], target.body.nodes))
                return None
            into.append(target)
            target = target.body.nodes[parts[0]]
            if len(parts) > 1:
                port = parts[1]
        edge = Edge(target, port, ref, param, index, dst, tuple(into))
        if dst is not None and not self._check_prev(edge, scope, crossed, label):
            return None
        for owner in crossed:
            if owner.cls is not None and not owner.cls.inline:
                for over in owner.inputs.get("over", []):
                    if over.key() == edge.key():
                        edge.element_of = owner
                        break
            if edge.element_of is not None:
                break
        self.all_edges.append(edge)
        if dst is not None:
            self.graph.add_edge(target.dotted, dst.dotted, prev=ref.prev, port=port, param=param)
        return edge

    def _check_prev(self, edge: Edge, scope: ScopeIR, crossed: list[NodeIR], label: str) -> bool:
        ref = edge.ref
        if not ref.prev:
            return True
        frame = scope.frame
        if frame.owner is None:
            self.diags.error(ref.pos, label, f"'{ref}' outside a loop", "prev() reads the previous step's value inside a loop body")
            return False
        if any(not o.cls.inline for o in crossed) or any(not s.cls.inline for s in edge.into):
            self.diags.error(ref.pos, label, f"'{ref}' reads a node that is not computed in this loop body",
                             f"prev() can only name nodes of the body of '{frame.owner.name}'")
            return False
        if edge.src.is_input or edge.src.scope.frame is not frame:
            self.diags.error(ref.pos, label, f"'{ref}' reads a node that is not computed in this loop body",
                             f"prev() can only name nodes of the body of '{frame.owner.name}'")
            return False
        return True

    # ----------------------------------------------------------------------------------------------- order
    def _order(self, frame: ScopeIR, order: dict[int, list[NodeIR]]) -> None:
        units = list(_units(frame))
        deps = nx.DiGraph()
        deps.add_nodes_from(units)
        for unit in units:
            for edge in _edges_within(unit):
                if edge.prev:
                    continue
                src = _unit_in(edge.src, frame)
                if src is not None and src is not unit:
                    deps.add_edge(src, unit, edge=edge)
                elif src is unit and not unit.is_scope:
                    self.diags.error(edge.ref.pos, f"{unit.ypath}.{edge.param}", f"'{unit.name}' reads itself",
                                     f"write prev({edge.ref}) for its value at the previous step")
        try:
            order[id(frame)] = list(nx.lexicographical_topological_sort(deps, key=lambda n: units.index(n)))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(deps)
            names = " -> ".join([c[0].name for c in cycle] + [cycle[0][0].name])
            edge = deps.edges[cycle[-1]]["edge"]
            self.diags.error(edge.ref.pos, f"{cycle[-1][1].ypath}.{edge.param}", f"cycle without prev(): {names}",
                             "mark one edge as prev(...) to read the previous step's value")
            order[id(frame)] = units
        for unit in units:
            if unit.is_scope:
                self._order(unit.body, order)

    # --------------------------------------------------------------------------------------------- outputs
    def _outputs(self, node: Node | None, scope: ScopeIR, targets: dict[str, VType]) -> dict[str, Output]:
        out: dict[str, Output] = {}
        if node is None:
            return out
        if not node.is_map or not node.value:
            self.diags.error(node.pos, "outputs", "expected a mapping of named outputs", "e.g. y: {from: head, loss: bce}")
            return out
        for name, decl in node.value.items():
            path = f"outputs.{name}"
            if not self._check_name(name, node.key_pos[name], path):
                continue
            if not decl.is_map:
                self.diags.error(decl.pos, path, "expected {from: node, loss: ...}")
                continue
            p = check_mapping(decl, _OUTPUT_SCHEMA, path, self.diags, "an output")
            if p["from"] is INVALID:
                continue
            edge = self.resolve(p["from"], scope, f"{path}.from", None, "from", 0)
            if edge is None or p["loss"] is INVALID:
                continue
            if edge.prev:
                self.diags.error(edge.ref.pos, f"{path}.from", "an output cannot read prev()")
                continue
            target = p["target"] or name
            if p["loss"] != "none" and target not in targets:
                where = decl.value["target"].pos if "target" in decl.value else decl.pos
                self.diags.error(where, f"{path}.target", f"no target named '{target}' for the '{p['loss']}' loss",
                                 did_you_mean(target, targets) if targets else "declare it under targets:")
                continue
            out[name] = Output(name, edge, p["loss"], target if p["loss"] != "none" else None, p["weight"], decl.pos)
        return out

    def _check_outputs(self, ir: IR) -> None:
        for out in ir.outputs.values():
            pred = out.edge.type
            if pred is None or out.loss == "none":
                continue
            try:
                LOSSES[out.loss].check(pred, ir.targets[out.target])
            except ShapeError as err:
                self.diags.error(out.pos, f"outputs.{out.name}", f"{out.edge.ref} -> target '{out.target}': {err.message}",
                                 err.hint)

    def _warn_unused(self, ir: IR) -> None:
        used = {id(e.src) for e in self.all_edges} | {id(s) for e in self.all_edges for s in e.into}
        for node in [*ir.inputs.values(), *ir.nodes()]:
            if id(node) in used:
                continue
            if node.is_scope and any(id(n) in used for n in _all_in(node.body)):
                continue
            what = "input" if node.is_input else "node"
            self.diags.warning(node.pos, node.ypath, f"{what} '{node.name}' is never used",
                               "nothing reads it and it is not an output")


def _chain(scope: ScopeIR):
    while scope is not None:
        yield scope
        scope = scope.parent


def _units(frame: ScopeIR):
    """Execution units of a frame: its components and non-inline scopes, looking through inline scopes."""
    for node in frame.nodes.values():
        if node.is_input:
            continue
        if node.is_scope and node.cls.inline:
            yield from _units(node.body)
        else:
            yield node


def _all_in(scope: ScopeIR):
    for node in scope.nodes.values():
        yield node
        if node.body is not None:
            yield from _all_in(node.body)


def _edges_within(unit: NodeIR):
    """The unit's edges, and for a scope every edge of its body (those that come from outside matter)."""
    yield from unit.edges()
    if unit.is_scope:
        for node in _all_in(unit.body):
            yield from node.edges()


def _unit_in(node: NodeIR, frame: ScopeIR) -> NodeIR | None:
    """The execution unit of ``frame`` that computes ``node`` (None if computed outside the frame)."""
    cur = node
    while cur.scope is not None:
        if cur.scope.frame is frame:
            return None if cur.is_input else cur
        if cur.scope.owner is None:
            return None
        cur = cur.scope.owner
    return None


class Inferer:
    """Static dimension inference, frame by frame in execution order (types of prev() from a first guess)."""

    def __init__(self, ir: IR, diags: Diagnostics):
        self.ir, self.diags = ir, diags
        self.guesses: list[Edge] = []

    def run(self) -> None:
        self.frame(self.ir.root, step=False)
        for out in self.ir.outputs.values():
            self.edge_type(out.edge)
        for edge in self.guesses:
            real = edge.src.types.get(edge.port)
            if real is not None and real != edge.type:
                self.diags.error(edge.ref.pos, f"{edge.dst.ypath}.{edge.param}",
                                 f"size mismatch on recurrent edge {edge.ref} -> {edge.dst.name}: assumed {edge.type} "
                                 f"before '{edge.src.name}' was inferred, but it gives {real}")

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
                self.diags.error(edge.ref.pos, f"{edge.dst.ypath}.{edge.param}",
                                 f"cannot infer the size of {edge.ref} before '{edge.src.name}' is computed",
                                 f"'{edge.src.kind}' has no size parameter to read it from")
                return None
            self.guesses.append(edge)
        if t is None:
            return None
        for scope_node in reversed(edge.into):
            if scope_node.cls.inline:
                continue
            if t.time is not None:
                self.diags.error(edge.ref.pos, f"{edge.dst.ypath if edge.dst else 'outputs'}.{edge.param}",
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
            if node.is_scope or not node.cls.concat:
                ins[param] = types
                continue
            ins[param] = self.concat(node, param, edges, types)
            ok = ok and ins[param] is not None
        return ins if ok else None

    def concat(self, node: NodeIR, param: str, edges: list[Edge], types: list[VType]) -> VType | None:
        if len(types) == 1:
            return types[0]
        for i, (e, t) in enumerate(zip(edges, types)):
            if t.index:
                self.diags.error(e.ref.pos, f"{node.ypath}.{param}[{i}]",
                                 f"cannot concatenate '{e.ref}': it holds class indices ({t})", "embed it first")
                return None
            if t.time != types[0].time:
                self.diags.error(e.ref.pos, f"{node.ypath}.{param}[{i}]",
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
        if node.cls.check(node, self.diags):
            self.frame(node.body, step=True)


def _static_guess(node: NodeIR, port: str) -> VType | None:
    """A component's output type from its parameters alone (used for prev() edges met before their source)."""
    if node.is_scope or node.is_input:
        return None
    guess = getattr(node.cls, "static_type", None)
    if guess is not None:
        return guess(node.p, port)
    size = getattr(node.p, "size", None)
    return VType(size) if port == "out" and isinstance(size, int) else None

"""From the expanded spec tree to the IR: declarations, references, execution order, outputs.

Every problem goes to the Diagnostics; a declaration that failed is remembered (``ScopeIR.broken``) so that
what refers to it does not cascade into more errors.
"""
from __future__ import annotations

from types import SimpleNamespace

import networkx as nx
from torch import nn

from .components.base import REGISTRY, ShapeError, VType
from .components.losses import LOSSES
from .infer import Inferer
from .ir import IR, Edge, NodeIR, Output, ScopeIR, edges_within, frame_units, nodes_in, scope_chain, unit_in
from .scopes.base import SCOPES, ScopeKind
from .spec.diagnostics import Diagnostics, Pos, did_you_mean
from .spec.document import BROKEN
from .spec.params import (
    INVALID,
    NAME_RE,
    PATH_RE,
    Bool,
    Choice,
    Float,
    Int,
    IntList,
    Param,
    ParamType,
    Ref,
    RefList,
    RefType,
    Str,
    check_mapping,
)
from .spec.yamlload import YAML11_BOOLS, Node

MODULE_ATTRIBUTES = frozenset(a for a in dir(nn.ModuleDict) if not a.startswith("__"))  # forward, float, keys, ...
RESERVED = {"prev"}  # the spec language's own word; names the generated code uses are its own (codegen.RESERVED)


class TimeAxis(ParamType):
    """An input's ``time:``: true (a sequence on its own time axis), false (one value per example) or the
    name of another input sequence whose time axis (lengths and mask) it shares."""

    name = "true, false or the name of an input sequence"

    def check(self, node, path, diags):
        if isinstance(node.value, bool):
            return node.value
        if node.plain and isinstance(node.value, str) and node.value.lower() in YAML11_BOOLS:
            return Bool().check(node, path, diags)  # 'yes'/'no': the hint to write true or false
        if isinstance(node.value, str) and not node.is_map and not node.is_list and NAME_RE.match(node.value):
            return node.value
        return self.expected(node, path, diags)

    def schema(self):
        return {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}]}



_INPUT_SCHEMA = {
    "size": Param(Int(min=1), None, "feature vector size"),
    "vocab": Param(Int(min=1), None, "number of token classes (values are integer indices)"),
    "image": Param(IntList(min=1), None, "[channels, height, width]: one image per example, (B, C, H, W) floats"),
    "time": Param(TimeAxis(), True, "the input is a sequence (B, T, ...) on its own time axis; false: one vector per "
                                    "example; another input's name: a sequence on that input's time axis (its "
                                    "lengths, and its .mask covers this one)"),
}
_TARGET_SCHEMA = {
    "size": Param(Int(min=1), None, "feature vector size"),
    "classes": Param(Int(min=1), None, "number of classes (values are integer indices)"),
    "points_to": Param(Str(), None, "an input sequence: the values are positions in it (a pointer network's answer)"),
    "time": Param(TimeAxis(), True, "the target is a sequence"),
}
_OUTPUT_SCHEMA = {
    "from": Param(RefType(), doc="the node (or node.port) this output reads"),
    "loss": Param(Choice(*LOSSES, "none"), "none", "training loss against the target"),
    "target": Param(Str(), None, "the target it is compared with (default: the output's own name)"),
    "weight": Param(Float(min=0.0), 1.0, "weight of this loss in the total"),
    "reward": Param(Str(), None, "reinforce: the output whose per-example log-likelihood (minus its loss summed "
                                 "over the counted steps) rewards the sampled choices"),
}


def _loss_option_keys() -> dict[str, Param]:
    """Every loss's output settings (``Loss.options``: huber's delta, a plug-in's own), unset by default."""
    return {k: Param(v.type, None, v.doc) for loss in LOSSES.values() for k, v in loss.options.items()}


def output_schema() -> dict[str, Param]:
    """The keys of an entry of ``outputs:``: the fixed ones and every registered loss's options."""
    return {**_OUTPUT_SCHEMA, **_loss_option_keys()}


class Builder:
    """Builds the IR from the expanded spec tree, reporting every problem to ``diags``."""

    def __init__(self, diags: Diagnostics):
        self.diags = diags
        self.graph = nx.DiGraph()
        self.all_edges: list[Edge] = []

    # ----------------------------------------------------------------------------------------- declarations
    def build(self, root: Node) -> IR | None:
        scope = ScopeIR(None, None, complete=root.get("inputs") is not None)  # a missing section is reported already
        inputs = self._decls(root.get("inputs"), "inputs", _INPUT_SCHEMA, ("size", "vocab", "image"), scope)
        self.input_scope = scope
        self._shared_axes(inputs)
        self.target_decls = ScopeIR(None, None)
        targets = {}
        for n in self._decls(root.get("targets"), "targets", _TARGET_SCHEMA, ("size", "classes", "points_to"),
                             self.target_decls).values():
            if self._points_ok(n, inputs):
                targets[n.name] = n.types["out"]
            else:
                self.target_decls.broken.add(n.name)
        model = root.get("model")
        if model is None or not model.is_map or not model.value:
            if model is not None:
                self._expected(model, "model", "expected a mapping of named nodes", "e.g. ctrl: {kind: lstm, ...}")
            return None
        self._body(model, "model", (), scope)
        for node in self._walk(scope):
            self._resolve_node(node)
        outputs = self._outputs(root.get("outputs"), scope, targets)
        ponders = self._ponders(scope)
        order: dict[int, list[NodeIR]] = {}
        self._order(scope, order)
        ir = IR(scope, inputs, targets, outputs, order, self.graph, self.all_edges, ponders=ponders)
        if not self.diags.errors:
            Inferer(ir, self.diags).run()
            self._check_outputs(ir)
        if not self.diags.errors:  # with errors, "unused" is mostly a cascade of a node that failed to build
            self._warn_unused(ir)
        return ir

    def _decls(self, node: Node | None, section: str, schema, either: tuple[str, ...], scope: ScopeIR) -> dict[str, NodeIR]:
        """The declarations of ``inputs`` or ``targets``; those that fail are reported and named in ``scope.broken``."""
        out: dict[str, NodeIR] = {}
        if node is None:
            return out
        if not node.is_map:
            scope.complete = False
            self._expected(node, section, f"expected a mapping of named {section}")
            return out
        for name, decl in node.value.items():
            ir = self._decl(name, decl, node.key_pos[name], section, schema, either, scope)
            if ir is None:
                scope.broken.add(name)
                continue
            out[name] = scope.nodes[name] = ir
            if section == "inputs":
                self.graph.add_node(ir.dotted, ir=ir)
        return out

    def _decl(self, name: str, decl: Node, pos: Pos, section: str, schema, either: tuple[str, ...],
              scope: ScopeIR) -> NodeIR | None:
        path = f"{section}.{name}"
        if not self._check_name(name, pos, path):
            return None
        if not decl.is_map:
            return self._expected(decl, path, f"expected a mapping such as {{{either[0]}: 8}}")
        p = check_mapping(decl, schema, path, self.diags, f"an entry of '{section}'")
        given = [k for k in either if p.get(k) not in (None, INVALID)]
        if len(given) != 1:
            if not any(p.get(k) is INVALID for k in either):
                names = [f"'{k}'" for k in either]
                self.diags.error(decl.pos, path, f"give exactly one of {', '.join(names[:-1])} or {names[-1]}")
            return None
        if p["time"] is INVALID:
            return None
        if isinstance(p["time"], str) and section != "inputs":
            self.diags.error(decl.value["time"].pos, f"{path}.time", f"a target cannot share the time axis of "
                             f"'{p['time']}': its 'time' is true or false",
                             "write time: true; a target's steps line up with its prediction's")
            return None
        if given[0] == "image":
            shape = p["image"]
            if len(shape) != 3:
                self.diags.error(decl.get("image").pos, f"{path}.image",
                                 f"expected [channels, height, width], got {len(shape)} number{'s' * (len(shape) != 1)}",
                                 "e.g. image: [1, 24, 80] for one grey channel, 24 rows, 80 columns")
                return None
            if "time" in decl.value:
                self.diags.error(decl.key_pos["time"], f"{path}.time", "an image has no time axis",
                                 "leave 'time' out: a conv_encoder turns the image into a sequence of grid positions")
                return None
            c, h, w = shape
            vt = VType(c * h * w, None, layout=("image", c, h, w))
        elif given[0] == "points_to":  # checked against the inputs by _points_ok
            vt = VType(0, name if p["time"] is True else None, True, ("positions", p["points_to"]))
        else:  # time: OTHER names the axis here; _shared_axes checks it once every input is declared
            axis = p["time"] if isinstance(p["time"], str) else name if p["time"] else None
            vt = VType(p[given[0]], axis, given[0] != "size")
        return NodeIR(name, (name,), path, pos, "input", None, SimpleNamespace(**p), scope, types={"out": vt},
                      value_pos={k: v.pos for k, v in decl.value.items()})

    def _shared_axes(self, inputs: dict[str, NodeIR]) -> None:
        """``time: OTHER`` puts an input on another input sequence's time axis (same lengths, and the batch's
        ``OTHER.mask`` covers it). OTHER must be another input, a sequence on its own axis (no chains: name the
        input that owns the axis). An input that fails is reported and marked broken."""
        for name, node in list(inputs.items()):
            other = node.p.time
            if not isinstance(other, str):
                continue
            pos, label = node.value_pos.get("time", node.pos), f"{node.ypath}.time"
            src = inputs.get(other)
            problem = hint = None
            if other == name:
                problem = f"'{name}' cannot share its own time axis"
                hint = "write time: true; every sequence input has its own axis"
            elif src is None and other in self.input_scope.broken:
                problem = ""  # reported where that input is declared
            elif src is None:
                others = [k for k in inputs if k != name]
                problem = f"no input named '{other}' whose time axis to share"
                hint = did_you_mean(other, others) if others else "declare it under inputs:"
            else:
                t = src.types["out"]
                if src.p.time == name:
                    problem = f"'{name}' and '{other}' are each on the other's time axis"
                    hint = "one of them owns the axis: write time: true on it"
                elif isinstance(src.p.time, str):
                    problem = f"'{other}' is itself on the time axis of '{src.p.time}'"
                    hint = f"write time: {src.p.time}, the input that owns the axis"
                elif t.time is None:
                    what = str(t) if t.layout is not None else f"one vector per example ({t})"
                    problem = f"'{other}' is {what}, not a sequence: it has no time axis to share"
                    hint = "name an input sequence" if t.layout is not None else f"declare inputs.{other} with time: true"
            if problem is None:
                continue
            if problem:
                self.diags.error(pos, label, problem, hint)
            del inputs[name]
            del self.input_scope.nodes[name]
            self.input_scope.broken.add(name)
            self.graph.remove_node(node.dotted)

    def _points_ok(self, target: NodeIR, inputs: dict[str, NodeIR]) -> bool:
        """A ``points_to:`` target names an input sequence of feature vectors (its positions are the classes)."""
        layout = target.types["out"].layout
        if layout is None or layout[0] != "positions":
            return True
        name, pos = layout[1], target.value_pos.get("points_to", target.pos)
        label = f"{target.ypath}.points_to"
        src = inputs.get(name)
        if src is None and name in self.input_scope.broken:
            return False  # reported where the input is declared
        if src is None:
            self.diags.error(pos, label, f"no input named '{name}' to point to",
                             did_you_mean(name, inputs) if inputs else "declare it under inputs:")
            return False
        t = src.types["out"]
        if t.time is None or t.layout is not None:
            self.diags.error(pos, label, f"'{name}' is {t}, not a sequence: a pointer chooses positions of a sequence",
                             f"declare inputs.{name} with time: true")
            return False
        return True

    def _expected(self, node: Node, path: str, message: str, hint: str = "") -> None:
        """Report a value of the wrong shape, unless its own error was reported already (a forbidden tag)."""
        if not node.broken:
            self.diags.error(node.pos, path, message, hint)

    def _check_name(self, name: str, pos: Pos, path: str, module: bool = False) -> bool:
        """Whether ``name`` may name an input, output or (``module``) a model node; an error if not."""
        if not NAME_RE.match(name):
            self.diags.error(pos, path, f"'{name}' is not a valid name", "use letters, digits and _, not starting with a digit")
            return False
        if name in RESERVED:
            self.diags.error(pos, path, f"'{name}' is a reserved word", "choose another name")
            return False
        if module and name in MODULE_ATTRIBUTES:  # torch stores a node's module under its name, beside these
            self.diags.error(pos, path, f"'{name}' is the name of a method or attribute of torch modules",
                             "choose another name")
            return False
        return True

    def _body(self, body: Node, ypath: str, path: tuple[str, ...], scope: ScopeIR) -> None:
        for name, decl in body.value.items():
            sub = f"{ypath}.{name}"
            pos = body.key_pos.get(name, decl.pos)
            if not self._check_name(name, pos, sub, module=True):
                scope.broken.add(name)
                continue
            if name in scope.nodes:
                self.diags.error(pos, sub, f"'{name}' is already a model input", "give the node another name")
                continue
            node = self._node(name, decl, sub, (*path, name), pos, scope)
            if node is None:
                scope.broken.add(name)
                continue
            scope.nodes[name] = node
            self.graph.add_node(node.dotted, ir=node)

    def _node(self, name, decl: Node, ypath, path, pos, scope) -> NodeIR | None:
        if not decl.is_map:
            return self._expected(decl, ypath, "expected a node: a mapping with a 'kind'", "e.g. {kind: linear, size: 8, in: x}")
        kind_node = decl.get("kind")
        if kind_node is None:
            self.diags.error(decl.pos, ypath, "missing 'kind'", "every node names its kind; 'attngraph list' shows them")
            return None
        kind = kind_node.value
        if kind == BROKEN or kind_node.broken:
            return None
        cls = REGISTRY.get(kind) if isinstance(kind, str) else None
        cls = cls or (SCOPES.get(kind) if isinstance(kind, str) else None)
        if cls is None:
            self.diags.error(kind_node.pos, f"{ypath}.kind", f"unknown kind '{kind_node.text or kind}'",
                             did_you_mean(str(kind), [*REGISTRY, *SCOPES]))
            return None
        is_scope = isinstance(cls, type) and issubclass(cls, ScopeKind)
        schema = cls.params
        p = check_mapping(decl, schema, ypath, self.diags, f"kind '{kind}'", skip=("kind", "body"))
        node = NodeIR(name, path, ypath, pos, kind, cls, SimpleNamespace(**p), scope, key_pos=dict(decl.key_pos),
                      value_pos={k: v.pos for k, v in decl.value.items()})
        if is_scope:
            body = decl.get("body")
            node.body = ScopeIR(node, scope)
            if body is None or not body.is_map or not body.value:
                node.body.complete = False
                self._expected(body or decl, f"{ypath}.body", f"a '{kind}' scope needs a body: a mapping of nodes")
            else:
                self._body(body, f"{ypath}.body", path, node.body)
                node.default = self._body_ref(node, "output", decl.get("output"))
                for param in cls.body_refs:
                    found = self._body_ref(node, param, decl.get(param))
                    if found is not None:
                        node.refs[param] = found
        elif "body" in decl.value:
            self.diags.error(decl.key_pos["body"], f"{ypath}.body", f"'{kind}' is a component, not a scope: it has no body")
        return node

    def _body_ref(self, node: NodeIR, param: str, written: Node | None) -> tuple[NodeIR, str, tuple] | None:
        """Resolve a scope parameter naming a body value (``output:``, a halting scope's ``halt:``): a body
        node, node.port or scope.node; errors are reported where it is written."""
        text = getattr(node.p, param)
        if written is None or not isinstance(text, str):
            return None
        label = f"{node.ypath}.{param}"
        if not PATH_RE.match(text):
            self.diags.error(written.pos, label, f"malformed {param} '{text}'", "name a body node: node, node.port or scope.node")
            return None
        first, *rest = text.split(".")
        body = node.body
        if first not in body.nodes:
            if first not in body.broken:
                self.diags.error(written.pos, label, f"scope '{node.name}' has no node '{first}'",
                                 did_you_mean(first, body.nodes))
            return None
        through: list[NodeIR] = []
        found = self._descend(body.nodes[first], rest, through, written.pos, label)
        return None if found is None else (*found, tuple(through))

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
            if any(first in sc.broken or not sc.complete for sc in scope_chain(start)):
                return None
            visible = sorted({n for sc in scope_chain(start) for n in sc.nodes})
            self.diags.error(ref.pos, label, f"unknown node '{first}'", did_you_mean(first, visible))
            return None
        head = s.nodes[first]
        if (ref.prev and len(ref.parts) == 1 and head.is_scope and head.cls.feeds_back
                and dst is not None and scope.frame.owner is head):  # prev(decoder) in its body: its last token
            edge = Edge(head, "token", ref, param, index, dst, (), label=label)
            self.all_edges.append(edge)
            self.graph.add_edge(head.dotted, dst.dotted, prev=True, port="token", param=param)
            return edge
        into: list[NodeIR] = []
        found = self._descend(head, list(ref.parts[1:]), into, ref.pos, label)
        if found is None:
            return None
        target, port = found
        if target.is_scope and not self._scope_port_ok(target, port, scope, ref, label):
            return None
        inside = next((o for o in into if not o.cls.inline and any(sc.owner is o for sc in scope_chain(scope))), None)
        if inside is not None:
            hint = (f"inside the body, name the node itself ({target.name}), or prev({target.name}) "
                    "for its previous value")
            if inside.cls.feeds_back and inside is scope.frame.owner:
                hint = f"prev({inside.name}) is the token it emitted at the previous step"
            self.diags.error(ref.pos, label, f"'{ref}' reads the whole {inside.kind} '{inside.name}' from inside "
                             "its body", hint)
            return None
        edge = Edge(target, port, ref, param, index, dst, tuple(into), label=label)
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

    def _scope_port_ok(self, owner: NodeIR, port: str, scope: ScopeIR, ref: Ref, label: str) -> bool:
        """A scope's own value is read where it exists: ``inside`` ports (a first-step flag) from its body,
        ``outside`` ports (what it computed, e.g. a ponder cost) from outside it."""
        where, what = owner.cls.ports[port]
        in_body = any(sc.owner is owner for sc in scope_chain(scope))
        if where == "inside" and not in_body:
            self.diags.error(ref.pos, label, f"'{ref}' ({what}) exists only inside the body of {owner.kind} "
                             f"'{owner.name}'", f"read it from a node in the body of '{owner.name}'")
            return False
        if where == "outside" and in_body:
            self.diags.error(ref.pos, label, f"'{ref}' ({what}) is known only once {owner.kind} '{owner.name}' "
                             "has finished", f"read it from outside '{owner.name}', e.g. in an output")
            return False
        return True

    def _descend(self, target: NodeIR, parts: list[str], into: list[NodeIR], pos: Pos, label: str
                 ) -> tuple[NodeIR, str] | None:
        """Follow ``parts`` from ``target``: nodes inside scope bodies, then at most one port; a scope read as a
        whole stands for its default output. Scopes entered are appended to ``into``. None if there is no such
        value (reported here, unless the declaration it needs already had its own error)."""
        i = 0
        while target.is_scope and i < len(parts):
            body, name = target.body, parts[i]
            if name not in body.nodes and name in target.cls.ports:  # a value of the scope itself (act.cost)
                if len(parts) > i + 1:
                    self.diags.error(pos, label, f"'{name}' of scope '{target.name}' has no port "
                                     f"'{'.'.join(parts[i + 1:])}'", f"read it as {target.name}.{name}")
                    return None
                return target, name
            if name not in body.nodes:
                if body.complete and name not in body.broken:
                    self.diags.error(pos, label, f"scope '{target.name}' has no node '{name}'", did_you_mean(name, body.nodes))
                return None
            into.append(target)
            target, i = body.nodes[name], i + 1
        if target.is_scope:
            if target.default is None:
                if target.p.output is None and target.body.complete:
                    example = next(iter(target.body.nodes), "node")
                    self.diags.error(pos, label, f"scope '{target.name}' has no default output",
                                     f"read a node inside it, e.g. {target.name}.{example}, or set 'output:' on the scope")
                return None
            inner, port, through = target.default
            into.extend([target, *through])
            return inner, port
        ports = ("out",) if target.is_input else target.cls.ports
        rest = parts[i:]
        if rest and (len(rest) > 1 or rest[0] not in ports):
            what = "a model input" if target.is_input else f"'{target.kind}'"
            self.diags.error(pos, label, f"node '{target.name}' ({what}) has no port '{'.'.join(rest)}'",
                             f"its ports: {', '.join(ports)}")
            return None
        return target, rest[0] if rest else "out"

    def _check_prev(self, edge: Edge, scope: ScopeIR, crossed: list[NodeIR], label: str) -> bool:
        ref = edge.ref
        if not ref.prev:
            return True
        frame = scope.frame
        if frame.owner is None:
            self.diags.error(ref.pos, label, f"'{ref}' outside a loop",
                             "prev() reads the previous step's value inside a loop body")
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
        units = list(frame_units(frame))
        deps = nx.DiGraph()
        deps.add_nodes_from(units)
        for unit in units:
            for edge in edges_within(unit):
                if edge.prev:
                    continue
                src = unit_in(edge.src, frame)
                if src is not None and src is not unit:
                    deps.add_edge(src, unit, edge=edge)
                elif src is unit and (not unit.is_scope or edge.dst is unit):  # a scope may read its body, not itself
                    self.diags.error(edge.ref.pos, edge.label, f"'{unit.name}' reads itself", _self_read_hint(unit, edge, frame))
        try:
            order[frame] = list(nx.lexicographical_topological_sort(deps, key=lambda n: units.index(n)))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(deps)
            names = " -> ".join([c[0].name for c in cycle] + [cycle[0][0].name])
            edge = deps.edges[cycle[-1]]["edge"]
            self.diags.error(edge.ref.pos, edge.label, f"cycle without prev(): {names}",
                             "mark one edge as prev(...) to read the previous step's value")
            order[frame] = units
        for unit in units:
            if unit.is_scope:
                self._order(unit.body, order)

    # --------------------------------------------------------------------------------------------- outputs
    def _outputs(self, node: Node | None, scope: ScopeIR, targets: dict[str, VType]) -> dict[str, Output]:
        out: dict[str, Output] = {}
        if node is None:
            return out
        if not node.is_map or not node.value:
            self._expected(node, "outputs", "expected a mapping of named outputs", "e.g. y: {from: head, loss: bce}")
            return out
        for name, decl in node.value.items():
            path = f"outputs.{name}"
            if not self._check_name(name, node.key_pos[name], path):
                continue
            if not decl.is_map:
                self._expected(decl, path, "expected {from: node, loss: ...}")
                continue
            p = check_mapping(decl, output_schema(), path, self.diags, "an output")
            if p["from"] is INVALID:
                continue
            edge = self.resolve(p["from"], scope, f"{path}.from", None, "from", 0)
            if edge is None or p["loss"] is INVALID:
                continue
            if edge.prev:
                self.diags.error(edge.ref.pos, f"{path}.from", "an output cannot read prev()")
                continue
            if p["reward"] is not None and p["loss"] != "reinforce":
                self.diags.error(decl.key_pos["reward"], f"{path}.reward", f"'reward' belongs to a reinforce output, "
                                 f"not to loss '{p['loss']}'", "leave it out")
                continue
            options = self._loss_options(decl, p, path)
            if options is None:
                continue
            if p["loss"] != "none" and LOSSES[p["loss"]].target_kind == "none":
                if self._penalty_ok(name, decl, p, list(node.value)):
                    out[name] = Output(name, edge, p["loss"], None, p["weight"], decl.pos, p["reward"], options)
                continue
            target = p["target"] or name
            if target is INVALID or (p["loss"] != "none" and target not in targets and self._target_failed(target)):
                continue
            if p["loss"] != "none" and target not in targets:
                where = decl.value["target"].pos if "target" in decl.value else decl.pos
                self.diags.error(where, f"{path}.target", f"no target named '{target}' for the '{p['loss']}' loss",
                                 did_you_mean(target, targets) if targets else "declare it under targets:")
                continue
            out[name] = Output(name, edge, p["loss"], target if p["loss"] != "none" else None, p["weight"], decl.pos,
                               options=options)
        self._check_rewards(out, node)
        return out

    def _loss_options(self, decl: Node, p: dict, path: str) -> dict | None:
        """The settings of the output's loss (``Loss.options``, e.g. huber's delta) with defaults filled in;
        None if one is invalid or belongs to another loss (reported)."""
        own = LOSSES[p["loss"]].options if p["loss"] in LOSSES else {}
        ok = True
        for key in _loss_option_keys():
            if key not in decl.value or key in own:
                continue
            owners = [n for n, loss in LOSSES.items() if key in loss.options]
            self.diags.error(decl.key_pos[key], f"{path}.{key}", f"'{key}' belongs to a {' or '.join(owners)} output, "
                             f"not to loss '{p['loss']}'", "leave it out")
            ok = False
        options = {k: own[k].default if p[k] is None else p[k] for k in own}
        return options if ok and INVALID not in options.values() else None

    def _ponders(self, scope: ScopeIR) -> dict[str, Edge]:
        """Every halting scope's ``steps`` read from the root, for the ``mean_ponder`` metric (not a
        reference anyone wrote: it does not count as a use of the scope)."""
        out: dict[str, Edge] = {}
        for node in self._walk(scope):
            if node.is_scope and node.cls.halting and node.body.complete:
                ref = Ref((*node.path, "steps"), False, 0, node.pos, f"{node.dotted}.steps")
                edge = self.resolve(ref, scope, f"{node.ypath}", None, "from", 0)
                if edge is not None:
                    out[node.dotted] = edge
        return out

    def _penalty_ok(self, name: str, decl: Node, p: dict, names: list[str]) -> bool:
        """A loss without a target (doubly_stochastic, reinforce): no 'target:'; reinforce names its reward
        (checked against the other outputs once they are all built: :meth:`_check_rewards`)."""
        path, loss = f"outputs.{name}", p["loss"]
        if "target" in decl.value:
            self.diags.error(decl.key_pos["target"], f"{path}.target", f"loss '{loss}' compares with no target",
                             "leave 'target' out: it is computed from the value read alone")
            return False
        if loss == "reinforce" and p["reward"] is None:
            others = [k for k in names if k != name]
            self.diags.error(decl.pos, path, "loss 'reinforce' needs 'reward': the output whose log-likelihood "
                             "rewards the choices", f"e.g. reward: {others[0]}" if others else "")
            return False
        return p["reward"] is not INVALID

    def _check_rewards(self, out: dict[str, Output], node: Node) -> None:
        """Each reinforce output's reward must be an output with a loss against a target (one that failed to
        build was reported already)."""
        for name, o in list(out.items()):
            if o.reward is None:
                continue
            r = out.get(o.reward)
            if r is None and o.reward in node.value:
                del out[name]  # its reward output has its own error
                continue
            if r is None or r.target is None:
                names = [k for k in node.value if k != name]
                hint = did_you_mean(o.reward, names) if o.reward not in node.value else \
                    "name an output with a loss against a target"
                self.diags.error(node.value[name].value["reward"].pos, f"outputs.{name}.reward",
                                 f"'{o.reward}' is not an output with a loss against a target", hint)
                del out[name]

    def _target_failed(self, name: str) -> bool:
        """True if ``name`` may be a target whose declaration failed (reported already)."""
        return name in self.target_decls.broken or not self.target_decls.complete

    def _check_outputs(self, ir: IR) -> None:
        for out in ir.outputs.values():
            pred = out.edge.type
            if pred is None or out.loss == "none":
                continue
            try:
                LOSSES[out.loss].check(pred, ir.targets[out.target] if out.target is not None else None)
            except ShapeError as err:
                what = f"{out.edge.ref} -> target '{out.target}'" if out.target is not None else f"{out.edge.ref}"
                self.diags.error(out.pos, f"outputs.{out.name}", f"{what}: {err.message}", err.hint)

    def _warn_unused(self, ir: IR) -> None:
        written = [e for e in self.all_edges if e not in ir.ponders.values()]
        used = {e.src for e in written} | {s for e in written for s in e.into}
        used |= {ref[0] for n in ir.nodes() if n.is_scope for ref in n.refs.values()}  # e.g. an act's halt
        for node in [*ir.inputs.values(), *ir.nodes()]:
            if node in used:
                continue
            if node.is_scope and any(n in used for n in nodes_in(node.body)):
                continue
            what = "input" if node.is_input else "node"
            self.diags.warning(node.pos, node.ypath, f"{what} '{node.name}' is never used",
                               "nothing reads it and it is not an output")


def _self_read_hint(unit: NodeIR, edge: Edge, frame: ScopeIR) -> str:
    if unit.is_scope:
        return f"a '{unit.kind}' cannot take its own output as an input"
    if frame.owner is None:
        return "outside a loop a node cannot use its own value"
    return f"write prev({edge.ref}) for its value at the previous step"

"""Generates the Python source of a compiled model's forward pass, once, at build time.

The execution order of every frame is fixed by the IR, so the generated function is straight-line code
plus one ``for`` loop per loop scope: no dictionary walking in the per-step loop. ``model.code`` shows it.
"""
from __future__ import annotations

import builtins
import keyword
import linecache
import re
import symtable
from collections.abc import Callable

import torch

from ..ir import IR, Edge, NodeIR, ScopeIR


class CodeGen:
    """Emits statements for the frames of an IR. ``masked`` selects the variant that honours ``x.mask``."""

    def __init__(self, ir: IR, masked: bool, record: bool = False, step_fns: bool = False,
                 frees: dict[str, list[str]] | None = None):
        self.ir, self.masked, self.record, self.step_fns = ir, masked, record, step_fns
        # step functions: None on the first pass (nested defs, read by symtable); then each one's free names,
        # which the second pass passes as arguments to a top-level def (no closure: compiled once, not per call)
        self.frees = frees
        self.hoisted: list[str] = []  # the top-level step functions (second pass)
        self.recs: dict[tuple, str] = {}  # (id(node), port) -> list collecting a watched port's per-step values
        self.lines: list[str] = []
        self.depth = 1
        self.used: set[str] = set()
        self.values: dict[tuple, str] = {}  # (id(node), port) -> variable
        self.modules: dict[int, str] = {}  # id(node) -> variable bound to its module
        self.prev: dict[tuple, str] = {}  # (id(node), port) -> variable holding the previous step's value
        self.stacked: dict[tuple, str] = {}  # (id(loop), edge key) -> stacked sequence variable
        self.elements: dict[tuple, str] = {}  # (id(loop), edge key) -> current element variable
        self.step_mask: str | None = None  # (B, 1) bool mask of the current step, masked variant only
        self.lengths: dict[str, str] = {}  # time axis -> variable holding its (B,) lengths (masked variant)
        self.masks: dict[str, str] = {}  # time axis -> variable holding its (B, T) mask (masked variant)
        self.state: dict[int, str] = {}  # id(node) -> variable holding a stateful node's recurrent state

    # ------------------------------------------------------------------------------------------- helpers
    def name(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint) or "v"
        if base[0].isdigit() or keyword.iskeyword(base):
            base = "v_" + base
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def value(self, node: NodeIR, port: str = "out") -> str:
        key = (id(node), port)
        if key not in self.values:
            self.values[key] = self.name("_".join(node.path) + ("" if port == "out" else f"_{port}"))
        return self.values[key]

    def expr(self, edge: Edge) -> str:
        """The Python expression for ``edge``'s value where it is read."""
        if edge.element_of is not None:
            return self.elements[(id(edge.element_of), edge.key())]
        if edge.prev:
            return self.prev[(id(edge.src), edge.port)]
        loops = [s for s in edge.into if not s.cls.inline]
        if loops:
            return self.stacked[(id(loops[0]), edge.key())]
        return self.value(edge.src, edge.port)

    # ------------------------------------------------------------------------------------------- function
    def function(self) -> str:
        ir = self.ir
        # builtins too: the generated code calls range, len, zip and tuple, so a node named 'len' must not shadow one
        self.used.update({"self", "batch", "torch", "B", "_f", "nodes", "t", "_rec", *dir(builtins)})
        binds = ["    " + line for line in self._bindings()]
        body_start = len(self.lines)
        for name, node in ir.inputs.items():
            self.line(f"{self.value(node)} = batch[{name!r}]")
        first = next(iter(ir.inputs.values()))
        self.line(f"B = {self.value(first)}.shape[0]")
        self.line("_f = self._float")
        if self.record:
            self.line("_rec = {}")
        if self.masked:
            self._masks()
        self.frame(ir.root)
        outs = ", ".join(f"{name!r}: {self.expr(o.edge)}" for name, o in ir.outputs.items())
        self.line(f"return {{{outs}}}" + (", _rec" if self.record else ""))
        header = ["def forward(self, batch):", "    nodes = self.nodes"]
        steps = [line + "\n" for line in self.hoisted]  # top-level step functions, before forward
        return "".join(steps) + ("\n" if steps else "") + "\n".join(header + binds + self.lines[body_start:]) + "\n"

    def _bindings(self) -> list[str]:
        out = []
        for node in self.ir.nodes():
            if node.is_scope:
                continue
            access = "".join(f"[{p!r}]" for p in node.path)
            self.modules[id(node)] = var = self.name("m_" + "_".join(node.path))
            out.append(f"{var} = nodes{access}")
        return out

    def _masks(self) -> None:
        for name, node in self.ir.inputs.items():
            t = node.types["out"]
            if t.time is None:
                continue
            var, x = self.name(f"{name}_mask"), self.value(node)
            self.line(f"{var} = batch.get({name + '.mask'!r})")
            self.line(f"if {var} is None:")
            self.line(f"    {var} = torch.ones({x}.shape[:2], dtype=torch.bool, device={x}.device)")
            self.lengths[t.time] = self.name(f"{name}_lengths")
            self.line(f"{self.lengths[t.time]} = {var}.sum(1)")
            self.masks[t.time] = var

    def frame(self, frame: ScopeIR) -> None:
        for unit in self.ir.units(frame):
            if unit.is_scope:
                unit.cls.emit(unit, self)
            else:
                self.component(unit, frame)

    def component(self, node: NodeIR, frame: ScopeIR) -> None:
        cls, mod = node.cls, self.modules[id(node)]
        args = []
        for param in cls.inputs:
            edges = node.inputs.get(param, [])
            exprs = [self.expr(e) for e in edges]
            if not exprs:
                args.append("None")
            elif not cls.concat:
                args.append(f"[{', '.join(exprs)}]")
            elif len(exprs) == 1:
                args.append(exprs[0])
            else:
                args.append(f"torch.cat([{', '.join(exprs)}], -1)")
        outs = ", ".join(self.value(node, port) for port in cls.ports)
        in_step = frame.owner is not None
        if cls.stateful and in_step:
            state = self.state[id(node)]
            if self.step_mask is None:
                self.line(f"{outs}, {state} = {mod}.step({state}, {', '.join(args)})")
            else:
                new = self.name(f"{state}_new")
                self.line(f"{outs}, {new} = {mod}.step({state}, {', '.join(args)})")
                self.line(f"{state} = tuple(torch.where({self.step_mask}, a, b) for a, b in zip({new}, {state}))")
        elif cls.stateful and self.masked and node.types["out"].time in self.lengths:
            self.line(f"{outs} = {mod}({', '.join(args)}, {self.lengths[node.types['out'].time]})")
        else:
            self.line(f"{outs} = {mod}({', '.join(args)})")
        if self.record:
            for port in cls.watch:
                key = (id(node), port)
                if key in self.recs:
                    self.line(f"{self.recs[key]}.append({self.value(node, port)})")
                else:
                    self.line(f"_rec[{node.dotted + '.' + port!r}] = {self.value(node, port)}")

    # ------------------------------------------------------------------------------------------- loops
    def emit_loop(self, loop: NodeIR, sequences: list[str], axis: str, reverse: bool = False) -> None:
        """A ``for`` over the time axis: unbind the sequences, init state and prev values, run the body,
        carry state (masked: only where the step is valid), stack the values read from outside."""
        self.line(f"# loop '{loop.dotted}' over {', '.join(str(e.ref) for e in loop.inputs['over'])}")
        # as a function (compile_steps), each step's inputs are made contiguous: a slice of a (B, T, ...)
        # tensor has a stride that depends on T, and torch.compile would compile again for every length
        as_fn = self.step_fns and not self.record and not any(u.is_scope for u in self.ir.units(loop.body))
        steps = []
        for edge, seq in zip(loop.inputs["over"], sequences):
            steps.append(self.name(f"{loop.name}_{edge.src.name}_steps"))
            self.line(f"{steps[-1]} = {seq}.transpose(0, 1).contiguous().unbind(0)" if as_fn
                      else f"{steps[-1]} = {seq}.unbind(1)")
        for node in self.ir.units(loop.body):
            if not node.is_scope and node.cls.stateful:
                self.state[id(node)] = s = self.name(f"s_{'_'.join(node.path)}")
                self.line(f"{s} = {self.modules[id(node)]}.init_state(B, _f)")
        carried: dict[tuple, Edge] = {}
        for edge in self.ir.edges:
            if edge.prev and edge.src.scope.frame is loop.body:
                carried.setdefault((id(edge.src), edge.port), edge)
        for key, edge in carried.items():
            self.prev[key] = p = self.name(f"prev_{'_'.join(edge.src.path)}")
            self.line(f"{p} = {self._initial(edge)}")
        reads: dict[tuple, Edge] = {}
        for edge in self.ir.edges:
            loops = [s for s in edge.into if not s.cls.inline]
            if loops and loops[0] is loop:
                reads.setdefault(edge.key(), edge)
        accs = {key: self.name(f"acc_{'_'.join(e.src.path)}") for key, e in reads.items()}
        for acc in accs.values():
            self.line(f"{acc} = []")
        watched = []
        if self.record:
            for node in self.ir.units(loop.body):
                for port in () if node.is_scope else node.cls.watch:
                    self.recs[(id(node), port)] = var = self.name(f"rec_{'_'.join(node.path)}_{port}")
                    watched.append((node.dotted + "." + port, var))
                    self.line(f"{var} = []")
        order = f"range(len({steps[0]}) - 1, -1, -1)" if reverse else f"range(len({steps[0]}))"
        elements = []
        for edge in loop.inputs["over"]:
            self.elements[(id(loop), edge.key())] = el = self.name(f"{edge.src.name}_t")
            elements.append(el)
        outer_mask = self.step_mask
        if self.masked and axis in self.masks:
            self.step_mask = self.name(f"{loop.name}_valid")
        fetch = [f"{el} = {var}[t]" for el, var in zip(elements, steps)]
        if self.step_mask != outer_mask:  # (T, B, 1), contiguous: one index per step, a stride free of T
            by_time = self.name(f"{loop.name}_mask_by_time")
            self.line(f"{by_time} = {self.masks[axis]}.t().contiguous().unsqueeze(-1)")
            fetch.append(f"{self.step_mask} = {by_time}[t]")
        if as_fn:
            # the body as a function of (what it reads from outside, step inputs, mask, carried values) ->
            # (carried values, values read outside): compile_steps hands it to torch.compile once, and one
            # graph serves every step of every sequence length
            fn = self.name(f"_step_{loop.name}")
            carry = [self.prev[k] for k in carried] + [self.state[id(n)] for n in self.ir.units(loop.body)
                                                       if id(n) in self.state]
            params = ([] if self.frees is None else self.frees[fn]) + elements
            params += ([self.step_mask] if self.step_mask != outer_mask else []) + carry
            outer_lines, outer_depth = self.lines, self.depth
            if self.frees is not None:
                self.lines, self.depth = self.hoisted, 0
            self.line(f"def {fn}({', '.join(params)}):")
            self.depth += 1
            self._body(loop, carried)
            outs = [self.value(e.src, e.port) for e in reads.values()]
            self.line(f"return {_tuple(carry)}, {_tuple(outs)}")
            self.lines, self.depth = outer_lines, outer_depth
            if self.frees is not None:
                self.line(f"{fn} = _steps[{fn!r}]")
            self.line(f"for t in {order}:")
            self.depth += 1
            for text in fetch:
                self.line(text)
            self.line(f"{_tuple(carry)}, {_tuple(outs)} = {fn}({', '.join(params)})")
        else:
            self.line(f"for t in {order}:")
            self.depth += 1
            for text in fetch:
                self.line(text)
            self._body(loop, carried)
        for key, edge in reads.items():
            self.line(f"{accs[key]}.append({self.value(edge.src, edge.port)})")
        self.step_mask = outer_mask
        self.depth -= 1
        for key, edge in reads.items():
            out = self.name(f"{loop.name}_{edge.src.name}" + ("" if edge.port == "out" else f"_{edge.port}"))
            self.line(f"{out} = torch.stack({accs[key]}{'[::-1]' if reverse else ''}, 1)")
            self.stacked[(id(loop), key)] = out
        for name, var in watched:
            self.line(f"_rec[{name!r}] = torch.stack({var}{'[::-1]' if reverse else ''}, 1)")

    def _body(self, loop: NodeIR, carried: dict[tuple, Edge]) -> None:
        """One step: the body's nodes, then the values prev() will read at the next step."""
        self.frame(loop.body)
        for key, p in ((k, self.prev[k]) for k in carried):
            src = carried[key].src
            if src.cls.state_is_output and key[1] == "out":  # its state is its value, already masked: no 2nd where
                self.line(f"{p} = {self.state[id(src)]}[0]")
                continue
            value = self.values[key]
            self.line(f"{p} = {value}" if self.step_mask is None else f"{p} = torch.where({self.step_mask}, {value}, {p})")

    def _initial(self, edge: Edge) -> str:
        src, t = edge.src, edge.src.types[edge.port]
        if src.cls.state_is_output and edge.port == "out":  # e.g. prev(memory) at t = 0: its initial contents
            return f"{self.state[id(src)]}[0]"
        init = src.p.init
        if init == "learned":
            return f"{self.modules[id(src)]}.prev_init.expand(B, -1)"
        value = float(init) if isinstance(init, (int, float)) and not isinstance(init, bool) else 0.0  # zeros, first, ...
        return f"_f.new_full((B, {t.size}), {value!r})"



def _tuple(names: list[str]) -> str:
    return f"({', '.join(names)}{',' if len(names) == 1 else ''})"


def _step_frees(source: str) -> dict[str, list[str]]:
    """The names each nested ``_step_*`` function of ``forward`` reads from the enclosing forward."""
    top = symtable.symtable(source, "<attngraph>", "exec")
    forward = next(child for child in top.get_children() if child.get_name() == "forward")
    return {child.get_name(): sorted(child.get_frees()) for child in forward.get_children()}


def compile_forward(ir: IR, masked: bool, record: bool = False,
                    step_compiler: Callable[[Callable], Callable] | None = None) -> tuple[str, Callable]:
    """Generate and compile the forward function; the source is registered with linecache for tracebacks.
    ``record``: the function also returns every watched port's values (per step inside loops).
    ``step_compiler`` (e.g. torch.compile): each loop body without nested loops becomes a top-level function
    of its inputs and carried state, passed through it once; the forward's globals hold them in ``_steps``."""
    frees = None
    if step_compiler is not None:  # first pass: nested defs, to learn what each body reads from outside
        frees = _step_frees(CodeGen(ir, masked, record, step_fns=True).function())
    source = CodeGen(ir, masked, record, step_compiler is not None, frees).function()
    filename = (f"<attngraph:{ir.name}{':masked' if masked else ''}{':record' if record else ''}"
                f"{':steps' if step_compiler else ''}>")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"torch": torch}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code, no spec text
    namespace["_steps"] = {name: step_compiler(namespace[name]) for name in frees or {}}
    return source, namespace["forward"]

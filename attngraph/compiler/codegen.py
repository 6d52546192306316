"""Generates the Python source of a compiled model's forward pass, once, at build time.

The execution order of every frame is fixed by the IR, so the generated function is straight-line code
plus one ``for`` loop per loop scope: no dictionary walking in the per-step loop. ``model.code`` shows it.
"""
from __future__ import annotations

import builtins
import keyword
import linecache
import math
import re
import symtable
from collections.abc import Callable

import torch

from ..components.ops import library_ops, program_step, table_spread
from ..ir import IR, Edge, NodeIR, ScopeIR, nodes_in, unit_in
from .runtime import halt_keep, halt_mix, one_hot_max, ponder_stack


class CodeGen:
    """Emits statements for the frames of an IR. ``masked`` selects the variant that honours ``x.mask``."""

    def __init__(self, ir: IR, masked: bool, record: bool = False, step_fns: bool = False,
                 frees: dict[str, list[str]] | None = None, beam: bool = False):
        self.ir, self.masked, self.record, self.step_fns, self.beam = ir, masked, record, step_fns, beam
        self.expanded: dict[str, str] = {}  # beam search: a variable read inside a decoder -> its beams' copy
        self.unavailable: set[tuple] = set()  # beam search: decoder body values only outputs read (left out)
        # step functions: None on the first pass (nested defs, read by symtable); then each one's free names,
        # which the second pass passes as arguments to a top-level def (no closure: compiled once, not per call)
        self.frees = frees
        self.hoisted: list[str] = []  # the top-level step functions (second pass)
        self.recs: dict[tuple, str] = {}  # (node, port) -> list collecting a watched port's per-step values
        self.lines: list[str] = []
        self.depth = 1
        self.used: set[str] = set()
        self.values: dict[tuple, str] = {}  # (node, port) -> variable
        self.modules: dict[NodeIR, str] = {}  # node -> variable bound to its module
        self.prev: dict[tuple, str] = {}  # (node, port) -> variable holding the previous step's value
        self.stacked: dict[tuple, str] = {}  # (loop, edge key) -> stacked sequence variable
        self.elements: dict[tuple, str] = {}  # (loop, edge key) -> current element variable
        self.step_mask: str | None = None  # (B, 1) bool mask of the current step, masked variant only
        self.lengths: dict[str, str] = {}  # time axis -> variable holding its (B,) lengths (masked variant)
        self.masks: dict[str, str] = {}  # time axis -> variable holding its (B, T) mask (masked variant)
        self.state: dict[NodeIR, str] = {}  # node -> variable holding a stateful node's recurrent state
        # PonderNet: (scope, read key) -> expressions of (per-step values (B, [T,] M, ...), weights (B, [T,] M))
        self.parts: dict[tuple, tuple[str, str]] = {}
        self.flags: dict[NodeIR, tuple[str, str]] = {}  # halting scope -> its first-step flag variables (1, 0)

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
        key = (node, port)
        if key not in self.values:
            self.values[key] = self.name("_".join(node.path) + ("" if port == "out" else f"_{port}"))
        return self.values[key]

    def expr(self, edge: Edge) -> str:
        """The Python expression for ``edge``'s value where it is read."""
        if edge.element_of is not None:
            return self.elements[(edge.element_of, edge.key())]
        if edge.prev:
            return self.prev[(edge.src, edge.port)]
        loops = [s for s in edge.into if not s.cls.inline]
        if loops:
            return self.expanded.get(out := self.stacked[(loops[0], _key_from(edge, loops[0]))], out)
        return self.expanded.get(out := self.value(edge.src, edge.port), out)

    def _inside(self, edge: Edge, scope: NodeIR) -> str:
        """The variable holding ``edge``'s value where it leaves ``scope``'s body: the body node's own value, or
        what a scope nested in the body made of it (a halting scope's mean over its ponder steps)."""
        into = edge.into[edge.into.index(scope) + 1:]
        inner = next((s for s in into if not s.cls.inline), None)
        return self.value(edge.src, edge.port) if inner is None else self.stacked[(inner, _key_from(edge, inner))]

    # ------------------------------------------------------------------------------------------- function
    def function(self) -> str:
        ir = self.ir
        self.used.update(RESERVED)
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
        outs = ", ".join([f"{name!r}: {self.expr(o.edge)}" for name, o in ir.outputs.items()
                          if not self._unavailable(o.edge)]
                         + [f"{'ponder:' + dotted!r}: {self.expr(e)}" for dotted, e in ir.ponders.items()
                            if not self._unavailable(e)]
                         + [f"{name + '.ponder_' + what!r}: {expr}" for name, o in ir.outputs.items()
                            for what, expr in zip(("values", "p"), self._parts_of(o.edge))])
        self.line(f"return {{{outs}}}" + (", _rec" if self.record else ""))
        header = ["def forward(self, batch):", "    nodes = self.nodes"]
        steps = [line + "\n" for line in self.hoisted]  # top-level step functions, before forward
        return "".join(steps) + ("\n" if steps else "") + "\n".join(header + binds + self.lines[body_start:]) + "\n"

    def _parts_of(self, edge: Edge) -> tuple[str, ...]:
        """A PonderNet output's (per-step values, weights) expressions where the model returns it (else ())."""
        loops = [s for s in edge.into if not s.cls.inline]
        return self.parts.get((loops[0], _key_from(edge, loops[0])), ()) if loops else ()

    def _unavailable(self, edge: Edge) -> bool:
        loops = [s for s in edge.into if not s.cls.inline]
        return bool(loops) and (loops[0], _key_from(edge, loops[0])) in self.unavailable

    def _bindings(self) -> list[str]:
        out = []
        for node in self.ir.nodes():
            if node.is_scope:
                continue
            access = "".join(f"[{p!r}]" for p in node.path)
            self.modules[node] = var = self.name("m_" + "_".join(node.path))
            out.append(f"{var} = nodes{access}")
        return out

    def _masks(self) -> None:
        for name, node in self.ir.inputs.items():
            t = node.types["out"]
            if t.time != name:  # one vector per example, or on another input's time axis: that input's mask covers it
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
        cls, mod = node.cls, self.modules[node]
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
        if cls.mask_for is not None:
            mask = self._mask_of(node)
            args.append(f"mask={self.expanded.get(mask, mask)}")
        outs = ", ".join(self.value(node, port) for port in cls.ports)
        in_step = frame.owner is not None
        if cls.stateful and in_step:
            state = self.state[node]
            if self.step_mask is None:
                self.line(f"{outs}, {state} = {mod}.step({state}, {', '.join(args)})")
            else:
                new = self.name(f"{state}_new")
                self.line(f"{outs}, {new} = {mod}.step({state}, {', '.join(args)})")
                self.line(f"{state} = tuple(torch.where({self.step_mask}, a, b) for a, b in zip({new}, {state}))")
        elif cls.stateful and cls.mask_for is None and self.masked and node.types["out"].time in self.lengths:
            self.line(f"{outs} = {mod}({', '.join(args)}, {self.lengths[node.types['out'].time]})")
        else:
            self.line(f"{outs} = {mod}({', '.join(args)})")
        if self.record and not _in_halting(node):  # a halting scope records its mean over ponder steps
            for port in cls.watch:
                key = (node, port)
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
        carried = self._carried_init(loop)
        reads, accs = self._reads_init(loop)
        part_accs = self._parts_init(loop, reads)
        watched = self._watched_init(loop)
        order = f"range(len({steps[0]}) - 1, -1, -1)" if reverse else f"range(len({steps[0]}))"
        elements = []
        for edge in loop.inputs["over"]:
            self.elements[(loop, edge.key())] = el = self.name(f"{edge.src.name}_t")
            elements.append(el)
        outer_mask = self.step_mask
        if self.masked and axis in self.masks:
            self.step_mask = self.name(f"{loop.name}_valid")
        t = self.name("t")  # this loop's own counter: a loop nested in another one, or a node named t, keeps its own
        fetch = [f"{el} = {var}[{t}]" for el, var in zip(elements, steps)]
        if self.step_mask != outer_mask:  # (T, B, 1), contiguous: one index per step, a stride free of T
            by_time = self.name(f"{loop.name}_mask_by_time")
            self.line(f"{by_time} = {self.masks[axis]}.t().contiguous().unsqueeze(-1)")
            fetch.append(f"{self.step_mask} = {by_time}[{t}]")
        if as_fn:
            # the body as a function of (what it reads from outside, step inputs, mask, carried values) ->
            # (carried values, values read outside): compile_steps hands it to torch.compile once, and one
            # graph serves every step of every sequence length
            fn = self.name(f"_step_{loop.name}")
            carry = [self.prev[k] for k in carried] + [self.state[n] for n in self.ir.units(loop.body)
                                                       if n in self.state]
            params = ([] if self.frees is None else self.frees[fn]) + elements
            params += ([self.step_mask] if self.step_mask != outer_mask else []) + carry
            outer_lines, outer_depth = self.lines, self.depth
            if self.frees is not None:
                self.lines, self.depth = self.hoisted, 0
            self.line(f"def {fn}({', '.join(params)}):")
            self.depth += 1
            self._body(loop, carried)
            outs = [self._inside(e, loop) for e in reads.values()]
            self.line(f"return {_tuple(carry)}, {_tuple(outs)}")
            self.lines, self.depth = outer_lines, outer_depth
            if self.frees is not None:
                self.line(f"{fn} = _steps[{fn!r}]")
            self.line(f"for {t} in {order}:")
            self.depth += 1
            for text in fetch:
                self.line(text)
            self.line(f"{_tuple(carry)}, {_tuple(outs)} = {fn}({', '.join(params)})")
        else:
            self.line(f"for {t} in {order}:")
            self.depth += 1
            for text in fetch:
                self.line(text)
            self._body(loop, carried)
        for key, edge in reads.items():
            self.line(f"{accs[key]}.append({self._inside(edge, loop)})")
        self._parts_collect(loop, reads, part_accs)
        self.step_mask = outer_mask
        self.depth -= 1
        self._stack_reads(loop, reads, accs, watched, reverse)
        for key, (vals, ws) in part_accs.items():
            order = "[::-1]" if reverse else ""
            self.parts[(loop, key)] = (f"torch.stack({vals}{order}, 1)", f"torch.stack({ws}{order}, 1)")

    def _parts_init(self, loop: NodeIR, reads: dict[tuple, Edge]) -> dict[tuple, tuple[str, str]]:
        """Before a loop: lists for the per-ponder-step values and weights of the PonderNet scopes nested in
        its body, for the reads that carry them to a loss (they stack on the time axis)."""
        out = {}
        outputs = {o.edge for o in self.ir.outputs.values() if o.target is not None}
        for key, edge in reads.items():
            into = edge.into[edge.into.index(loop) + 1:]
            if edge in outputs and any(s.kind == "pondernet" for s in into):
                out[key] = vals, ws = tuple(self.name(f"acc_{'_'.join(edge.src.path)}_{v}")
                                            for v in ("per_step", "p_per_step"))
                self.line(f"{vals}, {ws} = [], []")
        return out

    def _parts_collect(self, loop: NodeIR, reads: dict[tuple, Edge], accs: dict[tuple, tuple[str, str]]) -> None:
        """In the loop's body, after it: this step's per-ponder-step values and weights (see _parts_init)."""
        for key, (vals, ws) in accs.items():
            edge = reads[key]
            inner = next(s for s in edge.into[edge.into.index(loop) + 1:] if not s.cls.inline)
            found = self.parts[(inner, _key_from(edge, inner))]
            self.line(f"{vals}.append({found[0]})")
            self.line(f"{ws}.append({found[1]})")

    def _mask_of(self, node: NodeIR) -> str | None:
        """The variable holding the validity mask of the time axis of ``node``'s ``mask_for`` input (None:
        unmasked variant, or an axis without one)."""
        t = node.in_types.get(node.cls.mask_for)
        t = t[0] if isinstance(t, list) else t
        return self.masks.get(t.time) if self.masked and t is not None and t.time else None

    def _carried_init(self, loop: NodeIR) -> dict[tuple, Edge]:
        """Before a step loop: every stateful body node's initial state, every prev() value's initial value;
        returns the prev() values of the loop's own body. A halting scope in the body carries its body's
        state from step to step of the loop, so that state starts here too (it is set up once: a halting
        scope outside any loop sets up its own)."""
        frames = _carrying_frames(self.ir, loop)
        for frame in frames:  # a halting scope's first-step flags: made once, not per input step
            owner = frame.owner
            if owner.cls.halting and owner not in self.flags:
                self.flags[owner] = on, off = self.name(f"{owner.name}_first_on"), self.name(f"{owner.name}_first_off")
                self.line(f"{on}, {off} = _f.new_ones((B, 1)), _f.new_zeros((B, 1))")
        for frame in frames:
            for node in self.ir.units(frame):
                if not node.is_scope and node.cls.stateful and node not in self.state:
                    self.state[node] = s = self.name(f"s_{'_'.join(node.path)}")
                    self.line(f"{s} = {self.modules[node]}.init_state(B, _f)")
        carried: dict[tuple, Edge] = {}
        for edge in self.ir.edges:
            if edge.prev and not edge.src.is_scope and any(edge.src.scope.frame is f for f in frames):
                key = (edge.src, edge.port)
                if edge.src.scope.frame is loop.body:
                    carried.setdefault(key, edge)
                if key not in self.prev:
                    self.prev[key] = p = self.name(f"prev_{'_'.join(edge.src.path)}")
                    self.line(f"{p} = {self._initial(edge)}")
        return carried

    def _reads(self, loop: NodeIR) -> dict[tuple, Edge]:
        """The body values read from outside the scope ``loop`` (also from further out, through scopes
        around it), keyed by :func:`_key_from`."""
        reads: dict[tuple, Edge] = {}
        for edge in self.ir.edges:
            if any(s is loop for s in edge.into):
                reads.setdefault(_key_from(edge, loop), edge)
        return reads

    def _reads_init(self, loop: NodeIR) -> tuple[dict[tuple, Edge], dict[tuple, str]]:
        """The body values read from outside the loop, each with a list collecting it step by step."""
        reads = self._reads(loop)
        accs = {key: self.name(f"acc_{'_'.join(e.src.path)}") for key, e in reads.items()}
        for acc in accs.values():
            self.line(f"{acc} = []")
        return reads, accs

    def _watched_init(self, loop: NodeIR) -> list[tuple[str, str]]:
        """Lists collecting the watched ports of the body step by step (``record``): its components', and a
        halting scope's mean of its own body's and its ponder steps and cost."""
        watched = []
        if self.record:
            for node, port in _watched(self.ir, loop.body):
                self.recs[(node, port)] = var = self.name(f"rec_{'_'.join(node.path)}_{port}")
                watched.append((node.dotted + "." + port, var))
                self.line(f"{var} = []")
        return watched

    def _stack_reads(self, loop: NodeIR, reads: dict[tuple, Edge], accs: dict[tuple, str],
                     watched: list[tuple[str, str]], reverse: bool = False) -> None:
        """After a step loop: the collected values stacked on the time axis (in input order)."""
        for key, edge in reads.items():
            out = self.name(f"{loop.name}_{edge.src.name}" + ("" if edge.port == "out" else f"_{edge.port}"))
            self.line(f"{out} = torch.stack({accs[key]}{'[::-1]' if reverse else ''}, 1)")
            self.stacked[(loop, key)] = out
        for name, var in watched:
            self.line(f"_rec[{name!r}] = torch.stack({var}{'[::-1]' if reverse else ''}, 1)")

    def _body(self, loop: NodeIR, carried: dict[tuple, Edge]) -> None:
        """One step: the body's nodes, then the values prev() will read at the next step."""
        self.frame(loop.body)
        for key, p in ((k, self.prev[k]) for k in carried):
            src = carried[key].src
            if src.cls.state_is_output and key[1] == "out":  # its state is its value, already masked: no 2nd where
                self.line(f"{p} = {self.state[src]}[0]")
                continue
            value = self.values[key]
            self.line(f"{p} = {value}" if self.step_mask is None else f"{p} = torch.where({self.step_mask}, {value}, {p})")

    # ------------------------------------------------------------------------------------------- halting
    def emit_halting(self, act: NodeIR) -> None:
        """A halting scope (scopes/halting.py): a ``for`` over ponder steps that stops once every example has
        halted; each step's values and carried state are summed with the step's halting weight p, and the sums
        are what leaves the scope and what the next step of an enclosing loop starts from. PonderNet also
        keeps each output's per-step values and weights (the loss is their expectation) and, outside
        training, samples where each example halts: what leaves is then the value at that step."""
        p, name = act.p, act.name
        ponder = act.kind == "pondernet"
        halt = self.value(*act.refs["halt"][:2])
        self.line(f"# {act.kind} '{act.dotted}': ponder until the halting probabilities reach 1 - {p.epsilon!r}"
                  f" (at most {p.max_steps} steps)")
        carried = self._carried_init(act)  # inside a loop its state exists already (set up before the loop)
        reads = self._reads(act)
        watched = [(n, port) for n in self.ir.units(act.body) if not n.is_scope for port in n.cls.watch] \
            if self.record else []
        carries = [self.state[n] for n in self.ir.units(act.body) if n in self.state] + \
            [self.prev[k] for k, e in carried.items() if not (e.src.cls.state_is_output and k[1] == "out")]
        values = list(dict.fromkeys(self._inside(e, act) for e in reads.values()))
        valid = self.step_mask
        kept = {}
        if valid is not None:  # a padding step of the enclosing loop leaves the state as it was
            for var in carries:
                kept[var] = self.name(f"{var}_before")
                self.line(f"{kept[var]} = {var}")
        left, running, steps, rem = (self.name(f"{name}_{v}") for v in ("left", "running", "steps", "remainder"))
        on, off = self.flags[act]
        self.line(f"{left} = _f.new_ones((B, 1))  # the probability not yet given to a step")
        self.line(f"{running} = " + (f"{valid}.clone()" if valid is not None
                                     else "torch.ones((B, 1), dtype=torch.bool, device=_f.device)"))
        self.line(f"{steps} = _f.new_zeros((B, 1))")
        if not ponder:
            self.line(f"{rem} = _f.new_zeros((B, 1))")
        sums = {}  # variable summed over ponder steps -> its sum
        for var in carries + values + [self.value(n, port) for n, port in watched]:
            sums.setdefault(var, self.name(f"{var}_sum"))
        for total in sums.values():
            self.line(f"{total} = None")
        parts, chosen = {}, {}
        if ponder:
            parts = {v: self.name(f"{v}_per_step") for v in values if self._feeds_loss(act, v, reads)}
            weights = self.name(f"{name}_p_per_step")
            for var in [*parts.values(), weights] if parts else []:
                self.line(f"{var} = []")
            chosen = {var: self.name(f"{var}_halted") for var in sums}
            sampling, halted_at, kl = (self.name(f"{name}_{v}") for v in ("sampling", "halted_at", "kl"))
            if p.sample:  # outside training: the examples still to halt, by sampling
                self.line(f"{sampling} = {running}.clone() if not self.training else None")
            self.line(f"{halted_at} = _f.new_zeros((B, 1))")
            self.line(f"{kl} = _f.new_zeros((B, 1))")
            for var in chosen.values():
                self.line(f"{var} = None")
        outer_mask, self.step_mask = self.step_mask, None  # every example runs every ponder step; p weighs them
        n = self.name("n")  # the ponder step
        self.line(f"for {n} in range({p.max_steps}):")
        self.depth += 1
        self.line(f"{self.value(act, 'first')} = {on} if {n} == 0 else {off}")
        self._body(act, carried)
        stop, weight = (self.name(f"{name}_{v}") for v in ("stop", "p"))
        h, last = halt, f"({n} == {p.max_steps - 1})"
        if ponder:  # λ_n: halting now given not halted before; p_n = λ_n · Π_{j<n} (1 − λ_j)
            self.line(f"{weight} = {left} * {h}")
            self.line(f"{stop} = {running} & (({left} - {weight} <= {p.epsilon!r}) | {last})")
        else:  # ACT: h itself until the sum reaches 1 - ε
            self.line(f"{stop} = {running} & (({left} - {h} <= {p.epsilon!r}) | {last})")
            self.line(f"{weight} = {h}")
        self.line(f"{weight} = torch.where({stop}, {left}, torch.where({running}, {weight}, 0.0))")
        if not ponder:
            self.line(f"{rem} = torch.where({stop}, {left}, {rem})")
        self.line(f"{steps} = {steps} + {running}.to(_f.dtype)")
        self.line(f"{left} = {left} - {weight}")
        if ponder:
            lp, lq = math.log(p.prior), math.log(1.0 - p.prior)
            self.line(f"{kl} = {kl} + torch.where({weight} > 0, {weight} * torch.log({weight}.clamp_min(1e-30)), 0.0)"
                      f" - {weight} * ({lp!r} + {n} * {lq!r})")
            if p.sample:  # only outside training: a forward that does not sample leaves the global RNG alone
                draw = self.name(f"{name}_draw")
                self.line(f"if {sampling} is not None:")
                self.line(f"    {draw} = {sampling} & ((torch.rand_like({h}) < {h}) | {last})")
                self.line(f"    {halted_at} = torch.where({draw}, {n} + 1.0, {halted_at})")
                for var, pick in chosen.items():
                    self.line(f"    {pick} = {var} if {pick} is None else _halt_keep({draw}, {var}, {pick})")
                self.line(f"    {sampling} = {sampling} & ~{draw}")
            for var, acc in parts.items():
                self.line(f"{acc}.append({var})")
            if parts:
                self.line(f"{weights}.append({weight})")
        self.line(f"{running} = {running} & ~{stop}")
        for var, total in sums.items():
            self.line(f"{total} = _halt_mix({total}, {weight}, {var})")
        busy = f"({running} | {sampling})" if ponder and p.sample else running
        if ponder and p.sample:
            self.line(f"if not bool(({running} if {sampling} is None else {busy}).any()):")
        else:
            self.line(f"if not bool({busy}.any()):")
        self.line("    break")
        self.depth -= 1
        self.step_mask = outer_mask
        stacked_parts = {}
        if ponder:
            prior_mass = f"1.0 - {1.0 - p.prior!r} ** {steps}"
            self.line(f"{kl} = {kl} + torch.where({steps} > 0, torch.log(({prior_mass}).clamp_min(1e-30)), 0.0)"
                      "  # the prior, truncated where the example stopped, sums to 1")
            if p.sample:
                self.line(f"if {sampling} is not None:  # outside training what leaves is the value at the sampled step")
                for var, total in sums.items():
                    self.line(f"    {total} = {chosen[var]}")
                self.line(f"    {steps} = {halted_at}")
            for var, acc in parts.items():  # (B, max_steps, ...): every output's value at each ponder step
                stacked_parts[var] = (f"_ponder_stack({acc}, {p.max_steps})",
                                      f"_ponder_stack({weights}, {p.max_steps}).squeeze(-1)")
        # what the next step starts from: the mean state (a padding step keeps the old one)
        for var in carries:
            self.line(f"{var} = _halt_keep({valid}, {sums[var]}, {kept[var]})" if var in kept else f"{var} = {sums[var]}")
        for key, edge in carried.items():
            if edge.src.cls.state_is_output and key[1] == "out":  # a memory: its value is its (mean) state
                self.line(f"{self.prev[key]} = {self.state[edge.src]}[0]")
        for key, edge in reads.items():
            self.stacked[(act, key)] = sums[self._inside(edge, act)]
            if self._inside(edge, act) in stacked_parts:
                self.parts[(act, key)] = stacked_parts[self._inside(edge, act)]
        self.line(f"{self.value(act, 'steps')} = {steps}")
        self.line(f"{self.value(act, 'cost')} = " + (kl if ponder else f"{steps} + {rem}"))
        for node, port in [(act, "steps"), (act, "cost")] + watched:
            value = self.value(node, port)
            value = sums.get(value, value)
            key = (node, port)
            if self.record:
                self.line(f"{self.recs[key]}.append({value})" if key in self.recs
                          else f"_rec[{node.dotted + '.' + port!r}] = {value}")

    def _feeds_loss(self, act: NodeIR, var: str, reads: dict[tuple, Edge]) -> bool:
        """Whether the body value in ``var`` reaches an output with a loss against a target (PonderNet then
        keeps it per ponder step: the loss is its expectation over the halting distribution)."""
        return any(o.target is not None and any(s is act for s in o.edge.into)
                   and self._inside(o.edge, act) == var for o in self.ir.outputs.values())

    # ------------------------------------------------------------------------------------------- decoders
    def emit_decode(self, dec: NodeIR) -> None:
        """An autoregressive ``for``: the body once per output token, ``prev(dec)`` the token fed at each step
        (bos first; then teacher forcing in training, the greedy choice otherwise); see scopes/decode.py."""
        p, name = dec.p, dec.name
        inner, port, _ = dec.default
        target = self.name(f"{name}_target")
        steps = self.name(f"{name}_steps")
        token = self.prev[(dec, "token")] = self.name(f"prev_{name}_token")
        self.line(f"# decode '{dec.dotted}': writes target {p.target!r}" + (" (beam search)" if self.beam else ""))
        if self.beam:  # every example becomes K beams: what the body reads from outside is repeated K times
            self._beam_expand(dec)
            carried = self._carried_init(dec)
            self.line(f"{token} = torch.full((B,), {p.bos}, dtype=torch.long, device=_f.device)")
            return self._beam_search(dec, carried, self._reads(dec), token)
        self.line(f"{target} = batch.get({p.target!r})")
        self.line(f"{steps} = {target}.shape[1] if {target} is not None else {p.max_length}")
        by_step = self.name(f"{name}_target_by_step")  # (T, B), contiguous: one row per step, not a strided column
        self.line(f"{by_step} = {target}.t().contiguous() if {target} is not None else None")
        carried = self._carried_init(dec)
        reads, accs = self._reads_init(dec)
        watched = self._watched_init(dec)
        self.line(f"{token} = torch.full((B,), {p.bos}, dtype=torch.long, device=_f.device)")
        force = self.name(f"{name}_force")
        self.line(f"{force} = self.training and {target} is not None")
        done = self.name(f"{name}_done")
        self.line(f"{done} = torch.zeros((B,), dtype=torch.bool, device=_f.device)")
        chosen = self._chosen_init(dec)
        outer_mask, self.step_mask = self.step_mask, None  # every example runs every step; the loss masks
        t = self.name("t")
        self.line(f"for {t} in range({steps}):")
        self.depth += 1
        self._body(dec, carried)
        scores = self.value(inner, port)
        choose_from = self._constrain(dec, scores, chosen)
        for key, edge in reads.items():
            self.line(f"{accs[key]}.append({self._inside(edge, dec)})")
        self.line(f"if {force}:")
        if p.teacher_forcing >= 1.0:
            self.line(f"    {token} = {by_step}[{t}]")
        else:  # each example, each step: the target token with probability teacher_forcing, else its own choice
            self.line(f"    {token} = torch.where(torch.rand(B, device=_f.device) < {p.teacher_forcing!r}, "
                      f"{by_step}[{t}], {choose_from}.argmax(-1))")
        self.line("else:")
        self.line(f"    {token} = {choose_from}.argmax(-1)")
        self.line(f"    if {target} is None:  # prediction: stop once every example has written eos")
        self.line(f"        {done} = {done} | ({token} == {p.eos})")
        self.line(f"        if bool({done}.all()):")
        self.line("            break")
        self._choose(dec, token, chosen)
        self.depth -= 1
        self.step_mask = outer_mask
        self._stack_reads(dec, reads, accs, watched)

    def _beam_expand(self, dec: NodeIR) -> None:
        """Beam search: ``B`` becomes B·K inside the decoder; every value and mask its body reads from outside
        is repeated K times (example-major: beams of example b are rows b·K .. b·K + K − 1)."""
        self.beam_k = width = self.name(f"{dec.name}_K")
        self.beam_b = self.name("B_examples")
        self.line(f"{width} = self._beam or {dec.p.beam}")
        self.line(f"{self.beam_b} = B")
        outside: dict[str, None] = {}  # variables, in order of first read
        for node in nodes_in(dec.body):
            if node.is_scope:
                continue
            for edge in node.edges():  # prev(), a loop's element and values computed in the body are per beam
                if not edge.prev and edge.element_of is None and unit_in(edge.src, dec.body) is None:
                    outside.setdefault(self.expr(edge))
            if node.cls.mask_for is not None and self._mask_of(node) is not None:
                outside.setdefault(self._mask_of(node))
        for var in outside:
            self.expanded[var] = rep = self.name(f"{var}_beams")
            self.line(f"{rep} = {var}.repeat_interleave({width}, 0)")
        self.line(f"B = B * {width}")

    def _beam_search(self, dec: NodeIR, carried: dict[tuple, Edge], reads: dict[tuple, Edge], token: str) -> None:
        """The decoder's loop as beam search (width K, length normalisation ``length_penalty``): each step
        extends every beam by every token, keeps the K best by summed log-probability; a beam that wrote
        ``eos`` stays finished (it may only write eos again, at no cost). At the end each example's answer is
        its beam with the best log p / length^length_penalty. The decoder's value is those token ids
        (B, T'); nothing else of its body can be read from outside under beam search."""
        p, name = dec.p, dec.name
        inner, port, _ = dec.default
        output_edges = {o.edge for o in self.ir.outputs.values()} | set(self.ir.ponders.values())
        for key, edge in reads.items():
            if (edge.src, edge.port) == (inner, port):
                continue
            readers = [e for e in self.ir.edges if any(s is dec for s in e.into) and _key_from(e, dec) == key]
            if all(e in output_edges for e in readers):  # e.g. a penalty on the alignment: no beam value
                self.unavailable.add((dec, key))
                continue
            raise ValueError(f"beam search: '{edge.ref}' reads '{edge.src.dotted}' out of decode '{dec.dotted}'; "
                             f"under beam search only its output ('{p.output}') can be read")
        K, b0, V = self.beam_k, self.beam_b, dec.types["token"].size
        pointer = V == 0  # a points_to: target: as many tokens as the source has positions, known at run time
        if pointer:
            V = self.name(f"{name}_V")
        chosen = self._chosen_init(dec)
        finished = self.name(f"{name}_finished_row")
        score, done, length, hist, rows = (self.name(f"{name}_{v}") for v in ("score", "done", "length", "hist", "rows"))
        self.line(f"{score} = torch.zeros(({b0}, {K}), dtype=_f.dtype, device=_f.device)")
        self.line(f"{score}[:, 1:] = -float('inf')  # at first all K beams are the same: keep one")
        self.line(f"{score} = {score}.reshape(B)")
        self.line(f"{done} = torch.zeros((B,), dtype=torch.bool, device=_f.device)")
        self.line(f"{length} = torch.zeros((B,), dtype=_f.dtype, device=_f.device)")
        self.line(f"{hist} = torch.zeros((B, 0), dtype=torch.long, device=_f.device)")
        self.line(f"{rows} = (torch.arange({b0}, device=_f.device) * {K}).unsqueeze(1)")
        make_finished = (f"{finished} = torch.full((1, {V}), -float('inf'), dtype=_f.dtype, device=_f.device)"
                         f".index_fill(1, torch.tensor([{p.eos}], device=_f.device), 0.0)  # a finished beam: eos, at no cost")
        if not pointer:
            self.line(make_finished)
        self.line(f"for {self.name('t')} in range({p.max_length}):")
        self.depth += 1
        outer_mask, self.step_mask = self.step_mask, None
        self._body(dec, carried)
        self.step_mask = outer_mask
        scores = self.value(inner, port)
        if pointer:
            self.line(f"{V} = {scores}.shape[-1]")
            self.line(make_finished)
        choose_from = self._constrain(dec, scores, chosen)
        logp = self.name(f"{name}_logp")
        self.line(f"{logp} = torch.log_softmax({choose_from}.to(_f.dtype), -1)")
        self.line(f"{logp} = torch.where({done}.unsqueeze(1), {finished}, {logp})")
        top, idx, src = (self.name(f"{name}_{v}") for v in ("top", "idx", "from"))
        self.line(f"{top}, {idx} = ({score}.unsqueeze(1) + {logp}).reshape({b0}, -1).topk({K}, 1)")
        self.line(f"{src} = ({rows} + torch.div({idx}, {V}, rounding_mode='floor')).reshape(B)")
        self.line(f"{token} = ({idx} % {V}).reshape(B)")
        self.line(f"{score} = {top}.reshape(B)")
        self.line(f"{length} = {length}[{src}] + (~{done}[{src}]).to(_f.dtype)")
        self.line(f"{done} = {done}[{src}] | ({token} == {p.eos})")
        self.line(f"{hist} = torch.cat([{hist}[{src}], {token}.unsqueeze(1)], 1)")
        if chosen is not None:  # each beam continues from what the beam it extends had chosen
            self.line(f"{chosen} = {chosen}[{src}]")
            if (dec, "left") in self.values:
                self.line(f"{self.values[(dec, 'left')]} = {self.values[(dec, 'left')]}[{src}]")
            self._choose(dec, token, chosen)
        for key in carried:  # every beam continues from the state of the beam it extends
            self.line(f"{self.prev[key]} = {self.prev[key]}[{src}]")
        for node in self.ir.units(dec.body):
            if node in self.state:
                st = self.state[node]
                self.line(f"{st} = tuple(x[{src}] for x in {st})")
        self.line(f"if bool({done}.all()):")
        self.line("    break")
        self.depth -= 1
        best, out = self.name(f"{name}_best"), self.name(f"{name}_tokens")
        self.line(f"{best} = ({score} / {length}.clamp_min(1.0) ** {p.length_penalty!r})"
                  f".reshape({b0}, {K}).argmax(1)")
        self.line(f"{out} = {hist}.reshape({b0}, {K}, -1)[torch.arange({b0}, device=_f.device), {best}]")
        self.line(f"B = {b0}")
        for key in reads:
            if (dec, key) not in self.unavailable:
                self.stacked[(dec, key)] = out
        self.expanded = {}

    def _chosen_init(self, dec: NodeIR) -> str | None:
        """A pointer decoder with a ``constraint``: the positions it may not choose at this step, (B, S) bool,
        made at the first step (S is the source's length); None without a constraint. With ``permutation``
        also ``<dec>_left``, the valid positions each example has still to choose, which decides eos."""
        if dec.p.constraint in ("none", None):
            return None
        blocked = self.name(f"{dec.name}_blocked")
        self.line(f"{blocked} = None  # the positions forbidden at this step (constraint {dec.p.constraint})")
        return blocked

    def _constrain(self, dec: NodeIR, scores: str, blocked: str | None) -> str:
        """Scores of the positions the constraint forbids go to ``BLOCKED``: a chosen position (eos excepted);
        with ``permutation``, eos until every valid position is chosen. Returns the expression the next token
        is chosen from (detached, evaluated only where a token is chosen, not under teacher forcing): the
        scores with the forbidden positions at −inf, so that no score, however low, lets one be chosen."""
        if blocked is None:
            return f"{scores}.detach()"
        self.line(f"if {blocked} is None:")
        self.line(f"    {blocked} = torch.zeros({scores}.shape, dtype=torch.bool, device={scores}.device)")
        if dec.p.constraint == "permutation":
            axis = self.ir.targets[dec.p.target].layout[1]
            mask = self.masks.get(axis) if self.masked else None
            mask = self.expanded.get(mask, mask) if mask is not None else None
            left = self.values[(dec, "left")] = self.name(f"{dec.name}_left")
            valid = f"{mask}.sum(1)" if mask is not None else f"torch.full((B,), {scores}.shape[1], device={scores}.device)"
            self.line(f"    {left} = {valid} - 1  # every valid position but eos is still to choose")
            self.line(f"    {blocked}[:, {dec.p.eos}] = {left} > 0")
        self.line(f"{scores} = {scores}.masked_fill({blocked}, {BLOCKED!r})")
        return f"{scores}.detach().masked_fill({blocked}, -float('inf'))"

    def _choose(self, dec: NodeIR, token: str, blocked: str | None) -> None:
        """After the step's token: it is forbidden from now on (eos is never: it may end the answer, then
        repeat); with ``permutation`` eos is allowed once no valid position is left."""
        if blocked is None:
            return
        eos = dec.p.eos
        self.line(f"{blocked} = {blocked}.scatter(1, {token}.unsqueeze(1), ({token} != {eos}).unsqueeze(1))")
        if dec.p.constraint == "permutation":
            left = self.values[(dec, "left")]
            self.line(f"{left} = {left} - ({token} != {eos}).long()")
            self.line(f"{blocked}[:, {eos}] = {left} > 0")

    # ------------------------------------------------------------------------------------------- programs
    def emit_program(self, prog: NodeIR, ops: list) -> None:
        """A ``program`` scope (scopes/program.py): a ``for`` over its steps; after the body, the op and column
        distributions, every op of the library run and mixed by type (runtime.program_step), and the registers'
        history shifted (rows two steps back, scalars three)."""
        p, name = prog.p, prog.name
        self.line(f"# program '{prog.dotted}': {p.steps} steps of {p.library!r} ({', '.join(o.name for o in ops)})")
        lib, vals = self.name(f"{name}_ops"), self.name(f"{name}_values")
        self.line(f"{lib} = _library_ops({p.library!r})")
        opv, colv = self.value(prog, "prev_op"), self.value(prog, "prev_column")
        self.line(f"{opv} = _f.new_zeros((B, {len(ops)}))")
        table = rows = lookup = None
        if p.table is not None:
            edge = prog.inputs["table"][0]
            table = self.expr(edge)
            mask = self.masks.get(edge.type.time) if self.masked else None
            valid = f"{mask}.to(_f.dtype)" if mask is not None else f"{table}.new_ones({table}.shape[:2])"
            rows, lookup = self.name(f"{name}_rows"), self.name(f"{name}_lookup")
            self.line(f"{colv} = _f.new_zeros((B, {prog.types['prev_column'].size}))")
            self.line(f"{vals} = {{'table': {table}, 'valid': {valid}, 'scalar': _f.new_zeros((B, 1))}}")
            self.line(f"{vals}['rows'] = {vals}['rows_2'] = {vals}['valid']  # before the first step: every row")
            if any("spread" in o.takes for o in ops):  # the table is the same at every step
                self.line(f"{vals}['spread'] = _table_spread({table}, {vals}['valid'])")
            self.line(f"{lookup} = torch.zeros_like({table})")
        else:
            self.line(f"{vals} = {{'scalar': _f.new_zeros((B, 1))}}")
        self.line(f"{vals}['scalar_2'] = {vals}['scalar_3'] = {vals}['scalar']")
        carried = self._carried_init(prog)
        reads = self._reads(prog)
        watched = self._watched_init(prog)
        own = []
        if self.record:  # the induced program, step by step
            own = [(port, self.name(f"rec_{name}_{port}")) for port in ("op", "column", "scalar", "rows", "pivot")
                   if not (port in ("column", "rows") and table is None) and not (port == "pivot" and p.pivot is None)]
            for _, var in own:
                self.line(f"{var} = []")
        outer_mask, self.step_mask = self.step_mask, None
        self.line(f"for {self.name('_step')} in range({p.steps}):")
        self.depth += 1
        self._body(prog, carried)
        self.line(f"{opv} = torch.softmax({self.value(*prog.refs['ops'][:2])}, -1)")
        if p.hard:
            self.line(f"{opv} = {opv} if self.training else _one_hot_max({opv})")
        if p.columns is not None:
            self.line(f"{colv} = torch.softmax({self.value(*prog.refs['columns'][:2])}, -1)")
            if p.hard:
                self.line(f"{colv} = {colv} if self.training else _one_hot_max({colv})")
            self.line(f"{vals}['column'] = {colv}")
        if p.pivot is not None:
            self.line(f"{vals}['pivot'] = {self.value(*prog.refs['pivot'][:2])}")
        scalar = self.name(f"{name}_scalar")
        rows_before = f"{vals}['rows']" if table is not None else "None"
        self.line(f"{scalar}, {rows or '_'}, {lookup or '_'} = _program_step({lib}, {opv}, {vals}, {rows_before}, "
                  f"{lookup})")
        self.line(f"{vals}['scalar_3'], {vals}['scalar_2'], {vals}['scalar'] = {vals}['scalar_2'], {vals}['scalar'], {scalar}")
        if table is not None:
            self.line(f"{vals}['rows_2'], {vals}['rows'] = {vals}['rows'], {rows}")
        for port, var in own:
            value = {"op": opv, "column": colv, "scalar": scalar, "rows": rows, "pivot": f"{vals}['pivot']"}[port]
            self.line(f"{var}.append({value})")
        self.depth -= 1
        self.step_mask = outer_mask
        self._stack_reads(prog, {}, {}, watched)
        for port, var in own:
            self.line(f"_rec[{prog.dotted + '.' + port!r}] = torch.stack({var}, 1)")
        for key, edge in reads.items():  # a body value read from outside: its value at the last step
            self.stacked[(prog, key)] = self._inside(edge, prog)
        self.line(f"{self.value(prog, 'scalar')} = {scalar}")
        if table is not None:
            self.line(f"{self.value(prog, 'rows')} = {rows}.unsqueeze(-1)")
            self.line(f"{self.value(prog, 'lookup')} = {lookup}")

    def _initial(self, edge: Edge) -> str:
        src, t = edge.src, edge.src.types[edge.port]
        if src.cls.state_is_output and edge.port == "out":  # e.g. prev(memory) at t = 0: its initial contents
            return f"{self.state[src]}[0]"
        init = src.p.init
        if init == "learned":
            return f"{self.modules[src]}.prev_init.expand(B, -1)"
        value = float(init) if isinstance(init, (int, float)) and not isinstance(init, bool) else 0.0  # zeros, first, ...
        return f"_f.new_full((B, {t.size}), {value!r})"



RUNTIME = {"_halt_mix": halt_mix, "_halt_keep": halt_keep, "_ponder_stack": ponder_stack, "_library_ops": library_ops,
           "_program_step": program_step, "_table_spread": table_spread, "_one_hot_max": one_hot_max}
# Every identifier the generated code spells out rather than mints with CodeGen.name(): the function and its
# arguments, the batch size, the helpers it calls, the names of its comprehensions, and the builtins (range,
# len, zip, tuple, float, bool). name() never returns one, so no spec name can collide with one.
RESERVED = frozenset({"forward", "self", "batch", "nodes", "torch", "B", "_f", "_rec", "_steps", "_", "a", "b", "x",
                      *RUNTIME, *dir(builtins)})

BLOCKED = -1.0e4  # the score a pointer's constraint gives a forbidden position (the choice itself masks it
# with −inf, see _constrain): finite, so that a free-running evaluation whose target is a position it already
# chose costs a large but finite loss (about 1e4 for that step), representable in float16 too


def _key_from(edge: Edge, scope: NodeIR) -> tuple:
    """``edge``'s value as it leaves ``scope`` (one of the scopes it enters): the source, its port and the scopes
    entered from ``scope`` inwards. Two reads of one value through the same scopes share it."""
    into = edge.into[next(i for i, s in enumerate(edge.into) if s is scope):]
    return (edge.src, edge.port, tuple(into))


def _in_halting(node: NodeIR) -> bool:
    owner = node.scope.frame.owner
    return owner is not None and owner.cls.halting


def _carrying_frames(ir: IR, loop: NodeIR) -> list[ScopeIR]:
    """``loop``'s body and the bodies of the halting scopes in it (recursively): the state they carry lives as
    long as the loop."""
    frames, i = [loop.body], 0
    while i < len(frames):
        frames += [u.body for u in ir.units(frames[i]) if u.is_scope and u.cls.halting]
        i += 1
    return frames


def _watched(ir: IR, frame: ScopeIR) -> list[tuple[NodeIR, str]]:
    """What ``record`` collects per step of ``frame``: its components' watched ports; for a halting scope in it,
    its ponder ``steps`` and ``cost`` and its own body's watched ports (means over the ponder steps)."""
    out: list[tuple[NodeIR, str]] = []
    for node in ir.units(frame):
        if not node.is_scope:
            out += [(node, port) for port in node.cls.watch]
        elif node.cls.halting:
            out += [(node, "steps"), (node, "cost")]
            out += [(n, port) for n in ir.units(node.body) if not n.is_scope for port in n.cls.watch]
    return out


def _tuple(names: list[str]) -> str:
    return f"({', '.join(names)}{',' if len(names) == 1 else ''})"


def _step_frees(source: str) -> dict[str, list[str]]:
    """The names each nested ``_step_*`` function of ``forward`` reads from the enclosing forward."""
    top = symtable.symtable(source, "<attngraph>", "exec")
    forward = next(child for child in top.get_children() if child.get_name() == "forward")
    return {child.get_name(): sorted(child.get_frees()) for child in forward.get_children()  # not its generator
            if child.get_name().startswith("_step_")}  # expressions (a masked state update in a loop with scopes)


def compile_forward(ir: IR, masked: bool, record: bool = False,
                    step_compiler: Callable[[Callable], Callable] | None = None, beam: bool = False
                    ) -> tuple[str, Callable]:
    """Generate and compile the forward function; the source is registered with linecache for tracebacks.
    ``record``: the function also returns every watched port's values (per step inside loops).
    ``step_compiler`` (e.g. torch.compile): each loop body without nested loops becomes a top-level function
    of its inputs and carried state, passed through it once; the forward's globals hold them in ``_steps``."""
    frees = None
    if step_compiler is not None:  # first pass: nested defs, to learn what each body reads from outside
        frees = _step_frees(CodeGen(ir, masked, record, step_fns=True).function())
    source = CodeGen(ir, masked, record, step_compiler is not None, frees, beam).function()
    filename = (f"<attngraph:{ir.name}{':masked' if masked else ''}{':record' if record else ''}"
                f"{':steps' if step_compiler else ''}{':beam' if beam else ''}>")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"torch": torch, **RUNTIME}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code, no spec text
    namespace["_steps"] = {name: step_compiler(namespace[name]) for name in frees or {}}
    return source, namespace["forward"]

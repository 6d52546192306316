"""``program``: the Neural Programmer (Neelakantan et al. 2015) — a controller composes ops over ``steps`` steps.

At each step the body runs once (its recurrent nodes carry their state from step to step: the paper's history
RNN) and three of its nodes decide the step's operation:

- ``ops:`` scores over the ops of ``library`` (components/ops.py): α_op = softmax(scores);
- ``columns:`` scores over the table's columns: α_col = softmax(scores) (needed when an op takes ``column``);
- ``pivot:`` the number comparisons compare with, one per example (needed when an op takes ``pivot``): e.g. an
  attention over the question whose ``values:`` are the question's numbers — a pointer to the argument.

Every op runs; results of one type are mixed by α_op (scalar_t = Σ α_op · result over the ops giving a scalar,
likewise row selections and lookups), the paper's eq. for scalar_answer, row_select and lookup_answer. With
``hard: true``, outside training, the op and the column are the argmax (one-hot) instead.

Values of the scope: inside the body, ``<prog>.prev_op`` and ``<prog>.prev_column`` are the previous step's distributions
(zeros at the first step; the paper feeds them to the history RNN); outside it, ``<prog>.scalar`` (B, 1), the
scalar answer of the last step, ``<prog>.rows`` (B, R, 1) its row selection and ``<prog>.lookup`` (B, R, C) its
lookup answer (a probability per cell: loss ``mse`` or a task metric reads it). A body value read from outside is
its value at the last step.

Example (table question answering with one number per question)::

    prog:
      kind: program
      library: neelakantan
      table: table
      steps: 4
      ops: op
      columns: col
      pivot: piv
      body:
        hist: {kind: rnn, size: 64, in: [q, prog.prev_op, prog.prev_column]}
        op:   {kind: mlp, hidden: [64], size: 9, activation: tanh, in: [q, hist]}
        col:  {kind: mlp, hidden: [64], size: 5, activation: tanh, in: [q, hist]}
        piv:  {kind: attention, score: dot, query: hist, keys: enc, values: qnum}
"""
from __future__ import annotations

from ..components.base import VType
from ..components.ops import LIBRARIES, library_ops
from ..spec.diagnostics import did_you_mean
from ..spec.params import Bool, Int, Param, RefType, Str
from .base import ScopeKind, check_body_vector, scope

TABULAR = {"table", "valid", "spread", "rows", "rows_2", "column"}  # what an op reads that exists only with a table


@scope("program")
class Program(ScopeKind):
    """Neural Programmer: at each of ``steps`` steps every op of a library runs, mixed by a soft choice."""

    params = {
        "library": Param(Str(), "neelakantan", "the op library (`attngraph list NAME` shows its ops)"),
        "steps": Param(Int(min=1), 4, "how many ops the program applies (the paper's T)"),
        "table": Param(RefType(), None, "the table: a sequence of rows, one feature per column (a padded row is "
                                        "never selected)"),
        "ops": Param(Str(), None, "the body node scoring the library's ops (size: the number of ops)"),
        "columns": Param(Str(), None, "the body node scoring the table's columns (size: the number of columns)"),
        "pivot": Param(Str(), None, "the body node giving the pivot of comparisons, one number per example"),
        "hard": Param(Bool(), False, "outside training, apply the most probable op and column (one-hot) instead of "
                                     "the soft mixture"),
    }
    body_refs = ("ops", "columns", "pivot")
    ports = {
        "prev_op": ("inside", "the previous step's op distribution (zeros at the first)"),
        "prev_column": ("inside", "the previous step's column distribution (zeros at the first)"),
        "scalar": ("outside", "the scalar answer after the last step"),
        "rows": ("outside", "the row selection after the last step"),
        "lookup": ("outside", "the lookup answer after the last step (a probability per cell)"),
    }

    @classmethod
    def ops_of(cls, node):
        return library_ops(node.p.library)

    @classmethod
    def takes(cls, node) -> set[str]:
        return {a for o in cls.ops_of(node) for a in o.takes}

    @classmethod
    def check(cls, node, diags, ir=None) -> bool:
        p = node.p
        if p.library not in LIBRARIES:
            diags.error(node.value_pos.get("library", node.pos), f"{node.ypath}.library",
                        f"no op library '{p.library}'", did_you_mean(p.library, LIBRARIES) or
                        f"the libraries: {', '.join(sorted(LIBRARIES))} (plug-ins add more with @op)")
            return False
        owner = node.scope.frame.owner
        if owner is not None:
            diags.error(node.pos, node.ypath, f"program '{node.name}' cannot run inside {owner.kind} '{owner.name}'",
                        "a program runs once per example: declare it at the top level of the model")
            return False
        table = node.inputs.get("table", [])
        columns = 0
        tabular = [o.name for o in cls.ops_of(node) if set(o.takes) & TABULAR]
        if p.table is None and tabular:
            diags.error(node.pos, node.ypath, f"program '{node.name}' needs 'table:': ops of library '{p.library}' "
                        f"read a table ({', '.join(tabular)})", "name the table input, e.g. table: table")
            return False
        if p.table is not None:
            if not table:
                return False  # reported where it is written
            t = table[0].type
            if t.time is None or t.index or t.layout is not None:
                diags.error(table[0].ref.pos, table[0].label, f"'{table[0].ref}' is {t}, but a table is a sequence of "
                            "rows with one number per column", "declare the table input as {size: COLUMNS}: "
                            "(B, rows, columns)")
                return False
            columns = t.size
        n = len(cls.ops_of(node))
        node.types.update(prev_op=VType(n), prev_column=VType(columns), scalar=VType(1))
        if columns:
            node.types.update(rows=VType(1, t.time), lookup=VType(columns, t.time))
        return True

    @classmethod
    def after_body(cls, node, diags, ir=None) -> None:
        p, takes = node.p, cls.takes(node)
        n, columns = len(cls.ops_of(node)), node.types["prev_column"].size
        names = ", ".join(o.name for o in cls.ops_of(node))
        wanted = {"ops": (n, f"one score per op of '{p.library}': {names}"),
                  "columns": (columns, "one score per column of the table"),
                  "pivot": (1, "the number comparisons compare with")}
        for param, (size, what) in wanted.items():
            needed = param == "ops" or (param == "columns" and "column" in takes) or (param == "pivot" and "pivot" in takes)
            label, pos = f"{node.ypath}.{param}", node.value_pos.get(param, node.pos)
            if getattr(p, param) is None:
                if needed:
                    diags.error(node.pos, node.ypath, f"program '{node.name}' needs '{param}:'",
                                f"name the body node giving {what}")
                continue
            if not needed:
                diags.error(pos, label, f"no op of library '{p.library}' takes a {param[:-1] if param != 'pivot' else param}",
                            f"remove '{param}:'")
                continue
            check_body_vector(node, param, size, f"{size} number{'s' * (size != 1)} per example ({what})", diags,
                              "add a node to the body that computes it", f"give '{getattr(p, param)}' size {size}")

    @classmethod
    def emit(cls, node, gen) -> None:
        gen.emit_program(node, cls.ops_of(node))

"""Op libraries of the Neural Programmer (Neelakantan et al. 2015): differentiable operations over typed values.

A ``program`` scope (scopes/program.py) runs every op of its library at every step and mixes their results by
the controller's soft choice: the results of the ops that give the same type are summed, each weighted by its
op's probability (a row selection is never mixed with a scalar). An op declares what it takes and what it gives:

=============  ===========  ==============================================================================
argument       shape        what it is
=============  ===========  ==============================================================================
``table``      (B, R, C)    the table: R rows (a padded row is never selected) × C numeric columns
``valid``      (B, R)       1 for the example's rows, 0 for padding
``column``     (B, C)       the step's column distribution (soft, or one-hot under hard selection)
``pivot``      (B, 1)       the step's pivot (the number a comparison compares with)
``spread``     (B, 1, 1)    the standard deviation of the example's valid entries (made once per batch)
``rows``       (B, R)       the row selection of the previous step (all valid rows before the first)
``rows_2``     (B, R)       the row selection two steps back
``scalar``     (B, 1)       the scalar answer of the previous step (0 before the first)
``scalar_2``   (B, 1)       two steps back
``scalar_3``   (B, 1)       three steps back
=============  ===========  ==============================================================================

It gives one of ``scalar`` (B, 1), ``rows`` (B, R) or ``lookup`` (B, R, C) (a soft selection of cells: the
answer of a question that asks to print table entries). Users add ops with :func:`op` in a plug-in module
(imported by ``--import module`` or an entry point, never by a name in a spec)::

    from attngraph import op

    @op("max", library="my_tables", takes=("table", "column", "rows"), gives="scalar",
        doc="the largest entry of the chosen column among the selected rows")
    def column_max(table, column, rows):
        picked = (table * column.unsqueeze(1)).sum(-1)              # (B, R): the chosen column
        return picked.masked_fill(rows < 0.5, float("-inf")).amax(1, keepdim=True).clamp_min(0.0)

An op added to a built-in library changes its op count (the ``ops:`` node's size) and its order, so a plug-in
normally registers its own library (``library: my_tables``). ``attngraph list NAME`` shows a library's ops.

Two libraries are built in: ``neelakantan`` (the paper's table ops, §2 and Table 1) and ``arithmetic`` (the
expression calculator of the Distill article "Attention and Augmented Recurrent Neural Networks", 2016).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

ARGS = ("table", "valid", "column", "pivot", "spread", "rows", "rows_2", "scalar", "scalar_2", "scalar_3")
GIVES = ("scalar", "rows", "lookup")


@dataclass(frozen=True)
class Op:
    name: str
    library: str
    fn: Callable[..., torch.Tensor]
    takes: tuple[str, ...]
    gives: str
    doc: str

    def __call__(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(*(values[a] for a in self.takes))


LIBRARIES: dict[str, dict[str, Op]] = {}


def op(name: str, library: str, takes: tuple[str, ...], gives: str, doc: str = "") -> Callable[[Callable], Callable]:
    """Register a function as op ``name`` of ``library`` (created on first use). ``takes`` names its arguments,
    in the order the function receives them, from :data:`ARGS`; ``gives`` is one of :data:`GIVES`."""
    takes = tuple(takes)
    bad = [a for a in takes if a not in ARGS]
    if bad:
        raise ValueError(f"op '{name}': unknown argument{'s' * (len(bad) > 1)} {', '.join(map(repr, bad))}; "
                         f"an op takes some of {', '.join(ARGS)}")
    if gives not in GIVES:
        raise ValueError(f"op '{name}': gives {gives!r}, but an op gives one of {', '.join(GIVES)}")
    if not name.isidentifier():
        raise ValueError(f"op name {name!r} must be an identifier")

    def register(fn: Callable) -> Callable:
        n_params = len(inspect.signature(fn).parameters)
        if n_params != len(takes):
            raise ValueError(f"op '{name}' takes {len(takes)} argument{'s' * (len(takes) != 1)} ({', '.join(takes)}) "
                             f"but its function has {n_params} parameter{'s' * (n_params != 1)}")
        ops = LIBRARIES.setdefault(library, {})
        if name in ops and ops[name].fn is not fn:
            raise ValueError(f"op '{name}' is registered twice in library '{library}'")
        ops[name] = Op(name, library, fn, takes, gives, doc or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return register


# ------------------------------------------------------------------------------------ comparisons
def table_spread(table: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1): the sample standard deviation of each example's entries in its valid rows (at least 1e-3), the
    scale of the comparisons' gradient; the table does not change within a program, so it is made once."""
    w = valid.detach().unsqueeze(-1).expand_as(table)  # (B, R, C)
    n = w.sum((1, 2)).clamp_min(2.0)
    mean = (table.detach() * w).sum((1, 2)) / n
    var = ((table.detach() - mean.view(-1, 1, 1)) ** 2 * w).sum((1, 2)) / (n - 1)
    return var.sqrt().clamp_min(1e-3).view(-1, 1, 1)


def _compare(table: torch.Tensor, spread: torch.Tensor, column: torch.Tensor, pivot: torch.Tensor,
             sign: float) -> torch.Tensor:
    """Σ_c column_c · [sign · (table[:, :, c] − pivot) > 0] per row (B, R). The comparison is exact in the
    forward pass; its gradient (to the pivot and the table) is that of the surrogate σ(sign · (table − pivot) / s),
    s the ``spread`` of the example's entries: a straight-through estimator, so that a pivot
    chosen softly (a pointer into the question) learns which number to compare with. The paper's comparison has
    no gradient to the pivot; with one number per question it needs none."""
    diff = sign * (table - pivot.unsqueeze(-1))  # (B, R, C)
    soft = torch.sigmoid(diff / spread)
    chosen = (diff > 0).to(table.dtype) + (soft - soft.detach())
    return (chosen * column.unsqueeze(1)).sum(-1)


def _column_of(table: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    return (table * column.unsqueeze(1)).sum(-1)  # (B, R): the soft choice of column


# ------------------------------------------------------------------------------------ neelakantan
_N = "neelakantan"


@op("sum", _N, takes=("table", "column", "rows"), gives="scalar")
def _sum(table, column, rows):
    """sum of the chosen column over the selected rows"""
    return (_column_of(table, column) * rows).sum(1, keepdim=True)


@op("count", _N, takes=("rows",), gives="scalar")
def _count(rows):
    """number of selected rows"""
    return rows.sum(1, keepdim=True)


@op("difference", _N, takes=("scalar_3", "scalar"), gives="scalar")
def _difference(scalar_3, scalar):
    """the scalar three steps back minus the last one (the paper's s_{t−3} − s_{t−1})"""
    return scalar_3 - scalar


@op("greater", _N, takes=("table", "spread", "column", "pivot"), gives="rows")
def _greater(table, spread, column, pivot):
    """the rows whose entry in the chosen column is greater than the pivot"""
    return _compare(table, spread, column, pivot, 1.0)


@op("lesser", _N, takes=("table", "spread", "column", "pivot"), gives="rows")
def _lesser(table, spread, column, pivot):
    """the rows whose entry in the chosen column is less than the pivot"""
    return _compare(table, spread, column, pivot, -1.0)


@op("and", _N, takes=("rows_2", "rows"), gives="rows")
def _and(rows_2, rows):
    """the rows selected at both of the last two steps (min)"""
    return torch.minimum(rows_2, rows)


@op("or", _N, takes=("rows_2", "rows"), gives="rows")
def _or(rows_2, rows):
    """the rows selected at either of the last two steps (max)"""
    return torch.maximum(rows_2, rows)


@op("print", _N, takes=("rows", "column"), gives="lookup")
def _print(rows, column):
    """the entries of the chosen column in the selected rows (the paper's Assign: the lookup answer)"""
    return rows.unsqueeze(-1) * column.unsqueeze(1)


@op("reset", _N, takes=("valid",), gives="rows")
def _reset(valid):
    """every row selected"""
    return valid


# ------------------------------------------------------------------------------------ arithmetic
_A = "arithmetic"


@op("number", _A, takes=("pivot",), gives="scalar")
def _number(pivot):
    """the pivot itself (start a calculation)"""
    return pivot


@op("add", _A, takes=("scalar", "pivot"), gives="scalar")
def _add(scalar, pivot):
    """the last result plus the pivot"""
    return scalar + pivot


@op("subtract", _A, takes=("scalar", "pivot"), gives="scalar")
def _subtract(scalar, pivot):
    """the last result minus the pivot"""
    return scalar - pivot


@op("multiply", _A, takes=("scalar", "pivot"), gives="scalar")
def _multiply(scalar, pivot):
    """the last result times the pivot"""
    return scalar * pivot


def library_ops(library: str) -> list[Op]:
    """The ops a program runs, in the library's order (the order of the ``ops:`` node's scores)."""
    return list(LIBRARIES[library].values())


def program_step(ops: list[Op], op_p: torch.Tensor, values: dict[str, torch.Tensor],
                 rows_like: torch.Tensor | None, lookup_like: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One step of a program: every op runs on ``values``; the results of each type are mixed by ``op_p``
    (B, n_ops). Returns the step's scalar (B, 1), row selection (B, R) and lookup (B, R, C) — a type no op
    of the library gives is zeros (None when the program has no table). Selections never cover padded rows."""
    mixed: dict[str, torch.Tensor] = {}
    for i, o in enumerate(ops):
        w = op_p[:, i:i + 1]  # (B, 1)
        part = w * o(values) if o.gives != "lookup" else w.unsqueeze(-1) * o(values)
        mixed[o.gives] = part if o.gives not in mixed else mixed[o.gives] + part
    scalar = mixed["scalar"] if "scalar" in mixed else torch.zeros_like(values["scalar"])
    if rows_like is None:
        return scalar, None, None
    valid = values["valid"]
    rows = mixed["rows"] * valid if "rows" in mixed else torch.zeros_like(rows_like)
    lookup = mixed["lookup"] * valid.unsqueeze(-1) if "lookup" in mixed else torch.zeros_like(lookup_like)
    return scalar, rows, lookup

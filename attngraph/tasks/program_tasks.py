"""Synthetic tasks for the Neural Programmer (Neelakantan et al. 2015, "Neural Programmer: Inducing Latent
Programs with Gradient Descent", arXiv 1511.06807): ``table_qa``, questions about a table of integers, and
``arithmetic``, the expression calculator of the Distill article "Attention and Augmented Recurrent Neural
Networks" (Olah & Carter 2016). A question is a sequence of words; each number in it is the one word
``<num>``, its value given beside it on the question's own time axis.

A batch holds (every name is a parameter; the defaults are shown)
  - ``question`` (B, S) int64 word ids (the vocabulary below), padded with 0 (``<pad>``); ``question.mask``
    (B, S) bool marks the words. S is the batch's longest question;
  - ``qnum`` (B, S, 1) float32 (parameter ``numbers``): the number's value at each ``<num>`` position, 0.0 at
    every other position (padding included). It shares the question's time axis: its static type is
    ``VType(1, "question")``, the axis named after the question input;
  - ``table`` (B, R, C) float32 (``table_qa`` only): rows × columns of integers; rows beyond an example's
    own count are all 0. ``table.mask`` (B, R) bool marks the example's rows. R is the batch's largest count;
    static type ``VType(C, "table")``;
  - targets: ``answer`` (B, 1) float32, the scalar answer (0.0 for a question whose answer is a lookup, a
    "print" question), static type ``VType(1, None)``; ``lookup`` (B, R, C) float32 (``table_qa`` only), 1.0
    at the cells a "print" question prints and 0.0 elsewhere (all 0 for a scalar question), static type
    ``VType(C, "lookup")``, and ``lookup.mask`` (B, R) bool, the table's row mask.

Nothing else is in a batch: the template of an example is read back from its question's words
(:meth:`TableQA.template`), the reference program from its words and numbers (``program()``).

``table_qa``
  Each example draws its row count uniformly from ``rows`` = [lo, hi] (1 ≤ lo ≤ hi ≤ 30), its cells and its
  pivots uniformly from the integers 0..``max_value``, and its template uniformly from ``questions``. Columns
  are named A, B, C, D, E (``columns`` of them, 1 to 5). In a template c, d, e are columns: distinct when
  the table has enough of them (c, d, e are the first of a random permutation of the columns; with two
  columns e is either of them, drawn uniformly; with one column c = d = e = A); p and q are numbers. The
  comparisons are strict (> and <). The templates, each with its reference program (the ops of the
  ``neelakantan`` library, one per step, :mod:`attngraph.components.ops`)::

    sum             sum of c                                            sum(c)
    count           count rows                                          count
    count_greater   count rows where c greater than p                   greater(c, p), count
    count_lesser    count rows where c lesser than p                    lesser(c, p), count
    sum_greater     sum of d where c greater than p                     greater(c, p), sum(d)
    sum_lesser      sum of d where c lesser than p                      lesser(c, p), sum(d)
    print_greater   print d where c greater than p                      greater(c, p), print(d)
    print_lesser    print d where c lesser than p                       lesser(c, p), print(d)
    count_between   count rows where c greater than p and d lesser      greater(c, p), lesser(d, q), and, count
                    than q
    sum_between     sum of e where c greater than p and d lesser than   greater(c, p), lesser(d, q), and, sum(e)
                    q
    difference      difference between sum of c and sum of d            sum(c), reset, sum(d), difference
                    (one column:) difference between sum of c greater   greater(c, p), sum(c), lesser(c, q),
                    than p and sum of c lesser than q                   sum(c), difference

  "sum" sums the column over the selected rows; "count" counts them; "print d" answers with the cells of
  column d in the selected rows (the lookup answer); "difference" is the scalar three steps back minus the
  last one (the paper's s_{t−3} − s_{t−1}). The multi-column difference is sum(c) − sum(d) over all rows;
  the one-column one is the sum of the cells greater than p minus the sum of the cells lesser than q.
  The answers are computed by running the reference program exactly (:func:`run_program`, the registers of
  the ``program`` scope: each step replaces the scalar, the row selection and the lookup; the selection
  starts as every row), so the program is a program that answers.

  Numbers: p and q are uniform in 0..max_value, independently, except in ``count_between`` and
  ``sum_between`` with one column, where "A greater than p and A lesser than q" must be able to hold: p is
  uniform in 0..max_value − 2, then q uniform in p + 2..max_value (so ``max_value`` ≥ 2 there). The numbers
  appear in the question in the order written (p before q).

  ``questions`` lists the templates drawn from, uniformly (default: all eleven, each possible at every
  column count). Besides template names it takes two group names: ``single_number``, the templates whose
  question holds at most one number (:data:`SINGLE_NUMBER`: the first eight and, with two columns or more,
  ``difference``), and ``two_numbers``, those with two (:data:`TWO_NUMBERS`: ``count_between``,
  ``sum_between``, and with one column ``difference``). A template named twice (also through a group) is
  drawn as often as one named once.

  Metrics (``outputs[answer]`` (B, 1), ``outputs[lookup]`` (B, R, C), a probability per cell — the model's
  lookup is already in [0, 1], no sigmoid is applied; both are read from the outputs trained against those
  targets):
    - ``accuracy``: the fraction of examples answered right. A scalar question is right when
      |prediction − answer| < 0.5 (the lookup output is not read); a print question when every cell of the
      example's rows, its prediction rounded at 0.5 (≥ 0.5 is 1), equals the target (padded rows are not
      read, nor is the scalar output);
    - ``scalar_accuracy`` and ``lookup_accuracy``: the same over the scalar questions, over the print
      questions. A batch without a question of that kind reports ``accuracy`` instead (never NaN).

``arithmetic``
  An expression of k numbers (k uniform in ``numbers_per_question`` = [lo, hi], default [2, 4]), each uniform
  in 0..``max_value`` (default 9), joined by operators drawn uniformly from ``operators`` (a subset of +, −, ×,
  default all three), written ``<num> plus <num> times <num>``. It is **evaluated left to right**, as a
  calculator applies each operation as it comes, without precedence: "3 + 4 * 2" is (3 + 4) · 2 = 14. The
  answer is ``answer`` (B, 1); the reference program (the ``arithmetic`` library) is number(x₁), then
  add / subtract / multiply(xᵢ) per operator. Metrics: ``accuracy`` (|prediction − answer| < 0.5) and
  ``mean_abs_error`` (lower is better).

Both tasks refuse parameters whose answers can exceed 2^24 in magnitude (float32 holds every integer up to
there exactly, beyond it the 0.5 tolerance is meaningless).

Worked example (``table_qa``, columns: 3; the tests check it)::

    table      A   B   C        table.mask [T, T, T]
      row 1   12  40   7
      row 2   55   3  81
      row 3   30  99  20

    count rows where A greater than 20              -> answer 2     greater(A, 20), count
    sum of C where A greater than 20 and B lesser   -> answer 81    greater(A, 20), lesser(B, 50), and, sum(C)
      than 50
    difference between sum of A and sum of B        -> answer -45   sum(A), reset, sum(B), difference   (97 − 142)
    print B where A greater than 20                 -> answer 0, lookup 1 at (row 2, B) and (row 3, B)

    question "count rows where A greater than 20" (7 words):
      question [4, 5, 6, 14, 7, 9, 1]        (count rows where A greater than <num>)
      qnum     [0, 0, 0, 0, 0, 0, 20]

    ``arithmetic``: "3 plus 4 times 2" -> question [1, 2, 1, 4, 1], qnum [3, 0, 4, 0, 2], answer 14,
      program number(3), add(4), multiply(2)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from ..components.base import VType
from ..spec.params import Int, IntRange, NameList, Param, Str
from .base import Task, TaskError, task

EXACT = 2 ** 24  # float32 holds every integer of magnitude up to 2^24 exactly
MAX_ROWS = 30
COLUMN_NAMES = ("A", "B", "C", "D", "E")
NUM = "<num>"

# id -> word; 0 is <pad>, 1 is <num> (a number, its value in the numbers input)
VOCAB = ("<pad>", NUM, "sum", "of", "count", "rows", "where", "greater", "lesser", "than", "print", "and",
         "difference", "between", *COLUMN_NAMES)
ARITHMETIC_VOCAB = ("<pad>", NUM, "plus", "minus", "times")

# template -> (question words, reference program). Slots: c, d, e columns; p, q numbers. A program step is
# (op,) or (op, column slot) or (op, column slot, number slot).
Step = tuple[str, ...]
TEMPLATES: dict[str, tuple[str, tuple[Step, ...]]] = {
    "sum": ("sum of c", (("sum", "c"),)),
    "count": ("count rows", (("count",),)),
    "count_greater": ("count rows where c greater than p", (("greater", "c", "p"), ("count",))),
    "count_lesser": ("count rows where c lesser than p", (("lesser", "c", "p"), ("count",))),
    "sum_greater": ("sum of d where c greater than p", (("greater", "c", "p"), ("sum", "d"))),
    "sum_lesser": ("sum of d where c lesser than p", (("lesser", "c", "p"), ("sum", "d"))),
    "print_greater": ("print d where c greater than p", (("greater", "c", "p"), ("print", "d"))),
    "print_lesser": ("print d where c lesser than p", (("lesser", "c", "p"), ("print", "d"))),
    "count_between": ("count rows where c greater than p and d lesser than q",
                      (("greater", "c", "p"), ("lesser", "d", "q"), ("and",), ("count",))),
    "sum_between": ("sum of e where c greater than p and d lesser than q",
                    (("greater", "c", "p"), ("lesser", "d", "q"), ("and",), ("sum", "e"))),
    "difference": ("difference between sum of c and sum of d", (("sum", "c"), ("reset",), ("sum", "d"), ("difference",))),
}
# the one-column form of "difference" (one column cannot give two different columns to subtract)
DIFFERENCE_ONE_COLUMN = ("difference between sum of c greater than p and sum of c lesser than q",
                         (("greater", "c", "p"), ("sum", "c"), ("lesser", "c", "q"), ("sum", "c"), ("difference",)))
SINGLE_NUMBER = ("sum", "count", "count_greater", "count_lesser", "sum_greater", "sum_lesser", "print_greater",
                 "print_lesser", "difference")  # at most one number in the question (difference: with columns ≥ 2)
TWO_NUMBERS = ("count_between", "sum_between")  # two numbers (and difference with one column)
GROUPS = ("single_number", "two_numbers")
OPERATORS = {"+": ("plus", "add"), "-": ("minus", "subtract"), "*": ("times", "multiply")}  # symbol -> (word, op)


def _pair(value) -> tuple[int, int]:
    """An IntRange value ([lo, hi], or one integer n meaning [n, n] when set from Python)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    lo, hi = value
    return int(lo), int(hi)


def _names(task_name: str, value, options: Sequence[str], what: str) -> list[str]:
    """A list-of-names parameter set from Python: one name or a list, each known."""
    names = [value] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in options]
    if not names or unknown:
        raise TaskError(f"task '{task_name}': unknown {what}{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(repr(n) for n in unknown) or '(none given)'}; known: {', '.join(options)}")
    return names


def _distinct_names(task_name: str, p, keys: Sequence[str]) -> None:
    names = [getattr(p, k) for k in keys]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise TaskError(f"task '{task_name}': {keys[names.index(n)]} and {keys[i]} name the same batch key '{n}'; "
                            "every input and target needs its own name")


def _number_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _output(p, target: str) -> str:
    """The output trained against ``target`` (the spec's output name), else the target's own name."""
    return getattr(p, "outputs", {}).get(target, target)


def _encode_questions(tokens: list[list], vocab: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Questions as words, numbers as Python numbers, to (ids (B, S), mask (B, S), numbers (B, S, 1))."""
    ids_of = {w: i for i, w in enumerate(vocab)}
    steps = max(len(t) for t in tokens)
    ids = torch.zeros(len(tokens), steps, dtype=torch.long)
    mask = torch.zeros(len(tokens), steps, dtype=torch.bool)
    nums = torch.zeros(len(tokens), steps, 1)
    for i, words in enumerate(tokens):
        for j, w in enumerate(words):
            if isinstance(w, str):
                ids[i, j] = ids_of[w]
            else:
                ids[i, j] = ids_of[NUM]
                nums[i, j, 0] = float(w)
        mask[i, :len(words)] = True
    return ids, mask, nums


def _decode_words(ids: torch.Tensor, mask: torch.Tensor, nums: torch.Tensor, vocab: Sequence[str]) -> list[str]:
    """One example's question as text, each ``<num>`` replaced by its value."""
    out = []
    for k, (i, valid) in enumerate(zip(ids.tolist(), mask.tolist())):
        if not valid:
            continue
        out.append(_number_text(float(nums[k, 0])) if vocab[i] == NUM else vocab[i])
    return out


# ---- table_qa: templates, programs, the exact interpreter ------------------------------------------------


def step_text(step: Sequence) -> str:
    """A program step as text: ``count``, ``sum(B)``, ``greater(A, 35)`` (its column given as an index)."""
    args = [COLUMN_NAMES[a] if i == 0 else _number_text(a) for i, a in enumerate(step[1:])]
    return f"{step[0]}({', '.join(args)})" if args else step[0]


def _template_words(template: str, one_column: bool) -> tuple[str, tuple[Step, ...]]:
    return DIFFERENCE_ONE_COLUMN if template == "difference" and one_column else TEMPLATES[template]


def number_count(template: str, columns: int) -> int:
    """How many numbers the template's question holds at this column count."""
    return sum(w in ("p", "q") for w in _template_words(template, columns == 1)[0].split())


def parse_question(words: Sequence[str]) -> tuple[str, dict[str, int | float]]:
    """The template of a question written as words (numbers as digits; a bare ``<num>`` reads as 0) and its
    bindings: {"c": column index, ..., "p": number, ...}; the one-column ``difference`` binds p and q. Raises
    ValueError when no template writes it."""
    words = list(words)
    forms = [(name, text) for name, (text, _) in TEMPLATES.items()] + [("difference", DIFFERENCE_ONE_COLUMN[0])]
    for name, text in forms:
        slots = text.split()
        if len(slots) != len(words):
            continue
        bound: dict[str, int | float] = {}
        for slot, word in zip(slots, words):
            if slot in ("c", "d", "e"):
                value = COLUMN_NAMES.index(word) if word in COLUMN_NAMES else None
            elif slot in ("p", "q"):
                value = _parse_number(word)
            elif slot == word:
                continue
            else:
                break
            if value is None or bound.setdefault(slot, value) != value:
                break
        else:
            return name, bound
    raise ValueError(f"not a table_qa question: {' '.join(words)!r}")


def _parse_number(word: str) -> float | None:
    if word == NUM:
        return 0.0
    try:
        return float(word)
    except ValueError:
        return None


def reference_program(template: str, bound: dict[str, int | float]) -> list[tuple]:
    """The template's program with its slots filled from ``bound`` (as :func:`parse_question` gives them):
    [("greater", 0, 35.0), ("count",)]. A ``difference`` that binds p is the one-column form."""
    one_column = template == "difference" and "p" in bound
    return [(step[0], *(bound[a] for a in step[1:])) for step in _template_words(template, one_column)[1]]


def run_program(program: Sequence[Sequence], table: Sequence[Sequence[float]], columns: int
                ) -> tuple[float, list[list[float]]]:
    """Run a program of ``neelakantan`` ops exactly on one table (its rows, no padding) as the ``program``
    scope does with hard choices: each step replaces the scalar, the row selection and the lookup (the kinds it
    does not give become 0); before the first step every row is selected and the scalars are 0. Returns the last
    step's scalar and lookup (rows × columns of 0/1)."""
    n = len(table)
    every = [1.0] * n
    rows, rows_2 = every, every
    scalars = [0.0, 0.0, 0.0]  # the last three steps' scalars, newest last
    lookup = [[0.0] * columns for _ in range(n)]
    for step in program:
        op, args = step[0], step[1:]
        scalar, new_rows, lookup = 0.0, [0.0] * n, [[0.0] * columns for _ in range(n)]
        if op in ("greater", "lesser"):
            col, pivot = args
            new_rows = [float(r[col] > pivot if op == "greater" else r[col] < pivot) for r in table]
        elif op == "and":
            new_rows = [min(a, b) for a, b in zip(rows_2, rows)]
        elif op == "or":
            new_rows = [max(a, b) for a, b in zip(rows_2, rows)]
        elif op == "reset":
            new_rows = list(every)
        elif op == "count":
            scalar = sum(rows)
        elif op == "sum":
            scalar = sum(r[args[0]] * s for r, s in zip(table, rows))
        elif op == "difference":
            scalar = scalars[0] - scalars[2]
        elif op == "print":
            lookup = [[s * (j == args[0]) for j in range(columns)] for s in rows]
        else:
            raise ValueError(f"unknown op '{op}'")
        rows_2, rows = rows, new_rows
        scalars = scalars[1:] + [float(scalar)]
    return scalars[-1], lookup


# ---- parameters ----------------------------------------------------------------------------------------


def _name_params(**defaults: tuple[str, str]) -> dict[str, Param]:
    return {k: Param(Str(), default, doc) for k, (default, doc) in defaults.items()}


_QUESTION = ("question", "the question input: word ids (B, S), 0 = <pad>")
_NUMBERS = ("qnum", "the numbers input: (B, S, 1), each <num>'s value on the question's time axis, 0 elsewhere")
_ANSWER = ("answer", "the scalar answer target (B, 1)")


class _QuestionTask(Task):
    """Shared parts: the question's vocabulary, its words, number inputs."""

    vocabulary: ClassVar[tuple[str, ...]] = ()

    def vocab(self) -> dict[str, list[str]]:
        """id -> word for the question input (id 0 is <pad>, 1 is <num>)."""
        return {self.p.question: list(self.vocabulary)}

    def words(self, batch: dict[str, torch.Tensor], example: int = 0) -> list[str]:
        """The example's question as words, each ``<num>`` replaced by its value: ["count", "rows", "where",
        "A", "greater", "than", "35"]."""
        p = self.p
        return _decode_words(batch[p.question][example], batch[f"{p.question}.mask"][example],
                             batch[p.numbers][example], self.vocabulary)


@task("table_qa", params={
    "rows": Param(IntRange(min=1), [5, 10], f"[min, max] rows of a table, drawn per example (max ≤ {MAX_ROWS})"),
    "columns": Param(Int(min=1, max=len(COLUMN_NAMES)), 1, "columns of every table, named A, B, C, D, E"),
    "max_value": Param(Int(min=1), 99, "cells and pivots are integers drawn uniformly in [0, max_value]"),
    "questions": Param(NameList((*TEMPLATES, *GROUPS), "template"), list(TEMPLATES),
                       "the question templates drawn from, uniformly (or the groups single_number, two_numbers)"),
    **_name_params(question=_QUESTION, numbers=_NUMBERS,
                   table=("table", "the table input (B, R, C), table.mask (B, R) marks the rows"),
                   answer=_ANSWER,
                   lookup=("lookup", "the lookup target (B, R, C): 1 at the cells a print question prints")),
}, metrics=("loss", "accuracy", "scalar_accuracy", "lookup_accuracy"),
    doc="Neural Programmer table questions (Neelakantan 2015): sum, count, compare and print over a table of integers.")
class TableQA(_QuestionTask):
    """Questions about a table of integers from the Neural Programmer's templates (see the module docstring)."""

    vocabulary = VOCAB

    def __init__(self, p):
        super().__init__(p)
        name = "table_qa"
        lo, hi = self.rows = _pair(p.rows)
        if not 1 <= lo <= hi <= MAX_ROWS:
            raise TaskError(f"task '{name}': rows [{lo}, {hi}] must be [min, max] with 1 ≤ min ≤ max ≤ {MAX_ROWS}")
        if not 1 <= p.columns <= len(COLUMN_NAMES):
            raise TaskError(f"task '{name}': columns must be 1 to {len(COLUMN_NAMES)} (named "
                            f"{', '.join(COLUMN_NAMES)}), got {p.columns}")
        if p.max_value < 1:
            raise TaskError(f"task '{name}': max_value must be at least 1, got {p.max_value}")
        if hi * p.max_value > EXACT:
            raise TaskError(f"task '{name}': a sum can reach {hi} · {p.max_value} = {hi * p.max_value}, beyond "
                            f"2^24 = {EXACT} (the integers float32 holds exactly); lower max_value or rows")
        chosen: list[str] = []
        for q in _names(name, p.questions, (*TEMPLATES, *GROUPS), "template"):
            if q in GROUPS:
                want = 1 if q == "single_number" else 2
                group = [t for t in TEMPLATES if (number_count(t, p.columns) <= 1) == (want == 1)]
            else:
                group = [q]
            chosen += [t for t in group if t not in chosen]
        between = [t for t in chosen if t in ("count_between", "sum_between")]
        if p.columns == 1 and between and p.max_value < 2:
            raise TaskError(f"task '{name}': template '{between[0]}' with one column asks for rows with p < A < q, "
                            f"which needs max_value ≥ 2 (got {p.max_value}); raise max_value or drop it from questions")
        self.templates = chosen
        _distinct_names(name, p, ("question", "numbers", "table", "answer", "lookup"))

    def sizes(self):
        p = self.p
        return {"inputs": {p.question: VType(len(VOCAB), p.question, index=True),
                           p.numbers: VType(1, p.question), p.table: VType(p.columns, p.table)},
                "targets": {p.answer: VType(1, None), p.lookup: VType(p.columns, p.lookup)}}

    def _bindings(self, template: str, perm: list[int], extra: int, p_raw: int, q_raw: int,
                  u: tuple[float, float]) -> dict[str, int | float]:
        cols, m = self.p.columns, self.p.max_value
        c = perm[0]
        d = perm[1] if cols >= 2 else c
        e = perm[2] if cols >= 3 else (extra if cols == 2 else c)
        bound: dict[str, int | float] = {"c": c, "d": d, "e": e, "p": p_raw, "q": q_raw}
        if cols == 1 and template in ("count_between", "sum_between"):  # p < A < q must be possible
            lo = int(u[0] * (m - 1))  # 0..m-2
            bound.update(p=lo, q=lo + 2 + int(u[1] * (m - lo - 1)))  # lo+2..m
        return bound

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        lo, hi = self.rows
        counts = torch.randint(lo, hi + 1, (batch,), generator=gen).tolist()
        cells = torch.randint(0, p.max_value + 1, (batch, max(counts), p.columns), generator=gen).tolist()
        picks = torch.randint(0, len(self.templates), (batch,), generator=gen).tolist()
        perms = torch.rand(batch, p.columns, generator=gen).argsort(dim=1).tolist()
        extras = torch.randint(0, p.columns, (batch,), generator=gen).tolist()
        pivots = torch.randint(0, p.max_value + 1, (batch, 2), generator=gen).tolist()
        uniform = torch.rand(batch, 2, generator=gen, dtype=torch.float64).tolist()
        questions, tables = [], []
        for i in range(batch):
            template = self.templates[picks[i]]
            bound = self._bindings(template, perms[i], extras[i], *pivots[i], tuple(uniform[i]))
            text, _ = _template_words(template, p.columns == 1)
            questions.append([COLUMN_NAMES[bound[w]] if w in "cde" else bound[w] if w in "pq" else w
                              for w in text.split()])
            tables.append(cells[i][:counts[i]])
        return self._encode(questions, tables)

    def batch_of(self, questions: Sequence[Sequence[str] | str], tables: Sequence[Sequence[Sequence[float]]]
                 ) -> dict[str, torch.Tensor]:
        """A batch of given questions (words with numbers as digits, or one string) about given tables (lists of
        rows, each ``columns`` numbers), answered by their reference programs: for worked examples and tests."""
        tokens = []
        for q in questions:  # _encode raises ValueError for a question no template writes
            words = q.split() if isinstance(q, str) else list(q)
            tokens.append([w if _parse_number(w) is None or w == NUM else float(w) for w in words])
        if len(tokens) != len(tables) or any(not t or any(len(r) != self.p.columns for r in t) for t in tables):
            raise ValueError(f"table_qa: one table per question, each at least one row of {self.p.columns} numbers")
        return self._encode(tokens, tables)

    def _encode(self, questions: list[list], tables: Sequence[Sequence[Sequence[float]]]) -> dict[str, torch.Tensor]:
        p = self.p
        ids, qmask, nums = _encode_questions(questions, VOCAB)
        steps = max(len(t) for t in tables)
        table = torch.zeros(len(tables), steps, p.columns)
        rmask = torch.zeros(len(tables), steps, dtype=torch.bool)
        answer = torch.zeros(len(tables), 1)
        lookup = torch.zeros(len(tables), steps, p.columns)
        for i, (words, rows) in enumerate(zip(questions, tables)):
            table[i, :len(rows)] = torch.tensor(rows, dtype=torch.float32)
            rmask[i, :len(rows)] = True
            template, bound = parse_question([w if isinstance(w, str) else _number_text(w) for w in words])
            self._check_columns(bound)
            scalar, cells = run_program(reference_program(template, bound), rows, p.columns)
            answer[i, 0] = scalar
            lookup[i, :len(rows)] = torch.tensor(cells, dtype=torch.float32)
        return {p.question: ids, f"{p.question}.mask": qmask, p.numbers: nums, p.table: table, f"{p.table}.mask": rmask,
                p.answer: answer, p.lookup: lookup, f"{p.lookup}.mask": rmask.clone()}

    def _check_columns(self, bound: dict) -> None:
        for slot in "cde":
            if slot in bound and bound[slot] >= self.p.columns:
                raise ValueError(f"table_qa: column {COLUMN_NAMES[bound[slot]]} is beyond the table's "
                                 f"{self.p.columns} column{'s' if self.p.columns > 1 else ''}")

    def template(self, batch: dict[str, torch.Tensor], example: int = 0) -> str:
        """The template the example's question was written from (read back from its words)."""
        return parse_question(self.words(batch, example))[0]

    def program(self, batch: dict[str, torch.Tensor], example: int = 0) -> list[str]:
        """The example's reference program as text, e.g. ["greater(A, 35)", "count"]."""
        template, bound = parse_question(self.words(batch, example))
        return [step_text(s) for s in reference_program(template, bound)]

    def metrics(self, outputs, batch):
        p = self.p
        printing = batch[p.question][:, 0] == VOCAB.index("print")  # (B,): the lookup questions
        pred = outputs[_output(p, p.answer)].reshape(-1).float()
        scalar_ok = (pred - batch[p.answer].reshape(-1).float()).abs() < 0.5
        cells = outputs[_output(p, p.lookup)].float() >= 0.5
        wanted = batch[p.lookup] >= 0.5
        valid = batch[f"{p.lookup}.mask"].unsqueeze(-1)
        lookup_ok = ((cells == wanted) | ~valid).flatten(1).all(dim=1)
        right = torch.where(printing, lookup_ok, scalar_ok)
        accuracy = float(right.float().mean())

        def over(kind: torch.Tensor) -> float:
            return float(right[kind].float().mean()) if bool(kind.any()) else accuracy

        return {"accuracy": accuracy, "scalar_accuracy": over(~printing), "lookup_accuracy": over(printing)}


# ---- arithmetic -----------------------------------------------------------------------------------------


def evaluate_left_to_right(numbers: Sequence[float], operators: Sequence[str]) -> float:
    """numbers[0] op[0] numbers[1] op[1] ... applied as they come (no precedence): 3 + 4 * 2 = 14."""
    value = numbers[0]
    for op, x in zip(operators, numbers[1:]):
        value = value + x if op == "+" else value - x if op == "-" else value * x
    return value


@task("arithmetic", params={
    "numbers_per_question": Param(IntRange(min=1), [2, 4], "[min, max] numbers in an expression, drawn per example"),
    "max_value": Param(Int(min=0), 9, "each number is an integer drawn uniformly in [0, max_value]"),
    "operators": Param(NameList(tuple(OPERATORS), "operator"), list(OPERATORS),
                       "the operators drawn from, uniformly (+ plus, - minus, * times)"),
    **_name_params(question=_QUESTION, numbers=_NUMBERS, answer=_ANSWER),
}, metrics=("loss", "accuracy", "mean_abs_error"), lower_is_better=("loss", "mean_abs_error"),
    doc="Neural Programmer arithmetic (Distill 2016): evaluate '3 plus 4 times 2' left to right, as a calculator.")
class Arithmetic(_QuestionTask):
    """Expressions of small integers and + − ×, evaluated left to right (see the module docstring)."""

    vocabulary = ARITHMETIC_VOCAB

    def __init__(self, p):
        super().__init__(p)
        name = "arithmetic"
        lo, hi = self.count = _pair(p.numbers_per_question)
        if not 1 <= lo <= hi:
            raise TaskError(f"task '{name}': numbers_per_question [{lo}, {hi}] must be [min, max] with 1 ≤ min ≤ max")
        if p.max_value < 0:
            raise TaskError(f"task '{name}': max_value must be at least 0, got {p.max_value}")
        self.operators = list(dict.fromkeys(_names(name, p.operators, tuple(OPERATORS), "operator")))
        bound = p.max_value  # the largest magnitude a left-to-right value can reach
        for _ in range(hi - 1):
            bound = max(bound + p.max_value, bound * p.max_value if "*" in self.operators else 0)
            if bound > EXACT:
                raise TaskError(f"task '{name}': answers can exceed 2^24 = {EXACT} in magnitude (the integers "
                                f"float32 holds exactly) with max_value {p.max_value}, up to {hi} numbers and "
                                f"operators {', '.join(self.operators)}; lower max_value or numbers_per_question")
        _distinct_names(name, p, ("question", "numbers", "answer"))

    def sizes(self):
        p = self.p
        return {"inputs": {p.question: VType(len(ARITHMETIC_VOCAB), p.question, index=True),
                           p.numbers: VType(1, p.question)},
                "targets": {p.answer: VType(1, None)}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        lo, hi = self.count
        counts = torch.randint(lo, hi + 1, (batch,), generator=gen).tolist()
        values = torch.randint(0, p.max_value + 1, (batch, hi), generator=gen).tolist()
        picks = torch.randint(0, len(self.operators), (batch, max(hi - 1, 1)), generator=gen).tolist()
        expressions = []
        for i in range(batch):
            k = counts[i]
            expressions.append((values[i][:k], [self.operators[j] for j in picks[i][:k - 1]]))
        return self.batch_of(expressions)

    def batch_of(self, expressions: Sequence[tuple[Sequence[float], Sequence[str]]]) -> dict[str, torch.Tensor]:
        """A batch of given expressions, each (numbers, operators) with one operator fewer than numbers."""
        p = self.p
        tokens, answers = [], []
        for numbers, operators in expressions:
            if len(operators) != len(numbers) - 1 or not numbers:
                raise ValueError("arithmetic: an expression needs one operator fewer than numbers")
            words: list = [numbers[0]]
            for op, x in zip(operators, numbers[1:]):
                words += [OPERATORS[op][0], x]
            tokens.append(words)
            answers.append(evaluate_left_to_right(numbers, operators))
        ids, mask, nums = _encode_questions(tokens, ARITHMETIC_VOCAB)
        return {p.question: ids, f"{p.question}.mask": mask, p.numbers: nums,
                p.answer: torch.tensor(answers, dtype=torch.float32).reshape(-1, 1)}

    def program(self, batch: dict[str, torch.Tensor], example: int = 0) -> list[str]:
        """The example's reference program as text, e.g. ["number(3)", "add(4)", "multiply(2)"]."""
        words = self.words(batch, example)
        ops = {w: o for w, o in OPERATORS.values()}
        return [f"number({words[0]})"] + [f"{ops[w]}({x})" for w, x in zip(words[1::2], words[2::2])]

    def metrics(self, outputs, batch):
        p = self.p
        err = (outputs[_output(p, p.answer)].reshape(-1).float() - batch[p.answer].reshape(-1).float()).abs()
        return {"accuracy": float((err < 0.5).float().mean()), "mean_abs_error": float(err.mean())}

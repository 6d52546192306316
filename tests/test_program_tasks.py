"""The Neural Programmer tasks (Neelakantan et al. 2015; the Distill calculator): table_qa and arithmetic."""
import math
from types import SimpleNamespace

import pytest
import torch

import attngraph
from attngraph.components.base import VType
from attngraph.tasks import TASKS
from attngraph.tasks.base import TaskError
from attngraph.tasks.program_tasks import (
    ARITHMETIC_VOCAB,
    SINGLE_NUMBER,
    TEMPLATES,
    TWO_NUMBERS,
    VOCAB,
    run_program,
)

torch.set_num_threads(1)

ALL = tuple(TEMPLATES)
LETTERS = "ABCDE"


def make(name, outputs=None, **changes):
    cls = TASKS[name]
    p = {k: v.default for k, v in cls.params.items()} | changes
    return cls(SimpleNamespace(**p, outputs=outputs or {}))


def sample(task, batch=16, seed=0):
    return task.sample(batch, torch.Generator().manual_seed(seed))


# ---- independent references: read the English, not the templates --------------------------------------


def evaluate_question(words, table):
    """The answer of a table question read as English: (scalar, lookup cells as a set of (row, column) or
    None). ``words`` has its numbers written in; ``table`` is a list of rows of ints."""
    def number(w):
        return float(w)

    def holds(row, column, relation, value):
        cell = row[LETTERS.index(column)]
        return cell > value if relation == "greater" else cell < value

    if words[:2] == ["difference", "between"]:
        rest = words[2:]
        cut = next(i for i in range(1, len(rest)) if rest[i] == "and" and rest[i + 1] == "sum")
        totals = []
        for part in (rest[:cut], rest[cut + 1:]):  # "sum of X" or "sum of X greater than N"
            assert part[:2] == ["sum", "of"]
            column = part[2]
            rows = table if len(part) == 3 else [r for r in table if holds(r, column, part[3], number(part[5]))]
            totals.append(sum(r[LETTERS.index(column)] for r in rows))
        return totals[0] - totals[1], None
    head, conditions = (words[:words.index("where")], words[words.index("where") + 1:]) if "where" in words else (words, [])
    selected = list(range(len(table)))
    while conditions:  # "X greater|lesser than N" joined by "and"
        column, relation, than, value = conditions[:4]
        assert than == "than" and relation in ("greater", "lesser")
        selected = [i for i in selected if holds(table[i], column, relation, number(value))]
        conditions = conditions[5:] if len(conditions) > 4 and conditions[4] == "and" else conditions[4:]
    if head == ["count", "rows"]:
        return len(selected), None
    if head[:2] == ["sum", "of"] and len(head) == 3:
        return sum(table[i][LETTERS.index(head[2])] for i in selected), None
    assert head[0] == "print" and len(head) == 2, head
    return 0, {(i, LETTERS.index(head[1])) for i in selected}


def examples(task, batch):
    """Per example: its words, its table (rows of ints, padding dropped), answer, printed cells."""
    out = []
    for i in range(batch["question"].shape[0]):
        n = int(batch["table.mask"][i].sum())
        table = [[int(v) for v in row] for row in batch["table"][i, :n].tolist()]
        cells = {(r, c) for r, c in (batch["lookup"][i] > 0.5).nonzero().tolist()}
        out.append((task.words(batch, i), table, float(batch["answer"][i, 0]), cells))
    return out


def left_to_right(numbers, operators):
    value = numbers[0]
    for op, x in zip(operators, numbers[1:]):
        value = {"plus": value + x, "minus": value - x, "times": value * x}[op]
    return value


# ---- registration, sizes ---------------------------------------------------------------------------------


def test_tasks_are_registered_with_their_parameters_and_metrics():
    qa, ar = TASKS["table_qa"], TASKS["arithmetic"]
    assert qa.metric_names == ("loss", "accuracy", "scalar_accuracy", "lookup_accuracy")
    assert qa.lower_is_better == {"loss"}
    assert {k: v.default for k, v in qa.params.items()} == {
        "rows": [5, 10], "columns": 1, "max_value": 99, "questions": list(ALL), "question": "question",
        "numbers": "qnum", "table": "table", "answer": "answer", "lookup": "lookup"}
    assert ar.metric_names == ("loss", "accuracy", "mean_abs_error")
    assert ar.lower_is_better == {"loss", "mean_abs_error"}
    assert {k: v.default for k, v in ar.params.items()} == {
        "numbers_per_question": [2, 4], "max_value": 9, "operators": ["+", "-", "*"], "question": "question",
        "numbers": "qnum", "answer": "answer"}
    assert len(ALL) == 11 and set(SINGLE_NUMBER) | set(TWO_NUMBERS) == set(ALL)
    assert VOCAB[0] == "<pad>" and ARITHMETIC_VOCAB[0] == "<pad>" and len(set(VOCAB)) == len(VOCAB)


def test_sizes_follow_the_names():
    qa = make("table_qa", columns=4, question="q", numbers="n", table="t", answer="a", lookup="l")
    assert qa.sizes() == {"inputs": {"q": VType(len(VOCAB), "q", index=True), "n": VType(1, "q"), "t": VType(4, "t")},
                          "targets": {"a": VType(1, None), "l": VType(4, "l")}}
    batch = sample(qa, 3)
    assert batch.keys() == {"q", "q.mask", "n", "t", "t.mask", "a", "l", "l.mask"}
    assert qa.vocab() == {"q": list(VOCAB)}
    ar = make("arithmetic", question="expr", numbers="vals", answer="result")
    assert ar.sizes() == {"inputs": {"expr": VType(5, "expr", index=True), "vals": VType(1, "expr")},
                          "targets": {"result": VType(1, None)}}
    assert sample(ar, 3).keys() == {"expr", "expr.mask", "vals", "result"}
    assert ar.vocab() == {"expr": list(ARITHMETIC_VOCAB)}


# ---- table_qa answers against the English ----------------------------------------------------------------


@pytest.mark.parametrize("columns", [1, 3, 5])
def test_answers_match_an_independent_reading_of_every_template(columns):
    for k, template in enumerate(ALL):
        task = make("table_qa", columns=columns, rows=[1, 12], questions=[template])
        batch = sample(task, 200, seed=10 * columns + k)
        nonzero = 0
        for i, (words, table, answer, cells) in enumerate(examples(task, batch)):
            assert task.template(batch, i) == template
            scalar, printed = evaluate_question(words, table)
            assert answer == scalar, (words, table)
            assert cells == (printed or set()), (words, table)
            nonzero += scalar != 0 or bool(printed)
            assert all(w in VOCAB or w.isdigit() for w in words)
            letters = [w for w in words if w in LETTERS]
            assert all(LETTERS.index(w) < columns for w in letters)
            if columns >= 3:  # c, d, e distinct when the table has them
                assert len(set(letters)) == len(letters)
            elif template != "count" and columns == 1:
                assert set(letters) == {"A"}
            numbers = [int(w) for w in words if w.isdigit()]
            assert all(0 <= v <= 99 for v in numbers)
            if columns == 1 and template in ("count_between", "sum_between"):
                assert numbers[1] >= numbers[0] + 2  # some A can lie strictly between
        assert nonzero > 20, template  # the answers are not all 0


def test_difference_and_between_on_two_columns():
    task = make("table_qa", columns=2, questions=["difference", "sum_between"], max_value=9)
    batch = sample(task, 300, seed=4)
    seen_e = set()
    for words, table, answer, cells in examples(task, batch):
        assert answer == evaluate_question(words, table)[0] and not cells
        letters = [w for w in words if w in LETTERS]
        assert letters[-2] != letters[-1] if words[0] == "difference" else letters[1] != letters[2]
        if words[0] == "sum":
            seen_e.add(letters[0] in letters[1:])
    assert seen_e == {True}  # with two columns, e is one of c and d


def test_reference_programs_compute_the_answers():
    task = make("table_qa", columns=3)
    batch = sample(task, 300, seed=5)
    for i, (_, table, answer, cells) in enumerate(examples(task, batch)):
        program = task.program(batch, i)
        steps = []
        for text in program:  # parse the text back: "greater(A, 35)", "sum(B)", "count"
            op, _, args = text.partition("(")
            args = [a.strip() for a in args.rstrip(")").split(",")] if args else []
            steps.append((op, *([LETTERS.index(args[0])] if args else []), *[float(a) for a in args[1:]]))
        scalar, lookup = run_program(steps, table, 3)
        assert scalar == answer
        assert {(r, c) for r, row in enumerate(lookup) for c, v in enumerate(row) if v} == cells


def test_worked_example_of_the_docstring():
    task = make("table_qa", columns=3)
    table = [[12, 40, 7], [55, 3, 81], [30, 99, 20]]
    questions = ["count rows where A greater than 20", "sum of C where A greater than 20 and B lesser than 50",
                 "difference between sum of A and sum of B", "print B where A greater than 20"]
    batch = task.batch_of(questions, [table] * 4)
    assert batch["answer"].tolist() == [[2.0], [81.0], [-45.0], [0.0]]
    assert batch["lookup"][:3].sum() == 0
    assert batch["lookup"][3].tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert batch["question"][0].tolist() == [4, 5, 6, 14, 7, 9, 1] + [0] * 6
    assert batch["qnum"][0, :, 0].tolist() == [0] * 6 + [20] + [0] * 6
    assert [task.program(batch, i) for i in range(4)] == [
        ["greater(A, 20)", "count"], ["greater(A, 20)", "lesser(B, 50)", "and", "sum(C)"],
        ["sum(A)", "reset", "sum(B)", "difference"], ["greater(A, 20)", "print(B)"]]
    assert task.words(batch, 1) == questions[1].split()
    one = make("table_qa")
    batch = one.batch_of(["difference between sum of A greater than 5 and sum of A lesser than 3"], [[[1], [2], [6], [9]]])
    assert batch["answer"].tolist() == [[15 - 3]]  # 6 + 9 minus 1 + 2
    assert one.program(batch) == ["greater(A, 5)", "sum(A)", "lesser(A, 3)", "sum(A)", "difference"]
    assert one.template(batch) == "difference"


def test_comparisons_are_strict():
    task = make("table_qa")
    batch = task.batch_of(["count rows where A greater than 3", "count rows where A lesser than 3",
                           "count rows where A greater than 2 and A lesser than 4"], [[[3], [3], [4], [2]]] * 3)
    assert batch["answer"].tolist() == [[1.0], [1.0], [2.0]]


# ---- seeds, layout, masks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["table_qa", "arithmetic"])
def test_same_seed_same_batch_other_seed_other_batch(name):
    task = make(name)
    a, b, c = sample(task, 32, seed=7), sample(task, 32, seed=7), sample(task, 32, seed=8)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].shape != c[k].shape or not torch.equal(a[k], c[k]) for k in a)


def test_table_qa_padding_masks_and_numbers():
    task = make("table_qa", rows=[2, 9], columns=2)
    batch = sample(task, 400, seed=1)
    q, qm, nums = batch["question"], batch["question.mask"], batch["qnum"]
    table, rm = batch["table"], batch["table.mask"]
    assert q.dtype == torch.long and nums.shape == (*q.shape, 1) and nums.dtype == torch.float32
    assert table.shape == (400, 9, 2) and batch["lookup"].shape == (400, 9, 2) and batch["answer"].shape == (400, 1)
    assert torch.equal(batch["lookup.mask"], rm)
    counts = rm.sum(1)
    assert set(counts.tolist()) == set(range(2, 10))
    assert torch.equal(rm, torch.arange(9) < counts.unsqueeze(1))  # the rows come first
    assert (table[~rm] == 0).all() and (batch["lookup"][~rm] == 0).all()
    assert (table == table.round()).all() and table.min() >= 0 and table.max() <= 99
    assert torch.equal(qm, torch.arange(q.shape[1]) < qm.sum(1, keepdim=True)) and (q[~qm] == 0).all()
    assert (q[qm] != 0).all()
    is_num = q == VOCAB.index("<num>")
    assert (nums[..., 0][~is_num] == 0).all()  # numbers only at <num>
    for i in range(400):
        words = task.words(batch, i)
        ids = q[i][qm[i]].tolist()
        assert [VOCAB[k] if VOCAB[k] != "<num>" else w for k, w in zip(ids, words)] == words
        assert [int(w) for w in words if w.isdigit()] == nums[i, is_num[i], 0].tolist()
    templates = [task.template(batch, i) for i in range(400)]
    assert set(templates) == set(ALL)  # drawn uniformly: every template occurs
    assert min(templates.count(t) for t in ALL) > 15


def test_question_groups():
    assert make("table_qa", questions=["single_number"]).templates == list(ALL[:8])
    assert make("table_qa", columns=2, questions=["single_number"]).templates == list(SINGLE_NUMBER)
    assert make("table_qa", questions=["two_numbers"]).templates == ["count_between", "sum_between", "difference"]
    assert make("table_qa", columns=3, questions=["two_numbers", "sum"]).templates == [*TWO_NUMBERS, "sum"]
    task = make("table_qa", columns=3, questions=["single_number", "sum"])
    assert task.templates == list(SINGLE_NUMBER)
    batch = sample(task, 100)
    assert (batch["question"] == VOCAB.index("<num>")).sum(1).max() == 1


# ---- metrics ---------------------------------------------------------------------------------------------


def _metric_batch():
    task = make("table_qa", columns=2, outputs={"answer": "ans", "lookup": "look"})
    batch = task.batch_of(["count rows where A greater than 5", "sum of B", "print B where A lesser than 5",
                           "print A where B greater than 0"],
                          [[[1, 2], [7, 4], [9, 0]], [[1, 2], [7, 4]], [[1, 2], [7, 4], [3, 5]], [[1, 2]]])
    return task, batch


def test_metrics_scalar_tolerance_and_lookup_cells():
    task, batch = _metric_batch()
    assert batch["answer"][:, 0].tolist() == [2, 6, 0, 0]
    look = batch["lookup"].clone() * 0.8 + 0.1  # right after rounding at 0.5
    look[3, 1:] = 0.9  # padded rows of the one-row table: never read
    ans = torch.tensor([[2.49], [5.51], [7.0], [-3.0]])  # the print questions' scalars are not read
    out = {"ans": ans, "look": look}
    assert task.metrics(out, batch) == {"accuracy": 1.0, "scalar_accuracy": 1.0, "lookup_accuracy": 1.0}
    out = {"ans": torch.tensor([[2.51], [6.0], [0.0], [0.0]]), "look": look}
    assert task.metrics(out, batch) == {"accuracy": 0.75, "scalar_accuracy": 0.5, "lookup_accuracy": 1.0}
    wrong = look.clone()
    wrong[2, 1, 0] = 0.5  # one valid cell rounds to 1 where the target is 0
    out = {"ans": ans, "look": wrong}
    assert task.metrics(out, batch) == {"accuracy": 0.75, "scalar_accuracy": 1.0, "lookup_accuracy": 0.5}
    wrong = look.clone()
    wrong[3, 0, 0] = 0.49  # the printed cell rounds to 0
    assert task.metrics({"ans": ans, "look": wrong}, batch)["lookup_accuracy"] == 0.5
    wrong = look.clone()
    wrong[0] = 0.9  # a scalar question's lookup is not read
    assert task.metrics({"ans": ans, "look": wrong}, batch)["accuracy"] == 1.0


def test_metrics_of_a_batch_without_one_kind_report_the_accuracy():
    task = make("table_qa", questions=["count"])
    batch = sample(task, 4)
    answer = batch["answer"].clone()
    answer[0] += 1
    m = task.metrics({"answer": answer, "lookup": batch["lookup"]}, batch)
    assert m == {"accuracy": 0.75, "scalar_accuracy": 0.75, "lookup_accuracy": 0.75}
    task = make("table_qa", questions=["print_greater"])
    batch = sample(task, 4)
    m = task.metrics({"answer": torch.zeros(4, 1) + 9, "lookup": batch["lookup"]}, batch)
    assert m == {"accuracy": 1.0, "scalar_accuracy": 1.0, "lookup_accuracy": 1.0}
    assert not any(math.isnan(v) for v in m.values())


# ---- arithmetic ------------------------------------------------------------------------------------------


def test_arithmetic_answers_are_a_left_to_right_fold():
    task = make("arithmetic", numbers_per_question=[1, 6])
    batch = sample(task, 500, seed=2)
    q, qm, nums = batch["question"], batch["question.mask"], batch["qnum"]
    lengths = set()
    for i in range(500):
        words = task.words(batch, i)
        numbers, operators = [int(w) for w in words[::2]], words[1::2]
        lengths.add(len(numbers))
        assert all(0 <= v <= 9 for v in numbers) and set(operators) <= {"plus", "minus", "times"}
        assert float(batch["answer"][i, 0]) == left_to_right(numbers, operators)
        ids = q[i][qm[i]].tolist()
        assert ids[::2] == [1] * len(numbers) and nums[i, qm[i], 0].tolist()[::2] == numbers
        steps = {"plus": "add", "minus": "subtract", "times": "multiply"}
        assert task.program(batch, i) == [f"number({numbers[0]})"] + [f"{steps[o]}({v})" for o, v in zip(operators, numbers[1:])]
    assert lengths == set(range(1, 7))
    assert (nums[..., 0][q != 1] == 0).all() and (q[~qm] == 0).all()
    assert torch.equal(qm, torch.arange(q.shape[1]) < qm.sum(1, keepdim=True))


def test_arithmetic_worked_example_and_operators():
    task = make("arithmetic")
    batch = task.batch_of([([3, 4, 2], ["+", "*"]), ([8, 5], ["-"])])
    assert batch["answer"].tolist() == [[14.0], [3.0]]  # (3 + 4) · 2: no precedence
    assert batch["question"].tolist() == [[1, 2, 1, 4, 1], [1, 3, 1, 0, 0]]
    assert batch["qnum"][..., 0].tolist() == [[3, 0, 4, 0, 2], [8, 0, 5, 0, 0]]
    assert task.words(batch, 0) == ["3", "plus", "4", "times", "2"]
    assert task.program(batch, 0) == ["number(3)", "add(4)", "multiply(2)"]
    only = make("arithmetic", operators=["*"], numbers_per_question=3)
    words = [only.words(sample(only, 8), i) for i in range(8)]
    assert all(w[1::2] == ["times", "times"] for w in words)


def test_arithmetic_metrics():
    task = make("arithmetic", outputs={"answer": "out"})
    batch = task.batch_of([([3, 4, 2], ["+", "*"]), ([8, 5], ["-"])])
    m = task.metrics({"out": torch.tensor([[14.49], [3.51]])}, batch)
    assert m["accuracy"] == 0.5 and m["mean_abs_error"] == pytest.approx(0.5)


# ---- invalid parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, changes, message", [
    ("table_qa", {"rows": [5, 3]}, "rows [5, 3] must be [min, max] with 1 ≤ min ≤ max ≤ 30"),
    ("table_qa", {"rows": [1, 31]}, "rows [1, 31] must be"),
    ("table_qa", {"rows": [0, 3]}, "rows [0, 3] must be"),
    ("table_qa", {"columns": 6}, "columns must be 1 to 5"),
    ("table_qa", {"questions": ["sum", "product"]}, "unknown template 'product'"),
    ("table_qa", {"questions": []}, "unknown template (none given)"),
    ("table_qa", {"questions": ["count_between"], "max_value": 1},
     "template 'count_between' with one column asks for rows with p < A < q, which needs max_value ≥ 2"),
    ("table_qa", {"max_value": 10 ** 6, "rows": [1, 17]}, "a sum can reach 17 · 1000000 = 17000000, beyond 2^24"),
    ("table_qa", {"answer": "table"}, "table and answer name the same batch key 'table'"),
    ("arithmetic", {"numbers_per_question": [4, 2]}, "numbers_per_question [4, 2] must be [min, max]"),
    ("arithmetic", {"operators": ["+", "/"]}, "unknown operator '/'"),
    ("arithmetic", {"max_value": 99, "numbers_per_question": [2, 5]}, "answers can exceed 2^24"),
    ("arithmetic", {"numbers": "question"}, "question and numbers name the same batch key"),
])
def test_invalid_parameters_raise_task_errors(name, changes, message):
    with pytest.raises(TaskError) as err:
        make(name, **changes)
    assert message in str(err.value)


def test_valid_edge_parameters():
    make("table_qa", questions=["count_between"], max_value=1, columns=2)  # two columns: any pivots do
    make("arithmetic", max_value=99, numbers_per_question=[2, 3])  # 99^3 < 2^24 (99^4 is not)
    make("arithmetic", max_value=10 ** 6, operators=["+", "-"], numbers_per_question=[2, 4])


SPEC = """attngraph: 1
inputs:
  question: {vocab: 19}
  qnum: {size: 1, time: question}
  table: {size: 3}
targets:
  answer: {size: 1, time: false}
  lookup: {size: 3}
model:
  emb: {kind: embedding, size: 8, in: question}
  enc: {kind: gru, size: 8, in: [emb, qnum]}
  last: {kind: pool, in: enc}
  scalar: {kind: linear, size: 1, in: last}
  cells: {kind: linear, size: 3, in: table}
outputs:
  ans: {from: scalar, loss: mse, target: answer}
  look: {from: cells, loss: mse, target: lookup}
task:
  kind: table_qa
  columns: 3
"""


def test_a_spec_checks_against_table_qa(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC)
    spec, report = attngraph.check(path)
    assert spec is not None, [str(d) for d in report]
    task = spec.sections["task"].train
    assert task.p.outputs == {"answer": "ans", "lookup": "look"}
    batch = sample(task, 4)
    outputs = attngraph.build(spec)(batch)
    assert set(task.metrics(outputs, batch)) == {"accuracy", "scalar_accuracy", "lookup_accuracy"}
    spec, report = attngraph.check(path, ["task.questions=[sum, sum]"])
    assert spec is None and "template 'sum' is listed twice" in str(report[0])
    spec, report = attngraph.check(path, ["task.questions=[single_number, summ]"])
    assert spec is None and "unknown value 'summ'" in str(report[0])
    spec, report = attngraph.check(path, ["task.questions=two_numbers"])
    assert spec is not None and spec.sections["task"].train.templates == list(TWO_NUMBERS)
    spec, report = attngraph.check(path, ["task.columns=2"])
    assert spec is None and "the task produces a sequence of 2 features" in str(report[0])

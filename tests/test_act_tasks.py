"""The tasks of Graves 2016 (Adaptive Computation Time), sections 3.1, 3.2 and 3.3: parity, logic and addition."""

import pytest
import torch
from test_ntm_tasks import assert_seeded, make, sample

import attngraph
from attngraph.tasks import TASKS, act_tasks
from attngraph.tasks.base import TaskError

# Table 1 of the paper, typed here apart from the module: each gate's output for (P, Q).
TABLE_1 = {
    "NOR": {(1, 1): 0, (1, 0): 0, (0, 1): 0, (0, 0): 1},
    "xq": {(1, 1): 0, (1, 0): 0, (0, 1): 1, (0, 0): 0},
    "ABJ": {(1, 1): 0, (1, 0): 1, (0, 1): 0, (0, 0): 0},
    "XOR": {(1, 1): 0, (1, 0): 1, (0, 1): 1, (0, 0): 0},
    "NAND": {(1, 1): 0, (1, 0): 1, (0, 1): 1, (0, 0): 1},
    "AND": {(1, 1): 1, (1, 0): 0, (0, 1): 0, (0, 0): 0},
    "XNOR": {(1, 1): 1, (1, 0): 0, (0, 1): 0, (0, 0): 1},
    "if/then": {(1, 1): 1, (1, 0): 0, (0, 1): 1, (0, 0): 1},
    "then/if": {(1, 1): 1, (1, 0): 1, (0, 1): 0, (0, 0): 1},
    "OR": {(1, 1): 1, (1, 0): 1, (0, 1): 1, (0, 0): 0},
}
ORDER = ["NOR", "xq", "ABJ", "XOR", "NAND", "AND", "XNOR", "if/then", "then/if", "OR"]  # the gate numbers 1..10


def reference_parity(vector):
    """Section 3.1: 1 if there is an odd number of (+1) ones."""
    return sum(1 for v in vector if v == 1) % 2


def decode_logic_step(step):
    """A 102-element input vector as (element 0, b1, [gate names]), checking the chunk layout."""
    names = []
    for k in range(10):
        chunk = step[2 + 10 * k:12 + 10 * k]
        assert all(v in (0, 1) for v in chunk) and sum(chunk) <= 1
        if sum(chunk) == 1:
            assert len(names) == k, "used chunks come first"
            names.append(ORDER[chunk.index(1)])
    return step[0], step[1], names


def reference_logic(steps):
    """Section 3.2: targets of a sequence of input vectors, b0 carried from the previous target."""
    targets, b0 = [], None
    for t, step in enumerate(steps):
        first, b1, names = decode_logic_step(step)
        if t == 0:
            b0 = first
        else:
            assert first == 0  # b0 of later vectors is implicit: always 0 in the input
        bits = [b0, b1]
        for name in names:  # b_{i+1} = T_i(b_i, b_{i-1})
            bits.append(TABLE_1[name][(bits[-1], bits[-2])])
        targets.append(bits[-1])
        b0 = bits[-1]
    return targets


def as_ints(t):
    return [[int(v) for v in row] for row in t.tolist()]


# ---- parity -----------------------------------------------------------------------------------------


def test_parity_batch_shapes_masks_and_dtypes():
    batch = sample(make("parity"), 32)
    x, y, xm, ym = batch["x"], batch["y"], batch["x.mask"], batch["y.mask"]
    assert batch.keys() == {"x", "x.mask", "y", "y.mask"}
    assert x.shape == (32, 1, 64) and x.dtype == torch.float32
    assert y.shape == (32, 1, 1) and y.dtype == torch.float32
    assert xm.shape == ym.shape == (32, 1) and xm.dtype == ym.dtype == torch.bool and xm.all() and ym.all()
    assert set(x.unique().tolist()) <= {-1.0, 0.0, 1.0} and set(y.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("placement", ["random", "prefix"])
def test_parity_targets_match_an_independent_reference(placement):
    batch = sample(make("parity", placement=placement), 256, seed=4)
    vectors = as_ints(batch["x"][:, 0])
    assert [int(v) for v in batch["y"][:, 0, 0].tolist()] == [reference_parity(v) for v in vectors]
    assert {reference_parity(v) for v in vectors} == {0, 1}
    assert any(v.count(-1) % 2 != v.count(1) % 2 for v in vectors)  # the -1 entries are not counted


@pytest.mark.parametrize("ones", [[1, 64], [3, 5], [7, 7], [49, 64]])
def test_parity_count_of_non_zero_entries_lies_in_ones(ones):
    batch = sample(make("parity", ones=ones), 400, seed=1)
    counts = (batch["x"] != 0).sum(-1).flatten().tolist()
    assert min(counts) >= ones[0] and max(counts) <= ones[1]
    if ones[1] - ones[0] <= 2:
        assert set(counts) == set(range(ones[0], ones[1] + 1))  # every count in the range occurs
    assert len(set(counts)) > 1 or ones[0] == ones[1]
    signs = batch["x"][batch["x"] != 0]
    assert 0.4 < float((signs == 1).float().mean()) < 0.6  # +1 and -1 equally likely


def test_parity_ones_defaults_to_the_whole_vector():
    task = make("parity", size=12)
    counts = (sample(task, 2000)["x"] != 0).sum(-1).flatten()
    assert set(counts.tolist()) == set(range(1, 13))


def test_parity_prefix_and_random_placement():
    prefix = sample(make("parity", size=20, placement="prefix"), 64, seed=9)
    rand = sample(make("parity", size=20, placement="random"), 64, seed=9)
    scattered = 0
    for i in range(64):
        p, r = prefix["x"][i, 0], rand["x"][i, 0]
        n = int((p != 0).sum())
        assert (p[:n] != 0).all() and (p[n:] == 0).all()  # prefix: the first n positions
        assert sorted(r.tolist()) == sorted(p.tolist())  # same seed: the same entries, moved
        positions = (r != 0).nonzero().flatten().tolist()
        scattered += positions != list(range(n))
    assert scattered > 32  # random placement is not the prefix
    assert torch.equal(prefix["y"], rand["y"])
    # every position is used by the random placement, in a batch where vectors are short
    short = sample(make("parity", size=20, ones=[1, 2]), 500, seed=2)["x"][:, 0]
    assert ((short != 0).sum(0) > 0).all()


def test_parity_extrapolation_setting_of_pondernet(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(size=96, task="{kind: parity, size: 96, ones: [1, 48], eval: {ones: [49, 96]}}"))
    spec, report = attngraph.check(path)
    assert spec is not None, [str(d) for d in report]
    section = spec.sections["task"]
    train = (section.train.sample(300, torch.Generator().manual_seed(0))["x"] != 0).sum(-1)
    evaluation = (section.eval.sample(300, torch.Generator().manual_seed(0))["x"] != 0).sum(-1)
    assert 1 <= int(train.min()) and int(train.max()) <= 48
    assert 49 <= int(evaluation.min()) and int(evaluation.max()) <= 96


def test_parity_metrics_on_hand_made_logits():
    task = make("parity", input="inp", target="out")
    task.p.outputs = {"out": "head"}
    batch = sample(task, 8, seed=3)
    perfect = batch["out"] * 20 - 10
    assert task.metrics({"head": perfect}, batch) == {"accuracy": 1.0}
    wrong = perfect.clone()
    wrong[5] *= -1
    assert task.metrics({"head": wrong}, batch) == {"accuracy": 0.875}
    assert task.metrics({"head": -perfect}, batch) == {"accuracy": 0.0}
    assert task.metrics({"head": torch.zeros_like(perfect)}, batch) == {  # logit 0 = probability 0.5 reads as 0
        "accuracy": float((batch["out"] == 0).float().mean())}


# ---- logic ------------------------------------------------------------------------------------------


def test_logic_batch_layout_shapes_and_masks():
    batch = sample(make("logic"), 64, seed=5)
    x, y, xm, ym = batch["x"], batch["y"], batch["x.mask"], batch["y.mask"]
    steps = x.shape[1]
    assert x.shape == (64, steps, 102) and y.shape == (64, steps, 1) and x.dtype == y.dtype == torch.float32
    assert xm.shape == ym.shape == (64, steps) and xm.dtype == torch.bool and torch.equal(xm, ym)
    lengths, counts = set(), set()
    for i in range(64):
        n = int(xm[i].sum())
        lengths.add(n)
        assert xm[i].tolist() == [t < n for t in range(steps)]  # valid steps first
        assert x[i, n:].abs().sum() == 0 and y[i, n:].abs().sum() == 0  # padding is zero
        for t in range(n):
            first, b1, names = decode_logic_step([int(v) for v in x[i, t].tolist()])
            assert first in (0, 1) and b1 in (0, 1) and 1 <= len(names) <= 10
            counts.add(len(names))
    assert lengths == set(range(1, 11)) and steps == max(lengths)
    assert counts == set(range(1, 11))
    used = x[:, :, 2:].reshape(64, steps, 10, 10).sum((0, 1, 2))
    assert (used > 0).all()  # every gate of Table 1 is drawn


@pytest.mark.parametrize("changes", [{}, {"length": [3, 3], "gates": [1, 2]}, {"gates": [10, 10]}])
def test_logic_targets_match_an_independent_reference(changes):
    task = make("logic", **changes)
    batch = sample(task, 200, seed=6)
    x, y, xm = batch["x"], batch["y"], batch["x.mask"]
    for i in range(200):
        n = int(xm[i].sum())
        steps = [[int(v) for v in x[i, t].tolist()] for t in range(n)]
        assert [int(v) for v in y[i, :n, 0].tolist()] == reference_logic(steps)
        if "gates" in changes:
            lo, hi = changes["gates"]
            assert all(lo <= len(decode_logic_step(s)[2]) <= hi for s in steps)
    assert set(y[xm].flatten().tolist()) == {0.0, 1.0}


def test_logic_first_b0_is_random_and_later_b0_are_zero():
    batch = sample(make("logic", length=[4, 6]), 200, seed=8)
    x = batch["x"]
    assert set(x[:, 0, 0].tolist()) == {0.0, 1.0}
    assert x[:, 1:, 0].abs().sum() == 0
    assert set(x[:, :, 1][batch["x.mask"]].tolist()) == {0.0, 1.0}


def test_logic_metrics_on_hand_made_logits():
    task = make("logic", length=[2, 5])
    batch = sample(task, 4, seed=11)
    y, ym = batch["y"], batch["y.mask"]
    total = int(ym.sum())
    perfect = y * 20 - 10
    assert task.metrics({"y": perfect}, batch) == {"accuracy": 1.0, "bit_accuracy": 1.0}
    assert (~ym).any(1).sum() >= 2  # padded sequences
    flipped = perfect.clone()
    flipped[~ym] *= -1  # every padded step wrong: not counted
    assert task.metrics({"y": flipped}, batch) == {"accuracy": 1.0, "bit_accuracy": 1.0}
    wrong = perfect.clone()
    wrong[2, int(ym[2].nonzero()[-1]), 0] *= -1  # one bit of sequence 2, at its last valid step
    assert task.metrics({"y": wrong}, batch) == {"accuracy": 0.75, "bit_accuracy": (total - 1) / total}
    wrong[2, 0, 0] *= -1  # a second bit in the same sequence
    assert task.metrics({"y": wrong}, batch) == {"accuracy": 0.75, "bit_accuracy": (total - 2) / total}
    wrong[0, 0, 0] *= -1  # and one in another sequence
    assert task.metrics({"y": wrong}, batch) == {"accuracy": 0.5, "bit_accuracy": (total - 3) / total}
    padded = (~ym).nonzero()
    assert len(padded) > 0
    for b, t in padded.tolist():  # predictions on padded steps are not counted
        wrong[b, t, 0] = 10.0
    assert task.metrics({"y": wrong}, batch) == {"accuracy": 0.5, "bit_accuracy": (total - 3) / total}


# ---- both -------------------------------------------------------------------------------------------


def test_worked_examples_of_the_docstring():
    doc = act_tasks.__doc__
    assert "size 8: x = [0, +1, 0, -1, +1, 0, +1, 0]  ->  three +1 entries (odd)  ->  y = 1" in doc
    assert act_tasks.parity_target(torch.tensor([0.0, 1, 0, -1, 1, 0, 1, 0])) == 1.0
    assert act_tasks.parity_target(torch.tensor([0.0, 1, 0, -1, 1, 0, -1, 0])) == 0.0
    assert "b2 = ABJ(b1, b0) = ABJ(0, 1) = 0;  b3 = if/then(b2, b1) = if/then(0, 0) = 1  ->  y = 1" in doc
    assert "b2 = xq(b1, b0) = xq(0, 1) = 1;  b3 = NOR(b2, b1) = NOR(1, 0) = 0  ->  y = 0" in doc
    assert "chunks ABJ, if/then (x[4] = x[19] = 1)" in doc and "chunks xq, NOR (x[3] = x[12] = 1)" in doc
    gates = torch.full((1, 2, 10), -1)
    gates[0, 0, :2] = torch.tensor([ORDER.index("ABJ"), ORDER.index("if/then")])
    gates[0, 1, :2] = torch.tensor([ORDER.index("xq"), ORDER.index("NOR")])
    x, y = act_tasks.logic_encode(torch.tensor([1]), torch.tensor([[0, 0]]), gates, torch.tensor([2]))
    assert x[0, 0].nonzero().flatten().tolist() == [0, 4, 19]
    assert x[0, 1].nonzero().flatten().tolist() == [3, 12]
    assert y[0, :, 0].tolist() == [1.0, 0.0]
    assert reference_logic(as_ints(x[0])) == [1, 0]
    assert list(act_tasks.GATES) == ORDER


@pytest.mark.parametrize("name", ["parity", "logic"])
def test_tasks_are_seeded(name):
    assert_seeded(make(name))


@pytest.mark.parametrize("name, changes, message", [
    ("parity", {"ones": [1, 65]}, "task 'parity': ones [1, 65] must lie within [1, size] = [1, 64] with "
                                  "min ≤ max: the number of non-zero entries of a vector of 64 elements"),
    ("parity", {"ones": [0, 3]}, "task 'parity': ones [0, 3] must lie within [1, size] = [1, 64] with "
                                 "min ≤ max: the number of non-zero entries of a vector of 64 elements"),
    ("parity", {"size": 8, "ones": [5, 4]}, "task 'parity': ones [5, 4] must lie within [1, size] = [1, 8] "
                                            "with min ≤ max: the number of non-zero entries of a vector of 8 elements"),
    ("logic", {"gates": [1, 11]}, "task 'logic': gates [1, 11] must lie within [1, 10] with min ≤ max: the "
                                  "number of gates in a vector of 10 gate chunks"),
    ("logic", {"gates": [0, 3]}, "task 'logic': gates [0, 3] must lie within [1, 10] with min ≤ max: the "
                                 "number of gates in a vector of 10 gate chunks"),
    ("logic", {"length": [0, 3]}, "task 'logic': length [0, 3] must be [min, max] with 1 ≤ min ≤ max: the "
                                  "number of vectors in a sequence"),
    ("logic", {"length": [4, 2]}, "task 'logic': length [4, 2] must be [min, max] with 1 ≤ min ≤ max: the "
                                  "number of vectors in a sequence"),
])
def test_task_errors(name, changes, message):
    with pytest.raises(TaskError) as err:
        make(name, **changes)
    assert str(err.value) == message
    with pytest.raises(TaskError):  # an evaluation variant or curriculum step is checked too
        make(name).with_params(**changes)


def test_parity_size_change_keeps_the_default_ones_valid():
    task = make("parity").with_params(size=10)
    assert int((sample(task, 500)["x"] != 0).sum(-1).max()) == 10
    with pytest.raises(TaskError, match=r"ones \[1, 48\] must lie within \[1, size\] = \[1, 40\]"):
        make("parity", size=96, ones=[1, 48]).with_params(size=40)


@pytest.mark.parametrize("name, metrics", [("parity", ("loss", "accuracy")),
                                           ("logic", ("loss", "accuracy", "bit_accuracy"))])
def test_tasks_are_registered_with_their_metrics(name, metrics):
    cls = TASKS[name]
    assert cls.metric_names == metrics and cls.lower_is_better == {"loss"}
    assert {"input", "target"} <= cls.params.keys() and cls.doc.startswith("Graves 2016")


SPEC = """attngraph: 1
inputs:
  x: {{size: {size}}}
targets:
  y: {{size: 1}}
model:
  seq:
    kind: loop
    over: x
    output: y
    body:
      h: {{kind: lstm, size: 8, in: x}}
      y: {{kind: linear, size: 1, in: h}}
outputs:
  y: {{from: seq, loss: bce}}
task: {task}
"""


@pytest.mark.parametrize("name, size", [("parity", 64), ("logic", 102)])
def test_spec_with_the_task_checks_runs_and_measures(tmp_path, name, size):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(size=size, task=f"{{kind: {name}}}"))
    spec, report = attngraph.check(path)
    assert spec is not None, [str(d) for d in report]
    section = spec.sections["task"]
    assert section.train.p.outputs == {"y": "y"}
    batch = section.train.sample(4, torch.Generator().manual_seed(0))
    model = attngraph.build(spec)
    outputs = model(batch)
    assert outputs["y"].shape == batch["y"].shape
    loss, _ = model.loss(outputs, batch)
    loss.backward()
    values = section.train.metrics(outputs, batch)
    assert set(values) == set(TASKS[name].metric_names) - {"loss"}
    assert all(0.0 <= v <= 1.0 for v in values.values())


def test_spec_reports_a_task_error_and_a_size_mismatch(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(size=64, task="{kind: parity, ones: [1, 70]}"))
    spec, report = attngraph.check(path)
    errors = [str(d) for d in report if d.severity == "error"]
    assert spec is None and len(errors) == 1
    assert errors[0].endswith("task: task 'parity': ones [1, 70] must lie within [1, size] = [1, 64] with "
                              "min ≤ max: the number of non-zero entries of a vector of 64 elements")
    path.write_text(SPEC.format(size=64, task="{kind: logic}"))
    spec, report = attngraph.check(path)
    errors = [str(d) for d in report if d.severity == "error"]
    assert spec is None
    assert errors[0].endswith("task: input 'x': the task produces a sequence of 102 features but the model "
                              "declares a sequence of 64 features (change inputs.x or the task's parameters)")


# ---- addition ---------------------------------------------------------------------------------------

DIGIT_NAMES = [f"digit{k}" for k in range(6)]


def decode_number(vector, max_digits):
    """An addition input vector (10·max_digits elements) as (number, D), checking the layout: each slot of
    10 is a one-hot digit or all zero, the used slots come first, least significant digit first."""
    digits = []
    for k in range(max_digits):
        slot = vector[10 * k:10 * k + 10]
        assert all(v in (0, 1) for v in slot) and sum(slot) <= 1
        if sum(slot) == 1:
            assert len(digits) == k, "used slots come first"
            digits.append(slot.index(1))
    assert digits, "a number has at least one digit"
    return sum(d * 10 ** k for k, d in enumerate(digits)), len(digits)


def reference_sum_digits(total, max_digits):
    """Section 3.3's target: the sum's digits, least significant first, then the 11th class (10)."""
    digits = [int(c) for c in reversed(str(total))]
    assert len(digits) <= max_digits + 1
    return digits + [10] * (max_digits + 1 - len(digits))


def test_addition_batch_shapes_masks_and_dtypes():
    batch = sample(make("addition"), 64, seed=5)
    assert batch.keys() == {"x", "x.mask"} | set(DIGIT_NAMES) | {f"{n}.mask" for n in DIGIT_NAMES}
    x, xm = batch["x"], batch["x.mask"]
    steps = x.shape[1]
    assert x.shape == (64, steps, 50) and x.dtype == torch.float32 and steps == 5
    assert xm.shape == (64, steps) and xm.dtype == torch.bool
    assert set(x.unique().tolist()) == {0.0, 1.0}
    for name in DIGIT_NAMES:
        y, ym = batch[name], batch[f"{name}.mask"]
        assert y.shape == ym.shape == (64, steps) and y.dtype == torch.int64 and ym.dtype == torch.bool
        assert 0 <= int(y.min()) and int(y.max()) <= 10
    for i in range(64):
        n = int(xm[i].sum())
        assert xm[i].tolist() == [t < n for t in range(steps)]  # valid steps first
        assert x[i, n:].abs().sum() == 0  # padding is zero
        assert all(batch[name][i, n:].abs().sum() == 0 for name in DIGIT_NAMES)


def test_addition_first_step_has_no_target():
    batch = sample(make("addition"), 200, seed=7)
    xm, steps = batch["x.mask"], batch["x"].shape[1]
    counted = batch["digit0.mask"]
    assert all(torch.equal(batch[f"{name}.mask"], counted) for name in DIGIT_NAMES)
    assert not counted[:, 0].any()  # "There is no target for the first vector in the sequence"
    assert torch.equal(counted[:, 1:], xm[:, 1:])  # every later valid step is counted, no padding step
    single = xm.sum(1) == 1
    assert single.any() and not counted[single].any()  # a sequence of one vector counts nothing
    assert steps == 5 and counted.sum(1).max() == 4


@pytest.mark.parametrize("changes", [{}, {"max_digits": 2, "max_length": 10}, {"max_digits": 1, "max_length": 11}])
def test_addition_targets_match_python_integer_sums(changes):
    task = make("addition", **changes)
    max_digits, max_length = task.p.max_digits, task.p.max_length
    batch = sample(task, 400, seed=6)
    x, xm = batch["x"], batch["x.mask"]
    assert x.shape[2] == 10 * max_digits
    names = [f"digit{k}" for k in range(max_digits + 1)]
    assert {k for k in batch if not k.endswith(".mask")} == {"x", *names}
    lengths, counts, leading_zero, widest, classes = set(), set(), 0, 0, set()
    for i in range(400):
        n = int(xm[i].sum())
        lengths.add(n)
        total = 0
        for t in range(n):
            number, d = decode_number([int(v) for v in x[i, t].tolist()], max_digits)
            counts.add(d)
            leading_zero += d > 1 and number < 10 ** (d - 1)
            total += number  # Python's integers: the sum of the numbers so far
            expected = reference_sum_digits(total, max_digits)
            got = [int(batch[name][i, t]) for name in names]
            assert got == expected, (i, t, total)  # at the first step too, where it is not counted
            widest = max(widest, len(str(total)))
            classes |= set(got)
    assert lengths == set(range(1, max_length + 1))
    assert counts == set(range(1, max_digits + 1))
    assert leading_zero > 0 or max_digits == 1  # "each digit is drawn randomly from 0 to 9"
    assert widest == max_digits + 1  # the last sum digit is used
    assert classes == set(range(11))
    used = x[xm].reshape(-1, max_digits, 10).sum(0)
    assert (used > 0).all()  # every digit occurs in every slot


def test_addition_sum_of_zero_is_the_digit_zero():
    zero = torch.zeros(1, 2, 5, dtype=torch.long)
    x, sums = act_tasks.addition_encode(zero, torch.tensor([[1, 3]]), torch.tensor([2]))
    assert x[0, 0].nonzero().flatten().tolist() == [0]  # one digit 0
    assert x[0, 1].nonzero().flatten().tolist() == [0, 10, 20]  # three digits 0 0 0
    assert sums[0].tolist() == [[0, 10, 10, 10, 10, 10]] * 2


def test_addition_worked_example_of_the_docstring():
    doc = act_tasks.__doc__
    assert "step 0: 427 as D = 3: slots 7 2 4 - - (x[7] = x[12] = x[24] = 1)    sum 427     ->  7 2 4 * * *" in doc
    assert "step 1: 95 as D = 3: slots 5 9 0 - - (x[5] = x[19] = x[20] = 1)     sum 522     ->  2 2 5 * * *" in doc
    assert "step 2: 99999 as D = 5: slots 9 9 9 9 9 (x[9], x[19] .. x[49] = 1)   sum 100521  ->  1 2 5 0 0 1" in doc
    digits = torch.tensor([[[7, 2, 4, 0, 0], [5, 9, 0, 0, 0], [9, 9, 9, 9, 9]]])
    x, sums = act_tasks.addition_encode(digits, torch.tensor([[3, 3, 5]]), torch.tensor([3]))
    assert x[0, 0].nonzero().flatten().tolist() == [7, 12, 24]
    assert x[0, 1].nonzero().flatten().tolist() == [5, 19, 20]
    assert x[0, 2].nonzero().flatten().tolist() == [9, 19, 29, 39, 49]
    assert sums[0].tolist() == [[7, 2, 4, 10, 10, 10], [2, 2, 5, 10, 10, 10], [1, 2, 5, 0, 0, 1]]
    assert [decode_number([int(v) for v in x[0, t].tolist()], 5)[0] for t in range(3)] == [427, 95, 99999]


def test_addition_is_seeded():
    task = make("addition")
    a, b, c = sample(task, 8, 1), sample(task, 8, 1), sample(task, 8, 2)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].shape != c[k].shape or not torch.equal(a[k], c[k]) for k in a)
    state = torch.random.get_rng_state()
    sample(task, 8, 1)
    assert torch.equal(state, torch.random.get_rng_state())  # only the given generator is used


@pytest.mark.parametrize("changes, message", [
    ({"max_length": 11}, "task 'addition': max_length 11 must lie within [1, 10]: the sum of up to max_length "
                         "numbers of max_digits = 5 digits must fit in max_digits + 1 = 6 digits"),
    ({"max_length": 0}, "task 'addition': max_length 0 must lie within [1, 10]: the sum of up to max_length "
                        "numbers of max_digits = 5 digits must fit in max_digits + 1 = 6 digits"),
    ({"max_digits": 1, "max_length": 12}, "task 'addition': max_length 12 must lie within [1, 11]: the sum of up "
                                          "to max_length numbers of max_digits = 1 digits must fit in "
                                          "max_digits + 1 = 2 digits"),
    ({"max_digits": 6}, "task 'addition': max_digits 6 must lie within [1, 5]: the digits of a number (the "
                        "paper's input holds 5)"),
    ({"max_digits": 0}, "task 'addition': max_digits 0 must lie within [1, 5]: the digits of a number (the "
                        "paper's input holds 5)"),
])
def test_addition_errors(changes, message):
    with pytest.raises(TaskError) as err:
        make("addition", **changes)
    assert str(err.value) == message
    with pytest.raises(TaskError):  # an evaluation variant or curriculum step is checked too
        make("addition").with_params(**changes)


def test_addition_lengths_at_the_limit_fit_the_sum():
    for digits in range(1, 6):
        limit = act_tasks.addition_max_length(digits)
        assert limit * (10 ** digits - 1) < 10 ** (digits + 1) <= (limit + 1) * (10 ** digits - 1)
        make("addition", max_digits=digits, max_length=limit)  # accepted


def _perfect(batch, names):
    """Logits that score every target class +10 and every other class -10."""
    return {name: torch.nn.functional.one_hot(batch[name], 11).float() * 20 - 10 for name in names}


def test_addition_metrics_on_hand_made_logits():
    task = make("addition", target="d")
    names = [f"d{k}" for k in range(6)]
    task.p.outputs = {name: f"head_{name}" for name in names}  # the metrics read the output trained against it
    batch = sample(task, 8, seed=11)
    counted = batch["d0.mask"]
    total = 6 * int(counted.sum())
    logits = {f"head_{k}": v for k, v in _perfect(batch, names).items()}
    assert task.metrics(logits, batch) == {"accuracy": 1.0, "digit_accuracy": 1.0}
    longer = [i for i in range(8) if counted[i].any()]
    assert len(longer) >= 3 and (~counted).any()
    i, t = longer[0], int(counted[longer[0]].nonzero()[-1])
    wrong = {k: v.clone() for k, v in logits.items()}
    wrong["head_d3"][i, t] = wrong["head_d3"][i, t].roll(1)  # one digit of one sequence: another class wins
    assert task.metrics(wrong, batch) == {"accuracy": 7 / 8, "digit_accuracy": (total - 1) / total}
    wrong["head_d0"][i, t] = wrong["head_d0"][i, t].roll(1)  # a second digit in the same sequence
    assert task.metrics(wrong, batch) == {"accuracy": 7 / 8, "digit_accuracy": (total - 2) / total}
    j = longer[1]
    wrong["head_d5"][j, 1] = wrong["head_d5"][j, 1].roll(3)  # and one in another sequence
    assert task.metrics(wrong, batch) == {"accuracy": 6 / 8, "digit_accuracy": (total - 3) / total}
    for k in wrong.values():  # predictions at the first step and on padding are not counted
        k[:, 0] = k[:, 0].roll(1, -1)
        k[~batch["x.mask"]] = k[~batch["x.mask"]].roll(1, -1)
    assert task.metrics(wrong, batch) == {"accuracy": 6 / 8, "digit_accuracy": (total - 3) / total}


def test_addition_metrics_of_sequences_with_nothing_counted():
    task = make("addition", max_length=1)
    task.p.outputs = {name: name for name in DIGIT_NAMES}  # as the task section binds it
    batch = sample(task, 4)
    assert not batch["digit0.mask"].any()
    garbage = {name: torch.zeros(4, 1, 11) for name in DIGIT_NAMES}
    garbage["digit0"][..., 3] = 1.0
    assert task.metrics(garbage, batch) == {"accuracy": 1.0, "digit_accuracy": 1.0}


def test_addition_is_registered_with_its_metrics():
    cls = TASKS["addition"]
    assert cls.metric_names == ("loss", "accuracy", "digit_accuracy") and cls.lower_is_better == {"loss"}
    assert {"input", "target", "max_length", "max_digits"} == cls.params.keys() and cls.doc.startswith("Graves 2016")
    assert cls.params["max_length"].default == 5 and cls.params["max_digits"].default == 5
    assert cls.params["target"].default == "digit"


ADDITION_SPEC = """attngraph: 1
name: act-addition-tiny
inputs:
  x: {{size: {size}}}
targets:
{targets}
model:
  seq:
    kind: loop
    over: x
    body:
      ponder:
        kind: act
        halt: h
        max_steps: 4
        body:
          lstm: {{kind: lstm, size: 8, in: [x, ponder.first]}}
          h:    {{kind: halting_unit, in: lstm, bias: 1.0}}
        output: lstm
    output: ponder
{heads}
outputs:
{outputs}
  ponder: {{from: seq.ponder.cost, loss: ponder_cost, weight: 0.001}}
task: {task}
"""


def addition_spec(size=50, digits=6, classes=11, task="{kind: addition}"):
    names = [f"digit{k}" for k in range(digits)]
    return ADDITION_SPEC.format(
        size=size, task=task,
        targets="\n".join(f"  {n}: {{classes: {classes}}}" for n in names),
        heads="\n".join(f"  {n}: {{kind: linear, size: {classes}, in: seq}}" for n in names),
        outputs="\n".join(f"  {n}: {{from: {n}, loss: cross_entropy}}" for n in names))


def test_addition_spec_checks_trains_and_measures(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(addition_spec())
    spec, report = attngraph.check(path)
    assert spec is not None, [str(d) for d in report]
    section = spec.sections["task"]
    assert section.train.p.outputs == {n: n for n in DIGIT_NAMES}
    batch = section.train.sample(8, torch.Generator().manual_seed(0))
    model = attngraph.build(spec)
    outputs = model(batch)
    assert all(outputs[n].shape == (*batch[n].shape, 11) for n in DIGIT_NAMES)
    loss, parts = model.loss(outputs, batch)
    assert set(parts) == {*DIGIT_NAMES, "ponder"} and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    values = section.train.metrics(outputs, batch)
    assert set(values) == {"accuracy", "digit_accuracy"} and all(0.0 <= v <= 1.0 for v in values.values())


def test_addition_spec_reports_wrong_declarations(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(addition_spec().replace("digit0: {classes: 11}", "digit0: {classes: 10}"))
    spec, report = attngraph.check(path)
    errors = [str(d) for d in report if d.severity == "error"]
    assert spec is None
    assert any(e.endswith("task: target 'digit0': the task produces a sequence of 11 classes but the model "
                          "declares a sequence of 10 classes (change targets.digit0 or the task's parameters)")
               for e in errors), errors
    path.write_text(addition_spec(task="{kind: addition, max_digits: 3}"))  # downsized: 30 inputs, 4 sum digits
    spec, report = attngraph.check(path)
    errors = [str(d) for d in report if d.severity == "error"]
    assert spec is None and len(errors) == 3
    assert errors[0].endswith("task: input 'x': the task produces a sequence of 30 features but the model declares "
                              "a sequence of 50 features (change inputs.x or the task's parameters)")
    assert errors[1].endswith("task: the model declares target 'digit4' but task 'addition' does not produce it "
                              "(it produces: digit0, digit1, digit2, digit3)")
    path.write_text(addition_spec(size=30, digits=4, task="{kind: addition, max_digits: 3}"))
    spec, report = attngraph.check(path)
    assert spec is not None, [str(d) for d in report]
    path.write_text(addition_spec(task="{kind: addition, max_length: 11}"))
    spec, report = attngraph.check(path)
    errors = [str(d) for d in report if d.severity == "error"]
    assert spec is None and len(errors) == 1
    assert errors[0].endswith("task: task 'addition': max_length 11 must lie within [1, 10]: the sum of up to "
                              "max_length numbers of max_digits = 5 digits must fit in max_digits + 1 = 6 digits")

"""Tasks: the Graves copy task's data and metrics, and the task: section's checks against the model."""
from pathlib import Path

import pytest
import torch

import attngraph
from attngraph.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
LSTM_COPY = ROOT / "specs" / "examples" / "lstm_copy.yaml"


def copy_task(**changes):
    return attngraph.load(LSTM_COPY).sections["task"].train.with_params(**changes)


def test_copy_batch_follows_graves_2014():
    task = copy_task(length=[1, 6])
    batch = task.sample(64, torch.Generator().manual_seed(3))
    x, y, xm, ym = batch["x"], batch["y"], batch["x.mask"], batch["y.mask"]
    for i in range(64):
        steps = int(xm[i].sum())
        n = (steps - 1) // 2  # this example's length L
        assert steps == 2 * n + 1 and 1 <= n <= 6
        assert x[i, n, 8] == 1 and x[i, :, 8].sum() == 1  # one delimiter, after the L vectors
        assert torch.equal(x[i, n:, :8], torch.zeros_like(x[i, n:, :8]))  # nothing to read after it
        assert torch.equal(y[i, n + 1:2 * n + 1], x[i, :n, :8])  # write back what was read
        assert ym[i].tolist() == [n < t <= 2 * n for t in range(x.shape[1])]
        assert y[i, ~ym[i]].abs().sum() == 0


def test_copy_is_seeded():
    task = copy_task()
    a = task.sample(8, torch.Generator().manual_seed(1))
    b = task.sample(8, torch.Generator().manual_seed(1))
    c = task.sample(8, torch.Generator().manual_seed(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["x"][:, :3], c["x"][:, :3]) or a["x"].shape != c["x"].shape


def test_copy_metrics_count_wrong_bits_per_sequence():
    task = copy_task(length=[3, 3])
    batch = task.sample(4, torch.Generator().manual_seed(0))
    perfect = batch["y"] * 20 - 10  # logits that threshold to the target
    assert task.metrics({"y": perfect}, batch) == {"bits_per_seq": 0.0, "sequence_accuracy": 1.0}
    one_wrong = perfect.clone()
    one_wrong[0, 4, 2] *= -1  # example 0, output step 1 (t = L + 1 + 0 = 4), bit 2
    assert task.metrics({"y": one_wrong}, batch) == {"bits_per_seq": 0.25, "sequence_accuracy": 0.75}
    one_wrong[1, 0, 0] = 10.0 * (1 - 2 * batch["y"][1, 0, 0])  # outside the output phase: not counted
    assert task.metrics({"y": one_wrong}, batch)["bits_per_seq"] == 0.25


def test_eval_variant_changes_only_what_it_names():
    section = attngraph.load(LSTM_COPY, ["task.eval.length=[30, 40]"]).sections["task"]
    assert section.train.p.length == [1, 20] and section.eval.p.length == [30, 40]
    assert section.eval.p.width == 8


def test_copy_is_registered_with_its_metrics():
    assert TASKS["copy"].metric_names == ("loss", "bits_per_seq", "sequence_accuracy")


@pytest.mark.parametrize("overrides, expected", [
    (["task.kind=cpy"], "--set task.kind=cpy: task.kind: unknown task 'cpy' (did you mean 'copy'?)"),
    (["task.lenght=[1, 5]"], "--set task.lenght=[1, 5]: task.lenght: unknown key 'lenght' for task 'copy' "
                             "(did you mean 'length'?)"),
    (["task.length=[5, 1]"], "--set task.length=[5, 1]: task.length: the range [5, 1] is empty "
                             "(write [min, max] with min ≤ max)"),
    (["task.length=[1, 2, 3]"], "--set task.length=[1, 2, 3]: task.length: expected [min, max] integers ≥ 1 (or one integer), "
                                "got a list of 3"),
    (["task.eval.widht=4"], "--set task.eval.widht=4: task.eval.widht: unknown key 'widht' for task 'copy' (evaluation) "
                            "(did you mean 'width'?)"),
    (["task.width=10"], "{f}:14:3: task: input 'x': the task produces a sequence of 11 features but the model declares "
                        "a sequence of 9 features (change inputs.x or the task's parameters)"),
    (["task.target=z"], "{f}:14:3: task: the task produces target 'z' but the model declares no such target "
                        "(expected one of: y)"),
])
def test_task_section_errors(overrides, expected):
    spec, report = attngraph.check(LSTM_COPY, overrides)
    errors = [str(d) for d in report if d.severity == "error"]
    assert spec is None
    assert expected.format(f=LSTM_COPY) in errors

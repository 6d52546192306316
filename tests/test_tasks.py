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


JSONL_SPEC = """attngraph: 1
inputs: {x: {size: 2}}
targets: {y: {classes: 3}}
model:
  enc: {kind: gru, size: 8, in: x}
  head: {kind: linear, size: 3, in: enc}
outputs: {y: {from: head, loss: cross_entropy}}
task: {kind: jsonl, path: train.jsonl}
"""


def jsonl_spec(tmp_path, lines, extra=""):
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(JSONL_SPEC + extra)
    return spec


def test_jsonl_batches_are_padded_with_masks_and_train(tmp_path):
    spec = jsonl_spec(tmp_path, ['{"x": [[0.5, 1.0], [0.0, 1.0], [1.0, 1.0]], "y": [2, 0, 1]}',
                                 '{"x": [[1.0, 0.0]], "y": [1]}'])
    loaded = attngraph.load(spec)
    batch = loaded.sections["task"].train.sample(16, torch.Generator().manual_seed(0))
    assert batch["x"].shape[0] == 16 and batch["x"].shape[2] == 2 and batch["y"].dtype == torch.long
    lengths = batch["x.mask"].sum(1)
    assert set(lengths.tolist()) <= {1, 3} and torch.equal(lengths, batch["y.mask"].sum(1))
    short = int((lengths == 1).nonzero()[0])
    assert batch["x"][short, 1:].abs().sum() == 0 and batch["y"][short, 0] == 1
    model = attngraph.build(loaded)
    loss, _ = model.loss(model(batch), batch)
    loss.backward()


def test_jsonl_errors_point_at_the_data_lines(tmp_path):
    spec = jsonl_spec(tmp_path, ['{"x": [[0.5, 1.0]], "y": [2]}',
                                 '{"x": [[0.5, 1.0, 3.0]], "y": [2]}',
                                 '{"x": [[0.5, 1.0]], "y": [3]}',
                                 '{"x": [[0.5, 1.0]]}',
                                 'not json',
                                 '[1, 2]'])
    data = tmp_path / "train.jsonl"
    spec_ok, report = attngraph.check(spec)
    assert spec_ok is None
    assert [str(d) for d in report] == [
        f"{data}:2:1: x[0]: expected 2 numbers, got 3 numbers",
        f"{data}:3:1: y[0]: expected an integer in [0, 3), got 3",
        f"{data}:4:1: missing 'y'",
        f"{data}:5:1: not valid JSON: Expecting value (column 1)",
        f"{data}:6:1: expected a JSON object keyed by input and target names",
    ]


def test_jsonl_missing_file_and_separate_eval_file(tmp_path):
    spec = jsonl_spec(tmp_path, ['{"x": [[0.5, 1.0]], "y": [2]}'])
    assert attngraph.check(spec, ["task.path=nope.jsonl"])[1][0].message.startswith("cannot read the task's data")
    (tmp_path / "valid.jsonl").write_text('{"x": [[1.0, 1.0], [0.0, 0.0]], "y": [0, 1]}\n')
    section = attngraph.load(spec, ["task.eval={path: valid.jsonl}"]).sections["task"]
    assert section.eval.sample(2, torch.Generator().manual_seed(0))["x"].shape == (2, 2, 2)
    assert section.train.sample(2, torch.Generator().manual_seed(0))["x"].shape == (2, 1, 2)


def test_a_task_without_metrics_is_refused_when_registered():
    """A plug-in task that forgets a method is an error at import, naming it, not a failure mid-training."""
    from attngraph.tasks.base import TASKS, Task, task

    with pytest.raises(TypeError, match=r"task 'half_done' must define metrics\(\)"):
        @task("half_done", params={}, metrics=("loss",))
        class HalfDone(Task):
            def sizes(self):
                return {"inputs": {}, "targets": {}}

            def sample(self, batch, gen):
                return {}
    assert "half_done" not in TASKS


def test_jsonl_shared_time_axis_lengths_must_match(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"q": [1, 2, 0], "n": [[0.0], [5.0], [0.0]], "y": [1.0]}\n'
                                          '{"q": [1, 2], "n": [[0.0], [5.0], [7.0]], "y": [2.0]}\n')
    spec = tmp_path / "s.yaml"
    spec.write_text("attngraph: 1\ninputs:\n  q: {vocab: 3}\n  n: {size: 1, time: q}\ntargets:\n"
                    "  y: {size: 1, time: false}\nmodel:\n  e: {kind: embedding, size: 4, in: q}\n"
                    "  c: {kind: concat, in: [e, n]}\n  r: {kind: gru, size: 4, in: c}\n  p: {kind: pool, in: r}\n"
                    "  o: {kind: linear, size: 1, in: p}\noutputs:\n  y: {from: o, loss: mse}\n"
                    "task: {kind: jsonl, path: train.jsonl}\n")
    assert [str(d) for d in attngraph.check(spec)[1]] == [
        f"{tmp_path / 'train.jsonl'}:2:1: n: 3 steps, but it is on the time axis of 'q', which has 2 steps "
        "(a step of one for each step of the other)"]
    (tmp_path / "train.jsonl").write_text('{"q": [1, 2, 0], "n": [[0.0], [5.0], [0.0]], "y": [1.0]}\n'
                                          '{"q": [1], "n": [[4.0]], "y": [2.0]}\n')
    batch = attngraph.load(spec).sections["task"].train.sample(8, torch.Generator().manual_seed(0))
    assert torch.equal(batch["n.mask"], batch["q.mask"]) and batch["n"].shape == (8, 3, 1)

"""Halting scopes in the tools around the model: the diagram, inspect's ponder picture, the metrics log, a
halting scope outside any loop, and what leaves a PonderNet output for its loss."""
from __future__ import annotations

import csv
from pathlib import Path

import torch

import attngraph
from attngraph.inspect import inspect
from attngraph.render import to_dot

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]

ACT = """\
attngraph: 1
name: act-tools
inputs:
  x: {size: 6}
targets:
  y: {size: 1}
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
          rnn: {kind: rnn, size: 8, in: [x, ponder.first]}
          h:   {kind: halting_unit, in: rnn, bias: -1.0}
          y:   {kind: linear, size: 1, in: rnn}
        output: y
    output: ponder
outputs:
  y: {from: seq, loss: bce}
  ponder: {from: seq.ponder.cost, loss: ponder_cost, weight: 0.01}
task: {kind: parity, size: 6}
train: {optimizer: adam, lr: 1.0e-3, batch: 8, steps: 2, eval_every: 1, eval_batches: 1, checkpoint_every: 1}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_diagram_shows_the_rule_and_the_ports_that_are_read(tmp_path):
    dot = to_dot(write(tmp_path, ACT))
    assert 'label="ponder (act: halt h, ε 0.01, ≤ 4 steps)"' in dot
    assert '"port:seq.ponder.first" -> "node:seq.ponder.rnn"' in dot  # the flag enters the controller
    assert '"port:seq.ponder.cost" -> "out:ponder"' in dot  # the cost leaves for its output
    assert "port:seq.ponder.steps" not in dot  # read by no one (mean_ponder's own read is not drawn)
    assert '"node:seq.ponder.y" -> "out:y"' in dot


def test_inspect_draws_the_ponder_steps_of_each_input_step(tmp_path):
    spec = attngraph.load(write(tmp_path, ACT))
    model = attngraph.build(spec)
    batch = spec.sections["task"].eval.sample(1, torch.Generator().manual_seed(0))
    written = inspect(model, batch, tmp_path / "pics")
    assert tmp_path / "pics" / "ponder-seq.ponder.png" in written
    from safetensors.torch import load_file

    record = load_file(tmp_path / "pics" / "record.safetensors")
    steps = record["record.seq.ponder.steps"]
    assert steps.shape == (1, 1) and 1 <= float(steps[0, 0]) <= 4
    assert torch.equal(steps, model(batch)["ponder:seq.ponder"][0])


def test_training_logs_mean_ponder_beside_the_task_metrics(tmp_path):
    from attngraph.training.trainer import Trainer

    spec = attngraph.load(write(tmp_path, ACT))
    Trainer(spec, out=tmp_path / "run", quiet=True).run()
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv", encoding="utf-8")))
    assert "eval_mean_ponder" in rows[0] and "eval_accuracy" in rows[0]
    assert all(1.0 <= float(r["eval_mean_ponder"]) <= 4.0 for r in rows)


def test_a_halting_scope_outside_any_loop_ponders_once_per_example(tmp_path):
    text = ACT.replace("  seq:\n    kind: loop\n    over: x\n    body:\n", "  seq:\n    kind: group\n    body:\n")
    text = text.replace("x: {size: 6}", "x: {size: 6, time: false}").replace("y: {size: 1}", "y: {size: 1, time: false}")
    text = text.split("task:")[0]
    flat = attngraph.build(write(tmp_path, text, "flat.yaml"))
    looped = attngraph.build(write(tmp_path, ACT))
    looped.load_state_dict(flat.state_dict())
    x = torch.randn(5, 6)
    out_flat = flat({"x": x})
    out_loop = looped({"x": x[:, None, :]})
    torch.testing.assert_close(out_flat["y"], out_loop["y"][:, 0])
    torch.testing.assert_close(out_flat["ponder"], out_loop["ponder"][:, 0])
    steps = out_flat["ponder:seq.ponder"]
    assert steps.shape == (5, 1)
    assert flat.extra_metrics(out_flat, {"x": x})["mean_ponder"] == float(steps.double().mean())


def test_a_pondernet_output_carries_each_ponder_step_for_its_loss(tmp_path):
    spec = attngraph.load(ROOT / "tests" / "good_specs" / "pondernet_parity.yaml")
    model = attngraph.build(spec)
    batch = spec.sections["task"].train.sample(4, torch.Generator().manual_seed(1))
    model.train()
    out = model(batch)
    assert out["y.ponder_values"].shape == (4, 1, 20, 1) and out["y.ponder_p"].shape == (4, 1, 20)
    torch.testing.assert_close(out["y.ponder_p"].sum(-1), torch.ones(4, 1))
    _, parts = model.loss(out, batch)
    expected = sum(out["y.ponder_p"][..., n] * torch.nn.functional.binary_cross_entropy_with_logits(
        out["y.ponder_values"][..., n, :], batch["y"], reduction="none").sum(-1) for n in range(20)).mean()
    torch.testing.assert_close(parts["y"], expected)


def test_each_act_task_says_how_hard_each_input_step_is():
    from test_ntm_tasks import make

    from attngraph.tasks.act_tasks import Addition, Logic, Parity, addition_encode

    gen = torch.Generator().manual_seed(3)
    parity = make("parity", size=12, ones=[5, 5])
    assert isinstance(parity, Parity)
    label, values, valid = parity.difficulty(parity.sample(16, gen))
    assert label == "non-zero entries" and values.shape == (16, 1) and bool((values == 5).all()) and bool(valid.all())

    logic = make("logic", length=[1, 4], gates=[3, 3])
    assert isinstance(logic, Logic)
    data = logic.sample(32, gen)
    label, values, valid = logic.difficulty(data)
    assert label == "logic gates per vector" and torch.equal(valid, data["x.mask"])
    assert bool((values[valid] == 3).all()) and bool((values[~valid] == 0).all())

    addition = make("addition", max_length=3, max_digits=4)
    assert isinstance(addition, Addition)
    counts = torch.tensor([[1, 4, 2], [3, 3, 1]])
    digits = torch.zeros(2, 3, 4, dtype=torch.long)  # zero digits: a one-hot slot is still set for each
    x, _ = addition_encode(digits, counts, torch.tensor([3, 2]))
    label, values, _ = addition.difficulty({"x": x, "x.mask": torch.tensor([[True] * 3, [True, True, False]])})
    assert label == "digits per number" and values.tolist() == [[1, 4, 2], [3, 3, 0]]


def test_ponder_by_difficulty_averages_the_models_own_ponder_counts(tmp_path):
    from attngraph.inspect import ponder_by_difficulty

    spec = attngraph.load(write(tmp_path, ACT.replace("bias: -1.0", "bias: 0.3")))
    task = spec.sections["task"].eval
    torch.manual_seed(0)
    model = attngraph.build(spec)
    with torch.no_grad():  # a halting unit that reads the state strongly: ponder counts differ between examples
        model.nodes["seq"]["ponder"]["h"].proj.weight.normal_(0, 2.0)
    written = ponder_by_difficulty(model, task, tmp_path / "pics", seed=7, examples=40, batch=16)
    assert [p.name for p in written] == ["ponder-vs-difficulty-seq.ponder.png", "ponder-vs-difficulty-seq.ponder.csv"]
    rows = list(csv.DictReader(open(written[1], encoding="utf-8")))
    # the reference: the same three batches drawn again, the model's N grouped by hand
    gen = torch.Generator().manual_seed(7)
    by = {}
    for size in (16, 16, 8):
        data = task.sample(size, gen)
        n = model({"x": data["x"], "x.mask": data["x.mask"]})["ponder:seq.ponder"].reshape(-1)
        for k, steps in zip((data["x"] != 0).sum(-1).reshape(-1).tolist(), n.tolist()):
            by.setdefault(k, []).append(steps)
    assert [int(r["difficulty"]) for r in rows] == sorted(by)
    for r in rows:
        mine = by[int(r["difficulty"])]
        assert int(r["input_steps"]) == len(mine)
        assert abs(float(r["mean_ponder"]) - sum(mine) / len(mine)) < 1e-4
        assert float(r["min"]) == min(mine) and float(r["max"]) == max(mine)
    assert sum(int(r["input_steps"]) for r in rows) == 40
    assert len({r["mean_ponder"] for r in rows}) > 1  # the counts do differ: the grouping is tested


def test_ponder_by_difficulty_draws_nothing_without_a_halting_scope_or_a_difficulty(tmp_path):
    from attngraph.inspect import ponder_by_difficulty

    spec = attngraph.load(write(tmp_path, ACT))
    model = attngraph.build(spec)

    class NoDifficulty:
        def sample(self, batch, gen):
            raise AssertionError("not drawn")

    assert ponder_by_difficulty(model, NoDifficulty(), tmp_path, seed=0) == []
    plain = attngraph.build(attngraph.load(ROOT / "specs" / "examples" / "lstm_copy.yaml"))
    assert ponder_by_difficulty(plain, spec.sections["task"].eval, tmp_path, seed=0) == []

"""The trainer: exact resume, atomic checkpoints, NaN handling, parameter limit, gradient clipping."""
from __future__ import annotations

import csv
import os

import pytest
import torch
from training_helpers import EchoBits, write_spec

import attngraph
from attngraph.training.checkpoint import CheckpointError, load_checkpoint, model_tensors
from attngraph.training.trainer import Trainer, TrainingError

TRAIN = "  batch: 4\n  steps: 12\n  lr: 0.05\n  checkpoint_every: 4\n  eval_every: 3\n  eval_batches: 2\n"


def trainer(tmp_path, name, train=TRAIN, task="", **kw) -> Trainer:
    spec = attngraph.load(write_spec(tmp_path, train, task))
    return Trainer(spec, tmp_path / name, quiet=True, **kw)


def eval_rows(path) -> list[dict]:
    with open(path / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def final_params(path) -> dict[str, torch.Tensor]:
    return model_tensors(load_checkpoint(path / "checkpoints" / "last.safetensors")[0])


def test_run_writes_its_directory(tmp_path):
    result = trainer(tmp_path, "run").run()
    out = tmp_path / "run"
    assert result.status == "done" and result.step == 12 and set(result.metrics) == {"loss", "bit_errors"}
    for name in ("spec.resolved.yaml", "overrides.txt", "versions.json", "run.json", "metrics.csv", "train_loss.csv",
                 "learning_curve.png", "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.safetensors", "last.safetensors"]
    assert [r["step"] for r in eval_rows(out)] == ["3", "6", "9", "12"]
    assert "train:" in (out / "spec.resolved.yaml").read_text()


def tensorboard_scalars(run, tag) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_tensorboard_events_hold_the_metrics_csv_rows(tmp_path):
    trainer(tmp_path, "run").run()
    rows = eval_rows(tmp_path / "run")
    got = tensorboard_scalars(tmp_path / "run", "eval/bit_errors")
    assert [s for s, _ in got] == [3, 6, 9, 12]
    assert [v for _, v in got] == pytest.approx([float(r["eval_bit_errors"]) for r in rows])
    assert [s for s, _ in tensorboard_scalars(tmp_path / "run", "train/loss")] == [10, 12]  # every train.log_every


@pytest.mark.parametrize("how", ["pause", "crash"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, how):
    trainer(tmp_path, "straight").run()
    if how == "pause":
        assert trainer(tmp_path, "split").run(until=5).status == "paused"
    else:  # the 7th batch raises: the last checkpoint is at step 4, and metrics.csv already has step 6
        EchoBits.calls = 0
        with pytest.raises(RuntimeError, match="simulated crash"):
            trainer(tmp_path, "split", task=", fail_at: 7").run()
    # the crashing run's spec differs (task.fail_at): resuming it needs --allow-spec-change
    assert trainer(tmp_path, "split", resume=True, allow_spec_change=how == "crash").run().status == "done"
    a, b = final_params(tmp_path / "straight"), final_params(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert eval_rows(tmp_path / "straight") == eval_rows(tmp_path / "split")
    # the crashed run's step-6 event is dropped on resume: no step twice in TensorBoard
    straight, split = (tensorboard_scalars(tmp_path / r, "eval/bit_errors") for r in ("straight", "split"))
    assert [s for s, _ in split] == [s for s, _ in straight] == [3, 6, 9, 12]
    assert [v for _, v in split] == pytest.approx([v for _, v in straight])


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="cannot resume: no checkpoint at"):
        trainer(tmp_path, "none", resume=True).run()
    assert not (tmp_path / "none").exists()  # nothing made for a mistyped --out


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    t = trainer(tmp_path, "run")
    t.run(until=4)
    path = tmp_path / "run" / "checkpoints" / "last.safetensors"
    before = load_checkpoint(path)

    real = os.replace

    def broken_replace(src, dst):
        if str(dst).endswith(".safetensors"):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(TrainingError) as err:
        trainer(tmp_path, "run", resume=True).run()  # training goes on; the save at step 8 fails
    best = path.with_name("best.safetensors")  # the evaluation at step 6 improves: best is the first write to fail
    assert str(err.value) == (f"cannot write checkpoint {best}: No space left on device; the last checkpoint ({path}, "
                              f"step 4) is intact: continue with --resume --out {tmp_path / 'run'}")
    monkeypatch.undo()
    tensors, meta = load_checkpoint(path)
    assert meta["step"] == 4 == before[1]["step"]
    assert all(torch.equal(tensors[k], before[0][k]) for k in tensors)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_format_1_checkpoint_is_read_and_a_torn_one_detected(tmp_path):
    """Checkpoints written before format 2 (tensors + a JSON sidecar) still load; a pair from two steps does not."""
    import json

    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    save_file({"model.w": torch.ones(2)}, str(path), metadata={"step": "8"})
    (tmp_path / "old.json").write_text(json.dumps({"step": 8, "format": 1}))
    tensors, meta = load_checkpoint(path)
    assert meta["step"] == 8 and torch.equal(tensors["model.w"], torch.ones(2))
    (tmp_path / "old.json").write_text(json.dumps({"step": 4, "format": 1}))
    with pytest.raises(CheckpointError, match=r"tensors are from step 8 but old.json is from step 4"):
        load_checkpoint(path)


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    EchoBits.calls = 0
    # batches 1-3 train steps 1-3, 4-5 evaluate, 6-8 train steps 4-6, 9-10 evaluate, 11 trains step 7
    result = trainer(tmp_path, "nan", task=", nan_after: 11").run()
    assert result.status == "nan" and not result.ok and result.step == 7
    last = tmp_path / "nan" / "checkpoints" / "last.safetensors"
    assert result.message.startswith(f"loss is nan at step 7: stopped (nothing non-finite was saved; the last checkpoint "
                                     f"({last}, step 4) is intact: continue with --resume --out ")
    assert load_checkpoint(last)[1]["step"] == 4


def test_nan_skip_counts_skipped_updates(tmp_path):
    EchoBits.calls = 0
    result = trainer(tmp_path, "skip", train=TRAIN + "  nan: skip\n", task=", nan_after: 10").run()
    # batch 10 is the second eval batch at step 6; from there on every training batch is NaN: after a whole
    # checkpoint interval (4 steps: 7-10) without a finite update the run gives up, as it cannot recover
    assert result.status == "nan" and result.skipped == 4 and result.exit_code == 1
    assert result.message.startswith("no finite update in 4 steps (train.nan=skip cannot recover) at step 10: stopped")
    for name in ("last", "best"):
        tensors = model_tensors(load_checkpoint(tmp_path / "skip" / "checkpoints" / f"{name}.safetensors")[0])
        assert all(torch.isfinite(t).all() for t in tensors.values()), name


def test_max_params_refuses_before_allocation(tmp_path):
    with pytest.raises(TrainingError, match=r"the model has 285 parameters, more than train.max_params = 100 "
                                            r"\(raise it with --set train.max_params=285\)"):
        trainer(tmp_path, "big", train=TRAIN + "  max_params: 100\n").run()
    assert not (tmp_path / "big").exists()


def test_stop_target_ends_the_run(tmp_path):
    result = trainer(tmp_path, "stop", train=TRAIN + "  stop: {metric: loss, below: 100}\n").run()
    assert result.status == "target" and result.step == 3 and "loss = " in result.message


def test_clip_norm_bounds_the_gradient_norm(tmp_path, monkeypatch):
    norms = []
    real = torch.optim.SGD.step

    def record(self, *args, **kwargs):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", record)
    trainer(tmp_path, "clip", train=TRAIN + "  optimizer: sgd\n  clip_norm: 0.01\n").run(until=3)
    assert len(norms) == 3 and max(norms) <= 0.01 * (1 + 1e-4)
    norms.clear()
    trainer(tmp_path, "free", train=TRAIN + "  optimizer: sgd\n").run(until=3)
    assert max(norms) > 0.01


def test_eval_json_prints_the_metric_names(tmp_path):
    import json

    from click.testing import CliRunner

    from attngraph_cli.main import main

    trainer(tmp_path, "run").run()
    spec = tmp_path / "spec.yaml"
    ckpt = tmp_path / "run" / "checkpoints" / "best.safetensors"
    result = CliRunner().invoke(main, ["eval", str(spec), "--checkpoint", str(ckpt), "--batches", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"loss", "bit_errors"}
    missing = CliRunner().invoke(main, ["eval", str(spec)])
    assert missing.exit_code == 2 and "--checkpoint" in missing.output


def test_cli_train_runs_and_resumes(tmp_path):
    from click.testing import CliRunner

    from attngraph_cli.main import main

    spec = write_spec(tmp_path, TRAIN)
    out = tmp_path / "cli"
    first = CliRunner().invoke(main, ["train", str(spec), "--out", str(out), "--quiet", "--threads", "1",
                                      "--set", "train.steps=4"])
    assert first.exit_code == 0, first.output
    assert "trained 4 steps" in first.output and (out / "overrides.txt").read_text() == "train.steps=4\n"
    again = CliRunner().invoke(main, ["train", str(spec), "--out", str(out), "--quiet", "--resume"])
    assert again.exit_code == 0, again.output  # train.steps may change on resume: it says how long, not what
    assert "trained 12 steps" in again.output
    unknown = CliRunner().invoke(main, ["train", "no-such-model"])
    assert unknown.exit_code == 2 and "neither a spec file nor a gallery model" in unknown.output


def test_cli_train_nan_exits_nonzero(tmp_path):
    from click.testing import CliRunner

    from attngraph_cli.main import main

    EchoBits.calls = 0
    spec = write_spec(tmp_path, TRAIN, ", nan_after: 11")
    result = CliRunner().invoke(main, ["train", str(spec), "--out", str(tmp_path / "nan"), "--quiet"])
    assert result.exit_code == 1 and "loss is nan at step 7" in result.output


def test_ctrl_c_saves_at_the_step_boundary_and_resume_is_exact(tmp_path):
    trainer(tmp_path, "straight").run()
    EchoBits.calls = 0
    result = trainer(tmp_path, "split", task=", interrupt_at: 2").run()  # Ctrl-C while step 2 samples its batch
    assert result.status == "interrupted" and result.step == 2
    assert "--resume --out" in result.message
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.safetensors")[1]["step"] == 2
    trainer(tmp_path, "split", resume=True, allow_spec_change=True).run()  # the spec without interrupt_at
    a, b = final_params(tmp_path / "straight"), final_params(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert eval_rows(tmp_path / "straight") == eval_rows(tmp_path / "split")


def test_a_tie_for_the_best_checkpoint_goes_to_the_lower_evaluation_loss():
    """Once a model gets 0 wrong bits at every evaluation, the best checkpoint is the one with the lowest
    evaluation loss, not the first 0 (the gallery publishes the best checkpoint)."""
    from types import SimpleNamespace

    from attngraph.training.evaluate import better

    task = SimpleNamespace(lower_is_better=("loss", "bits_per_seq"))
    assert better(task, "bits_per_seq", 0.0, 0.0, new_loss=0.01, old_loss=0.02)
    assert not better(task, "bits_per_seq", 0.0, 0.0, new_loss=0.03, old_loss=0.02)
    assert better(task, "bits_per_seq", 0.0, 0.0, new_loss=0.03, old_loss=None)  # a best saved before losses were kept
    assert not better(task, "bits_per_seq", 0.5, 0.0, new_loss=0.001, old_loss=0.02)  # the metric decides first
    assert better(task, "bits_per_seq", 0.0, 0.5, new_loss=0.9, old_loss=0.02)
    assert better(task, "bits_per_seq", 3.0, None) and not better(task, "bits_per_seq", float("nan"), None)


def test_the_config_hash_ignores_train_compile_but_not_the_math():
    """Resuming (or publishing) a run with train.compile switched is the same run; a changed lr is not."""
    from pathlib import Path

    from attngraph.training.rundir import config_hash

    spec = Path(__file__).resolve().parents[1] / "gallery" / "ntm-copy" / "spec.yaml"
    plain = config_hash(attngraph.load(spec))
    assert config_hash(attngraph.load(spec, ["train.compile=true"])) == plain
    assert config_hash(attngraph.load(spec, ["train.lr=0.002"])) != plain


def test_evaluation_means_leave_out_batches_that_cannot_measure_a_metric():
    """A metric that is NaN on a batch (no example of the bucket it counts) is averaged over the batches
    that measured it; NaN only when none did. The loss is averaged over every batch."""
    from types import SimpleNamespace

    from attngraph.training.evaluate import evaluate

    class Model(torch.nn.Module):
        def forward(self, data):
            return {}

        def loss_terms(self, outputs, data):
            return {"y": (data["n"] * 2.0, torch.tensor(2.0))}  # this batch's loss: n

        def combine_terms(self, totals):
            return totals["y"][0] / totals["y"][1]

        extra_metric_names = ()  # no halting scope: no mean_ponder

        def extra_metrics(self, outputs, data):
            return {}

    per_batch = iter([(0.5, float("nan")), (1.0, 0.25), (float("nan"), 0.75), (0.0, float("nan"))])
    counter = iter(range(1, 5))
    task = SimpleNamespace(metric_names=("loss", "acc", "acc_long", "never"),
                           sample=lambda batch, gen: {"n": torch.tensor(float(next(counter)))},
                           metrics=lambda outputs, data: dict(zip(("acc", "acc_long"), next(per_batch)),
                                                              never=float("nan")))
    got = evaluate(Model(), task, batch=8, batches=4, gen=torch.Generator())
    assert list(got) == ["loss", "acc", "acc_long", "never"]
    assert got["loss"] == pytest.approx(2.5)  # (1 + 2 + 3 + 4) / 4
    assert got["acc"] == pytest.approx(0.5)  # (0.5 + 1.0 + 0.0) / 3
    assert got["acc_long"] == pytest.approx(0.5)  # (0.25 + 0.75) / 2
    assert got["never"] != got["never"]  # NaN


def test_eval_batch_sets_the_evaluation_batch_apart_from_the_training_batch(tmp_path):
    """train.eval_batch: a run trained one sequence at a time evaluates 8 sequences per batch; its logged
    metrics equal evaluate() at batch 8 on the final weights, and differ from evaluate() at the training batch."""
    from attngraph.training.evaluate import evaluate

    train = "  batch: 1\n  steps: 4\n  lr: 0.05\n  checkpoint_every: 4\n  eval_every: 4\n  eval_batches: 2\n"
    run = trainer(tmp_path, "run", train=train + "  eval_batch: 8\n")
    run.run()
    logged = {k[len("eval_"):]: float(v) for k, v in eval_rows(tmp_path / "run")[-1].items() if k.startswith("eval_")}

    def at(batch):
        return evaluate(run.model, run.eval_task, batch, 2, torch.Generator().manual_seed(run.cfg.seed + 1))

    assert logged == pytest.approx(at(8))
    assert logged["loss"] != pytest.approx(at(1)["loss"])
    assert trainer(tmp_path, "default", train=train).eval_batch == 1

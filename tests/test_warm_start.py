"""``train --init``: a new run that starts from another checkpoint's weights (a fine-tune, a curriculum's next
stage). Only the parameters are taken; the optimiser, the step count and the data stream start afresh; where the
weights came from is recorded in init.json, in every checkpoint and in a published gallery entry."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from click.testing import CliRunner
from test_gallery import ENTRY, README
from test_gallery import SPEC as GALLERY_SPEC
from test_training import TRAIN, final_params, trainer
from training_helpers import write_spec

import attngraph
from attngraph.gallery import publish
from attngraph.training.checkpoint import load_checkpoint
from attngraph.training.trainer import Trainer, TrainingError
from attngraph_cli.main import main


@pytest.fixture
def first(tmp_path):
    """A finished 12-step run: the weights a warm start begins from."""
    assert trainer(tmp_path, "first").run().status == "done"
    return tmp_path / "first" / "checkpoints" / "last.safetensors"


def test_warm_start_takes_the_weights_and_nothing_else(tmp_path, first):
    t = trainer(tmp_path, "second", init_from=first)
    t._setup()
    want = final_params(tmp_path / "first")
    got = t.model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert t.step == 0 and t.sequences == 0 and t.optimizer.state_dict()["state"] == {}  # a fresh optimiser
    info = json.loads((tmp_path / "second" / "init.json").read_text())
    assert info["checkpoint"] == str(first) and info["step"] == 12
    assert info["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    _, meta = load_checkpoint(first)
    assert info["config_hash"] == meta["config_hash"] and info["metrics"] == meta["metrics"]


def test_a_warm_started_run_trains_from_those_weights(tmp_path, first):
    """Same seed, same data: a warm start differs from a fresh run only in where the parameters begin, so its
    first evaluation (step 3) is that of the trained weights moved by 3 steps, not of a random initialisation."""
    fresh = trainer(tmp_path, "fresh").run()
    warm = trainer(tmp_path, "warm", init_from=first).run()
    assert warm.status == fresh.status == "done" and warm.step == 12
    rows = {name: [float(r.split(",")[-1]) for r in (tmp_path / name / "metrics.csv").read_text().splitlines()[1:]]
            for name in ("fresh", "warm", "first")}
    assert len(rows["warm"]) == 4  # its own metrics.csv from step 3, not the first run's rows
    assert rows["warm"][0] <= rows["first"][-1] + 1e-9 < rows["fresh"][0]  # bit errors: kept what it had learned
    _, meta = load_checkpoint(tmp_path / "warm" / "checkpoints" / "last.safetensors")
    assert meta["step"] == 12 and meta["init"]["checkpoint"] == str(first)
    _, best = load_checkpoint(tmp_path / "warm" / "checkpoints" / "best.safetensors")
    assert best["init"] == meta["init"]


def test_a_resumed_warm_start_keeps_its_origin(tmp_path, first):
    assert trainer(tmp_path, "warm", init_from=first).run(until=5).status == "paused"
    assert trainer(tmp_path, "warm", resume=True).run().status == "done"
    _, meta = load_checkpoint(tmp_path / "warm" / "checkpoints" / "last.safetensors")
    assert meta["init"]["step"] == 12 and meta["init"]["checkpoint"] == str(first)


def test_a_chain_of_warm_starts_keeps_the_first_origin(tmp_path, first):
    trainer(tmp_path, "second", init_from=first).run()
    second = tmp_path / "second" / "checkpoints" / "last.safetensors"
    t = trainer(tmp_path, "third", init_from=second)
    t._setup()
    assert t.init_info["checkpoint"] == str(second) and t.init_info["init"]["checkpoint"] == str(first)


def test_init_and_resume_together_is_an_error(tmp_path, first):
    with pytest.raises(TrainingError, match="^--init starts a new run from a checkpoint's weights and --resume "
                                            "continues a run where it stopped: use one of them$"):
        trainer(tmp_path, "first", init_from=first, resume=True)


def test_init_from_another_models_checkpoint_is_a_clear_error(tmp_path, first):
    other = tmp_path / "other"
    other.mkdir()
    spec = write_spec(other, TRAIN)
    spec.write_text(spec.read_text().replace("size: 6", "size: 7"))
    with pytest.raises(TrainingError, match=r"(?s)^--init: .*first/checkpoints/last.safetensors does not fit this "
                                            r"spec's model: .*size mismatch for"):
        Trainer(attngraph.load(spec), tmp_path / "bad", quiet=True, init_from=first).run()


def test_cli_init(tmp_path, first):
    spec = tmp_path / "spec.yaml"
    out = CliRunner().invoke(main, ["train", str(spec), "--quiet", "--threads", "1", "--out", str(tmp_path / "cli"),
                                    "--init", str(first)])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "cli" / "init.json").read_text())["step"] == 12
    missing = CliRunner().invoke(main, ["train", str(spec), "--init", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 2 and "'--init': File" in missing.output and "does not exist" in missing.output
    both = CliRunner().invoke(main, ["train", str(spec), "--quiet", "--out", str(tmp_path / "cli"), "--resume",
                                     "--init", str(first)])
    assert both.exit_code == 1 and "use one of them" in both.output


def test_publish_records_the_warm_start(tmp_path, monkeypatch):
    folder = tmp_path / "gallery" / "tiny-copy"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(GALLERY_SPEC)
    (folder / "entry.yaml").write_text(ENTRY)
    (folder / "README.md").write_text(README)
    spec = attngraph.load(folder / "spec.yaml")
    Trainer(spec, tmp_path / "stage1", quiet=True).run()
    stage1 = tmp_path / "stage1" / "checkpoints" / "best.safetensors"
    Trainer(spec, tmp_path / "stage2", quiet=True, init_from=stage1).run()
    monkeypatch.setenv("ATTNGRAPH_GALLERY", str(tmp_path / "gallery"))
    results = publish(tmp_path / "stage2", folder, say=lambda _: None, render=False)
    _, meta = load_checkpoint(stage1)
    assert results["training"]["init"]["checkpoint"] == str(stage1)
    assert results["training"]["init"]["step"] == meta["step"]
    readme = (folder / "README.md").read_text()
    assert f"The run began from the weights of `{stage1}` (step {meta['step']:,} of an earlier run" in readme

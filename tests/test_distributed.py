"""Data-parallel training: 2 CPU processes (gloo) against one process on the same global batch.

The reference below is written from the definition, not with the trainer: one process draws each rank's
shard from that rank's generator, concatenates the shards (padding the shorter in time), takes the
masked mean loss over the whole batch and steps the optimiser. The 2-process run must end with the
same parameters, the same logged training loss and the same evaluation metrics.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

import attngraph
from attngraph.compiler.module import CompiledModel
from attngraph.training.checkpoint import load_checkpoint, model_tensors
from attngraph.training.distributed import World, rank_seed
from attngraph.training.evaluate import evaluate
from attngraph.training.optim import make_optimizer
from attngraph.training.trainer import Trainer, TrainingError

SPEC = """\
attngraph: 1
name: ddp-copy
inputs: {x: {size: 5}}
targets: {y: {size: 4}}
model:
  ctrl: {kind: lstm, size: 12, in: x}
  head: {kind: linear, size: 4, in: ctrl}
outputs: {y: {from: head, loss: bce}}
task: {kind: copy, width: 4, length: [1, 6]}
train: {optimizer: adam, lr: 0.01, batch: 8, steps: 6, eval_every: 3, eval_batches: 2, checkpoint_every: 3,
        clip_norm: 1.0, seed: 11}
"""

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch built without gloo")


def torchrun(spec, out, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "attngraph",
               "train", str(spec), "--out", str(out), "--threads", "1", "--quiet", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def pad_cat(shards: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate batches along examples, zero-padding (mask False) every tensor to the longest time axis."""
    steps = max(s["x"].shape[1] for s in shards)
    out = {}
    for key in shards[0]:
        parts = []
        for s in shards:
            v = s[key]
            pad = torch.zeros((v.shape[0], steps - v.shape[1], *v.shape[2:]), dtype=v.dtype)
            parts.append(torch.cat([v, pad], dim=1))
        out[key] = torch.cat(parts)
    return out


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    spec = root / "spec.yaml"
    spec.write_text(SPEC)
    torchrun(spec, root / "run")
    return spec, root / "run"


def reference(spec_path):
    """One process, the global batch of 8 made of both ranks' shards of 4."""
    spec = attngraph.load(spec_path)
    cfg, task = spec.sections["train"], spec.sections["task"].train
    torch.manual_seed(cfg.seed)
    model = CompiledModel(spec.ir)
    opt = make_optimizer(model.parameters(), cfg)
    gens = [torch.Generator().manual_seed(rank_seed(cfg.seed, r)) for r in range(2)]
    losses = []
    for _ in range(cfg.steps):
        batch = pad_cat([task.sample(cfg.batch // 2, g) for g in gens])
        loss, _ = model.loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        losses.append(float(loss.detach()))
    return spec, model, losses


def test_two_processes_equal_one_process_on_the_same_global_batch(ddp_run):
    spec_path, run = ddp_run
    spec, model, losses = reference(spec_path)
    tensors, meta = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert meta["step"] == 6 and meta["world_size"] == 2 and meta["sequences"] == 48
    got = model_tensors(tensors)
    for name, want in model.state_dict().items():
        torch.testing.assert_close(got[name], want, rtol=1e-4, atol=1e-5, msg=name)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert float(rows[0]["train_loss"]) == pytest.approx(sum(losses[:3]) / 3, rel=1e-5)
    assert float(rows[1]["train_loss"]) == pytest.approx(sum(losses[3:]) / 3, rel=1e-5)
    cfg, eval_task = spec.sections["train"], spec.sections["task"].eval
    want = evaluate(model, eval_task, cfg.batch, cfg.eval_batches, torch.Generator().manual_seed(cfg.seed + 1))
    for name, value in want.items():
        assert float(rows[1][f"eval_{name}"]) == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_two_process_resume_is_exact(ddp_run, tmp_path):
    spec_path, full = ddp_run
    half = tmp_path / "half.yaml"
    half.write_text(SPEC.replace("steps: 6", "steps: 3"))
    torchrun(half, tmp_path / "run")
    tensors, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert "rng.rank1.batch" in tensors  # rank 0 saved rank 1's generator too
    torchrun(spec_path, tmp_path / "run", "--resume")
    resumed = model_tensors(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")[0])
    uninterrupted = model_tensors(load_checkpoint(full / "checkpoints" / "last.safetensors")[0])
    for name, value in uninterrupted.items():
        assert torch.equal(resumed[name], value), name


def test_global_batch_must_split_evenly(tmp_path):
    spec = tmp_path / "odd.yaml"
    spec.write_text(SPEC.replace("batch: 8", "batch: 7"))
    with pytest.raises(TrainingError, match=r"train.batch = 7 does not split evenly over 2 processes \(use a multiple of 2\)"):
        Trainer(attngraph.load(spec), tmp_path / "run", world=World(rank=0, size=2))


def test_eval_batch_must_split_evenly(tmp_path):
    spec = tmp_path / "odd.yaml"
    spec.write_text(SPEC.replace("batch: 8", "batch: 8, eval_batch: 5"))
    with pytest.raises(TrainingError,
                       match=r"train.eval_batch = 5 does not split evenly over 2 processes \(use a multiple of 2\)"):
        Trainer(attngraph.load(spec), tmp_path / "run", world=World(rank=0, size=2))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="-P and PYTHONSAFEPATH need Python 3.11")
def test_nproc_workers_do_not_import_modules_from_the_working_folder(tmp_path):
    """A yaml.py in the folder `attngraph train --nproc 2` runs in was imported by both workers (python -m put the
    working folder first on sys.path); it must not run in the launcher nor in any worker."""
    marker = tmp_path / "ran.txt"
    (tmp_path / "yaml.py").write_text(f"open({str(marker)!r}, 'a').write('ran\\n')\nraise SystemExit('planted yaml.py ran')\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("steps: 6", "steps: 2"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-P", "-m", "attngraph", "train", "spec.yaml", "--out", "run", "--nproc", "2",
               "--threads", "1", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert not marker.exists(), done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()

"""The Python API for gallery models: ``attngraph.load(NAME)``, ``attngraph.pretrained(NAME)`` and
``CompiledModel.load_checkpoint`` (a checkpoint file or a run directory)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import attngraph
from attngraph.gallery import gallery_root
from attngraph.spec.diagnostics import SpecError
from attngraph.training.checkpoint import CheckpointError, load_checkpoint, model_tensors
from attngraph.training.trainer import Trainer

TINY = """\
attngraph: 1
name: tiny-api
inputs: {x: {size: 5}}
targets: {y: {size: 4}}
model:
  ctrl: {kind: lstm, size: 8, in: x}
  head: {kind: linear, size: 4, in: ctrl}
outputs: {y: {from: head, loss: bce}}
task: {kind: copy, width: 4, length: [1, 3]}
train: {optimizer: adam, lr: 0.01, batch: 4, steps: 6, eval_every: 3, eval_batches: 1, checkpoint_every: 3}
"""


def test_load_reads_a_gallery_entry_by_name_as_the_cli_does():
    by_name = attngraph.load("ntm-copy")
    by_path = attngraph.load(gallery_root() / "ntm-copy" / "spec.yaml")
    assert by_name.path == by_path.path and by_name.name == by_path.name == "ntm-copy"


def test_a_file_of_that_name_is_read_before_the_gallery_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ntm-copy").write_text(TINY)
    assert attngraph.load("ntm-copy").name == "tiny-api"


def test_pretrained_has_exactly_the_shipped_weights_and_is_in_eval_mode():
    model = attngraph.pretrained("ntm-copy")
    assert not model.training
    shipped = model_tensors(load_checkpoint(gallery_root() / "ntm-copy" / "checkpoint.safetensors")[0])
    state = model.state_dict()
    assert sorted(state) == sorted(shipped)
    assert all(torch.equal(state[k], shipped[k]) for k in shipped)


def test_pretrained_model_answers_its_task():
    """The shipped NTM copies: at most a few wrong bits per sequence on lengths it was trained on."""
    spec = attngraph.load("ntm-copy")
    model = attngraph.pretrained("ntm-copy")
    task = spec.sections["task"].eval
    batch = task.sample(8, torch.Generator().manual_seed(1234))
    with torch.no_grad():
        bits = task.metrics(model(batch), batch)["bits_per_seq"]
    assert bits < 2.0


def test_pretrained_of_an_unknown_name_suggests_the_close_ones():
    with pytest.raises(SpecError) as err:
        attngraph.pretrained("ntm-cpy")
    assert "no gallery entry named 'ntm-cpy' with a checkpoint (did you mean ntm-copy" in str(err.value)


def test_load_checkpoint_takes_a_file_or_a_run_directory(tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(TINY)
    Trainer(attngraph.load(spec_path), tmp_path / "run", quiet=True).run()
    trained = model_tensors(load_checkpoint(tmp_path / "run" / "checkpoints" / "best.safetensors")[0])
    for where in (tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.safetensors"):
        model = attngraph.build(attngraph.load(spec_path))
        meta = model.load_checkpoint(where)
        assert meta["step"] in (3, 6)
    model = attngraph.build(attngraph.load(spec_path))
    model.load_checkpoint(tmp_path / "run")  # the best one
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())


def test_load_checkpoint_of_another_model_or_an_empty_folder_says_so(tmp_path):
    other = attngraph.build(attngraph.load("lstm-copy"))
    with pytest.raises(CheckpointError, match="does not fit this spec's model"):
        other.load_checkpoint(gallery_root() / "ntm-copy" / "checkpoint.safetensors")
    with pytest.raises(CheckpointError, match="holds no checkpoints/best.safetensors or last.safetensors"):
        other.load_checkpoint(tmp_path)

"""The gallery: publishing a run as an entry, listing and showing entries, and re-checking the shipped ones."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import attngraph
from attngraph.gallery import BEGIN, END, GalleryError, entry_names, gallery_root, load_entry, publish
from attngraph.training.checkpoint import load_checkpoint, model_tensors
from attngraph.training.evaluate import evaluate
from attngraph.training.trainer import Trainer
from attngraph_cli.main import main

SPEC = """\
attngraph: 1
name: tiny-copy
inputs: {x: {size: 5}}
targets: {y: {size: 4}}
model:
  ctrl: {kind: lstm, size: 12, in: x}
  head: {kind: linear, size: 4, in: ctrl}
outputs: {y: {from: head, loss: bce}}
task: {kind: copy, width: 4, length: [1, 4]}
train: {optimizer: adam, lr: 0.01, batch: 8, steps: 30, eval_every: 10, eval_batches: 2, checkpoint_every: 10,
        stop: {metric: bits_per_seq, below: 3.0}}
"""

ENTRY = """\
title: A tiny LSTM on copy
paper: {cite: "Nobody 2026", metric: bits_per_seq, value: 0.5, note: "made up for a test"}
reproduce: attngraph train tiny-copy --out runs/tiny
evaluations:
  - {name: "lengths 1-4", set: []}
  - {name: "length 8", set: ["task.eval.length=[8, 8]"]}
batches: 4
"""

README = f"# tiny\n\nintro\n\n{BEGIN}\nold numbers\n{END}\n\nafter\n"


@pytest.fixture
def entry(tmp_path, monkeypatch):
    """A gallery in tmp_path with one entry, published from a real (tiny) run."""
    root = tmp_path / "gallery"
    folder = root / "tiny-copy"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(SPEC)
    (folder / "entry.yaml").write_text(ENTRY)
    (folder / "README.md").write_text(README)
    Trainer(attngraph.load(folder / "spec.yaml"), tmp_path / "run", quiet=True).run()
    monkeypatch.setenv("ATTNGRAPH_GALLERY", str(root))
    results = publish(tmp_path / "run", folder, say=lambda _: None, render=shutil.which("dot") is not None)
    return folder, results


def test_publish_writes_the_evidence_and_remeasures_on_fresh_data(entry):
    folder, results = entry
    for name in ("checkpoint.safetensors", "checkpoint.json", "metrics.csv", "learning_curve.png", "results.json"):
        assert (folder / name).is_file(), name
    tensors, meta = load_checkpoint(folder / "checkpoint.safetensors")
    assert not any(k.startswith("optim.") for k in tensors)  # weights only: a small file
    spec = attngraph.load(folder / "spec.yaml")
    model = attngraph.build(spec)
    model.load_state_dict(model_tensors(tensors))
    want = evaluate(model, spec.sections["task"].eval, 8, 4, torch.Generator().manual_seed(spec.sections["train"].seed + 1000))
    assert results["ours"]["lengths 1-4"] == pytest.approx(want)
    assert set(results["ours"]) == {"lengths 1-4", "length 8"}
    assert results["training"]["best_step"] == meta["step"]
    reached = results["training"]["first_reached"]
    if reached is not None:  # the stop target: the first evaluation below it, as metrics.csv has it
        assert reached["metric"] == "bits_per_seq" and reached["sequences"] == reached["step"] * 8
    readme = (folder / "README.md").read_text()
    assert "old numbers" not in readme and "| lengths 1-4 |" in readme and readme.endswith(f"{END}\n\nafter\n")


def test_eval_of_a_gallery_name_rechecks_the_shipped_checkpoint(entry):
    _, results = entry
    out = CliRunner().invoke(main, ["eval", "tiny-copy", "--json", "--batches", "4"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == pytest.approx(results["ours"]["lengths 1-4"])
    other = json.loads(CliRunner().invoke(main, ["eval", "tiny-copy", "--json", "--batches", "4", "--seed", "5"]).output)
    assert other != results["ours"]["lengths 1-4"]  # a different seed is different data


def test_gallery_lists_and_shows_entries(entry):
    out = CliRunner().invoke(main, ["gallery"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["name", "task", "metric", "paper", "ours", "sequences", "training", "time"]
    assert lines[2].split()[:4] == ["tiny-copy", "copy", "bits_per_seq", "0.5"]
    shown = CliRunner().invoke(main, ["gallery", "show", "tiny-copy"])
    assert shown.exit_code == 0 and "reproduce: attngraph train tiny-copy --out runs/tiny" in shown.output
    assert "length 8" in shown.output and "Nobody 2026" in shown.output
    assert json.loads(CliRunner().invoke(main, ["gallery", "show", "tiny-copy", "--json"]).output)["task"] == "copy"


def test_gallery_show_unknown_name(entry):
    out = CliRunner().invoke(main, ["gallery", "show", "tiny-cpy"])
    assert out.exit_code == 1
    assert "no gallery entry 'tiny-cpy' (entries: tiny-copy)" in out.output


def test_publish_refuses_a_run_of_another_spec(entry, tmp_path):
    folder, _ = entry
    (folder / "spec.yaml").write_text(SPEC.replace("lr: 0.01", "lr: 0.02"))
    with pytest.raises(GalleryError, match="was not trained from"):
        publish(tmp_path / "run", folder, say=lambda _: None, render=False)


def test_publish_needs_entry_yaml(entry, tmp_path):
    folder, _ = entry
    (folder / "entry.yaml").unlink()
    with pytest.raises(GalleryError, match="entry.yaml: missing"):
        publish(tmp_path / "run", folder, say=lambda _: None, render=False)


REAL = Path(__file__).resolve().parents[1] / "gallery"


@pytest.mark.parametrize("name", entry_names(REAL))
def test_shipped_entry_is_complete_and_its_first_number_reproduces(name, monkeypatch):
    monkeypatch.delenv("ATTNGRAPH_GALLERY", raising=False)
    assert gallery_root() == REAL
    entry = load_entry(name, REAL)
    for f in ("spec.yaml", "entry.yaml", "README.md", "checkpoint.safetensors", "checkpoint.json", "metrics.csv",
              "learning_curve.png", "model.svg"):
        assert (entry.path / f).is_file(), f
    first, sets = next(iter(entry.results["ours"].items())), entry.results["evaluation"]["sets"]
    ev = entry.results["evaluation"]
    out = CliRunner().invoke(main, ["eval", name, "--json", "--batches", str(ev["batches"]), "--batch", str(ev["batch"]),
                                    *[a for s in sets[first[0]] for a in ("--set", s)]])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == pytest.approx(first[1], rel=1e-4, abs=1e-6)

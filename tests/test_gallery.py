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


def published(tmp_path: Path, monkeypatch, name: str, spec: str, entry_yaml: str, render: bool) -> tuple[Path, dict]:
    """A gallery in tmp_path (made the gallery root) with entry ``name``, published from a real (tiny) run."""
    root = tmp_path / "gallery"
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(spec)
    (folder / "entry.yaml").write_text(entry_yaml)
    (folder / "README.md").write_text(README)
    Trainer(attngraph.load(folder / "spec.yaml"), tmp_path / "run", quiet=True).run()
    monkeypatch.setenv("ATTNGRAPH_GALLERY", str(root))
    return folder, publish(tmp_path / "run", folder, say=lambda _: None, render=render)


@pytest.fixture
def entry(tmp_path, monkeypatch):
    """A gallery in tmp_path with one entry, published from a real (tiny) run."""
    return published(tmp_path, monkeypatch, "tiny-copy", SPEC, ENTRY, shutil.which("dot") is not None)


def test_publish_writes_the_evidence_and_remeasures_on_fresh_data(entry):
    folder, results = entry
    for name in ("checkpoint.safetensors", "metrics.csv", "learning_curve.png", "results.json"):
        assert (folder / name).is_file(), name
    assert not (folder / "checkpoint.json").exists()  # one file: the metadata is in its header
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


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fault", ["no learning curve", "evaluation fails", "disk full on results.json"])
def test_a_failed_publish_leaves_the_entry_as_it_was(entry, tmp_path, monkeypatch, fault):
    """Issue 27, finding 6: the new entry is built aside and swapped in whole, or not at all."""
    import attngraph.gallery as gallery

    folder, _ = entry
    Trainer(attngraph.load(folder / "spec.yaml", ["train.seed=1"]), tmp_path / "run2", quiet=True).run()
    before = snapshot(folder)
    if fault == "no learning curve":
        (tmp_path / "run2" / "learning_curve.png").unlink()
        with pytest.raises(GalleryError, match=r"run2 has no learning_curve.png: nothing was published"):
            publish(tmp_path / "run2", folder, say=lambda _: None, render=False)
    else:
        (folder / "spec.yaml").write_text(SPEC.replace("train: {", "train: {seed: 1, "))
        before = snapshot(folder)
        if fault == "evaluation fails":
            def broken(*args, **kwargs):
                raise RuntimeError("evaluation broke")
            monkeypatch.setattr("attngraph.training.evaluate.evaluate", broken)
            match = "evaluation broke"
        else:
            real = Path.write_text

            def full(self, *args, **kwargs):
                if self.name == "results.json":
                    raise OSError(28, "No space left on device")
                return real(self, *args, **kwargs)
            monkeypatch.setattr(Path, "write_text", full)
            match = "No space left"
        with pytest.raises((RuntimeError, OSError), match=match):
            publish(tmp_path / "run2", folder, say=lambda _: None, render=False)
    monkeypatch.undo()
    assert snapshot(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny-copy"]  # no staging folder left behind
    assert gallery.load_entry("tiny-copy", folder.parent).results["name"] == "tiny-copy"


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
    for f in ("spec.yaml", "entry.yaml", "README.md", "checkpoint.safetensors", "metrics.csv",
              "learning_curve.png", "model.svg"):
        assert (entry.path / f).is_file(), f
    first, sets = next(iter(entry.results["ours"].items())), entry.results["evaluation"]["sets"]
    ev = entry.results["evaluation"]
    out = CliRunner().invoke(main, ["eval", name, "--json", "--batches", str(ev["batches"]), "--batch", str(ev["batch"]),
                                    *[a for s in sets[first[0]] for a in ("--set", s)]])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == pytest.approx(first[1], rel=1e-4, abs=1e-6)


SEQ2SEQ = """\
attngraph: 1
name: tiny-reversal
inputs: {src: {vocab: 4}}
targets: {tgt: {classes: 5}}
model:
  emb: {kind: embedding, size: 6, in: src}
  enc: {kind: gru, size: 8, in: emb}
  dec:
    kind: decode
    target: tgt
    max_length: 6
    body:
      tok: {kind: embedding, size: 6, in: prev(dec)}
      att: {kind: attention, score: dot, query: prev(rnn), keys: enc}
      rnn: {kind: gru, size: 8, in: [tok, att]}
      logits: {kind: linear, size: 5, in: rnn}
    output: logits
outputs: {tgt: {from: dec, loss: cross_entropy}}
task: {kind: reversal, vocab: 3, length: [1, 5], long: [4, 5]}
train: {optimizer: adam, lr: 0.01, batch: 8, steps: 10, eval_every: 5, eval_batches: 2, checkpoint_every: 5}
"""

SEQ2SEQ_ENTRY = """\
title: A tiny attention reversal
paper: {cite: "Nobody 2026", metric: sequence_accuracy, value: null, note: "made up for a test"}
reproduce: attngraph train tiny-reversal --out runs/tiny
evaluations:
  - {name: "greedy", set: []}
  - {name: "beam 3", set: [], beam: 3}
batches: 2
batch: 16
"""


def test_seq2seq_entry_evaluates_beam_search_and_plots_accuracy_by_length(tmp_path, monkeypatch):
    from attngraph.gallery import by_length

    folder, results = published(tmp_path, monkeypatch, "tiny-reversal", SEQ2SEQ, SEQ2SEQ_ENTRY, render=False)
    assert results["evaluation"]["beams"] == {"beam 3": 3}
    # the beam row's metrics are those of model.generate(beam=3) on the same data, its loss greedy's
    spec = attngraph.load(folder / "spec.yaml")
    model = attngraph.build(spec)
    from attngraph.training.checkpoint import load_weights
    load_weights(model, folder / "checkpoint.safetensors")
    task, seed = spec.sections["task"].eval, results["evaluation"]["seed"]
    want = evaluate(model, task, 16, 2, torch.Generator().manual_seed(seed), beam=3)
    assert results["ours"]["beam 3"] == pytest.approx(want)
    assert results["ours"]["beam 3"]["loss"] == pytest.approx(results["ours"]["greedy"]["loss"])

    counts = by_length(["tiny-reversal"], tmp_path / "plot.png", batches=3, batch=16, seed=7, say=lambda _: None)
    rows = counts["tiny-reversal"]
    assert set(rows) <= {1, 2, 3, 4, 5} and sum(t for _, t in rows.values()) == 48
    data_gen, exact = torch.Generator().manual_seed(7), {}
    model.eval()
    with torch.no_grad():
        for _ in range(3):  # the same data, measured here by the task's own metric per length bucket
            data = task.sample(16, data_gen)
            ok = task._scores(model(data), data)[2]
            for n, good in zip(data["src.mask"].sum(1).tolist(), ok.tolist()):
                exact[n] = exact.get(n, 0) + int(good)
    assert {n: c for n, (c, _) in rows.items()} == exact
    assert (tmp_path / "plot.png").is_file() and (tmp_path / "plot.csv").read_text().startswith("entry,length,exact")


def test_by_length_refuses_a_task_that_does_not_measure_it(entry, tmp_path):
    from attngraph.gallery import by_length

    with pytest.raises(GalleryError, match="tiny-copy: task 'copy' does not measure accuracy by length"):
        by_length(["tiny-copy"], tmp_path / "x.png", say=lambda _: None)


def test_a_staging_copy_left_by_a_killed_publish_is_not_an_entry(entry):
    """kill -9 during publish leaves the hidden copy it was building beside the entry: it is not listed."""
    folder, _ = entry
    shutil.copytree(folder, folder.parent / f".{folder.name}.new-abc123")
    assert entry_names(folder.parent) == [folder.name]

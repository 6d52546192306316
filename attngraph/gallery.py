"""The gallery: published models this project reproduced, one folder ``gallery/NAME/`` each.

An entry is made in two steps. A person writes ``spec.yaml`` (model, task, training) and ``entry.yaml``
(the paper's claim and which evaluations to run), trains the spec, and then :func:`publish` turns the run
directory into the entry's evidence: the weights of the best checkpoint (no optimiser state), its
metrics.csv and learning curve, the diagram, and ``results.json`` with every evaluation re-measured on
fresh data (seed ``train.seed + 1000``, the seed ``attngraph eval`` uses). ``attngraph gallery`` reads
the ``results.json`` files; nothing in them is typed by hand.

``entry.yaml``::

    title: LSTM on the copy task
    paper: {cite: "Graves, Wayne, Danihelka 2014, Neural Turing Machines", metric: bits_per_seq,
            value: null, note: "learning curve only (Fig. 3)"}
    reproduce: attngraph train lstm-copy --threads 1 --out runs/lstm-copy
    evaluations:                      # each: a name and --set overrides of the spec
      - {name: "lengths 1-20", set: []}
      - {name: "length 40", set: ["task.eval.length=[40, 40]"]}
      - {name: "beam 5", set: [], beam: 5}   # a decoder's metrics under beam search of width 5
    batches: 50                       # evaluation batches (default 50)
    batch: 64                         # sequences per evaluation batch (default train.batch)
    target: {metric: bits_per_seq, below: 0.1}   # report when training first met it (default train.stop)
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RESULTS = "results.json"
ENTRY = "entry.yaml"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


class GalleryError(Exception):
    """A gallery entry that is missing or malformed, or a run that cannot be published."""


def gallery_root() -> Path:
    """``$ATTNGRAPH_GALLERY``, else the ``gallery/`` folder of this checkout."""
    return Path(os.environ.get("ATTNGRAPH_GALLERY") or Path(__file__).resolve().parents[1] / "gallery")


@dataclass
class Entry:
    name: str
    path: Path
    results: dict[str, Any]

    @property
    def metric(self) -> str:
        return self.results["metric"]

    def main_value(self) -> float | None:
        """Our value of the headline metric on the first evaluation."""
        first = next(iter(self.results["ours"].values()), {})
        return first.get(self.metric)


def entry_names(root: Path | None = None) -> list[str]:
    """The entries of the gallery at ``root``: its folders with a results file, hidden ones left out (a publish
    killed mid-way leaves its ``.NAME.new-*`` staging copy there)."""
    root = root or gallery_root()
    return sorted(p.parent.name for p in root.glob(f"*/{RESULTS}") if not p.parent.name.startswith("."))


def load_entry(name: str, root: Path | None = None) -> Entry:
    root = root or gallery_root()
    path = root / name / RESULTS
    if not path.is_file():
        known = entry_names(root)
        raise GalleryError(f"no gallery entry '{name}' (entries: {', '.join(known) if known else 'none'})")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise GalleryError(f"{path}: cannot read: {err}") from err
    missing = [k for k in ("title", "metric", "paper", "ours", "training") if k not in results]
    if missing:
        raise GalleryError(f"{path}: missing {', '.join(missing)}")
    return Entry(name, path.parent, results)


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.4g}"


def duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def table(entries: list[Entry]) -> list[list[str]]:
    """Rows of the gallery listing (the first row is the header)."""
    rows = [["name", "task", "metric", "paper", "ours", "sequences", "training time"]]
    for e in entries:
        r = e.results
        rows.append([e.name, r.get("task", "?"), r["metric"], fmt(r["paper"].get("value")), fmt(e.main_value()),
                     f"{r['training']['sequences']:,}", duration(r["training"]["seconds"])])
    return rows


def show(entry: Entry) -> str:
    """A text account of one entry: the claim, every evaluation, how it was trained and how to reproduce it."""
    r = entry.results
    paper, train = r["paper"], r["training"]
    lines = [f"{entry.name}: {r['title']}", ""]
    lines.append(f"paper:   {paper.get('cite', '?')}")
    claim = f"{r['metric']} = {fmt(paper.get('value'))}" if paper.get("value") is not None else "no number given"
    lines.append(f"         {claim}" + (f" ({paper['note']})" if paper.get("note") else ""))
    lines.append("")
    lines.append(f"ours (fresh data, seed {r['evaluation']['seed']}, {r['evaluation']['sequences']:,} sequences each):")
    names = list(next(iter(r["ours"].values()), {}))
    width = max(len(n) for n in r["ours"]) if r["ours"] else 10
    lines.append("  " + " " * width + "  " + "  ".join(f"{n:>17}" for n in names))
    for name, metrics in r["ours"].items():
        lines.append(f"  {name:<{width}}  " + "  ".join(f"{fmt(metrics.get(n)):>17}" for n in names))
    lines.append("")
    lines.append(f"trained: {train['steps']:,} steps, {train['sequences']:,} sequences, {duration(train['seconds'])} "
                 f"on {train.get('machine', '?')}; best checkpoint at step {train['best_step']:,}")
    if train.get("first_reached"):
        fr = train["first_reached"]
        lines.append(f"         {fr['metric']} first {fr['condition']} at step {fr['step']:,} ({fr['sequences']:,} sequences)")
    lines.append(f"reproduce: {r.get('reproduce', '?')}")
    lines.append(f"re-check:  attngraph eval {entry.name} --json")
    lines.append(f"files:     {entry.path}")
    return "\n".join(lines)


# -- publishing a run -----------------------------------------------------------------------------------------

def _read_entry_yaml(entry_dir: Path) -> dict[str, Any]:
    path = entry_dir / ENTRY
    if not path.is_file():
        raise GalleryError(f"{path}: missing (title, paper, reproduce and evaluations of the entry; see "
                           "attngraph/gallery.py)")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key in ("title", "paper", "reproduce", "evaluations"):
        if key not in data:
            raise GalleryError(f"{path}: missing '{key}'")
    for i, ev in enumerate(data["evaluations"]):
        if not isinstance(ev, dict) or "name" not in ev or not isinstance(ev.get("set", []), list):
            raise GalleryError(f"{path}: evaluations[{i}]: expected {{name: ..., set: [KEY=VALUE, ...]}}")
        beam = ev.get("beam")
        if beam is not None and (not isinstance(beam, int) or isinstance(beam, bool) or beam < 1):
            raise GalleryError(f"{path}: evaluations[{i}].beam: expected a beam width (an integer ≥ 1), not {beam!r}")
    return data


def _first_reached(rows: list[dict[str, str]], target: dict[str, Any] | None) -> dict[str, Any] | None:
    """The first evaluation that met ``target`` ({metric, below} or {metric, above}), as metrics.csv has it."""
    if not target:
        return None
    metric, below, above = target["metric"], target.get("below"), target.get("above")
    for row in rows:
        value = float(row.get(f"eval_{metric}", "nan"))
        if (below is not None and value < below) or (above is not None and value > above):
            condition = f"below {below}" if below is not None else f"above {above}"
            return {"metric": metric, "condition": condition, "step": int(row["step"]),
                    "sequences": int(row["sequences"])}
    return None


def publish(run: Path, entry_dir: Path, *, say=print, render: bool = True) -> dict[str, Any]:
    """Make ``entry_dir`` (holding spec.yaml and entry.yaml) the gallery entry of training run ``run``.

    The new entry is built in a copy beside it and swapped in only once complete: a publish that fails at any
    point (a missing learning curve, an evaluation error, a full disk) leaves the entry as it was."""
    from .training.atomic import staging_copy, swap_in

    run, final_dir = Path(run), Path(entry_dir)
    for name in ("metrics.csv", "learning_curve.png"):
        if not (run / name).is_file():
            raise GalleryError(f"{run} has no {name}: nothing was published (is it a finished training run?)")
    entry_dir = staging_copy(final_dir)
    try:
        results = _publish_into(run, entry_dir, final_dir.name, say=say, render=render)
        swap_in(entry_dir, final_dir)
    except BaseException:
        shutil.rmtree(entry_dir, ignore_errors=True)
        raise
    return results


def _publish_into(run: Path, entry_dir: Path, entry_name: str, *, say, render: bool) -> dict[str, Any]:
    """Write the entry of ``run`` into ``entry_dir`` (a staging copy of the entry called ``entry_name``)."""
    import csv

    import torch

    from . import api
    from .training.checkpoint import load_checkpoint, load_weights, save_checkpoint
    from .training.config import TrainConfig
    from .training.evaluate import evaluate
    from .training.rundir import config_hash, git_commit

    info = _read_entry_yaml(entry_dir)
    spec_path = entry_dir / "spec.yaml"
    spec = api.load(spec_path)
    _, last = load_checkpoint(run / "checkpoints" / "last.safetensors")
    if last.get("config_hash") != config_hash(spec):
        raise GalleryError(f"{run} was not trained from {spec_path} (its model, task or train section differs)")
    model = api.build(spec)
    meta = load_weights(model, run / "checkpoints" / "best.safetensors")
    save_checkpoint(entry_dir / "checkpoint.safetensors", model, None, None,
                    {k: meta[k] for k in ("step", "sequences", "seconds", "metrics", "seed", "config_hash")})
    for name in ("metrics.csv", "learning_curve.png"):
        shutil.copyfile(run / name, entry_dir / name)
    if render:
        from .render import render as draw

        draw(spec, entry_dir / "model.svg")
    cfg: TrainConfig = spec.sections.get("train") or TrainConfig()
    seed, batches, size = cfg.seed + 1000, int(info.get("batches", 50)), int(info.get("batch", cfg.batch))
    ours: dict[str, dict[str, float]] = {}
    for ev in info["evaluations"]:
        variant = api.load(spec_path, list(ev.get("set", [])))
        model.eval()
        ours[ev["name"]] = evaluate(model, variant.sections["task"].eval, size, batches,
                                    torch.Generator().manual_seed(seed), beam=ev.get("beam"))
        say(f"{ev['name']}: " + ", ".join(f"{k} {v:.4g}" for k, v in ours[ev["name"]].items()))
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    task = spec.sections["task"].train
    results = {
        "name": entry_name, "title": info["title"], "task": task.name,
        "metric": info.get("metric") or info["paper"].get("metric") or "loss",
        "paper": info["paper"], "ours": ours,
        "evaluation": {"seed": seed, "batches": batches, "batch": size, "sequences": batches * size,
                       "sets": {ev["name"]: list(ev.get("set", [])) for ev in info["evaluations"]},
                       "beams": {ev["name"]: ev["beam"] for ev in info["evaluations"] if ev.get("beam")}},
        "training": {"steps": last["step"], "sequences": last["sequences"], "seconds": round(last["seconds"], 1),
                     "best_step": meta["step"], "best_metrics": meta["metrics"],
                     "first_reached": _first_reached(rows, info.get("target") or (
                         vars(cfg.stop) if cfg.stop is not None else None)),
                     "threads": info.get("threads"), "machine": info.get("machine") or _machine(),
                     **({"init": meta["init"]} if meta.get("init") else {})},
        "reproduce": info["reproduce"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "attngraph_commit": git_commit(),
    }
    (entry_dir / RESULTS).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    _update_readme(entry_dir / "README.md", Entry(entry_name, entry_dir, results))
    return results


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def _update_readme(path: Path, entry: Entry) -> None:
    """Rewrite the block between the results markers of the entry's README with the measured table."""
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return
    r = entry.results
    names = list(next(iter(r["ours"].values()), {}))
    lines = ["| evaluation | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, metrics in r["ours"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(metrics[n]) for n in names) + " |")
    t = r["training"]
    lines += ["", f"Measured on {r['evaluation']['sequences']:,} fresh sequences per row (seed {r['evaluation']['seed']}). "
              f"Trained {t['steps']:,} steps ({t['sequences']:,} sequences) in {duration(t['seconds'])} on {t['machine']}; "
              f"the shipped checkpoint is the best evaluation, at step {t['best_step']:,}."]
    if t.get("first_reached"):
        fr = t["first_reached"]
        lines.append(f"{fr['metric']} was first {fr['condition']} at step {fr['step']:,} ({fr['sequences']:,} sequences).")
    init = t.get("init")
    while init:  # a warm start (train --init): the run began from another run's weights
        lines.append(f"The run began from the weights of `{init['checkpoint']}` (step {init['step']:,} of an earlier "
                     f"run, sha256 {init['sha256'][:12]}…); entry.yaml's `reproduce` has every stage's command.")
        init = init.get("init")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail, encoding="utf-8")


def by_length(names: list[str], out: Path, *, batches: int = 32, batch: int = 64, seed: int | None = None,
              say=print, root: Path | None = None) -> dict[str, dict[int, tuple[int, int]]]:
    """Sequence accuracy against source length for gallery entries whose task measures it
    (``accuracy_by_length``), each from its shipped checkpoint on the same fresh data (seed
    ``train.seed + 1000`` of the first entry unless ``seed``), drawn into one plot at ``out`` (.png/.svg/.pdf)
    with a CSV of the counts beside it. Returns name -> {length: (exact, examples)}."""
    import torch

    from . import api
    from .training.checkpoint import load_weights
    from .training.config import TrainConfig

    counts: dict[str, dict[int, tuple[int, int]]] = {}
    for name in names:
        entry = load_entry(name, root)
        spec = api.load(entry.path / "spec.yaml")
        task = spec.sections["task"].eval
        if not hasattr(task, "accuracy_by_length"):
            raise GalleryError(f"{name}: task '{task.name}' does not measure accuracy by length")
        model = api.build(spec)
        load_weights(model, entry.path / "checkpoint.safetensors")
        model.eval()
        cfg: TrainConfig = spec.sections.get("train") or TrainConfig()
        gen = torch.Generator().manual_seed(cfg.seed + 1000 if seed is None else seed)
        total: dict[int, list[int]] = {}
        with torch.no_grad():
            for _ in range(batches):
                data = task.sample(batch, gen)
                for n, (c, t) in task.accuracy_by_length(model(data), data).items():
                    acc = total.setdefault(n, [0, 0])
                    acc[0], acc[1] = acc[0] + c, acc[1] + t
        counts[name] = {n: (c, t) for n, (c, t) in sorted(total.items())}
        say(f"{name}: " + ", ".join(f"{n}: {c / t:.3f}" for n, (c, t) in counts[name].items()))
    _plot_by_length(counts, Path(out), batches * batch)
    return counts


def _plot_by_length(counts: dict[str, dict[int, tuple[int, int]]], out: Path, sequences: int) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["entry", "length", "exact", "examples", "sequence_accuracy"])
        for name, rows in counts.items():
            for n, (c, t) in rows.items():
                writer.writerow([name, n, c, t, f"{c / t:.4f}"])
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, rows in counts.items():
        ax.plot(list(rows), [c / t for c, t in rows.values()], marker="o", markersize=3, label=name)
    ax.set_xlabel("source length")
    ax.set_ylabel("sequence accuracy (exact answers)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"accuracy by length ({sequences:,} fresh sequences per entry, greedy decoding)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)

"""The run directory: the resolved spec, overrides, versions, metrics.csv, checkpoints/ and learning_curve.png."""
from __future__ import annotations

import csv
import hashlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..api import Spec
from ..resolved import resolved

FIXED_COLUMNS = ("step", "seconds", "sequences", "lr", "train_loss")


def default_run_dir(spec: Spec, root: Path = Path("runs"), when: float | None = None) -> Path:
    """``runs/<spec name>-<YYYYmmdd-HHMMSS>`` (local time ``when``, default now)."""
    return root / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def latest_run_dir(spec: Spec, root: Path = Path("runs")) -> Path | None:
    """The newest ``runs/<spec name>-*`` that has a last checkpoint (what a bare ``--resume`` continues)."""
    runs = sorted(p for p in root.glob(f"{spec.name}-*") if (p / "checkpoints" / "last.safetensors").is_file())
    return runs[-1] if runs else None


def config_hash(spec: Spec) -> str:
    """SHA-256 of the resolved spec (model, task and train sections), to notice a changed spec on resume.
    ``train.compile`` is left out: it changes how fast the same math runs, not the math, so a run may be
    resumed with it switched on or off (and published from the spec without it)."""
    data = resolved(spec)
    if isinstance(data.get("train"), dict):
        data["train"] = {k: v for k, v in data["train"].items() if k != "compile"}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit() -> str | None:
    """The working tree's commit (``git rev-parse HEAD``), or None when not in a repository or git is missing."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def versions() -> dict[str, Any]:
    """Python, torch, attngraph and platform versions and the git commit, for versions.json."""
    import torch

    from .. import __version__

    return {"python": sys.version.split()[0], "torch": torch.__version__, "attngraph": __version__,
            "platform": platform.platform(), "git_commit": git_commit()}


def write_run_files(out: Path, spec: Spec, init: dict[str, Any] | None = None) -> None:
    """Create ``out`` and ``out/checkpoints`` and write spec.resolved.yaml, overrides.txt and versions.json;
    for a warm start (``train --init``) also init.json, where its weights came from."""
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "spec.resolved.yaml").write_text(yaml.safe_dump(resolved(spec), sort_keys=False, default_flow_style=None,
                                                           width=100))
    (out / "overrides.txt").write_text("".join(f"{o}\n" for o in spec.overrides))
    (out / "versions.json").write_text(json.dumps(versions(), indent=1) + "\n")
    if init is not None:
        (out / "init.json").write_text(json.dumps(init, indent=1) + "\n")


class MetricsLog:
    """metrics.csv: one row per evaluation (step, seconds, sequences, lr, train_loss, eval metrics), flushed."""

    def __init__(self, path: Path, metric_names: tuple[str, ...]):
        self.path = path
        self.columns = [*FIXED_COLUMNS, *(f"eval_{m}" for m in metric_names)]
        self.rows: list[dict[str, float]] = []

    def start(self, keep_until: int | None) -> None:
        """Begin the file; on resume keep the rows up to step ``keep_until`` (later ones were never checkpointed)."""
        if keep_until is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                self.rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)
                             if int(float(row["step"])) <= keep_until]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows({k: _fmt(v) for k, v in row.items()} for row in self.rows)

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _fmt(row.get(k, float("nan"))) for k in self.columns})
            f.flush()


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def plot_learning_curve(rows: list[dict[str, float]], path: Path, metric_names: tuple[str, ...]) -> None:
    """learning_curve.png: train loss and each eval metric against sequences seen (one panel per metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    seen = [r["sequences"] for r in rows]
    fig, axes = plt.subplots(1, len(metric_names), figsize=(4.5 * len(metric_names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], metric_names):
        if name == "loss":
            ax.plot(seen, [r["train_loss"] for r in rows], label="train")
        ax.plot(seen, [r[f"eval_{name}"] for r in rows], label="eval")
        ax.set_xlabel("sequences seen")
        ax.set_title(name)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


EVENT_TAGS = {"train_loss": "train/loss", "lr": "train/lr", "seconds": "speed/seconds", "sequences": "speed/sequences"}


class EventLog:
    """TensorBoard event files under ``<run>/tensorboard``: every metrics.csv column but ``step`` as a
    scalar (``train/loss``, ``train/lr``, ``eval/<metric>``, ``speed/sequences``...).

    On resume the event files are written afresh from the rows metrics.csv kept (those up to the resumed
    step), so the part of the old run that the checkpoint does not hold never shows, whatever order
    TensorBoard reads several files in."""

    def __init__(self, out: Path, replay: list[dict[str, float]] | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency; a broken install only loses the event files
            self.writer = None
            return
        folder = Path(out) / "tensorboard"
        if replay is not None and folder.is_dir():
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(str(folder))
        for row in replay or []:
            self.append(row)

    def append(self, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "step":
                tag = EVENT_TAGS.get(key) or ("eval/" + key[len("eval_"):] if key.startswith("eval_") else key)
                self.writer.add_scalar(tag, value, global_step=int(row["step"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


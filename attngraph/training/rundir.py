"""The run directory: the resolved spec, overrides, versions, metrics.csv, checkpoints/ and learning_curve.png."""
from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..api import Spec
from ..components.losses import LOSSES
from ..resolved import resolved
from .atomic import atomic_write
from .config import OPTIMIZER_KEYS, SCHEDULE_SCHEMAS, SCHEMA, TrainConfig
from .outdir import STAMP, safe_name

FIXED_COLUMNS = ("step", "seconds", "sequences", "lr", "train_loss")


def latest_run_dir(spec: Spec, root: Path = Path("runs")) -> Path | None:
    """The newest ``runs/<safe spec name>-<YYYYmmdd-HHMMSS>`` whose last checkpoint was trained from exactly this
    spec (same :func:`resume_hash`): what a bare ``--resume`` continues. Another spec whose name merely starts
    the same (``tiny`` and ``tiny-old-experiment``) never matches."""
    from .checkpoint import CheckpointError, read_meta

    name, wanted = safe_name(spec.name), resume_hash(spec)
    for run in sorted(root.glob(f"{glob.escape(name)}-*"), reverse=True):
        if run.name[len(name):] and STAMP.fullmatch(run.name[len(name):]):
            try:
                if read_meta(run / "checkpoints" / "last.safetensors").get("resume_hash") == wanted:
                    return run
            except CheckpointError:
                continue
    return None


def config_hash(spec: Spec) -> str:
    """SHA-256 of the resolved spec (model, task and train sections), to notice a changed spec on resume.
    ``train.compile`` is left out: it changes how fast the same math runs, not the math, so a run may be
    resumed with it switched on or off (and published from the spec without it). So is every loss option at its
    default: a loss that gains an option (cross-entropy's ``label_smoothing``) keeps the hashes of the runs
    trained before it, since at its default it computes what the loss computed then."""
    data = resolved(spec)
    if isinstance(data.get("train"), dict):
        data["train"] = {k: v for k, v in data["train"].items() if k != "compile"}
    for out in data.get("outputs", {}).values():
        defaults = LOSSES[out["loss"]].options if out.get("loss") in LOSSES else {}
        for key, param in defaults.items():
            if key in out and out[key] == param.default:
                del out[key]
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


# train: settings that say how long to run and how often to look, not what a step computes: a run may be resumed
# with them changed (train.steps raised to continue a run) without counting as another spec
RUN_LENGTH_KEYS = ("steps", "stop", "eval_every", "checkpoint_every", "log_every", "eval_batches", "eval_batch",
                   "max_params", "nan", "compile")


def resume_hash(spec: Spec) -> str:
    """SHA-256 of what every training step computes: the model, the task, and the train: section with every
    default filled in, less :data:`RUN_LENGTH_KEYS` (``steps`` stays in with a cosine schedule, whose rate at
    every step depends on it). ``--resume`` refuses a checkpoint whose ``resume_hash`` differs."""
    data = resolved(spec)
    cfg = spec.sections.get("train") or TrainConfig()
    length = [k for k in RUN_LENGTH_KEYS if not (k == "steps" and cfg.schedule.kind == "cosine")]
    data["train"] = {k: v for k, v in train_defaults(cfg).items() if k not in length}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def git_commit() -> str | None:
    """The working tree's commit (``git rev-parse HEAD``), or None when not in a repository or git is missing."""
    return (_git("rev-parse", "HEAD") or "").strip() or None


def git_dirty() -> bool | None:
    """Whether attngraph's git tree has uncommitted changes to tracked files (None: not a git checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status.strip())


def versions() -> dict[str, Any]:
    """Python, torch, attngraph and platform versions and the git commit, for versions.json."""
    import torch

    from .. import __version__

    return {"python": sys.version.split()[0], "torch": torch.__version__, "attngraph": __version__,
            "platform": platform.platform(), "git_commit": git_commit(), "git_dirty": git_dirty()}


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def train_defaults(cfg: TrainConfig) -> dict[str, Any]:
    """Every ``train:`` setting in effect, as a spec would write it: the optimiser's own keys only, the schedule
    with its kind's keys, ``eval_batch`` and adam's ``betas`` as the values in effect; settings that are off
    (``clip_norm``, ``stop``...) are left out."""
    out: dict[str, Any] = {}
    foreign = {k for keys in OPTIMIZER_KEYS.values() for k in keys} - OPTIMIZER_KEYS[cfg.optimizer]
    in_effect = {"eval_batch": cfg.eval_batch or cfg.batch, "betas": cfg.betas or (0.9, 0.999)}  # None means these
    for key in SCHEMA:
        value = in_effect.get(key, getattr(cfg, key, None))
        if value is None or key in foreign or (key == "gradient_noise_decay" and cfg.gradient_noise is None):
            continue
        if key == "schedule":
            value = {"kind": value.kind, **{k: getattr(value, k) for k in SCHEDULE_SCHEMAS[value.kind]}}
        elif dataclasses.is_dataclass(value):
            value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
        out[key] = _plain(value)
    return out


def run_record_spec(spec: Spec) -> dict[str, Any]:
    """spec.resolved.yaml: :func:`attngraph.resolved.resolved` with every default of the train: and task: sections
    filled in too (``train.seed``, the schedule, ``eval_batch``, ``nan``, the task's parameters)."""
    data = resolved(spec)
    cfg = spec.sections.get("train")
    data["train"] = train_defaults(cfg if cfg is not None else TrainConfig())
    section = spec.sections.get("task")
    if section is not None and isinstance(data.get("task"), dict):
        task = section.train
        filled = {"kind": task.name, **{k: _plain(getattr(task.p, k)) for k in type(task).params
                                         if getattr(task.p, k, None) is not None}}  # None: left unset
        data["task"] = {**filled, **({"eval": data["task"]["eval"]} if "eval" in data["task"] else {})}
    return data


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def spec_differences(recorded: Path, current: dict[str, Any]) -> list[str]:
    """The key paths whose values differ between a run's spec.resolved.yaml and ``current`` (keys that only one
    side writes are left out: an older run records fewer defaults). [] when the file cannot be read."""
    try:
        theirs = _flatten(yaml.safe_load(recorded.read_text()))
    except (OSError, yaml.YAMLError):
        return []
    ours = _flatten(_plain(current))
    return [k for k in ours if k in theirs and theirs[k] != ours[k]]


def write_run_files(out: Path, spec: Spec, init: dict[str, Any] | None = None) -> None:
    """Create ``out/checkpoints`` and write spec.resolved.yaml, overrides.txt and versions.json; for a warm start
    (``train --init``) also init.json, where its weights came from."""
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "spec.resolved.yaml").write_text(yaml.safe_dump(run_record_spec(spec), sort_keys=False,
                                                           default_flow_style=None, width=100))
    (out / "overrides.txt").write_text("".join(f"{o}\n" for o in spec.overrides))
    (out / "versions.json").write_text(json.dumps(versions(), indent=1) + "\n")
    if init is not None:
        (out / "init.json").write_text(json.dumps(init, indent=1) + "\n")


def record_session(out: Path, *, seed: int, device: str, world_size: int, resumed_at: int | None) -> None:
    """Append this process's session to run.json: the command line, working folder, effective seed, threads,
    device, process count, the git commit and whether the tree had uncommitted changes, the start time, and the
    step it resumed at (None: a fresh start)."""
    import torch

    path = out / "run.json"
    sessions = json.loads(path.read_text()).get("sessions", []) if path.is_file() else []
    program = ["python", "-m", "attngraph"] if Path(sys.argv[0]).name == "__main__.py" else [Path(sys.argv[0]).name]
    sessions.append({"command": shlex.join([*program, *sys.argv[1:]]), "argv": sys.argv, "cwd": os.getcwd(),
                     "seed": seed, "threads": torch.get_num_threads(), "device": device, "processes": world_size,
                     "git_commit": git_commit(), "git_dirty": git_dirty(), "resumed_at": resumed_at,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    atomic_write(path, (json.dumps({"sessions": sessions}, indent=1) + "\n").encode())


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


def plot_learning_curve(rows: list[dict[str, float]], path: Path, metric_names: tuple[str, ...],
                        train_rows: list[dict[str, float]] | None = None) -> None:
    """learning_curve.png: each eval metric against sequences seen (one panel per metric), the loss panel with the
    training loss too (from ``train_rows``, train_loss.csv's, when given). Points are marked, so a curve of one
    evaluation is a visible dot, not an empty panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    train_rows = train_rows or rows
    fig, axes = plt.subplots(1, len(metric_names), figsize=(4.5 * len(metric_names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], metric_names):
        if name == "loss":
            _series(ax, train_rows, "train_loss", "train")
        _series(ax, rows, f"eval_{name}", "eval")
        ax.set_xlabel("sequences seen")
        ax.set_title(name)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _series(ax, rows: list[dict[str, float]], column: str, label: str) -> None:
    ax.plot([r["sequences"] for r in rows], [r[column] for r in rows], label=label,
            marker="o" if len(rows) <= 50 else None, markersize=4)


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


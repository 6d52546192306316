"""``jsonl``: training data from a JSON Lines file, one example per line.

Each line is a JSON object whose keys are the model's input and target names. A value is

- for a sequence of features (``{size: N}``): a list of steps, each a list of N numbers;
- for a sequence of tokens or classes (``{vocab: N}`` / ``{classes: N}``): a list of integers in [0, N);
- without a time axis (``time: false``): one list of N numbers, or one integer.

An input declared on another input's time axis (``time: <input>``) has exactly as many steps as that input
on each line. Sequences may differ in length: a batch is padded and ``"<name>.mask"`` (B, T) marks the valid steps, so
losses count only those. Example (inputs ``x: {size: 2}``, targets ``y: {classes: 3}``)::

    {"x": [[0.5, 1.0], [0.0, 1.0], [1.0, 1.0]], "y": [2, 0, 1]}
    {"x": [[1.0, 0.0]], "y": [1]}

``attngraph check`` reads the file and reports every bad line as ``FILE:LINE:1: key: message``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..components.base import VType
from ..spec.diagnostics import Diagnostics, Pos
from ..spec.params import Param, Str
from .base import Task, task

MAX_REPORTED = 20


@task("jsonl", params={
    "path": Param(Str(), doc="the JSON Lines file, relative to the spec (use eval: {path: ...} for held-out data)"),
}, metrics=("loss",), doc="Examples from a JSON Lines file: one object per line keyed by input and target names.")
class Jsonl(Task):
    """Examples read from a file; sampling draws records with replacement from ``gen`` (seeded, repeatable)."""

    def bind(self, spec_dir: Path, inputs: dict[str, VType], targets: dict[str, VType], diags: Diagnostics) -> bool:
        """Read and validate the file against the model's declared inputs and targets; report bad lines."""
        path = Path(self.p.path)
        path = path if path.is_absolute() else spec_dir / path
        self.p.resolved = str(path)
        self.p.declared = {"inputs": inputs, "targets": targets}
        fields = {**inputs, **targets}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            diags.error(Pos(str(path)), "", f"cannot read the task's data: {getattr(err, 'strerror', None) or err}")
            return False
        records, problems = [], 0
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            message = _check_record(line, fields)
            if isinstance(message, str):
                problems += 1
                if problems <= MAX_REPORTED:
                    diags.error(Pos(str(path), number, 1), "", message)
                continue
            records.append(message)
        if problems > MAX_REPORTED:
            diags.error(Pos(str(path)), "", f"{problems - MAX_REPORTED} more bad lines not shown")
        if not records and not problems:
            diags.error(Pos(str(path)), "", "the file holds no examples")
        self.p.records = records
        return problems == 0 and bool(records)

    def with_params(self, **changes):
        fresh = super().with_params(**changes)
        if "path" in changes:
            fresh.p.records = None  # re-read by the section checker
        return fresh

    def sizes(self):
        return getattr(self.p, "declared", {"inputs": {}, "targets": {}})

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        records = self.p.records
        picks = torch.randint(len(records), (batch,), generator=gen).tolist()
        chosen = [records[i] for i in picks]
        out: dict[str, torch.Tensor] = {}
        for name, t in {**self.p.declared["inputs"], **self.p.declared["targets"]}.items():
            values = [r[name] for r in chosen]
            if t.time is None:
                out[name] = torch.tensor(values, dtype=torch.long if t.index else torch.float32)
                continue
            longest = max(len(v) for v in values)
            shape = (batch, longest) if t.index else (batch, longest, t.size)
            tensor = torch.zeros(shape, dtype=torch.long if t.index else torch.float32)
            mask = torch.zeros(batch, longest, dtype=torch.bool)
            for i, v in enumerate(values):
                if v:
                    tensor[i, :len(v)] = torch.tensor(v, dtype=tensor.dtype)
                mask[i, :len(v)] = True
            out[name], out[f"{name}.mask"] = tensor, mask
        return out

    def metrics(self, outputs, batch):
        return {}


def _check_record(line: str, declared: dict[str, VType]) -> dict | str:
    """The record with plain names, or a message saying what is wrong with the line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err.msg} (column {err.colno})"
    if not isinstance(record, dict):
        return "expected a JSON object keyed by input and target names"
    out = {}
    for name, t in declared.items():
        if name not in record:
            return f"missing '{name}'"
        problem = _check_value(record[name], t, name)
        if problem:
            return problem
        out[name] = record[name]
    for name, t in declared.items():
        owner = t.time
        if owner is not None and owner != name and owner in out and len(out[name]) != len(out[owner]):
            return (f"{name}: {len(out[name])} steps, but it is on the time axis of '{owner}', which has "
                    f"{len(out[owner])} steps (a step of one for each step of the other)")
    return out


def _check_value(value, t: VType, name: str) -> str:
    if t.time is None:
        return _check_step(value, t, name)
    if not isinstance(value, list) or not value:
        return f"{name}: expected a non-empty list of steps"
    for i, step in enumerate(value):
        problem = _check_step(step, t, f"{name}[{i}]")
        if problem:
            return problem
    return ""


def _check_step(step, t: VType, where: str) -> str:
    if t.index:
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < t.size:
            return f"{where}: expected an integer in [0, {t.size}), got {json.dumps(step)}"
        return ""
    if not isinstance(step, list) or len(step) != t.size:
        got = f"{len(step)} numbers" if isinstance(step, list) else json.dumps(step)
        return f"{where}: expected {t.size} numbers, got {got}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in step):
        return f"{where}: expected numbers only"
    return ""

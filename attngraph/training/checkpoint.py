"""Checkpoints without pickle: one ``.safetensors`` file per checkpoint, written atomically.

``NAME.safetensors`` holds the model's parameters (``model.<name>``), the optimiser's state tensors
(``optim.<param index>.<key>``) and the RNG states as uint8 tensors (``rng.torch``, ``rng.batch``); its
header's metadata holds, as JSON under the key ``attngraph``, the step, the sequences seen, the metrics, the
optimiser's non-tensor state (``param_groups`` and per-parameter numbers), python ``random``'s state and the
config hash. One file, replaced in one rename (:func:`~attngraph.training.atomic.atomic_write`), so a kill or
a full disk at any instant leaves the previous checkpoint or the new one, never a mix.

Checkpoints of format 1 (tensors, then a ``NAME.json`` sidecar written after them: two files, a window
between the two renames) are still read, both files checked to agree.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from .atomic import atomic_write

FORMAT = 2
META_KEY = "attngraph"  # the safetensors metadata entry holding the JSON metadata


class CheckpointError(Exception):
    """A missing, incomplete or inconsistent checkpoint."""


def sidecar(path: Path) -> Path:
    """``last.safetensors`` -> ``last.json`` (the metadata of a format-1 checkpoint)."""
    return Path(path).with_suffix(".json")


def optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state_dict as (tensors keyed ``optim.<index>.<key>``, JSON-able structure)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    numbers: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                numbers.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "numbers": numbers}


def optimizer_join(tensors: dict[str, torch.Tensor], structure: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`optimizer_split`: a state_dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            index, key = name[len("optim."):].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for index, entries in structure["numbers"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": structure["param_groups"]}


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    batch_gen: torch.Generator | None, meta: dict[str, Any],
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write the checkpoint ``path`` (.safetensors) in one atomic replace. ``meta`` must hold ``step``; it goes
    into the header's metadata. ``extra`` tensors are stored as they are (other ranks' generator states)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    side = dict(meta, format=FORMAT)
    if optimizer is not None:
        opt_tensors, side["optimizer"] = optimizer_split(optimizer)
        tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if batch_gen is not None:
        tensors["rng.batch"] = batch_gen.get_state()
    tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    state = random.getstate()
    side["python_random"] = [state[0], list(state[1]), state[2]]
    atomic_write(Path(path), save(tensors, metadata={"step": str(meta["step"]), META_KEY: json.dumps(side)}))
    old_sidecar = sidecar(path)
    if old_sidecar.is_file():  # a format-1 checkpoint's sidecar would only mislead a reader of the folder
        old_sidecar.unlink()


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata of checkpoint ``path`` without reading its tensors (a format-1 checkpoint: its sidecar)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        if META_KEY in header:
            return json.loads(header[META_KEY])
    except Exception as err:  # noqa: BLE001 - OSError, bad JSON, or safetensors' own SafetensorError
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    return _format1_meta(path, header.get("step"))


def _format1_meta(path: Path, tensor_step: str | None) -> dict[str, Any]:
    side_path = sidecar(path)
    if not side_path.is_file():
        raise CheckpointError(f"checkpoint {path} has no sidecar {side_path.name} (interrupted while saving?)")
    try:
        meta = json.loads(side_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if tensor_step is None or str(meta.get("step")) != tensor_step:
        raise CheckpointError(f"checkpoint {path} is inconsistent: its tensors are from step {tensor_step} but "
                              f"{side_path.name} is from step {meta.get('step')} (interrupted between the two writes)")
    return meta


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a valid checkpoint, or :class:`CheckpointError` saying what is wrong."""
    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - OSError or safetensors' own SafetensorError
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    return tensors, meta


def model_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state_dict inside a checkpoint's tensors."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def load_weights(model: torch.nn.Module, path: Path) -> dict[str, Any]:
    """Put the parameters of checkpoint ``path`` into ``model``; its sidecar's metadata is returned.
    A checkpoint that is not there, not whole, or of another model raises :class:`CheckpointError`."""
    tensors, meta = load_checkpoint(path)
    try:
        model.load_state_dict(model_tensors(tensors))
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit this spec's model: {err}") from err
    return meta


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes (which checkpoint a warm-started run began from)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any], batch_gen: torch.Generator | None) -> None:
    """Put torch's, python's and the batch generator's random states back as they were when saved."""
    torch.set_rng_state(tensors["rng.torch"])
    if batch_gen is not None and "rng.batch" in tensors:
        batch_gen.set_state(tensors["rng.batch"])
    version, internal, gauss = meta["python_random"]
    random.setstate((version, tuple(internal), gauss))

"""The task registry: named, seeded data generators (and file loaders) that a spec trains and evaluates on.

A task declares its parameters (validated like a component's), the inputs and targets it produces
(checked against the model's at ``attngraph check`` time), how to sample a batch from a
``torch.Generator`` (so the same seed gives the same data), and the metrics it reports::

    @task("copy", params={...}, metrics=("loss", "bits_per_seq", "sequence_accuracy"))
    class Copy(Task):
        @abc.abstractmethod
    def sizes(self) -> dict[str, dict[str, VType]]: ...     # {"inputs": {...}, "targets": {...}}
        def sample(self, batch, gen) -> dict[str, Tensor]: ...  # inputs, targets, masks ("x.mask", "y.mask")
        @abc.abstractmethod
    def metrics(self, outputs, batch) -> dict[str, float]: ...  # every name in `metrics` but "loss"

A batch is a dict of tensors keyed by the model's input and target names; ``"<name>.mask"`` (B, T) bool
marks valid steps: ``x.mask`` of an input gives the sequence lengths, ``y.mask`` of a target the steps the
loss and metrics count (for copy: the output phase only).
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar

import torch

from ..components.base import VType
from ..spec.params import Param, Str


class TaskError(ValueError):
    """Parameters that are valid one by one but not together (raised by a task's ``__init__``)."""


class Task(abc.ABC):
    """Base of every task. ``p`` holds the validated parameters (defaults filled in). A task defines
    sizes(), sample() and metrics(); @task refuses a class that misses one (TypeError naming it)."""

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    metric_names: ClassVar[tuple[str, ...]] = ("loss",)
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"loss"})

    def __init__(self, p: SimpleNamespace):
        self.p = p

    @abc.abstractmethod
    def sizes(self) -> dict[str, dict[str, VType]]:
        """The inputs and targets this task produces: {"inputs": {name: VType}, "targets": {name: VType}}."""

    @abc.abstractmethod
    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """A batch drawn with ``gen`` (CPU tensors; the trainer moves them to the model's device)."""

    @abc.abstractmethod
    def metrics(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Every metric in ``metric_names`` except ``loss`` (the trainer adds it), as means over the batch's
        examples. ``outputs`` are the model's raw outputs (logits), keyed like the spec's outputs."""

    def with_params(self, **changes: Any) -> Task:
        """A copy with some parameters changed (evaluation at longer lengths, curricula)."""
        return type(self)(SimpleNamespace(**{**vars(self.p), **changes}))


def io_params(input: str, target: str, input_doc: str = "the model input it feeds",
              target_doc: str = "the model target it provides") -> dict[str, Param]:
    """The ``input`` and ``target`` parameters of a task: the batch keys it fills, with their defaults."""
    return {"input": Param(Str(), input, input_doc), "target": Param(Str(), target, target_doc)}


TASKS: dict[str, type[Task]] = {}


def task(name: str, params: dict[str, Param], metrics: tuple[str, ...],
         lower_is_better: tuple[str, ...] = ("loss",), doc: str = "") -> Callable[[type[Task]], type[Task]]:
    """Register a task class under ``name``."""

    def register(cls: type[Task]) -> type[Task]:
        if name in TASKS and TASKS[name] is not cls:
            raise ValueError(f"task '{name}' is registered twice")
        if cls.__abstractmethods__:  # at import of the plug-in, not when a spec first uses the task
            raise TypeError(f"task '{name}' must define {', '.join(sorted(cls.__abstractmethods__))}()")
        cls.name, cls.params, cls.metric_names = name, dict(params), tuple(metrics)
        cls.lower_is_better = frozenset(lower_is_better)
        cls.doc = doc or (cls.__doc__ or "").strip().split("\n")[0]
        TASKS[name] = cls
        return cls

    return register

"""Evaluation: the loss and the task's metrics, averaged over freshly sampled batches."""
from __future__ import annotations

import torch

from ..tasks.base import Task


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, batch: int, batches: int, gen: torch.Generator,
             device: torch.device | str = "cpu", forward=None) -> dict[str, float]:
    """Every name in ``task.metric_names`` (``loss`` from ``model.loss``), each the mean over ``batches``
    batches of ``batch`` sequences drawn with ``gen``. ``forward`` replaces ``model`` (a torch.compile'd one)."""
    forward = forward or model
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {name: 0.0 for name in task.metric_names}
    try:
        for _ in range(batches):
            data = to_device(task.sample(batch, gen), device)
            outputs = forward(data)
            sums["loss"] += float(model.loss(outputs, data)[0])
            for name, value in task.metrics(outputs, data).items():
                sums[name] += float(value)
    finally:
        model.train(was_training)
    return {name: total / batches for name, total in sums.items()}


def main_metric(task: Task) -> str:
    """The metric that picks the best checkpoint: the first one other than loss (else loss)."""
    return next((m for m in task.metric_names if m != "loss"), "loss")


def better(task: Task, metric: str, new: float, old: float | None) -> bool:
    """Whether ``new`` improves on ``old`` (None: nothing yet) in the task's direction for ``metric``."""
    if old is None:
        return new == new  # not NaN
    return new < old if metric in task.lower_is_better else new > old

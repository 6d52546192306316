"""Evaluation: the loss and the task's metrics, averaged over freshly sampled batches."""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..tasks.base import Task
from .distributed import World


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def shard(batch: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """This rank's equal share of a batch's examples (rows ``rank·n .. (rank+1)·n``)."""
    n = next(iter(batch.values())).shape[0] // world.size
    return {k: v[world.rank * n:(world.rank + 1) * n] for k, v in batch.items()}


@contextmanager
def seeded_sampling(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with torch's global generator seeded by ``seed``, then give the caller's state back.

    What a model draws itself outside training (PonderNet's sampled halting step) comes from that generator:
    seeded, an evaluation or an inspection repeats exactly; given back, one in the middle of training leaves
    the training run's random stream as it was."""
    dev = torch.device(device)
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, batch: int, batches: int, gen: torch.Generator,
             device: torch.device | str = "cpu", forward=None, world: World | None = None,
             beam: int | None = None) -> dict[str, float]:
    """Every name in ``task.metric_names`` (``loss`` from ``model.loss``) and the model's own metrics
    (:func:`metric_names`), each the mean over ``batches``
    batches of ``batch`` sequences drawn with ``gen``. ``forward`` replaces ``model`` (a torch.compile'd one).

    In a distributed run every rank draws the same batches and evaluates its share of each; the loss is
    summed over ranks before dividing by the counted steps, the metrics (means over examples) are
    averaged, so the numbers equal a single process's on the whole batches. A metric that a batch (or a
    rank's share) cannot measure, NaN (e.g. an accuracy over a length bucket the batch has no example of),
    is left out of that metric's mean; it is NaN only when no batch measured it.

    ``beam``: the task's metrics read the token ids that beam search of that width returns
    (``model.generate``, fed the inputs alone); the loss is still the free-running decoder's."""
    forward = forward or model
    world = world or World()
    all_names = metric_names(task, model)
    names = [n for n in all_names if n != "loss"]
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {name: 0.0 for name in all_names}
    counts: dict[str, float] = {name: 0.0 for name in names}  # the batches x ranks that measured each metric
    with seeded_sampling(gen.initial_seed(), device):  # the model's own draws repeat, training's stream is kept
        try:
            for _ in range(batches):
                data = task.sample(batch, gen)
                data = to_device(shard(data, world) if world.distributed else data, device)
                outputs = forward(data)
                terms = model.loss_terms(outputs, data)
                if beam is not None:  # generate() never reads the targets the batch holds
                    outputs = {**outputs, **model.generate(data, beam=beam)}
                metrics = {**task.metrics(outputs, data), **model.extra_metrics(outputs, data)}
                keys = list(terms)
                values = [float(metrics[n]) for n in names]
                local = torch.tensor([float(terms[k][0]) for k in keys] + [float(terms[k][1]) for k in keys]
                                     + [0.0 if math.isnan(v) else v for v in values]
                                     + [float(not math.isnan(v)) for v in values], dtype=torch.float64)
                total = world.sum(local.to(device)).cpu() if world.distributed else local
                sums["loss"] += float(model.combine_terms({k: (total[i], total[len(keys) + i]) for i, k in enumerate(keys)}))
                for j, name in enumerate(names):
                    sums[name] += float(total[2 * len(keys) + j])
                    counts[name] += float(total[2 * len(keys) + len(names) + j])
        finally:
            model.train(was_training)
    return {n: sums[n] / batches if n == "loss" else sums[n] / counts[n] if counts[n] else math.nan
            for n in all_names}


def metric_names(task: Task, model) -> tuple[str, ...]:
    """The task's metrics, then the model's own (``mean_ponder`` of a halting scope)."""
    return (*task.metric_names, *model.extra_metric_names)


def main_metric(task: Task) -> str:
    """The metric that picks the best checkpoint: the first one other than loss (else loss)."""
    return next((m for m in task.metric_names if m != "loss"), "loss")


def better(task: Task, metric: str, new: float, old: float | None,
           new_loss: float | None = None, old_loss: float | None = None) -> bool:
    """Whether ``new`` improves on ``old`` (None: nothing yet) in the task's direction for ``metric``. A tie
    (e.g. 0 wrong bits at several evaluations) goes to the lower evaluation loss, where both are known; an
    old best without a loss (a checkpoint from before losses were kept) loses the tie."""
    if not math.isfinite(new):  # a NaN or infinite evaluation is never the best
        return False
    if old is None:
        return True
    if new == old and new_loss is not None:
        return old_loss is None or new_loss < old_loss
    return new < old if metric in task.lower_is_better else new > old

"""Data-parallel training on torch.distributed: who this process is, and the few collectives the trainer needs.

A run is distributed when it is started by ``torchrun`` (or ``attngraph train --nproc N``, which starts
torchrun): ``WORLD_SIZE`` > 1 in the environment. Then each process (rank) trains a
:class:`~torch.nn.parallel.DistributedDataParallel` copy of the model on ``train.batch / WORLD_SIZE``
sequences per step, drawn from its own generator (:func:`rank_seed`), and the gradients are averaged.

The loss is normalised by the *global* number of counted steps (the masks of all ranks together), so a
step with N ranks computes the same gradient as one process on the N shards concatenated: the result
does not depend on how the global batch is split (``tests/test_distributed.py`` checks it). Rank 0 alone
writes the run directory and the checkpoints (holding every rank's generator state, so ``--resume`` is
exact); evaluation splits each evaluation batch across the ranks and averages the metrics.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

_RANK_STRIDE = 1_000_003  # rank r > 0 draws its batches with seed + r * stride (never a training/eval seed)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s batch generator (rank 0 uses the run's seed, like a single process)."""
    return seed + rank * _RANK_STRIDE


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` (size 1: not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Whether this process writes files (the run directory, checkpoints, the progress bar)."""
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``values`` over all ranks (itself when not distributed)."""
        if not self.distributed:
            return values
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def gather(self, values: torch.Tensor) -> list[torch.Tensor]:
        """``values`` (same shape and dtype on every rank) from every rank, in rank order."""
        if not self.distributed:
            return [values]
        out = [torch.empty_like(values) for _ in range(self.size)]
        dist.all_gather(out, values.contiguous())
        return out

    def broadcast_int(self, value: int, device: torch.device | str = "cpu") -> int:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        held = torch.tensor([value], dtype=torch.int64, device=device)
        dist.broadcast(held, src=0)
        return int(held.item())


def world_from_env() -> World:
    """The :class:`World` that torchrun's environment describes (size 1 without one)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: str) -> torch.device:
    """Join the process group (gloo on CPU, nccl on CUDA) and return this rank's device."""
    if device == "cuda":
        torch.cuda.set_device(world.local_rank)
        target = torch.device("cuda", world.local_rank)
    else:
        target = torch.device(device)
    if world.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                                timeout=datetime.timedelta(minutes=30))
    return target


def shutdown(world: World, together: bool = False) -> None:
    """Leave the process group. ``together`` (a run that ended normally on every rank): wait for every rank
    first, since a rank that tears down its gloo connections while another still writes its last checkpoint
    can make that one abort at exit ("terminate called without an active exception"); not after an error,
    where the other ranks may never arrive."""
    if world.distributed and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()

"""Three more tasks of Graves et al. 2014 (Neural Turing Machines, section 4): repeat copy, associative
recall and priority sort. Like ``copy``, each produces a bit-vector input ``x`` and target ``y`` (names set
by ``input``/``target``), with ``x.mask`` (B, T) marking each example's valid steps and ``y.mask`` (B, T)
the steps the loss and metrics count; shorter examples are padded with zeros to the batch's longest. The
metrics are ``loss``, ``bits_per_seq`` (wrong bits per sequence, logits thresholded at 0, i.e.
probability 0.5, counted where ``y.mask`` holds) and ``sequence_accuracy`` (sequences with no wrong bit).

Layouts (W = ``width``; "ch" = channel; steps counted from 0; channels not named hold 0):

``repeat_copy`` (4.2): L drawn from ``length`` and R from ``repeats``, per example.
  input ``(B, T, W + 2)``, target ``(B, T, W + 1)``, ``T`` = the longest ``(R + 1)·L + 3``.

  - steps ``0 .. L-1``: the L random vectors on ch ``0 .. W-1``;
  - step ``L``: the delimiter, ch ``W`` = 1;
  - step ``L + 1``: the repeat count, ch ``W + 1`` = R / ``max_repeats``. R above ``max_repeats`` (an
    evaluation with more repeats than training) gives a value above 1: intended, as in Graves, where the
    network must extrapolate the count;
  - steps ``L + 2 .. L + 1 + R·L`` (no input): target ch ``0 .. W-1`` = vector ``(t - L - 2) mod L``,
    i.e. the sequence R times over; target ch ``W`` = 0;
  - step ``L + 2 + R·L``: the end marker, target ch ``W`` = 1 (ch ``0 .. W-1`` = 0).

  ``y.mask`` holds on the ``R·L + 1`` steps ``L + 2 .. L + 2 + R·L`` (all W + 1 channels count);
  ``x.mask`` on the ``(R + 1)·L + 3`` steps ``0 .. L + 2 + R·L``.

``associative_recall`` (4.3): K = ``item_length`` vectors per item, N items drawn from ``items`` per
example, and a query index q drawn uniformly from ``0 .. N-2`` (every item but the last).
  input ``(B, T, W + 2)``, target ``(B, T, W)``, ``T`` = the longest ``(N + 2)·(K + 1)``.

  - item j (``0 .. N-1``): step ``j·(K+1)`` is its delimiter, ch ``W`` = 1; steps
    ``j·(K+1) + 1 .. j·(K+1) + K`` hold its K vectors on ch ``0 .. W-1``;
  - step ``N·(K+1)``: the query delimiter, ch ``W + 1`` = 1;
  - steps ``N·(K+1) + 1 .. N·(K+1) + K``: a copy of item q;
  - step ``(N+1)·(K+1)``: the closing query delimiter, ch ``W + 1`` = 1;
  - steps ``(N+1)·(K+1) + 1 .. (N+1)·(K+1) + K`` (no input): target = item q + 1, the item that followed
    the queried one.

  ``y.mask`` holds on those last K steps only; ``x.mask`` on the ``(N + 2)·(K + 1)`` steps. Items are not
  forced to differ (with the default 18 random bits a repeat is rare); the target always follows the
  item that was copied.

``priority_sort`` (4.5): n = ``count`` vectors, m = ``outputs_count`` (m ≤ n) sorted back.
  input ``(B, T, W + 2)``, target ``(B, T, W)``, ``T = n + 1 + m`` for every example.

  - steps ``0 .. n-1``: a random vector on ch ``0 .. W-1`` and its priority, uniform in [-1, 1], on
    ch ``W``;
  - step ``n``: the delimiter, ch ``W + 1`` = 1 (the only use of that channel);
  - steps ``n + 1 .. n + m`` (no input): target = the m vectors of highest priority, highest first.

  ``y.mask`` holds on the m output steps; ``x.mask`` on all T steps.
"""
from __future__ import annotations

import torch

from ..components.base import VType
from ..spec.params import Float, Int, IntRange, Param
from .base import Task, TaskError, io_params, task
from .copy import bit_metrics

METRICS = ("loss", "bits_per_seq", "sequence_accuracy")
LOWER_IS_BETTER = ("loss", "bits_per_seq")


def _io_params() -> dict[str, Param]:
    return {
        "density": Param(Float(min=0.0, max=1.0), 0.5, "probability of a 1 bit"),
        **io_params("x", "y"),
    }


def _bits(shape: tuple[int, ...], density: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(*shape, generator=gen) < density).float()


@task("repeat_copy", params={
    "width": Param(Int(min=1), 8, "bits per vector"),
    "length": Param(IntRange(min=1), [1, 10], "[min, max] sequence length L, drawn per example"),
    "repeats": Param(IntRange(min=1), [1, 10], "[min, max] number of copies R, drawn per example"),
    "max_repeats": Param(Int(min=1), 10, "R is shown as R / max_repeats (above 1 when R > max_repeats)"),
    **_io_params(),
}, metrics=METRICS, lower_is_better=LOWER_IS_BETTER,
    doc="Graves 2014 repeat copy: read L bit vectors and a repeat count R, write them R times, then an end marker.")
class RepeatCopy(Task):
    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(p.width + 2, p.input)}, "targets": {p.target: VType(p.width + 1, p.target)}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        w = p.width
        lengths = torch.randint(p.length[0], p.length[1] + 1, (batch,), generator=gen)  # (B,) L
        reps = torch.randint(p.repeats[0], p.repeats[1] + 1, (batch,), generator=gen)  # (B,) R
        longest = int(lengths.max())
        bits = _bits((batch, longest, w), p.density, gen)  # (B, Lmax, W)
        bits = bits * (torch.arange(longest)[None, :] < lengths[:, None])[:, :, None]
        total = (reps + 1) * lengths + 3  # (B,) valid steps
        steps = int(total.max())
        rows = torch.arange(batch)
        t = torch.arange(steps)[None, :]  # (1, T)
        L, R = lengths[:, None], reps[:, None]  # (B, 1)
        x = torch.zeros(batch, steps, w + 2)
        x[:, :longest, :w] = bits
        x[rows, lengths, w] = 1.0  # the delimiter
        x[rows, lengths + 1, w + 1] = reps.float() / p.max_repeats  # the repeat count
        copying = (t >= L + 2) & (t < L + 2 + R * L)  # (B, T)
        end = L + 2 + R * L  # (B, 1): the end-marker step
        src = (t - L - 2).clamp_min(0) % L  # (B, T): which input vector to write
        y = torch.zeros(batch, steps, w + 1)
        y[:, :, :w] = torch.gather(bits, 1, src[:, :, None].expand(-1, -1, w)) * copying[:, :, None]
        y[rows, end[:, 0], w] = 1.0
        return {p.input: x, f"{p.input}.mask": t < total[:, None], p.target: y,
                f"{p.target}.mask": (t >= L + 2) & (t <= end)}

    def metrics(self, outputs, batch):
        return bit_metrics(self, outputs, batch)


@task("associative_recall", params={
    "width": Param(Int(min=1), 6, "bits per vector"),
    "item_length": Param(Int(min=1), 3, "vectors per item K"),
    "items": Param(IntRange(min=2), [2, 6], "[min, max] number of items N, drawn per example"),
    **_io_params(),
}, metrics=METRICS, lower_is_better=LOWER_IS_BETTER,
    doc="Graves 2014 associative recall: read N items of K bit vectors and a query item, write the item after it.")
class AssociativeRecall(Task):
    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(p.width + 2, p.input)}, "targets": {p.target: VType(p.width, p.target)}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        w, k = p.width, p.item_length
        counts = torch.randint(p.items[0], p.items[1] + 1, (batch,), generator=gen)  # (B,) N
        most = int(counts.max())
        bits = _bits((batch, most, k, w), p.density, gen)  # (B, Nmax, K, W)
        bits = bits * (torch.arange(most)[None, :] < counts[:, None])[:, :, None, None]
        query = (torch.rand(batch, generator=gen) * (counts - 1)).long().clamp(max=counts - 2)  # (B,) q in [0, N-2]
        steps = (most + 2) * (k + 1)
        t = torch.arange(steps)[None, :]  # (1, T)
        block, pos = t // (k + 1), t % (k + 1)  # (1, T): which block (item, query, answer) and where in it
        N, q = counts[:, None], query[:, None]  # (B, 1)
        item = torch.where(block < N, block, torch.where(block == N, q, q + 1)).clamp(max=most - 1)  # (B, T)
        vectors = torch.gather(bits.reshape(batch, most * k, w), 1,
                               (item * k + (pos - 1).clamp_min(0))[:, :, None].expand(-1, -1, w))  # (B, T, W)
        holds = pos >= 1  # (1, T): a vector step, not a delimiter
        x = torch.zeros(batch, steps, w + 2)
        x[:, :, :w] = vectors * (holds & (block <= N))[:, :, None]
        x[:, :, w] = ((pos == 0) & (block < N)).float()
        x[:, :, w + 1] = ((pos == 0) & ((block == N) | (block == N + 1))).float()
        answer = holds & (block == N + 1)  # (B, T)
        y = vectors * answer[:, :, None]
        return {p.input: x, f"{p.input}.mask": block <= N + 1, p.target: y, f"{p.target}.mask": answer}

    def metrics(self, outputs, batch):
        return bit_metrics(self, outputs, batch)


@task("priority_sort", params={
    "width": Param(Int(min=1), 8, "bits per vector"),
    "count": Param(Int(min=1), 20, "input vectors n, each with a priority uniform in [-1, 1]"),
    "outputs_count": Param(Int(min=1), 16, "vectors m ≤ count to write back, highest priority first"),
    **_io_params(),
}, metrics=METRICS, lower_is_better=LOWER_IS_BETTER,
    doc="Graves 2014 priority sort: read n bit vectors with priorities, write the m highest in priority order.")
class PrioritySort(Task):
    def __init__(self, p):
        super().__init__(p)
        if p.outputs_count > p.count:
            raise TaskError(f"task 'priority_sort': outputs_count ({p.outputs_count}) must be at most count "
                             f"({p.count}), the number of input vectors to choose from")

    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(p.width + 2, p.input)}, "targets": {p.target: VType(p.width, p.target)}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        w, n, m = p.width, p.count, p.outputs_count
        bits = _bits((batch, n, w), p.density, gen)  # (B, n, W)
        priority = torch.rand(batch, n, generator=gen) * 2 - 1  # (B, n) uniform in [-1, 1]
        order = torch.sort(priority, dim=1, descending=True, stable=True).indices[:, :m]  # (B, m)
        steps = n + 1 + m
        x = torch.zeros(batch, steps, w + 2)
        x[:, :n, :w] = bits
        x[:, :n, w] = priority
        x[:, n, w + 1] = 1.0  # the delimiter
        y = torch.zeros(batch, steps, w)
        y[:, n + 1:] = torch.gather(bits, 1, order[:, :, None].expand(-1, -1, w))
        t = torch.arange(steps)[None, :].expand(batch, -1)  # (B, T)
        return {p.input: x, f"{p.input}.mask": torch.ones(batch, steps, dtype=torch.bool), p.target: y,
                f"{p.target}.mask": t > n}

    def metrics(self, outputs, batch):
        return bit_metrics(self, outputs, batch)

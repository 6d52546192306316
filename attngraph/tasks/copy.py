"""The copy task of Graves et al. 2014 (Neural Turing Machines, section 4.1).

An example is a sequence of L random ``width``-bit vectors followed by a delimiter flag on its own
channel; then, with no more input, the model must write the L vectors back. Input ``(B, T, width + 1)``
with ``T = 2·max(L) + 1``; target ``(B, T, width)``, counted (``y.mask``) only on the L output steps;
``x.mask`` marks each example's ``2L + 1`` valid steps. L is drawn per example from ``length``.
"""
from __future__ import annotations

import torch

from ..components.base import VType
from ..spec.params import Float, Int, IntRange, Param
from .base import Task, io_params, task


@task("copy", params={
    "width": Param(Int(min=1), 8, "bits per vector"),
    "length": Param(IntRange(min=1), [1, 20], "[min, max] sequence length L, drawn per example"),
    "density": Param(Float(min=0.0, max=1.0), 0.5, "probability of a 1 bit"),
    **io_params("x", "y"),
}, metrics=("loss", "bits_per_seq", "sequence_accuracy"), lower_is_better=("loss", "bits_per_seq"),
    doc="Graves 2014 copy: read L random bit vectors and a delimiter, then write them back.")
class Copy(Task):
    def sizes(self):
        p = self.p
        return {"inputs": {p.input: VType(p.width + 1, p.input)}, "targets": {p.target: VType(p.width, p.target)}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.p
        lo, hi = p.length
        lengths = torch.randint(lo, hi + 1, (batch,), generator=gen)  # (B,)
        longest = int(lengths.max())
        steps = 2 * longest + 1
        bits = (torch.rand(batch, longest, p.width, generator=gen) < p.density).float()  # (B, Lmax, W)
        t = torch.arange(steps)  # (T,)
        seen = t[None, :] < lengths[:, None]  # (B, T): input phase
        x = torch.zeros(batch, steps, p.width + 1)
        x[:, :longest, :p.width] = bits * seen[:, :longest, None]
        x[torch.arange(batch), lengths, p.width] = 1.0  # the delimiter
        out_phase = (t[None, :] > lengths[:, None]) & (t[None, :] <= 2 * lengths[:, None])  # (B, T)
        y = torch.zeros(batch, steps, p.width)
        src = (t[None, :] - lengths[:, None] - 1).clamp(0, longest - 1)  # (B, T): which input step to recall
        y[:] = torch.gather(bits, 1, src[:, :, None].expand(-1, -1, p.width)) * out_phase[:, :, None]
        return {p.input: x, f"{p.input}.mask": t[None, :] <= 2 * lengths[:, None], p.target: y,
                f"{p.target}.mask": out_phase}

    def metrics(self, outputs, batch):
        return bit_metrics(self, outputs, batch)


def bit_metrics(task: Task, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """bits_per_seq: wrong bits per sequence, outputs thresholded at 0.5 (logit 0), counted where the target
    mask holds; sequence_accuracy: the fraction of sequences with no wrong bit (as the copy task)."""
    p = task.p
    logits = outputs[p.outputs[p.target]]  # (B, T, C)
    wrong = ((logits > 0).float() != batch[p.target]) & batch[f"{p.target}.mask"][:, :, None]
    per_seq = wrong.sum(dim=(1, 2)).float()  # (B,)
    return {"bits_per_seq": float(per_seq.mean()), "sequence_accuracy": float((per_seq == 0).float().mean())}

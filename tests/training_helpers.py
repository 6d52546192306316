"""A tiny task and spec for the training tests: echo random bits (a model that learns it in a few steps)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import torch

from attngraph.components.base import VType
from attngraph.spec.params import Float, Int, Param
from attngraph.tasks.base import TASKS, Task, task

SPEC = """\
attngraph: 1
name: echo
inputs:
  x: {{size: 3}}
targets:
  y: {{size: 3}}
model:
  ctrl: {{kind: lstm, size: 6, in: x}}
  head: {{kind: linear, size: 3, in: ctrl}}
outputs:
  y: {{from: head, loss: bce}}
task: {{kind: echo_bits, length: 4{task}}}
train:
{train}
"""


class EchoBits(Task):
    """Reproduce random 3-bit vectors; ``nan_after`` > 0 makes every input NaN from that batch on;
    ``fail_at`` > 0 raises RuntimeError at that call (a simulated crash); ``interrupt_at`` > 0 sends SIGINT
    (``interrupts`` times)."""

    calls = 0

    def sizes(self):
        return {"inputs": {"x": VType(3, "x")}, "targets": {"y": VType(3, "x")}}

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        EchoBits.calls += 1
        if self.p.fail_at and EchoBits.calls == self.p.fail_at:
            raise RuntimeError("simulated crash")
        if self.p.interrupt_at and EchoBits.calls == self.p.interrupt_at:
            for _ in range(self.p.interrupts):  # Ctrl-C (pressed interrupts times) in the middle of a step
                os.kill(os.getpid(), signal.SIGINT)
        x = torch.bernoulli(torch.full((batch, self.p.length, 3), 0.5), generator=gen)
        if self.p.nan_after and EchoBits.calls >= self.p.nan_after:
            x = x * float("nan")
        return {"x": x, "y": x.clone(), "y.mask": torch.ones(batch, self.p.length, dtype=torch.bool)}

    def metrics(self, outputs, batch):
        errors = ((outputs["y"] > 0).float() != batch["y"]).float().sum(dim=(1, 2))
        return {"bit_errors": float(errors.mean())}


if "echo_bits" not in TASKS:
    task("echo_bits", params={"length": Param(Int(1), 4), "nan_after": Param(Int(0), 0),
                              "fail_at": Param(Int(0), 0), "interrupt_at": Param(Int(0), 0),
                              "interrupts": Param(Int(1), 1), "noise": Param(Float(0.0), 0.0)},
         metrics=("loss", "bit_errors"), lower_is_better=("loss", "bit_errors"))(EchoBits)


def write_spec(directory: Path, train: str, task_extra: str = "", name: str = "spec.yaml") -> Path:
    """A spec file in ``directory`` with the given train: body (indented lines) and extra task params."""
    path = directory / name
    path.write_text(SPEC.format(train=train, task=task_extra))
    return path

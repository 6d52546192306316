"""The entropy_bonus loss (−H of softmax(scores)) against the closed form, its gradient's direction, and its use
on a program's op scores read from outside the program (the last step's scores)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import attngraph
from attngraph.components.base import ShapeError, VType
from attngraph.components.losses import LOSSES

torch.set_num_threads(1)
SPEC = Path(__file__).parent / "good_specs" / "program_entropy_bonus.yaml"


def test_entropy_bonus_is_minus_the_entropy_of_the_softmax():
    bonus = LOSSES["entropy_bonus"]
    uniform = torch.zeros(3, 9, dtype=torch.float64)
    torch.testing.assert_close(bonus.elementwise(uniform, None), torch.full((3,), -math.log(9), dtype=torch.float64))
    sure = torch.tensor([[50.0, 0.0, 0.0]], dtype=torch.float64)  # (almost) one choice: entropy 0
    assert abs(float(bonus.elementwise(sure, None))) < 1e-18
    scores = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = torch.softmax(scores, -1)
    hand = sum(p[..., k] * torch.log(p[..., k]) for k in range(6))  # Σ_k p_k log p_k, term by term
    torch.testing.assert_close(bonus.elementwise(scores, None), hand)
    mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [False] * 5, [True] * 5])
    expected = hand[mask].sum() / mask.sum()  # the counted steps only
    torch.testing.assert_close(bonus(scores, None, mask), expected)


def test_minimising_the_bonus_spreads_a_peaked_distribution():
    scores = torch.tensor([[4.0, 0.0, -1.0, 0.5]], requires_grad=True)
    loss = LOSSES["entropy_bonus"](scores, None)
    before = -float(loss.detach())
    loss.backward()
    with torch.no_grad():
        after = -float(LOSSES["entropy_bonus"](scores - 0.5 * scores.grad, None))
    assert scores.grad[0, 0] > 0  # the dominant score is pushed down
    assert after > before


def test_entropy_bonus_refuses_what_is_not_scores_over_choices():
    bonus = LOSSES["entropy_bonus"]
    with pytest.raises(ShapeError, match="not class indices"):
        bonus.check(VType(10, index=True), None)
    with pytest.raises(ShapeError, match="at least 2 choices"):
        bonus.check(VType(1), None)
    bonus.check(VType(0, "y", layout=("positions", "x")), None)  # a pointer's scores are fine


def test_a_programs_op_scores_read_from_outside_are_its_last_steps_and_the_bonus_joins_the_loss():
    spec = attngraph.load(SPEC)
    torch.manual_seed(0)
    model = attngraph.build(spec).train()
    data = spec.sections["task"].train.sample(8, torch.Generator().manual_seed(1))
    inputs = {k: v for k, v in data.items() if k in model.ir.inputs or k.endswith(".mask")}
    out = model(inputs)
    _, records = model.record({k: v[:1, :int(data["question.mask"][0].sum())] if k.startswith(("question", "qnum"))
                               else v[:1, :int(data["table.mask"][0].sum())] if k.startswith("table") else v[:1]
                               for k, v in inputs.items() if not k.endswith(".mask")})
    assert out["explore"].shape == (8, 9)
    torch.testing.assert_close(torch.softmax(out["explore"][:1], -1), records["prog.op"][:, -1])
    total, parts = model.loss(out, data)
    torch.testing.assert_close(parts["explore"], LOSSES["entropy_bonus"](out["explore"], None))
    torch.testing.assert_close(total, parts["answer"] + 50 * parts["lookup"] + 0.1 * parts["explore"])

"""``loss: huber`` (Huber 1964) with the output's ``delta:`` δ: ½a² where |a| ≤ δ, else δ(|a| − ½δ), a = pred −
target, summed over features; the Neural Programmer's loss for scalar answers (δ = 10)."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import attngraph
from attngraph.components.losses import LOSSES

SPEC = """\
attngraph: 1
name: huber
inputs:
  x: {{size: 3}}
targets:
  y: {{size: 2}}
model:
  enc: {{kind: gru, size: 4, in: x}}
  out: {{kind: linear, size: 2, in: enc}}
outputs:
  y: {{from: out, loss: huber{delta}}}
"""


def spec(tmp_path, delta: str = ""):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(delta=delta))
    return attngraph.load(path)


@pytest.mark.parametrize("delta", [0.5, 1.0, 10.0])
def test_elementwise_is_torchs_huber_summed_over_features(delta):
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 5, 3, generator=g) * 8, torch.randn(4, 5, 3, generator=g) * 8
    expected = F.huber_loss(pred, target, reduction="none", delta=delta).sum(-1)
    assert torch.allclose(LOSSES["huber"].elementwise(pred, target, delta=delta), expected)


def test_the_closed_form_on_hand_values():
    pred = torch.tensor([[0.0, 3.0, -12.0, 10.0]])
    target = torch.zeros(1, 4)
    # a = 0 -> 0; a = 3 ≤ 10 -> 4.5; |a| = 12 > 10 -> 10 (12 - 5) = 70; a = δ -> 50 either way
    per = [LOSSES["huber"].elementwise(pred[:, i:i + 1], target[:, i:i + 1], delta=10.0).item() for i in range(4)]
    assert per == [0.0, 4.5, 70.0, 50.0]
    assert LOSSES["huber"].elementwise(pred, target, delta=10.0).item() == 124.5
    assert LOSSES["huber"].elementwise(torch.tensor([[2.0]]), torch.zeros(1, 1)).item() == 1.5  # δ = 1 by default


def test_gradients_are_finite_and_bounded_by_delta():
    pred = torch.tensor([[-1e6, -3.0, 0.0, 0.5, 3.0, 1e6]], requires_grad=True)
    LOSSES["huber"].elementwise(pred, torch.zeros_like(pred), delta=2.0).sum().backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.tolist() == [[-2.0, -2.0, 0.0, 0.5, 2.0, 2.0]]


def test_an_outputs_delta_reaches_the_loss(tmp_path):
    model = attngraph.build(spec(tmp_path, ", delta: 10"))
    assert model.ir.outputs["y"].options == {"delta": 10.0}
    assert attngraph.build(spec(tmp_path)).ir.outputs["y"].options == {"delta": 1.0}
    g = torch.Generator().manual_seed(1)
    batch = {"x": torch.randn(2, 3, 3, generator=g), "y": torch.randn(2, 3, 2, generator=g) * 30,
             "y.mask": torch.tensor([[True, True, False], [True, True, True]])}
    outputs = model(batch)
    total, parts = model.loss(outputs, batch)
    per = F.huber_loss(outputs["y"], batch["y"], reduction="none", delta=10.0).sum(-1)
    expected = per[batch["y.mask"]].mean()
    assert torch.allclose(parts["y"], expected) and torch.allclose(total, expected)
    (s, c), = model.loss_terms(outputs, batch).values()
    assert torch.allclose(s / c, expected)


def test_show_and_schema_know_delta(tmp_path):
    from attngraph.resolved import resolved
    from attngraph.schema import json_schema

    assert resolved(spec(tmp_path, ", delta: 10"))["outputs"]["y"]["delta"] == 10.0
    delta = json_schema()["properties"]["outputs"]["additionalProperties"]["properties"]["delta"]
    assert delta["type"] == "number" and delta["exclusiveMinimum"] == 0 and delta["default"] == 1.0

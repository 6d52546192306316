"""positional_encoding against the closed form of Vaswani et al. (2017, §3.5), written out element by element."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from attngraph.components.base import REGISTRY, ShapeError, VType

PE = REGISTRY["positional_encoding"]


def build(features: int = 6, **overrides):
    p = SimpleNamespace(**{name: param.default for name, param in PE.params.items()})
    for name, value in overrides.items():
        setattr(p, name, value)
    ins = {"in": VType(features, "x")}
    return PE(p, ins, PE.infer(p, ins, False)), p


def closed_form(length: int, size: int, base: float = 10000.0) -> torch.Tensor:
    table = torch.zeros(length, size, dtype=torch.float64)
    for t in range(length):
        for j in range(size):
            angle = t / base ** (2 * (j // 2) / size)
            table[t, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize("size", [6, 7])
def test_sinusoidal_added_is_the_closed_form(size: int) -> None:
    module, _ = build(size)
    x = torch.randn(2, 9, size, dtype=torch.float64)
    torch.testing.assert_close(module(x), x + closed_form(9, size))


def test_sinusoidal_concatenated_with_another_base_and_scaled_input() -> None:
    module, _ = build(6, mode="concat", size=4, base=100.0, scale_input=True)
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    expected = torch.cat([x * math.sqrt(6), closed_form(5, 4, 100.0).expand(2, -1, -1)], -1)
    torch.testing.assert_close(module(x), expected)


def test_learned_table_is_added_per_position_and_learns() -> None:
    module, _ = build(6, encoding="learned", max_length=8)
    x = torch.randn(2, 5, 6)
    out = module(x)
    torch.testing.assert_close(out, x + module.table[:5])
    out.sum().backward()
    assert torch.all(module.table.grad[:5] == 2) and torch.all(module.table.grad[5:] == 0)


def test_learned_positions_beyond_max_length_are_refused() -> None:
    module, _ = build(6, encoding="learned", max_length=4)
    with pytest.raises(ValueError, match="a sequence of 5 positions is longer than max_length = 4"):
        module(torch.randn(1, 5, 6))


@pytest.mark.parametrize("overrides,t,message", [
    ({"encoding": "learned"}, VType(6, "x"), "encoding: learned needs max_length, the rows of its table"),
    ({"max_length": 9}, VType(6, "x"), "max_length sizes a learned table; a sinusoidal encoding has any length"),
    ({"size": 4}, VType(6, "x"), "mode: add adds P to the input, so size must be the input size (6), but it is 4"),
    ({"mode": "concat"}, VType(6, "x"), "mode: concat needs size, the features of P"),
    ({}, VType(6), "needs a sequence but receives one vector per example (6)"),
])
def test_dimension_rules(overrides, t, message) -> None:
    p = SimpleNamespace(**{name: param.default for name, param in PE.params.items()})
    for name, value in overrides.items():
        setattr(p, name, value)
    with pytest.raises(ShapeError) as err:
        PE.infer(p, {"in": t}, False)
    assert err.value.message == message

"""The train: section: valid settings become a TrainConfig; every mistake is reported where it is."""
from __future__ import annotations

import math

import pytest
from training_helpers import write_spec

import attngraph
from attngraph.training.config import Schedule, TrainConfig
from attngraph.training.optim import curriculum_value, lr_at, make_optimizer


def report(tmp_path, train: str) -> list[str]:
    path = write_spec(tmp_path, train)
    spec, diags = attngraph.check(path)
    assert spec is None
    return [str(d).replace(str(path), "{file}") for d in diags]


def test_valid_section_becomes_a_config(tmp_path):
    spec = attngraph.load(write_spec(tmp_path, "  optimizer: rmsprop\n  lr: 1e-4\n  momentum: 0.9\n  centered: true\n"
                                               "  schedule: {kind: step, every: 10, gamma: 0.5}\n"
                                               "  stop: {metric: bit_errors, below: 0.1}\n"))
    cfg = spec.sections["train"]
    assert isinstance(cfg, TrainConfig)
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.centered) == ("rmsprop", 1e-4, 0.9, True)
    assert cfg.schedule == Schedule("step", every=10, gamma=0.5)
    assert cfg.stop.metric == "bit_errors" and cfg.stop.reached(0.05) and not cfg.stop.reached(0.2)


@pytest.mark.parametrize("train, expected", [
    ("  optimizer: adma\n",
     "{file}:14:14: train.optimizer: unknown value 'adma': expected one of adam, adamw, sgd, rmsprop "
     "(did you mean 'adam' or 'adamw'?)"),
    ("  optimizer: adam\n  centered: true\n",
     "{file}:15:3: train.centered: 'centered' does not apply to optimizer adam (it is read by rmsprop)"),
    ("  lr: 0\n", "{file}:14:7: train.lr: 0 is out of range: expected a number > 0.0"),
    ("  batchsize: 4\n", "{file}:14:3: train.batchsize: unknown key 'batchsize' for train (did you mean 'batch'?)"),
    ("  schedule: {kind: cosine, warmpu: 3}\n",
     "{file}:14:28: train.schedule.warmpu: unknown key 'warmpu' for schedule cosine (did you mean 'warmup'?)"),
    ("  schedule: {kind: exponential}\n",
     "{file}:14:20: train.schedule.kind: unknown value 'exponential': expected one of constant, linear_warmup, "
     "cosine, inverse_sqrt, step"),
    ("  stop: {metric: bit_errors, below: 1, above: 2}\n",
     "{file}:14:9: train.stop: give exactly one of 'below' and 'above' (e.g. {metric: bits_per_seq, below: 0.1})"),
    ("  curriculum: {param: length, start: [1, 2], end: 3, steps: 10}\n",
     "{file}:14:51: train.curriculum.end: 'start' and 'end' must have the same shape "
     "(two integers, or two lists of the same length)"),
    ("  nan: ignore\n", "{file}:14:8: train.nan: unknown value 'ignore': expected one of stop, skip"),
    ("  betas: [0.9]\n", "{file}:14:10: train.betas: expected a list of two numbers in [0, 1), got a list"),
])
def test_bad_train_section_is_reported_where_it_is(tmp_path, train, expected):
    assert report(tmp_path, train) == [expected]


def test_cli_check_reports_train_errors_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from attngraph_cli.main import main

    path = write_spec(tmp_path, "  steps: -3\n")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    assert f"{path}:14:10: train.steps: -3 is out of range: expected an integer ≥ 1" in result.output


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**kw)


def test_schedules_match_their_closed_forms():
    c = cfg(lr=0.1, steps=110, schedule=Schedule("cosine", warmup=10, min_lr=0.01))
    assert lr_at(0, c) == pytest.approx(0.01) and lr_at(9, c) == pytest.approx(0.1)
    assert lr_at(10, c) == pytest.approx(0.1)
    assert lr_at(60, c) == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(110, c) == pytest.approx(0.01)
    s = cfg(lr=0.1, schedule=Schedule("step", every=5, gamma=0.5))
    assert [lr_at(i, s) for i in (0, 4, 5, 12)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    w = cfg(lr=0.2, schedule=Schedule("linear_warmup", warmup=4))
    assert [lr_at(i, w) for i in (0, 1, 3, 100)] == pytest.approx([0.05, 0.1, 0.2, 0.2])
    assert lr_at(7, cfg(lr=0.3)) == 0.3


def test_curriculum_moves_linearly_and_holds():
    from attngraph.training.config import Curriculum

    cur = Curriculum("length", (1, 5), (1, 25), 10)
    assert curriculum_value(0, cur) == [1, 5]
    assert curriculum_value(5, cur) == [1, 15]
    assert curriculum_value(50, cur) == [1, 25]
    assert curriculum_value(3, Curriculum("length", 2, 12, 10)) == 5


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd", "rmsprop"])
def test_optimizer_kinds_construct(kind):
    import torch

    p = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer([p], cfg(optimizer=kind, lr=0.01, momentum=0.9 if kind in ("sgd", "rmsprop") else 0.0,
                                  centered=kind == "rmsprop"))
    assert type(opt).__name__.lower() == kind
    if kind == "rmsprop":
        assert opt.param_groups[0]["centered"] is True and opt.param_groups[0]["momentum"] == 0.9
    p.sum().backward()
    opt.step()
    assert not torch.equal(p.detach(), torch.ones(3))

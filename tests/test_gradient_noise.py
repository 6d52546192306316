"""``train.gradient_noise: η`` (Neelakantan et al. 2015): N(0, σ_t²), σ_t² = η / (1 + t)^γ, added to every
gradient after backward and before clipping, from a generator seeded from (seed, step)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from training_helpers import write_spec

import attngraph
from attngraph.training.checkpoint import load_checkpoint, model_tensors
from attngraph.training.config import TrainConfig
from attngraph.training.optim import add_gradient_noise, gradient_noise_std
from attngraph.training.trainer import Trainer

TRAIN = "  batch: 4\n  steps: 12\n  lr: 0.05\n  checkpoint_every: 4\n  eval_every: 3\n  eval_batches: 2\n"


def zero_grads(n: int = 20_000) -> list[torch.nn.Parameter]:
    params = [torch.nn.Parameter(torch.zeros(n // 4, 2)), torch.nn.Parameter(torch.zeros(n // 2))]
    for p in params:
        p.grad = torch.zeros_like(p)
    return params


def noise(cfg: TrainConfig, step: int) -> torch.Tensor:
    params = zero_grads()
    add_gradient_noise(params, step, cfg)
    return torch.cat([p.grad.flatten() for p in params])


def test_the_variance_is_eta_over_one_plus_t_to_the_gamma():
    cfg = TrainConfig(gradient_noise=0.3)
    assert gradient_noise_std(0, cfg) == pytest.approx(math.sqrt(0.3))
    assert gradient_noise_std(100, cfg) == pytest.approx(math.sqrt(0.3 / 101 ** 0.55))
    for step in (0, 100):
        x = noise(cfg, step)
        assert abs(float(x.mean())) < 4 * gradient_noise_std(step, cfg) / math.sqrt(x.numel())
        assert float(x.var()) == pytest.approx(0.3 / (1 + step) ** 0.55, rel=0.05)


def test_gamma_is_honoured():
    slow = TrainConfig(gradient_noise=1.0, gradient_noise_decay=0.0)
    fast = TrainConfig(gradient_noise=1.0, gradient_noise_decay=1.0)
    assert float(noise(slow, 100).var()) == pytest.approx(1.0, rel=0.05)
    assert float(noise(fast, 100).var()) == pytest.approx(1.0 / 101, rel=0.05)


def test_the_same_seed_and_step_give_the_same_numbers_another_seed_or_step_others():
    cfg = TrainConfig(gradient_noise=0.01, seed=3)
    assert torch.equal(noise(cfg, 7), noise(cfg, 7))
    assert not torch.equal(noise(cfg, 7), noise(cfg, 8))
    assert not torch.equal(noise(cfg, 7), noise(dataclasses.replace(cfg, seed=4), 7))


def test_parameters_without_a_gradient_are_left_alone():
    used, unused = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    used.grad = torch.zeros(3)
    add_gradient_noise([used, unused], 0, TrainConfig(gradient_noise=1.0))
    assert unused.grad is None and bool((used.grad != 0).all())


def gradients_at_step(tmp_path, monkeypatch, name: str, train: str) -> list[torch.Tensor]:
    """The gradient the optimiser receives at each step (after noise and clipping)."""
    seen = []
    real = torch.optim.SGD.step

    def record(self, *args, **kwargs):
        seen.append(torch.cat([p.grad.flatten().clone() for g in self.param_groups for p in g["params"]]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", record)
    spec = attngraph.load(write_spec(tmp_path, TRAIN + "  optimizer: sgd\n" + train, name=f"{name}.yaml"))
    Trainer(spec, tmp_path / name, quiet=True).run(until=1)
    return seen


def test_training_adds_noise_of_the_right_variance(tmp_path, monkeypatch):
    plain, = gradients_at_step(tmp_path, monkeypatch, "plain", "")
    noisy, = gradients_at_step(tmp_path, monkeypatch, "noisy", "  gradient_noise: 0.5\n")
    again, = gradients_at_step(tmp_path, monkeypatch, "again", "  gradient_noise: 0.5\n")
    other, = gradients_at_step(tmp_path, monkeypatch, "other", "  gradient_noise: 0.5\n  seed: 1\n")
    delta = noisy - plain  # same seed, same data and initialisation: the difference is the noise alone
    assert delta.numel() > 200 and float(delta.var()) == pytest.approx(0.5, rel=0.3)
    assert torch.equal(noisy, again) and not torch.equal(noisy, other)


def test_noise_is_added_before_clipping(tmp_path, monkeypatch):
    seen = gradients_at_step(tmp_path, monkeypatch, "clipped", "  gradient_noise: 100.0\n  clip_norm: 0.01\n")
    assert float(torch.linalg.vector_norm(seen[0])) <= 0.01 * (1 + 1e-4)


def test_a_paused_and_resumed_noisy_run_equals_a_straight_one(tmp_path):
    train = TRAIN + "  gradient_noise: 0.01\n"

    def final(path):
        return model_tensors(load_checkpoint(path / "checkpoints" / "last.safetensors")[0])

    spec = attngraph.load(write_spec(tmp_path, train))
    Trainer(spec, tmp_path / "straight", quiet=True).run()
    assert Trainer(spec, tmp_path / "split", quiet=True).run(until=5).status == "paused"
    assert Trainer(spec, tmp_path / "split", quiet=True, resume=True).run().status == "done"
    a, b = final(tmp_path / "straight"), final(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    Trainer(attngraph.load(write_spec(tmp_path, TRAIN, name="quiet.yaml")), tmp_path / "quiet", quiet=True).run()
    c = final(tmp_path / "quiet")
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the noise did change the training


def report(tmp_path, train: str) -> list[str]:
    path = write_spec(tmp_path, train)
    spec, diags = attngraph.check(path)
    assert spec is None
    return [str(d).replace(str(path), "{file}") for d in diags]


def test_the_settings_become_the_config(tmp_path):
    cfg = attngraph.load(write_spec(tmp_path, "  gradient_noise: 0.3\n  gradient_noise_decay: 0.6\n")).sections["train"]
    assert (cfg.gradient_noise, cfg.gradient_noise_decay) == (0.3, 0.6)
    cfg = attngraph.load(write_spec(tmp_path, "  steps: 3\n")).sections["train"]
    assert (cfg.gradient_noise, cfg.gradient_noise_decay) == (None, 0.55)


@pytest.mark.parametrize("train, expected", [
    ("  gradient_noise: 0\n", "{file}:14:19: train.gradient_noise: 0 is out of range: expected a number > 0.0"),
    ("  gradient_noise: 0.1\n  gradient_noise_decay: -1\n",
     "{file}:15:25: train.gradient_noise_decay: -1 is out of range: expected a number ≥ 0.0"),
    ("  gradient_noise_decay: 0.55\n",
     "{file}:14:3: train.gradient_noise_decay: 'gradient_noise_decay' applies only with gradient_noise "
     "(set train.gradient_noise: η as well)"),
    ("  gradient_nosie: 0.1\n",
     "{file}:14:3: train.gradient_nosie: unknown key 'gradient_nosie' for train "
     "(did you mean 'gradient_noise' or 'gradient_noise_decay'?)"),
])
def test_bad_settings_are_reported_where_they_are(tmp_path, train, expected):
    assert report(tmp_path, train) == [expected]

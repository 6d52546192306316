"""Optimisers, learning-rate schedules and curricula as pure functions of the config and the step."""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import torch

from .config import Curriculum, TrainConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` with the settings it reads (``lr`` is the peak rate)."""
    params = list(params)
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=cfg.lr, betas=cfg.betas or (0.9, 0.999), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                                   centered=cfg.centered, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}'")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of the update at 0-based ``step``:

    - constant: ``lr``
    - linear_warmup: ``lr * min(1, (step + 1) / warmup)``
    - cosine: linear warm-up over ``warmup`` steps, then
      ``min_lr + (lr - min_lr) * (1 + cos(pi * (step - warmup) / (steps - warmup))) / 2``
    - inverse_sqrt: ``lr * min((step + 1) / warmup, sqrt(warmup / (step + 1)))``: Vaswani et al.'s (2017, §5.3)
      ``d_model^-0.5 * min(n^-0.5, n * warmup^-1.5)`` at update n = step + 1, with lr = (d_model · warmup)^-0.5
      its peak, reached at n = warmup
    - step: ``lr * gamma ** (step // every)``
    """
    s = cfg.schedule
    if s.kind == "constant":
        return cfg.lr
    if s.kind == "linear_warmup":
        return cfg.lr * min(1.0, (step + 1) / s.warmup)
    if s.kind == "cosine":
        if step < s.warmup:
            return cfg.lr * (step + 1) / s.warmup
        progress = min(1.0, (step - s.warmup) / max(1, cfg.steps - s.warmup))
        return s.min_lr + (cfg.lr - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if s.kind == "inverse_sqrt":
        n = step + 1
        return cfg.lr * min(n / s.warmup, math.sqrt(s.warmup / n))
    if s.kind == "step":
        return cfg.lr * s.gamma ** (step // s.every)
    raise ValueError(f"unknown schedule '{s.kind}'")


def gradient_noise_std(step: int, cfg: TrainConfig) -> float:
    """σ_t of the gradient noise at 0-based ``step``: σ_t² = η / (1 + t)^γ (Neelakantan et al. 2015, eq. 1)."""
    return math.sqrt(cfg.gradient_noise / (1 + step) ** cfg.gradient_noise_decay)


def add_gradient_noise(params: Iterable[torch.nn.Parameter], step: int, cfg: TrainConfig) -> None:
    """Add N(0, σ_t²) (:func:`gradient_noise_std`) to every element of every gradient, in place; parameters
    without a gradient are left alone. The numbers come from a generator seeded from (``cfg.seed``, ``step``)
    afresh at every step: the same seed gives the same noise, a resumed run continues the same stream with no
    state to save, and every rank of a data-parallel run adds the same noise to the same averaged gradient."""
    std = gradient_noise_std(step, cfg)
    digest = hashlib.sha256(f"attngraph gradient noise {cfg.seed} {step}".encode()).digest()
    seed = int.from_bytes(digest[:8], "little")
    generators: dict[torch.device, torch.Generator] = {}
    for p in params:
        if p.grad is None:
            continue
        device = p.grad.device
        if device not in generators:
            generators[device] = torch.Generator(device=device).manual_seed(seed)
        noise = torch.randn(p.grad.shape, generator=generators[device], device=device, dtype=p.grad.dtype)
        p.grad.add_(noise, alpha=std)


def curriculum_value(step: int, cur: Curriculum) -> int | list[int]:
    """The curriculum parameter's value at ``step``: ``start`` moved linearly to ``end`` (rounded, held after)."""
    frac = min(1.0, step / cur.steps)
    if isinstance(cur.start, tuple):
        return [round(a + frac * (b - a)) for a, b in zip(cur.start, cur.end)]
    return round(cur.start + frac * (cur.end - cur.start))

"""Helpers the generated forward functions call (bound into their globals by compile_forward)."""
from __future__ import annotations

import torch


def _spread(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``w`` (B, 1) viewed to broadcast over ``x`` (B, ...)."""
    return w.reshape(w.shape[0], *([1] * (x.dim() - 1))) if x.dim() != 2 else w


def halt_mix(total, w: torch.Tensor, x):
    """``total + w·x`` (``total`` None: ``w·x``) for a tensor or a tuple of tensors, ``w`` (B, 1) per example:
    one ponder step's share of a halting scope's mean. Flat on purpose: it runs at every ponder step."""
    if isinstance(x, tuple):
        if total is None:
            return tuple([_spread(w, v) * v for v in x])
        return tuple([t + _spread(w, v) * v for t, v in zip(total, x)])
    return _spread(w, x) * x if total is None else total + _spread(w, x) * x


def halt_keep(mask: torch.Tensor, new, old):
    """``new`` where ``mask`` (B, 1) holds, else ``old``, for a tensor or a tuple of tensors."""
    if isinstance(new, tuple):
        return tuple(halt_keep(mask, a, b) for a, b in zip(new, old))
    return torch.where(_spread(mask, new), new, old)


def ponder_stack(values: list[torch.Tensor], steps: int) -> torch.Tensor:
    """The values of a pondering's steps stacked on axis 1 and padded with zeros to ``steps`` (the scope's
    max_steps, so that the steps of an enclosing loop, which may ponder for different counts, stack)."""
    out = torch.stack(values, 1)
    if out.shape[1] < steps:
        out = torch.cat([out, out.new_zeros(out.shape[0], steps - out.shape[1], *out.shape[2:])], 1)
    return out


def one_hot_max(p: torch.Tensor) -> torch.Tensor:
    """A distribution (..., K) replaced by the one-hot of its most probable entry (the first of ties), in its
    dtype: a program's hard selection, an attention's eval_argmax."""
    return torch.zeros_like(p).scatter_(-1, p.argmax(-1, keepdim=True), 1.0)

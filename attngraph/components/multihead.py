"""Multi-head scaled dot-product attention (Vaswani et al. 2017, §3.2), the Transformer's attention.

Queries come from ``query`` (default: ``in``, which makes it self-attention); keys and values from ``in``
(values from ``values`` when given, on the same time axis). With H heads of d features, D = H·d::

    Q = X_q W_q + b_q        (B, T, D) -> (B, H, T, d)
    K = X   W_k + b_k        (B, S, D) -> (B, H, S, d)
    V = X_v W_v + b_v        (B, S, D) -> (B, H, S, d)
    head_h = softmax(Q_h K_hᵀ / √d + M) V_h          (B, H, T, d)
    out    = [head_1; …; head_H] W_o + b_o           (B, T, size)

computed by ``torch.nn.functional.scaled_dot_product_attention``. The projections are fused where they can
be: one (E, 3D) map ``qkv`` for self-attention, one (E, 2D) map ``kv`` for keys and values read from ``in``
alone. The mask M is −∞ at padded keys (the validity mask of ``in``'s time axis) and, with ``causal: true``,
above the diagonal (position t attends to s ≤ t: a decoder's self-attention over the teacher-forced target).
A query row with no valid key (an example of length 0) gives zeros in ``out`` and ``weights``, never NaN.

``rotary: true`` rotates queries and keys by their positions before the scores (RoPE, Su et al. 2021):
for i < d/2, the pair (x_i, x_{i+d/2}) at position m turns by the angle m·θ_i, θ_i = 10000^(−2i/d), so
that Q_m·K_n depends on m − n alone. It needs queries and keys on one time axis (self-attention).

``dropout`` drops attention weights in training. Port ``weights`` is the attention averaged over heads
(B, T, S), as torch's ``average_attn_weights``, before dropout: what `attngraph inspect` draws. The fused
kernel never forms the weights, so ``forward(..., need_weights=False)`` runs it and gives ``weights`` = None,
while ``need_weights=True`` (the default) writes the same equations out and keeps them. The generated
forward calls it with the default today: the compiler does not yet tell a component which of its ports are
read or recorded (compiler v2, issue 24, is to pass ``need_weights=False`` where nothing reads them). The
outputs and gradients are the same either way (tested).

A query that is one vector per example (B, E) attends once: out (B, size), weights (B, S) (e.g. inside a
decoder step, over the encoder's states). Initialisation follows ``torch.nn.MultiheadAttention``: Xavier-
uniform projections of queries, keys and values, zero biases.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..spec.params import Bool, Float, Int, Param, RefList
from .base import Component, ShapeError, VType, component

PARAMS = {
    "in": Param(RefList(), doc="the sequence attended over (keys and values); also the queries when 'query' is not "
                               "given (self-attention)"),
    "query": Param(RefList(), None, "the queries: a sequence (one attention per position) or one vector per "
                                    "example (default: in, self-attention)"),
    "values": Param(RefList(), None, "the values, on in's time axis (default: in)"),
    "heads": Param(Int(min=1), doc="H, the number of heads"),
    "head_size": Param(Int(min=1), None, "d, features per head (default: the query size // heads, which heads "
                                         "must divide)"),
    "size": Param(Int(min=1), None, "output features after the output projection (default: the query size, so "
                                    "a residual sum fits)"),
    "dropout": Param(Float(min=0.0, max=1.0), 0.0, "probability of dropping an attention weight (training only)"),
    "bias": Param(Bool(), True, "learn biases in the input and output projections"),
    "causal": Param(Bool(), False, "position t attends only to positions s ≤ t (needs the queries on in's time axis)"),
    "rotary": Param(Bool(), False, "rotary position embedding of queries and keys (RoPE, Su et al. 2021)"),
}


@component("multihead_attention", "attention", PARAMS, ports=("out", "weights"),
           doc="Multi-head scaled dot-product attention (Vaswani et al. 2017): self-attention over 'in', or "
               "'query' attending over 'in'; heads, fused projections, an output projection, causal and padding "
               "masks, dropout on the weights, optional rotary positions; weights = the mean over heads")
class MultiheadAttention(Component):
    watch = ("weights",)
    mask_for = "in"  # the keys' validity mask: padded keys get no weight

    @classmethod
    def infer(cls, p, ins, step):
        x, q, v = ins["in"], ins.get("query"), ins.get("values")
        for name, t in (("in", x), ("query", q), ("values", v)):
            if t is not None and t.index:
                raise ShapeError(f"'{name}' holds class indices ({t}); attention needs feature vectors", name,
                                 hint="put an embedding in between")
        if x.time is None:
            raise ShapeError(f"'in' must be a sequence to attend over, but it is one vector per example ({x})", "in",
                             hint="name a sequence, e.g. an encoder's states")
        if v is not None and v.time != x.time:
            raise ShapeError(f"'values' must be a sequence on in's time axis ({x.time}), but it is {v}", "values",
                             hint="one value per key")
        query = q if q is not None else x
        for flag in ("causal", "rotary"):
            if getattr(p, flag) and query.time != x.time:
                what = "one vector per example" if query.time is None else f"on time axis {query.time}"
                raise ShapeError(f"{flag}: true compares positions of one sequence, but the query is {what} "
                                 f"({query}) and in is on time axis {x.time}", "query" if q is not None else "in",
                                 hint=f"use {flag} in self-attention (in: alone), or set {flag}: false")
        if p.head_size is None and query.size % p.heads:
            raise ShapeError(f"heads ({p.heads}) must divide the query size ({query.size})", "heads",
                             hint="set head_size, or use a number of heads that divides "
                                  f"{query.size}")
        head = p.head_size or query.size // p.heads
        if p.rotary and head % 2:
            raise ShapeError(f"rotary: true turns pairs of features, so the head size must be even, but it is {head}",
                             "head_size" if p.head_size is not None else "heads", hint=f"use a head size of {head + 1}")
        size = p.size or query.size
        return {"out": VType(size, query.time), "weights": VType(0, query.time, layout=("alignment", x.time))}

    @classmethod
    def static_type(cls, p, port):
        return VType(p.size) if port == "out" and isinstance(p.size, int) and not isinstance(p.size, bool) else None

    def __init__(self, p, ins, outs):
        super().__init__()
        x, q, v = ins["in"], ins.get("query"), ins.get("values")
        query = q if q is not None else x
        self.heads = p.heads
        self.head_size = p.head_size or query.size // p.heads
        self.dropout, self.causal, self.rotary = p.dropout, p.causal, p.rotary
        inner = self.heads * self.head_size
        self.fused = q is None and v is None
        if self.fused:
            self.qkv = nn.Linear(x.size, 3 * inner, bias=p.bias)  # (E, 3D) as torch's in_proj_weight
            in_projections = [self.qkv]
        else:
            self.q = nn.Linear(query.size, inner, bias=p.bias)
            if v is None:
                self.kv = nn.Linear(x.size, 2 * inner, bias=p.bias)
                in_projections = [self.q, self.kv]
            else:
                self.k, self.v = nn.Linear(x.size, inner, bias=p.bias), nn.Linear(v.size, inner, bias=p.bias)
                in_projections = [self.q, self.k, self.v]
        self.out = nn.Linear(inner, outs["out"].size, bias=p.bias)
        for proj in in_projections:
            nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)

    def forward(self, x, query=None, values=None, mask=None, need_weights: bool = True):
        """x (B, S, E), query (B, T, Eq) or (B, Eq) or None, values (B, S, Ev) or None, mask (B, S) bool or None
        -> (out (B, [T,] size), weights (B, [T,] S), or None with ``need_weights=False``: the fused kernel)."""
        vector = query is not None and query.dim() == 2
        q, k, v = self._project(x, query.unsqueeze(1) if vector else query, values)  # (B, H, T|S, d)
        if self.rotary:
            q, k = rotate(q), rotate(k)
        allowed, empty = self._allowed(mask, q.shape[2], k.shape[2], x.device)
        drop = self.dropout if self.training else 0.0
        if need_weights:
            context, weights = self._explicit(q, k, v, allowed, drop)
        else:
            causal = self.causal and allowed is None
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop, is_causal=causal)
            weights = None
        batch, _, steps, _ = context.shape
        out = self.out(context.transpose(1, 2).reshape(batch, steps, -1))  # (B, T, size)
        if empty is not None:  # a query row without a valid key: zeros, not an average of padding
            out = out.masked_fill(empty.unsqueeze(-1), 0.0)
            weights = None if weights is None else weights.masked_fill(empty.unsqueeze(-1), 0.0)
        if vector:
            return out.squeeze(1), None if weights is None else weights.squeeze(1)
        return out, weights

    def _project(self, x, query, values):
        """-> queries (B, H, T, d), keys and values (B, H, S, d)."""
        inner = self.heads * self.head_size
        if self.fused:
            q, k, v = self.qkv(x).split(inner, -1)
        else:
            q = self.q(query if query is not None else x)
            k, v = self.kv(x).split(inner, -1) if values is None and hasattr(self, "kv") else \
                (self.k(x), self.v(x if values is None else values))
        return tuple(t.view(t.shape[0], t.shape[1], self.heads, self.head_size).transpose(1, 2) for t in (q, k, v))

    def _allowed(self, mask, steps: int, keys: int, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The boolean attention mask (B, 1, T, S) (True: may attend) and the query rows with no valid key (B, T),
        or (None, None) without padding (then causal masking is the kernel's own). Rows with no valid key are
        let attend everywhere, so no softmax sees only −∞; their output is zeroed afterwards."""
        if mask is None:
            return None, None
        allowed = mask[:, None, None, :]  # (B, 1, 1, S)
        if self.causal:
            allowed = allowed & torch.ones(steps, keys, dtype=torch.bool, device=device).tril()
        else:
            allowed = allowed.expand(-1, -1, steps, -1)
        empty = ~allowed.any(-1)  # (B, 1, T)
        return allowed | empty.unsqueeze(-1), empty.squeeze(1)

    def _explicit(self, q, k, v, allowed, drop: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused kernel's equations written out, keeping the weights: -> context (B, H, T, d), the weights
        averaged over heads (B, T, S)."""
        scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(self.head_size))  # (B, H, T, S)
        if allowed is None and self.causal:
            allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        weights = torch.softmax(scores, -1)
        context = (F.dropout(weights, drop) if drop else weights) @ v
        return context, weights.mean(1)


def rotate(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE: x (B, H, T, d), d even -> x with the pair (x_i, x_{i+d/2}) at position m turned by m·θ_i,
    θ_i = base^(−2i/d)."""
    half = x.shape[-1] // 2
    exact = torch.float64 if x.dtype == torch.float64 else torch.float32  # angles never in half precision
    theta = base ** (-torch.arange(half, device=x.device, dtype=exact) * 2 / x.shape[-1])  # (d/2,)
    angle = torch.arange(x.shape[-2], device=x.device, dtype=exact)[:, None] * theta  # (T, d/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], -1)

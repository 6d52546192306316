"""Soft attention over a sequence: Bahdanau et al. 2015, Luong et al. 2015, Chorowski et al. 2015.

A query q (the decoder state) scores every position s of the keys k_s (e.g. encoder states); the alignment
α = softmax_s(score(q, k_s)) over the valid positions weights the values v_s (default: the keys) into the
context c = Σ_s α_s v_s. Ports: ``out`` = c, ``weights`` = α (what `attngraph inspect` draws), ``scores`` = the
scores before the softmax, padding (and positions outside a local window) at the dtype's minimum: a pointer
(Vinyals et al. 2015) is an attention whose scores are the output, a decoder's distribution over the input
positions (``targets: {y: {points_to: x}}``, see scopes/decode.py). Scores::

    dot              qᵀk                      scaled_dot   qᵀk / √d           cosine   qᵀk / (|q| |k|)
    general          qᵀ W k                   (Luong's bilinear form; W is Q×K)
    additive         vᵀ tanh(W q + U k)       (Bahdanau; U has the bias)
    concat           vᵀ tanh(W_a [q; k])      (Luong; one affine map over the concatenation)
    location_aware   vᵀ tanh(W q + U k + V f) (Chorowski; f = conv1d of the previous alignment α_{i−1})

Windows (Luong §3.2): ``local_m`` attends to [p−D, p+D] around p = the decoder step (clamped to the
example's last position); ``local_p`` predicts p = S_len · σ(v_pᵀ tanh(W_p q)) and multiplies the windowed
alignment by exp(−(s − p)² / 2σ²), σ = D/2 (not renormalised, as in the paper). With ``heads`` > 1, query,
keys and values are projected per head, the score applies per head, the contexts are concatenated and
``weights`` is the mean alignment over heads; with one head the score reads the raw inputs (the papers' form).

``hard: true`` is the stochastic hard attention of Xu et al. 2015 (§4.1): the context is the value at one
position s, drawn from α in training (the most probable position in evaluation), so no gradient reaches
the score through the context; port ``logp`` = log α_s carries it instead, to an output with ``loss:
reinforce`` (REINFORCE with the batch's other examples' mean reward as baseline, see components/losses.py).
Xu et al. also replace the sample by the expectation half of the time and add an entropy bonus; neither is
done here (declare a soft attention for the expectation).

Inside a loop, ``step`` runs once per decoder step (state: the previous alignment, for location_aware, and
the step count, for local_m). What does not depend on the query (U k, the keys' side of concat, scaled or
normalised keys, the heads' projections of keys and values, the mask) is computed once per loop run, as a
hand-written decoder would: ``init_state`` (called by the generated code before every loop run) empties a
cache that the first ``step`` fills, keyed on the identity of the keys, values and mask tensors (and on the
keys' version counter and the grad mode). Within one loop run these are the same tensor objects at every
step, so the cached tensors are ordinary nodes of that run's autograd graph, shared by its steps
(gradients accumulate through them). Under torch.compile the cache is bypassed (each traced step
recomputes them).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..compiler.runtime import one_hot_max
from ..spec.params import Bool, Choice, Either, Float, Int, Param, RefList
from .base import Component, ShapeError, VType, component

EPS = 1e-8  # inside the cosine score's norms: sqrt(|x|² + eps)
SCORES = ("dot", "scaled_dot", "general", "additive", "concat", "cosine", "location_aware")
SAME_SIZE = ("dot", "scaled_dot", "cosine")  # compare query and keys directly: one size
TANH = ("additive", "concat", "location_aware")  # vᵀ tanh(...) with a hidden layer of `hidden` units

PARAMS = {
    "query": Param(RefList(), doc="the decoder state(s) that attend: one vector per example inside a loop, "
                                  "a sequence (one attention per step) outside"),
    "keys": Param(RefList(), doc="the sequence attended over (e.g. encoder states), scored against the query"),
    "values": Param(RefList(), None, "the sequence averaged into the context, on the keys' time axis "
                                     "(default: the keys)"),
    "score": Param(Choice(*SCORES), "additive",
                   "alignment score: dot, scaled_dot (÷√d), general (qᵀWk), additive (Bahdanau), concat (Luong), "
                   "cosine, location_aware (Chorowski: also reads the previous alignment)"),
    "hidden": Param(Int(min=1), None, "units of the tanh layer of additive, concat, location_aware and of "
                                      "local_p's position predictor (default: the key size, per head)"),
    "window": Param(Choice("global", "local_m", "local_p"), "global",
                    "positions attended: all (global), [p−D, p+D] around p = the step (local_m) or around a "
                    "predicted p, Gaussian-weighted (local_p)"),
    "half_width": Param(Int(min=0), 5, "D: a local window spans positions p−D … p+D"),
    "heads": Param(Int(min=1), 1, "attention heads: more than one projects query, keys and values per head "
                                  "and concatenates the heads' contexts"),
    "head_size": Param(Int(min=1), None, "features per head when heads > 1 (default: value size // heads)"),
    "hard": Param(Bool(), False,
                  "stochastic hard attention (Xu et al. 2015 §4.1): the context is the value at ONE position, "
                  "sampled from α in training, the most probable in evaluation; port logp = log α of it, for an "
                  "output with loss: reinforce"),
    "eval_argmax": Param(Bool(), False,
                         "outside training, α is one-hot at the most probable position, so the context is exactly "
                         "one position's value (a pointer that picks, e.g. a program's pivot); training stays soft"),
    "location_filters": Param(Int(min=1), 10, "location_aware: convolution filters over the previous alignment"),
    "location_kernel": Param(Int(min=1), 9, "location_aware: convolution width (odd: 'same' padding)"),
    "init": Param(Either(Choice("zeros", "learned"), Float()), "zeros",
                  "prev(node) before the first step (the context that input feeding reads): zeros, learned or a "
                  "constant"),
}


class _PerHead(nn.Module):
    """``heads`` independent affine maps (nn.Linear's layout and init per head): weight (H, out, in)."""

    def __init__(self, heads: int, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(heads, n_out, n_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(heads, n_out).uniform_(-bound, bound)) if bias else None


def _linear(heads: int, n_in: int, n_out: int, bias: bool) -> nn.Module:
    return nn.Linear(n_in, n_out, bias=bias) if heads == 1 else _PerHead(heads, n_in, n_out, bias)


def _vector(heads: int, size: int) -> nn.Parameter:
    bound = 1 / math.sqrt(size)
    return nn.Parameter(torch.empty(*(() if heads == 1 else (heads,)), size).uniform_(-bound, bound))


def _per_head_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear per head: weight (H, out, in), bias (H, out), x a head-major fold (H·B, ..., in)."""
    flat, w = x.reshape(weight.shape[0], -1, x.shape[-1]), weight.transpose(1, 2)
    y = torch.bmm(flat, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), flat, w)
    return y.view(*x.shape[:-1], weight.shape[1])


def _per_head_energy(e: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch.matmul(e, v) per head: e a head-major fold (H·B, ..., h), v (H, h) -> (H·B, ...)."""
    return torch.bmm(e.reshape(v.shape[0], -1, e.shape[-1]), v.unsqueeze(-1)).view(e.shape[:-1])


class _Prep(NamedTuple):
    """What a call computes once from keys, values and mask (folded per head with heads > 1)."""

    keys: torch.Tensor  # the keys' side of the score: k, k/√d, k/|k|, U k + b or W_a[k-part] k + b: (N, S, ·)
    values: torch.Tensor  # (N, S, V)
    invalid: torch.Tensor | None  # (N, S) bool, True at padding; None when every position is valid
    lengths: torch.Tensor | None  # (B, 1) valid source lengths (local windows only)
    positions: torch.Tensor | None  # (S,) 0, 1, ..., S−1 in the keys' dtype (local windows only)
    query_weight: torch.Tensor | None  # the query's map in the score: W, W_a's query block (concat), Wᵀ (general)
    v: torch.Tensor | None  # the tanh layer's output weights


class _Cache:
    """The current loop run's _Prep and what it was computed from (see the module docstring); a copy or a
    pickle starts empty."""

    __slots__ = ("keys", "values", "mask", "version", "grad", "prep")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.keys = self.values = self.mask = self.version = self.grad = None
        self.prep: _Prep | None = None

    def __deepcopy__(self, memo: dict) -> _Cache:
        return _Cache()

    def __reduce__(self):
        return (_Cache, ())


@component("attention", "attention", PARAMS, ports=("out", "weights", "logp", "scores"), stateful=True,
           doc="Soft attention (Bahdanau, Luong, Chorowski): out = Σ_s α_s v_s with α = softmax of a query–key "
               "score over the valid positions; weights = α; scores = the masked scores before the softmax (a "
               "pointer's output, Vinyals et al.); hard: true samples one position instead (Xu et al.)")
class Attention(Component):
    watch = ("weights",)
    mask_for = "keys"

    @classmethod
    def infer(cls, p, ins, step):
        q, k, v = ins["query"], ins["keys"], ins.get("values")
        for name, t in (("query", q), ("keys", k), ("values", v)):
            if t is not None and t.index:
                raise ShapeError(f"'{name}' holds class indices ({t}); attention needs feature vectors", name,
                                 hint="put an embedding in between")
        if k.time is None:
            raise ShapeError(f"'keys' must be a sequence to attend over, but it is one vector per example ({k})",
                             "keys", hint="name a sequence, e.g. the encoder's states")
        if v is not None and v.time != k.time:
            raise ShapeError(f"'values' must be a sequence on the keys' time axis ({k.time}), but it is {v}", "values",
                             hint="values are averaged with the weights of the keys' positions: one per key")
        if step and q.time is not None:
            raise ShapeError(f"inside a loop the query is one vector per example, but it is a whole sequence ({q})",
                             "query", hint="name this step's decoder state, e.g. prev(rnn)")
        if not step:
            if q.time is None:
                raise ShapeError(f"outside a loop the query is a sequence (one attention per step), but it is one "
                                 f"vector per example ({q})", "query",
                                 hint="put the attention in a loop body to attend once per step")
            if p.score == "location_aware":
                raise ShapeError("score location_aware needs to run inside a loop: it reads the previous alignment",
                                 hint="put it in a loop body, or use another score")
            if p.window == "local_m":
                raise ShapeError("window local_m needs to run inside a loop: it counts decoder steps",
                                 hint="put it in a loop body, or use window: local_p")
        if p.heads > 1 and (p.window != "global" or p.score == "location_aware"):
            raise ShapeError(f"heads > 1 needs window: global and a score other than location_aware, but heads is "
                             f"{p.heads} with window: {p.window} and score: {p.score}",
                             hint="use heads: 1 for a local window or location-aware attention")
        if p.score == "location_aware" and p.location_kernel % 2 == 0:
            raise ShapeError(f"location_kernel must be odd ('same' padding: one feature per position), but it is "
                             f"{p.location_kernel}", hint=f"use {p.location_kernel + 1}")
        if p.window == "local_p" and p.half_width == 0:
            raise ShapeError("window local_p needs half_width ≥ 1: its Gaussian has σ = half_width / 2",
                             hint="use window: local_m for a window of one position")
        if p.hard and (p.heads > 1 or p.window != "global"):
            raise ShapeError(f"hard attention samples one position of one alignment over the whole source, but "
                             f"heads is {p.heads} and window is {p.window}", hint="use heads: 1 and window: global "
                             "with hard: true")
        if p.hard and p.eval_argmax:
            raise ShapeError("eval_argmax makes a soft attention pick the most probable position in evaluation; "
                             "hard: true already does", "eval_argmax", hint="set only one of them")
        size = (v or k).size
        if p.heads == 1:
            if p.score in SAME_SIZE and q.size != k.size:
                raise ShapeError(f"score {p.score} compares query and keys directly, but the query has {q.size} "
                                 f"features and the keys {k.size}", "query",
                                 hint="use score: general or additive, which learn a map between the two sizes")
        else:
            head = p.head_size or size // p.heads
            if head == 0:
                raise ShapeError(f"{p.heads} heads split {size} value features into heads of 0 features",
                                 "values" if v is not None else "keys", hint="set head_size, or use fewer heads")
            size = p.heads * head
        types = {"out": VType(size, q.time), "weights": VType(0, q.time, layout=("alignment", k.time))}
        if p.hard:
            types["logp"] = VType(1, q.time, layout=("logp",))
        if p.heads == 1:
            types["scores"] = VType(0, q.time, layout=("positions", k.time))
        return types

    @classmethod
    def missing_port(cls, p, port):
        if port == "logp":
            return "logp is the log-probability of the position a hard attention samples", "set hard: true"
        if port == "scores":
            return "scores over the positions are those of a single head (a pointer)", "set heads: 1"
        return None

    @classmethod
    def static_type(cls, p, port):
        return None  # the sizes come from the inputs: see guess_type

    @classmethod
    def guess_type(cls, p, inputs, port, type_of):
        """prev(att): the context's size, from the values (or keys) edges; the alignment's length is unknown."""
        edges = inputs.get("values") or inputs.get("keys") or []
        types = [type_of(e) for e in edges]
        if port != "out" or not types or any(t is None for t in types):
            return None
        size = sum(t.size for t in types)
        heads = p.heads if isinstance(p.heads, int) else 1
        if heads > 1:
            head = p.head_size if isinstance(p.head_size, int) else size // heads
            size = heads * head
        return VType(size)

    def __init__(self, p, ins, outs):
        super().__init__()
        q = ins["query"].size
        k = ins["keys"].size
        v = ins["values"].size if ins.get("values") is not None else k
        self.score, self.window, self.heads, self.half_width = p.score, p.window, p.heads, p.half_width
        self.hard, self.eval_argmax = p.hard, p.eval_argmax
        heads = p.heads
        if heads > 1:
            d = p.head_size or v // heads
            self.q_proj, self.k_proj, self.v_proj = (nn.Linear(n, heads * d) for n in (q, k, v))
            q = k = d
        self.query_size, self.scale = q, 1 / math.sqrt(k)
        # one head: the papers' form, plain torch calls (no Python frame per step); more: each head its own map
        self._linear = F.linear if heads == 1 else _per_head_linear
        self._energy = torch.matmul if heads == 1 else _per_head_energy
        hidden = p.hidden or k
        if p.score == "general":
            bound = 1 / math.sqrt(k)
            self.W = nn.Parameter(torch.empty(*((q, k) if heads == 1 else (heads, q, k))).uniform_(-bound, bound))
        elif p.score == "concat":
            self.W_a = _linear(heads, q + k, hidden, True)  # one map over [q; k], applied as its two blocks
        elif p.score in TANH:
            self.W, self.U = _linear(heads, q, hidden, False), _linear(heads, k, hidden, True)
        if p.score == "location_aware":
            self.pad = p.location_kernel // 2
            self.conv = nn.Conv1d(1, p.location_filters, p.location_kernel, padding=self.pad, bias=False)
            self.V = nn.Linear(p.location_filters, hidden, bias=False)
        if p.score in TANH:
            self.v = _vector(heads, hidden)
        if p.window == "local_p":
            self.W_p, self.v_p = nn.Linear(q, hidden, bias=False), _vector(1, hidden)
        self._cache = _Cache()

    # ---------------------------------------------------------------------------------------------- runtime
    def init_state(self, batch, like):
        """(previous alignment, decoder step): (B, 1) zeros, so a masked carry broadcasts them against (B, S)."""
        self._cache.clear()  # a new loop run: new keys
        return like.new_zeros((batch, 1)), like.new_zeros((batch, 1))

    def step(self, state, query, keys, values=None, mask=None):
        """query (B, Q), keys (B, S, K), values (B, S, V) or None, mask (B, S) bool or None ->
        (context (B, V), weights (B, S), logp (B, 1) or None, scores (B, S) or None (heads > 1),
        (weights, step + 1))."""
        prep = self._prepared(keys, values, mask)
        prev, counter = state
        q = query if self.heads == 1 else self._fold(F.linear(query, self.q_proj.weight, self.q_proj.bias))
        weights, scores = self._align(self._scores(q, prep, prev, False), q, prep, counter, False)
        if self.eval_argmax and not self.training:
            weights = one_hot_max(weights)
        logp = None
        if self.hard:
            context, logp = self._sample(weights.unsqueeze(1), prep.values)
            context, logp = context.squeeze(1), logp.squeeze(1)
        else:
            context = torch.bmm(weights.unsqueeze(1), prep.values).squeeze(1)
        if self.heads > 1:
            context, weights = self._unfold(context, weights)
            scores = None
        # the step count is read by local_m alone: other windows carry it unchanged (one op less per step)
        return context, weights, logp, scores, (weights, counter + 1 if self.window == "local_m" else counter)

    def forward(self, query, keys, values=None, mask=None):
        """query (B, T, Q), keys (B, S, K), values (B, S, V) or None, mask (B, S) bool or None ->
        (context (B, T, V), weights (B, T, S), logp (B, T, 1) or None, scores (B, T, S) or None (heads > 1)):
        every query step at once."""
        if self.score == "location_aware" or self.window == "local_m":
            raise RuntimeError(f"attention with score {self.score} and window {self.window} runs step by step")
        prep = self._prepare(keys, values, mask)
        q = query if self.heads == 1 else self._fold(F.linear(query, self.q_proj.weight, self.q_proj.bias))
        weights, scores = self._align(self._scores(q, prep, None, True), q, prep, None, True)
        if self.eval_argmax and not self.training:
            weights = one_hot_max(weights)
        if self.hard:
            context, logp = self._sample(weights, prep.values)
            return context, weights, logp, scores
        context = torch.bmm(weights, prep.values)
        return (*self._unfold(context, weights), None, None) if self.heads > 1 else (context, weights, None, scores)

    def _sample(self, weights: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard attention: weights (B, T, S), values (B, S, V) -> (the value at one position per query
        (B, T, V), log α there (B, T, 1)): sampled from α in training, the most probable in evaluation."""
        flat = weights.reshape(-1, weights.shape[-1])
        if self.training:
            pick = torch.multinomial(flat.detach().float(), 1)  # a padded position (α = 0) is never drawn
        else:
            pick = flat.argmax(-1, keepdim=True)
        logp = flat.gather(1, pick).clamp_min(torch.finfo(flat.dtype).tiny).log()
        pick = pick.view(weights.shape[0], -1)  # (B, T)
        context = values.gather(1, pick.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
        return context, logp.view(*pick.shape, 1)

    def _prepared(self, keys, values, mask) -> _Prep:
        """_prepare, computed at the first step of a loop run and reused by its other steps."""
        if torch.compiler.is_compiling():
            return self._prepare(keys, values, mask)
        cache = self._cache
        if (cache.keys is not keys or cache.values is not values or cache.mask is not mask
                or cache.version != keys._version or cache.grad != torch.is_grad_enabled()):
            cache.prep = self._prepare(keys, values, mask)
            cache.keys, cache.values, cache.mask = keys, values, mask
            cache.version, cache.grad = keys._version, torch.is_grad_enabled()
        return cache.prep

    def _prepare(self, keys, values, mask) -> _Prep:
        values = keys if values is None else values
        invalid = None if mask is None else ~mask
        lengths = positions = None
        if self.window != "global":
            batch, length = keys.shape[:2]
            lengths = keys.new_full((batch, 1), length) if mask is None else mask.sum(1, keepdim=True).to(keys.dtype)
            positions = torch.arange(length, dtype=keys.dtype, device=keys.device)
        if self.heads > 1:
            keys = self._fold(F.linear(keys, self.k_proj.weight, self.k_proj.bias))
            values = self._fold(F.linear(values, self.v_proj.weight, self.v_proj.bias))
            invalid = None if invalid is None else invalid.repeat(self.heads, 1)  # head-major, like _fold
        if self.score == "scaled_dot":
            keys = keys * self.scale
        elif self.score == "cosine":
            keys = keys / (keys.square().sum(-1, keepdim=True) + EPS).sqrt()
        elif self.score == "concat":
            keys = self._linear(keys, self.W_a.weight[..., self.query_size:], self.W_a.bias)
        elif self.score in TANH:
            keys = self._linear(keys, self.U.weight, self.U.bias)
        # the parameters each step reads, looked up once (a submodule's parameter costs two Module.__getattr__)
        query_weight = v = None
        if self.score in TANH:
            query_weight = self.W_a.weight[..., :self.query_size] if self.score == "concat" else self.W.weight
            v = self.v
        elif self.score == "general":
            query_weight = self.W.transpose(-1, -2)  # qᵀW = linear(q, Wᵀ)
        return _Prep(keys, values, invalid, lengths, positions, query_weight, v)

    def _scores(self, q, prep: _Prep, prev, seq: bool) -> torch.Tensor:
        """q (N, Q), or (N, T, Q) when ``seq`` -> scores (N, S) or (N, T, S)."""
        keys = prep.keys
        if prep.v is not None:  # vᵀ tanh(W q + (U k + b) [+ V f]), or concat's blocks of W_a [q; k] + b
            e = (keys.unsqueeze(1) if seq else keys) + self._linear(q, prep.query_weight).unsqueeze(-2)
            if self.score == "location_aware" and prev.shape[-1] == keys.shape[1]:  # else α_{i−1} = initial zeros
                f = F.conv1d(prev.unsqueeze(1), self.conv.weight, padding=self.pad)  # (B, filters, S)
                e = e + F.linear(f.transpose(1, 2), self.V.weight)
            return self._energy(torch.tanh(e), prep.v)  # (not tanh_: in place is slower on CPU)
        if prep.query_weight is not None:  # general: (qᵀW) k
            q = self._linear(q, prep.query_weight)
        elif self.score == "cosine":
            q = q / (q.square().sum(-1, keepdim=True) + EPS).sqrt()
        return torch.bmm(q, keys.transpose(1, 2)) if seq else torch.bmm(keys, q.unsqueeze(-1)).squeeze(-1)

    def _align(self, scores, q, prep: _Prep, counter, seq: bool) -> torch.Tensor:
        """Mask (padding, window), softmax, and local_p's Gaussian: scores (N, [T,] S) -> (weights, the masked
        scores)."""
        invalid = prep.invalid
        if invalid is not None and seq:
            invalid = invalid.unsqueeze(1)
        dist = None
        if self.window != "global":
            lengths = prep.lengths.unsqueeze(1) if seq else prep.lengths  # (B, [1,] 1)
            if self.window == "local_m":  # p = the step, clamped to the last valid position
                center = torch.minimum(counter, lengths - 1).clamp(min=0)
            else:  # p = S_len · σ(v_pᵀ tanh(W_p q))
                center = lengths * torch.sigmoid(torch.tanh(F.linear(q, self.W_p.weight)) @ self.v_p).unsqueeze(-1)
            dist = prep.positions - center  # (B, [T,] S)
            outside = dist.abs() > self.half_width
            invalid = outside if invalid is None else invalid | outside
        if invalid is not None:  # the dtype's min, not −inf: a row with no valid position gives no NaN
            scores = scores.masked_fill(invalid, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, -1)
        if self.window == "local_p":  # exp(−(s − p)² / 2σ²) with σ = D/2
            weights = weights * torch.exp(dist.square() * (-2.0 / self.half_width ** 2))
        return weights, scores

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ..., H·d) -> (H·B, ..., d), head-major."""
        x = x.view(*x.shape[:-1], self.heads, x.shape[-1] // self.heads).movedim(-2, 0)
        return x.reshape(-1, *x.shape[2:])

    def _unfold(self, context: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H·B, ..., d), (H·B, ..., S) -> the heads' contexts side by side (B, ..., H·d), the mean alignment."""
        heads = self.heads
        context = context.view(heads, -1, *context.shape[1:]).movedim(0, -2)
        return context.reshape(*context.shape[:-2], -1), weights.view(heads, -1, *weights.shape[1:]).mean(0)

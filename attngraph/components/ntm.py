"""Neural Turing Machine parts (Graves, Wayne & Danihelka 2014, section 3): a memory and its read and write heads.

A memory is an ordinary value of the step graph, N slots × M numbers, kept flat as ``(B, N·M)`` (its type
prints as ``memory[N×M]``). Write heads address the memory as it was *before* this step (they read
``prev(mem)``), the memory applies all of this step's writes at once, and read heads read the memory
*after* them::

    ctrl:  {kind: lstm, size: 100, in: [x, prev(read)]}
    write: {kind: ntm_write, memory: prev(mem), in: ctrl}
    mem:   {kind: ntm_memory, slots: 128, width: 20, writes: write}
    read:  {kind: ntm_read, memory: mem, in: ctrl}
    y:     {kind: linear, size: 8, in: [ctrl, read]}

So within step t: the controller sees the reads of step t−1; every write head computes its weighting
from M_{t−1} and its own previous weighting; M_t = M_{t−1} ∘ Π_j (1 − w_j e_jᵀ) + Σ_j w_j a_jᵀ (erase,
then add, all heads together: eqs. 3–4); every read head addresses M_t and reads r = Σ_i w(i) M_t(i).

Addressing (eqs. 5–9), per head, from a linear map of its inputs to [k (M), β, g, s (S), γ] (write heads
add e (M), a (M)): k as is, β = softplus, g = σ, s = softmax over the S shift offsets, γ = 1 + softplus,
e = σ, a = tanh. Content weights use cosine similarity with ``eps`` inside the square roots, so all-zero
memory rows or keys give finite values and gradients; sharpening is softmax(γ · log(w̃ + eps)), stable
for tiny weights and large γ.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..spec.params import Choice, Either, Float, Int, IntList, Param, RefList, RefType
from .base import IN, Component, ShapeError, VType, component

EPS = 1e-8


def content_weights(memory: torch.Tensor, key: torch.Tensor, beta: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """softmax_i(β · cos(k, M_i)): memory (B, N, M), key (B, M), beta (B, 1) -> (B, N)."""
    dot = torch.bmm(memory, key.unsqueeze(-1)).squeeze(-1)  # (B, N)
    norms = (memory.pow(2).sum(-1) + eps).sqrt() * (key.pow(2).sum(-1, keepdim=True) + eps).sqrt()  # (B, N)
    return torch.softmax(beta * dot / norms, dim=-1)


def shift(w: torch.Tensor, s: torch.Tensor, offsets: tuple[int, ...]) -> torch.Tensor:
    """Circular convolution w̃(i) = Σ_k w(i − offset_k) s_k: w (B, N), s (B, S) -> (B, N)."""
    rolled = torch.stack([torch.roll(w, o, dims=-1) if o else w for o in offsets], dim=-1)  # (B, N, S)
    return torch.bmm(rolled, s.unsqueeze(-1)).squeeze(-1)


def sharpen(w: torch.Tensor, gamma: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """w^γ / Σ w^γ, as softmax(γ · log(w + eps)): w (B, N), gamma (B, 1) -> (B, N)."""
    return torch.softmax(gamma * torch.log(w + eps), dim=-1)


def address(memory, w_prev, key, beta, g, s, gamma, offsets, eps: float = EPS) -> torch.Tensor:
    """The full addressing of eqs. 5–9: content, interpolation with the previous weighting, shift, sharpening."""
    wc = content_weights(memory, key, beta, eps)
    wg = torch.lerp(w_prev, wc, g)  # g·wc + (1 − g)·w_prev in one op
    return sharpen(shift(wg, s, offsets), gamma, eps)


MEMORY_INIT = Param(Either(Choice("zeros", "learned", "random"), Float()), 1e-6,
                    "initial contents, reset for every sequence: a constant (Graves-style small value), zeros, "
                    "learned (one N×M parameter) or random (N(0, 0.1²) per sequence)")
WEIGHT_INIT = Param(Either(Choice("first", "zeros", "learned"), Float()), "first",
                    "the head's weighting before the first step: first (all weight on location 0, like a tape "
                    "head at its start), zeros, learned (softmax of a parameter that starts focused on location "
                    "0) or a constant. With a constant memory, zeros or a constant keep every location alike "
                    "forever (nothing breaks the symmetry); first or learned do not. For a read head it is also "
                    "what prev(read) gives at the first step (learned: a learned read vector, else zeros)")
SHIFTS = Param(IntList(), [-1, 0, 1], "the shift offsets s ranges over (circular convolution)")


def _memory_layout(t, what: str) -> tuple[int, int]:
    if t.layout is None or t.layout[0] != "memory":
        raise ShapeError(f"'memory' must be an ntm_memory, but it is {t}", input="memory",
                         hint=f"name the memory node ({what})")
    return t.layout[1], t.layout[2]


class _Head(Component):
    """Shared by read and write heads: parameters from the inputs, addressing, the previous weighting."""

    extra = 0  # parameters after [k, β, g, s, γ]
    accepts = {"memory": "memory"}
    watch = ("weights",)

    def __init__(self, p, ins, outs):
        super().__init__()
        self.slots, self.width = ins["memory"].layout[1], ins["memory"].layout[2]
        self.offsets = tuple(p.shifts)
        m, n_shift = self.width, len(self.offsets)
        self.sizes = [m, 1, 1, n_shift, 1] + ([m, m] if self.extra else [])
        self.fc = nn.Linear(ins["in"].size, sum(self.sizes))
        self.init_kind = p.init
        if p.init == "learned":
            self.w0 = nn.Parameter(torch.zeros(self.slots))
            with torch.no_grad():
                self.w0[0] = 10.0  # softmax ≈ 0.9995 on location 0: starts like "first"

    @classmethod
    def infer(cls, p, ins, step):
        n, m = _memory_layout(ins["memory"], cls.wiring)
        if not step:
            raise ShapeError(f"an {cls.kind} head works step by step: put it inside a loop body")
        if ins["in"].index:
            raise ShapeError(f"'in' holds class indices ({ins['in']}); embed them first", input="in")
        return {"out": cls.port_type(n, m), "weights": VType(n)}

    @classmethod
    def guess_type(cls, p, inputs, port, type_of):
        edges = inputs.get("memory") or []
        t = type_of(edges[0]) if edges else None
        if t is None:
            return None
        if t.layout is None or t.layout[0] != "memory":
            return VType(1)  # any guess: infer() then reports the real mistake, the memory: that is not one
        return VType(t.layout[1]) if port == "weights" else cls.port_type(t.layout[1], t.layout[2])

    def init_state(self, batch, like):
        if self.init_kind == "learned":
            return (torch.softmax(self.w0.to(like.dtype), -1).expand(batch, -1),)
        if self.init_kind == "first":
            w = like.new_zeros((batch, self.slots))
            w[:, 0] = 1.0
            return (w,)
        value = 0.0 if self.init_kind == "zeros" else float(self.init_kind)
        return (like.new_full((batch, self.slots), value),)

    def _address(self, x, flat_memory, w_prev):
        memory = flat_memory.view(-1, self.slots, self.width)
        parts = torch.split(self.fc(x), self.sizes, dim=-1)
        key, beta, g, s, gamma = parts[:5]
        w = address(memory, w_prev, key, F.softplus(beta), torch.sigmoid(g), torch.softmax(s, -1),
                    1 + F.softplus(gamma), self.offsets)
        return memory, w, parts[5:]


@component("ntm_read", family="attention", params={
    "memory": Param(RefType(), doc="the ntm_memory to read (after this step's writes: name it, not prev())"),
    **IN, "shifts": SHIFTS, "init": WEIGHT_INIT,
}, ports=("out", "weights"), stateful=True,
    doc="NTM read head: address a memory (content, interpolation, shift, sharpening) and read Σ w(i) M(i)")
class NTMRead(_Head):
    wiring = "memory: mem"

    @classmethod
    def port_type(cls, n, m):
        return VType(m)

    def step(self, state, memory, x):
        mem, w, _ = self._address(x, memory, state[0])
        read = torch.bmm(w.unsqueeze(1), mem).squeeze(1)  # (B, M)
        return read, w, (w,)


@component("ntm_write", family="attention", params={
    "memory": Param(RefType(), doc="the ntm_memory it writes to, as before this step: prev(mem)"),
    **IN, "shifts": SHIFTS, "init": WEIGHT_INIT,
}, ports=("out", "weights"), stateful=True,
    doc="NTM write head: address the memory and emit (weighting, erase, add) for the memory's writes:")
class NTMWrite(_Head):
    extra = 2
    step_local = ("out",)  # (w, e, a) as three tensors: a cat + split per step cost ~7% of a batch-32 training step

    wiring = "memory: prev(mem)"

    @classmethod
    def port_type(cls, n, m):
        return VType(n + 2 * m, layout=("ntm_write", n, m))

    def step(self, state, memory, x):
        _, w, (erase, add) = self._address(x, memory, state[0])
        return (w, torch.sigmoid(erase), torch.tanh(add)), w, (w,)


@component("ntm_memory", family="memory", params={
    "slots": Param(Int(min=1), 128, "N: the number of memory locations"),
    "width": Param(Int(min=1), 20, "M: the size of each location"),
    "writes": Param(RefList(), doc="the ntm_write heads whose writes it applies, all at once"),
    "init": MEMORY_INIT,
}, ports=("out",), stateful=True, concat=False,
    doc="NTM memory (N×M): applies its write heads' erase and add each step, then read heads read it")
class NTMMemory(Component):
    accepts = {"writes": "ntm_write"}
    state_is_output = True
    watch = ("out",)

    @classmethod
    def infer(cls, p, ins, step):
        n, m = p.slots, p.width
        for i, t in enumerate(ins["writes"]):
            if t.layout is None or t.layout[0] != "ntm_write":
                raise ShapeError(f"'writes' takes ntm_write heads, but this is {t}", input="writes", index=i)
            if t.layout[1:] != (n, m):
                raise ShapeError(f"the write head addresses a {t.layout[1]}×{t.layout[2]} memory, but this one is "
                                 f"{n}×{m}", input="writes", index=i, hint="its memory: must be prev() of this node")
        if not step:
            raise ShapeError("an ntm_memory changes at every step: put it inside a loop body")
        return {"out": cls.static_type(p, "out")}

    @classmethod
    def static_type(cls, p, port):
        return VType(p.slots * p.width, layout=("memory", p.slots, p.width)) if port == "out" else None

    def __init__(self, p, ins, outs):
        super().__init__()
        self.slots, self.width, self.init_kind = p.slots, p.width, p.init
        if p.init == "learned":
            self.m0 = nn.Parameter(torch.full((p.slots * p.width,), 1e-6))

    def init_state(self, batch, like):
        size = self.slots * self.width
        if self.init_kind == "learned":
            return (self.m0.to(like.dtype).expand(batch, -1),)
        if self.init_kind == "random":
            return (torch.randn(batch, size, dtype=like.dtype, device=like.device) * 0.1,)
        value = 0.0 if self.init_kind == "zeros" else float(self.init_kind)
        return (like.new_full((batch, size), value),)

    def step(self, state, writes):
        n, m = self.slots, self.width
        memory = state[0].view(-1, n, m)
        keep, added = None, None
        for w, erase, add in writes:
            w = w.unsqueeze(-1)  # (B, N, 1)
            factor = 1 - w * erase.unsqueeze(1)  # (B, N, M)
            keep = factor if keep is None else keep * factor
            term = w * add.unsqueeze(1)
            added = term if added is None else added + term
        new = (memory * keep + added).reshape(-1, n * m)
        return new, (new,)

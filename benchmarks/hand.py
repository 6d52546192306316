"""Hand-written PyTorch models with the same math as the benchmark specs (``benchmarks/specs/``,
``gallery/ntm-copy/spec.yaml`` for the NTM and ``gallery/attention-dates-bahdanau/spec.yaml`` for Bahdanau;
``specs/pointer_sort.yaml``, a copy of ``gallery/pointer-sort-5/spec.yaml``'s model, for the pointer network).

Each is the conventional, idiomatic implementation one would write without attngraph: ``nn.LSTM`` over the
whole sequence, or ``nn.LSTMCell`` / ``nn.GRUCell`` stepped by a Python loop with the linear head applied at
every step (as the spec's loop body does); the Neural Turing Machine with its memory addressing written out
in plain tensor ops; the RNNsearch encoder-decoder with a packed ``nn.GRU`` encoder and an ``nn.GRUCell``
decoder loop under teacher forcing; Adaptive Computation Time around an ``nn.LSTMCell`` with per-example
halting over a batch; a pointer network with a bidirectional ``nn.LSTM`` encoder and an ``nn.LSTMCell`` decoder
loop under teacher forcing, its permutation constraint a mask built from the targets. ``weight_map`` maps each
compiled-model parameter name to the hand-written one, so both models can start from identical weights.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def bce_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on logits, summed over features, mean over examples and steps (as ``loss: bce``);
    with a float ``mask`` (B, T), the mean over the steps it marks (copy: the output phase)."""
    per_step = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
    return per_step.mean() if mask is None else (per_step * mask).sum() / mask.sum()


def cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on logits (B, T, C) against class ids (B, T), averaged over the steps a bool ``mask`` (B, T)
    marks (as ``loss: cross_entropy`` with a target mask)."""
    per_token = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
    mask = mask.float()
    return (per_token * mask).sum() / mask.sum()


class LSTMSeq(nn.Module):
    """(1) ``nn.LSTM`` over the sequence, then ``nn.Linear`` on every step."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.ctrl.rnn", 1, "lstm", cells=False), **_linear_map("nodes.head.proj", "head")}


class LoopLSTM(nn.Module):
    """(2) ``nn.LSTMCell`` stepped by a Python loop, ``nn.Linear`` head at every step."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.hidden = hidden
        self.cell = nn.LSTMCell(n_in, hidden)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], self.hidden)
        ys = []
        for x_t in x.unbind(1):
            h, c = self.cell(x_t, (h, c))
            ys.append(self.head(h))
        return torch.stack(ys, 1)

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.seq.ctrl.rnn", 1, "cell", cells=True), **_linear_map("nodes.seq.head.proj", "head")}


class LoopFeedback(nn.Module):
    """(3) Like LoopLSTM, with the previous prediction concatenated to the input (learned initial prediction)."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.hidden = hidden
        self.cell = nn.LSTMCell(n_in + n_out, hidden)
        self.head = nn.Linear(hidden, n_out)
        self.y0 = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], self.hidden)
        y = self.y0.expand(x.shape[0], -1)
        ys = []
        for x_t in x.unbind(1):
            h, c = self.cell(torch.cat([x_t, y], -1), (h, c))
            y = self.head(h)
            ys.append(y)
        return torch.stack(ys, 1)

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.seq.ctrl.rnn", 1, "cell", cells=True), **_linear_map("nodes.seq.y.proj", "head"),
                "nodes.seq.y.prev_init": "y0"}


class LoopGRU2(nn.Module):
    """(4) Two stacked ``nn.GRUCell`` stepped by a Python loop, ``nn.Linear`` head at every step."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.hidden = hidden
        self.cells = nn.ModuleList([nn.GRUCell(n_in, hidden), nn.GRUCell(hidden, hidden)])
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hs = [x.new_zeros(x.shape[0], self.hidden) for _ in self.cells]
        ys = []
        for x_t in x.unbind(1):
            inp = x_t
            for i, cell in enumerate(self.cells):
                hs[i] = inp = cell(inp, hs[i])
            ys.append(self.head(inp))
        return torch.stack(ys, 1)

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.seq.ctrl.rnn", 2, "cells", cells=True), **_linear_map("nodes.seq.head.proj", "head")}


class NTM(nn.Module):
    """(5) Neural Turing Machine (Graves et al. 2014) as ``gallery/ntm-copy/spec.yaml``: an ``nn.LSTMCell``
    controller on [x_t, previous read], one write head and one read head (each an ``nn.Linear`` to its
    addressing parameters) on an N x M memory, and an ``nn.Linear`` output on [h, read] at every step.

    Per step: the write head addresses the memory of the previous step, the memory is erased and added to,
    then the read head addresses the updated memory and reads from it. Addressing: content weights
    softmax(beta * cosine) (with 1e-8 inside the square roots of the norms), interpolation with the head's
    previous weighting, circular shift by the offsets ``shifts`` (``torch.roll``), sharpening
    softmax(gamma * log(w + 1e-8)). The memory starts at ``memory_init`` for every sequence; both heads'
    previous weighting starts as all weight on location 0, the previous read as zeros.
    """

    EPS = 1e-8

    def __init__(self, n_in: int, hidden: int, n_out: int, slots: int = 128, width: int = 20,
                 shifts: tuple[int, ...] = (-1, 0, 1), memory_init: float = 1e-6):
        super().__init__()
        self.hidden, self.slots, self.width, self.shifts, self.memory_init = hidden, slots, width, shifts, memory_init
        self.read_sizes = [width, 1, 1, len(shifts), 1]  # key, beta, g, shift, gamma
        self.write_sizes = self.read_sizes + [width, width]  # ... erase, add
        self.cell = nn.LSTMCell(n_in + width, hidden)
        self.write_head = nn.Linear(hidden, sum(self.write_sizes))
        self.read_head = nn.Linear(hidden, sum(self.read_sizes))
        self.head = nn.Linear(hidden + width, n_out)

    def address(self, memory: torch.Tensor, w_prev: torch.Tensor, key: torch.Tensor, beta: torch.Tensor,
                g: torch.Tensor, s: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """memory (B, N, M), w_prev (B, N), key (B, M), s (B, S), beta/g/gamma (B, 1), already squashed."""
        eps = self.EPS
        dot = torch.bmm(memory, key.unsqueeze(-1)).squeeze(-1)  # (B, N)
        cos = dot / ((memory.pow(2).sum(-1) + eps).sqrt() * (key.pow(2).sum(-1, keepdim=True) + eps).sqrt())
        w = g * torch.softmax(beta * cos, -1) + (1 - g) * w_prev
        rolled = torch.stack([torch.roll(w, o, -1) if o else w for o in self.shifts], -1)  # (B, N, S): w(i - o_k)
        w = torch.bmm(rolled, s.unsqueeze(-1)).squeeze(-1)
        return torch.softmax(gamma * torch.log(w + eps), -1)

    def head_params(self, out: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        key, beta, g, s, gamma, *rest = out.split(sizes, -1)
        return [key, F.softplus(beta), torch.sigmoid(g), torch.softmax(s, -1), 1 + F.softplus(gamma), *rest]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        h = c = x.new_zeros(batch, self.hidden)
        read = x.new_zeros(batch, self.width)
        memory = x.new_full((batch, self.slots, self.width), self.memory_init)
        w_write = x.new_zeros(batch, self.slots)
        w_write[:, 0] = 1.0
        w_read = w_write.clone()
        ys = []
        for x_t in x.unbind(1):
            h, c = self.cell(torch.cat([x_t, read], -1), (h, c))
            *params, erase, add = self.head_params(self.write_head(h), self.write_sizes)
            w_write = self.address(memory, w_write, *params)
            w = w_write.unsqueeze(-1)  # (B, N, 1)
            memory = memory * (1 - w * torch.sigmoid(erase).unsqueeze(1)) + w * torch.tanh(add).unsqueeze(1)
            w_read = self.address(memory, w_read, *self.head_params(self.read_head(h), self.read_sizes))
            read = torch.bmm(w_read.unsqueeze(1), memory).squeeze(1)  # (B, M)
            ys.append(self.head(torch.cat([h, read], -1)))
        return torch.stack(ys, 1)

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.seq.ctrl.rnn", 1, "cell", cells=True),
                **_linear_map("nodes.seq.write.fc", "write_head"), **_linear_map("nodes.seq.read.fc", "read_head"),
                **_linear_map("nodes.seq.y.proj", "head")}


class Bahdanau(nn.Module):
    """(6) RNNsearch (Bahdanau et al. 2015) as ``gallery/attention-dates-bahdanau/spec.yaml``, trained with
    teacher forcing: an ``nn.Embedding`` and a bidirectional ``nn.GRU`` encoder (packed when the source
    lengths differ), then an ``nn.GRUCell`` decoder stepped by a Python loop over the target positions.

    Step t reads the embedding of the previous target token (``bos`` at t = 0; the tokens of all steps are
    known in advance under teacher forcing, so they are embedded in one call before the loop), attends over
    the encoder states with the additive score vᵀ tanh(W h_{t−1} + U k_s + b) (U k + b computed once per
    batch; padding masked out before the softmax), feeds [embedding, context] to the cell, and scores the
    next token with an ``nn.Linear`` on [h_t, context, embedding]. The decoder state starts at zeros.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, emb: int = 32, enc: int = 64, attention: int = 64,
                 dec: int = 128, bos: int = 1):
        super().__init__()
        self.dec, self.bos = dec, bos
        self.src_emb = nn.Embedding(src_vocab, emb)
        self.encoder = nn.GRU(emb, enc, batch_first=True, bidirectional=True)
        self.tgt_emb = nn.Embedding(tgt_vocab, emb)
        self.att_W = nn.Linear(dec, attention, bias=False)
        self.att_U = nn.Linear(2 * enc, attention)
        self.att_v = nn.Parameter(torch.empty(attention).uniform_(-attention ** -0.5, attention ** -0.5))
        self.cell = nn.GRUCell(emb + 2 * enc, dec)
        self.out = nn.Linear(dec + 2 * enc + emb, tgt_vocab)

    def encode(self, src: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """src (B, S) ids, lengths (B,) or None (no padding) -> encoder states (B, S, 2·enc), zeros at padding."""
        x = self.src_emb(src)
        if lengths is None:
            return self.encoder(x)[0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=src.shape[1])[0]

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """src (B, S) ids, src_mask (B, S) bool, tgt (B, T) ids -> logits (B, T, tgt_vocab)."""
        lengths = src_mask.sum(1)
        full = bool((lengths == src.shape[1]).all())  # no padding: no packing, no masking
        enc = self.encode(src, None if full else lengths)
        padded = None if full else ~src_mask
        keys = self.att_U(enc)  # U k + b, once per batch: (B, S, attention)
        tokens = torch.cat([tgt.new_full((tgt.shape[0], 1), self.bos), tgt[:, :-1]], 1)  # teacher forcing
        h = enc.new_zeros(tgt.shape[0], self.dec)
        logits = []
        for e in self.tgt_emb(tokens).unbind(1):
            scores = torch.tanh(keys + self.att_W(h).unsqueeze(1)) @ self.att_v  # (B, S)
            if padded is not None:
                scores = scores.masked_fill(padded, float("-inf"))
            alpha = torch.softmax(scores, -1)
            context = torch.bmm(alpha.unsqueeze(1), enc).squeeze(1)  # (B, 2·enc)
            h = self.cell(torch.cat([e, context], -1), h)
            logits.append(self.out(torch.cat([h, context, e], -1)))
        return torch.stack(logits, 1)

    @staticmethod
    def loss(logits: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy averaged over the target positions ``mask`` marks (the answer and its eos)."""
        return cross_entropy_loss(logits, tgt, mask)

    @staticmethod
    def weight_map() -> dict[str, str]:
        encoder = _bidirectional_map("nodes.enc.rnn", "encoder")
        return {"nodes.src_emb.table.weight": "src_emb.weight", **encoder, "nodes.dec.emb.table.weight": "tgt_emb.weight",
                "nodes.dec.att.W.weight": "att_W.weight", **_linear_map("nodes.dec.att.U", "att_U"),
                "nodes.dec.att.v": "att_v", **_rnn_map("nodes.dec.rnn.rnn", 1, "cell", cells=True),
                **_linear_map("nodes.dec.logits.proj", "out")}


class ACTLSTM(nn.Module):
    """(7) Adaptive Computation Time (Graves 2016) around an ``nn.LSTMCell``, as ``specs/act_lstm.yaml``.

    At every input step the cell ponders on ``[x_t, flag]`` (flag 1 at the first ponder step, 0 after), each
    ponder step starting from the state the previous one left; the halting unit ``sigmoid(Linear(h))`` gives
    hⁿ. Every example halts on its own, at N = min{n : h¹ + … + hⁿ ≥ 1 − ε} (at most ``max_steps``), with
    remainder R = 1 − (h¹ + … + h^{N−1}); step n weighs pⁿ = hⁿ (n < N), p^N = R. The batch keeps a running
    mask and ``left`` = 1 − the weight given so far, and breaks out of the ponder loop once every example has
    halted (an example that halted earlier keeps computing with weight 0). The p-weighted sums of h, c and
    the head's output leave the step; the next input step starts from the mean (h, c). ``forward`` returns
    the outputs (B, T, n_out) and the ponder cost ρ = N + R (B, T) (N without gradient).
    """

    def __init__(self, n_in: int, hidden: int, n_out: int, max_steps: int = 10, epsilon: float = 0.01):
        super().__init__()
        self.hidden, self.max_steps, self.epsilon = hidden, max_steps, epsilon
        self.cell = nn.LSTMCell(n_in + 1, hidden)
        self.halt = nn.Linear(hidden, 1)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        h = c = x.new_zeros(batch, self.hidden)
        first, later = x.new_ones(batch, 1), x.new_zeros(batch, 1)
        ys, costs = [], []
        for x_t in x.unbind(1):
            left = x.new_ones(batch, 1)  # 1 − the weight given so far
            running = torch.ones(batch, 1, dtype=torch.bool, device=x.device)
            steps, remainder = x.new_zeros(batch, 1), x.new_zeros(batch, 1)
            for n in range(self.max_steps):
                h, c = self.cell(torch.cat([x_t, first if n == 0 else later], -1), (h, c))
                halt = torch.sigmoid(self.halt(h))
                y = self.head(h)
                stop = running & ((left - halt <= self.epsilon) | (n == self.max_steps - 1))
                p = torch.where(stop, left, torch.where(running, halt, 0.0))
                remainder = torch.where(stop, left, remainder)
                steps = steps + running.float()
                left = left - p
                running = running & ~stop
                if n == 0:
                    h_sum, c_sum, y_sum = p * h, p * c, p * y
                else:
                    h_sum, c_sum, y_sum = h_sum + p * h, c_sum + p * c, y_sum + p * y
                if not running.any():
                    break
            h, c = h_sum, c_sum
            ys.append(y_sum)
            costs.append(steps + remainder)
        return torch.stack(ys, 1), torch.cat(costs, 1)

    @staticmethod
    def loss(y: torch.Tensor, cost: torch.Tensor, target: torch.Tensor, tau: float = 0.001) -> torch.Tensor:
        """bce on the outputs + τ · the mean ponder cost (``loss: ponder_cost, weight: 0.001``)."""
        return bce_loss(y, target) + tau * cost.mean()

    @staticmethod
    def weight_map() -> dict[str, str]:
        return {**_rnn_map("nodes.seq.ponder.ctrl.rnn", 1, "cell", cells=True),
                **_linear_map("nodes.seq.ponder.h.proj", "halt"), **_linear_map("nodes.seq.ponder.y.proj", "head")}


class PointerNet(nn.Module):
    """(8) A pointer network (Vinyals et al. 2015) sorting numbers, as ``specs/pointer_sort.yaml`` (the model of
    ``gallery/pointer-sort-5``), trained with teacher forcing: an ``nn.Linear`` embedding of the points, a
    bidirectional ``nn.LSTM`` encoder, then an ``nn.LSTMCell`` decoder stepped by a Python loop over the target
    positions.

    Position 0 of ``x`` is the end marker: step t reads the embedding of the point chosen at step t − 1 (the
    marker at t = 0; under teacher forcing all of them are known in advance, so they are gathered in one call
    before the loop), runs the cell, glimpses at the encoder states (additive attention vᵀ tanh(W h + U k + b),
    softmax, context) and scores every position with a second additive attention queried by the glimpse: its
    scores, before any softmax, are the step's output. U k + b of both attentions is computed once per batch.
    The permutation constraint: a position chosen at an earlier step, and the end marker until every number has
    been chosen, score ``BLOCKED`` (so the softmax of the loss gives it no weight); the mask of every step is
    built from the targets before the loop and applied once to the stacked scores. The decoder state starts at
    zeros.
    """

    BLOCKED = -1e4  # the score of a position the constraint forbids (attngraph's value)

    def __init__(self, n_in: int = 2, emb: int = 64, hidden: int = 128, attention: int = 128):
        super().__init__()
        self.hidden = hidden
        self.emb = nn.Linear(n_in, emb)
        self.encoder = nn.LSTM(emb, hidden, batch_first=True, bidirectional=True)
        self.cell = nn.LSTMCell(emb, hidden)
        bound = attention ** -0.5
        self.glimpse_W = nn.Linear(hidden, attention, bias=False)
        self.glimpse_U = nn.Linear(2 * hidden, attention)
        self.glimpse_v = nn.Parameter(torch.empty(attention).uniform_(-bound, bound))
        self.ptr_W = nn.Linear(2 * hidden, attention, bias=False)
        self.ptr_U = nn.Linear(2 * hidden, attention)
        self.ptr_v = nn.Parameter(torch.empty(attention).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, S, n_in) points (the end marker at position 0), y (B, T) target positions (all valid) ->
        pointer scores (B, T, S)."""
        batch, length = x.shape[:2]
        e = self.emb(x)  # (B, S, emb)
        enc = self.encoder(e)[0]  # (B, S, 2·hidden)
        glimpse_keys, ptr_keys = self.glimpse_U(enc), self.ptr_U(enc)  # U k + b, once per batch
        fed = torch.cat([y.new_zeros(batch, 1), y[:, :-1]], 1)  # teacher forcing: the marker, then the targets
        inputs = e.gather(1, fed.unsqueeze(-1).expand(-1, -1, e.shape[-1]))  # (B, T, emb)
        blocked = F.one_hot(fed, length).cumsum(1) > 0  # (B, T, S): the positions chosen before each step
        blocked[..., 0] = ~blocked[..., 1:].all(-1)  # the end marker: once every number is chosen
        h = c = x.new_zeros(batch, self.hidden)
        scores = []
        for inp in inputs.unbind(1):
            h, c = self.cell(inp, (h, c))
            alpha = torch.softmax(torch.tanh(glimpse_keys + self.glimpse_W(h).unsqueeze(1)) @ self.glimpse_v, -1)
            glimpse = torch.bmm(alpha.unsqueeze(1), enc).squeeze(1)  # (B, 2·hidden)
            scores.append(torch.tanh(ptr_keys + self.ptr_W(glimpse).unsqueeze(1)) @ self.ptr_v)  # (B, S)
        return torch.stack(scores, 1).masked_fill(blocked, self.BLOCKED)

    @staticmethod
    def loss(scores: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the positions, averaged over the target steps ``mask`` marks (all of them here)."""
        return cross_entropy_loss(scores, y, mask)

    @staticmethod
    def weight_map() -> dict[str, str]:
        encoder = _bidirectional_map("nodes.enc.rnn", "encoder")
        attentions = {}
        for name in ("glimpse", "ptr"):
            attentions.update({f"nodes.dec.{name}.W.weight": f"{name}_W.weight", f"nodes.dec.{name}.v": f"{name}_v",
                               **_linear_map(f"nodes.dec.{name}.U", f"{name}_U")})
        return {**_linear_map("nodes.emb.proj", "emb"), **encoder, **_rnn_map("nodes.dec.rnn.rnn", 1, "cell", cells=True),
                **attentions}


def _rnn_map(prefix: str, layers: int, name: str, cells: bool) -> dict[str, str]:
    """nn.RNNBase names (``weight_ih_l0``) -> an nn.LSTM's (same names) or per-layer cells' (``weight_ih``)."""
    out = {}
    for layer in range(layers):
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if not cells:
                out[f"{prefix}.{w}_l{layer}"] = f"{name}.{w}_l{layer}"
            else:
                out[f"{prefix}.{w}_l{layer}"] = f"{name}.{layer}.{w}" if layers > 1 else f"{name}.{w}"
    return out


def _bidirectional_map(prefix: str, name: str) -> dict[str, str]:
    """A one-layer bidirectional nn.GRU/nn.LSTM's parameters, compiled name -> hand-written name."""
    return {f"{prefix}.{w}_l0{d}": f"{name}.{w}_l0{d}"
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for d in ("", "_reverse")}


def _linear_map(prefix: str, name: str) -> dict[str, str]:
    return {f"{prefix}.weight": f"{name}.weight", f"{prefix}.bias": f"{name}.bias"}


def load_compiled_weights(hand: nn.Module, compiled_state: dict[str, torch.Tensor]) -> None:
    """Copy a compiled model's parameters into ``hand`` (every parameter on both sides must be mapped)."""
    mapping = type(hand).weight_map()
    if set(mapping) != set(compiled_state):
        raise KeyError(f"weight map mismatch: {sorted(set(mapping) ^ set(compiled_state))}")
    hand.load_state_dict({mapping[k]: v for k, v in compiled_state.items()}, strict=True)

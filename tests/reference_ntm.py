"""A plain, loop-based reference implementation of a Neural Turing Machine forward pass.

Written from the equations of Graves, Wayne & Danihelka (2014), "Neural Turing Machines", section 3,
independently of the project's compiled NTM, so that the compiled model can be checked against it
(outputs and gradients).  Clarity over speed: one python iteration per time step, one formula per line.

Shapes: B batch, T time, I input size, H controller size, N memory slots, M slot width, S number of
shift offsets, R read heads, W write heads, O output size.

Order of one time step t (t = 0 .. T-1):

1. Controller.  Input = [x_t, r_{t-1}^0, ..., r_{t-1}^{R-1}] (the read vectors from the previous step;
   ``read_init{j}`` at t = 0).  One LSTM layer (torch gate order i, f, g, o) gives h_t; h and c start at zero.
2. Write addressing.  Every write head j takes its parameters (k, beta, g, s, gamma, e, a) from h_t and
   addresses the memory BEFORE this step's writes, M_{t-1}, starting from its own previous weighting
   (``write_w_init{j}`` at t = 0): content (eq. 5-6) -> interpolation (eq. 7) -> circular shift (eq. 8)
   -> sharpening (eq. 9).
3. Memory update with ALL write heads at once (eq. 3-4):
       M_t = M_{t-1} * prod_j (1 - w_j e_j^T) + sum_j w_j a_j^T
4. Read.  Every read head j takes its parameters (k, beta, g, s, gamma) from h_t, addresses M_t (the
   memory AFTER this step's writes) the same way, starting from its own previous weighting
   (``read_w_init{j}`` at t = 0), and reads r_t^j = sum_i w(i) M_t[i] (eq. 2).
5. Output y_t = out([h_t, r_t^0, ..., r_t^{R-1}]) (logits, no activation).

Head parameter layout (the rows of ``read{j}.weight`` / ``write{j}.weight``, in this order):
    key k (M, no activation), beta (1, softplus), g (1, sigmoid), s (S, softmax), gamma (1, 1 + softplus)
    and for write heads additionally erase e (M, sigmoid), add a (M, tanh).

Shift convention: offset ``shifts[k]`` moves weight from slot i - offset to slot i, i.e.
    w~(i) = sum_k w^g((i - shifts[k]) mod N) * s[k]
so offset +1 moves the attention one slot forward (wrapping around at the end).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------
# Controller
# ----------------------------------------------------------------------------------------------------


def lstm_cell(inp, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step with torch's gate order (i, f, g, o).  inp (B, D), h and c (B, H)."""
    gates = inp @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh  # (B, 4H)
    gi, gf, gg, go = gates.chunk(4, dim=-1)
    i = torch.sigmoid(gi)  # input gate
    f = torch.sigmoid(gf)  # forget gate
    g = torch.tanh(gg)  # candidate cell
    o = torch.sigmoid(go)  # output gate
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    return h_new, c_new


# ----------------------------------------------------------------------------------------------------
# Head parameters
# ----------------------------------------------------------------------------------------------------


def split_head_params(p, width, n_shifts, write):
    """Split a head's raw linear output p (B, P) into its activated parameters.

    Returns a dict with k (B, M), beta (B, 1), g (B, 1), s (B, S), gamma (B, 1), and for write heads
    e (B, M), a (B, M).
    """
    M, S = width, n_shifts
    pos = 0

    def take(n):
        nonlocal pos
        part = p[:, pos : pos + n]
        pos += n
        return part

    out = {
        "k": take(M),  # key, no activation
        "beta": F.softplus(take(1)),  # key strength beta >= 0
        "g": torch.sigmoid(take(1)),  # interpolation gate in (0, 1)
        "s": torch.softmax(take(S), dim=-1),  # shift distribution over the S offsets
        "gamma": 1.0 + F.softplus(take(1)),  # sharpening exponent gamma >= 1
    }
    if write:
        out["e"] = torch.sigmoid(take(M))  # erase vector in (0, 1)
        out["a"] = torch.tanh(take(M))  # add vector in (-1, 1)
    assert pos == p.shape[-1], f"head has {p.shape[-1]} parameters, layout uses {pos}"
    return out


# ----------------------------------------------------------------------------------------------------
# Addressing (section 3.3)
# ----------------------------------------------------------------------------------------------------


def cosine_similarity(key, memory, eps=1e-8):
    """Eq. 6: K(u, v) = u.v / (|u| |v|), with eps inside the square roots.

    key (B, M), memory (B, N, M) -> (B, N).  Putting eps inside sqrt keeps both the value and the
    gradient finite for all-zero keys and rows (d sqrt(x)/dx = 1 / (2 sqrt(x)) is finite at x = eps).
    """
    dot = (memory * key[:, None, :]).sum(-1)  # (B, N)
    key_norm = torch.sqrt((key * key).sum(-1, keepdim=True) + eps)  # (B, 1)
    mem_norm = torch.sqrt((memory * memory).sum(-1) + eps)  # (B, N)
    return dot / (key_norm * mem_norm)


def content_weighting(key, beta, memory, eps=1e-8):
    """Eq. 5: w^c(i) = exp(beta K(k, M[i])) / sum_j exp(beta K(k, M[j])).  beta (B, 1)."""
    return torch.softmax(beta * cosine_similarity(key, memory, eps), dim=-1)


def interpolate(w_content, w_prev, g):
    """Eq. 7: w^g = g w^c + (1 - g) w_{t-1}.  g (B, 1)."""
    return g * w_content + (1.0 - g) * w_prev


def circular_shift(w, s, shifts):
    """Eq. 8 (circular convolution): w~(i) = sum_k w((i - shifts[k]) mod N) s[k].

    w (B, N), s (B, S).  torch.roll(w, o)[i] == w[(i - o) mod N], so offset +1 moves weight forward.
    """
    N = w.shape[-1]
    out = torch.zeros_like(w)
    for k, offset in enumerate(shifts):
        rolled = torch.stack([w[:, (i - offset) % N] for i in range(N)], dim=-1)  # rolled[:, i] = w[:, i - offset]
        out = out + rolled * s[:, k : k + 1]
    return out


def sharpen(w, gamma, eps=1e-8):
    """Eq. 9: w(i) = w~(i)^gamma / sum_j w~(j)^gamma, computed stably as softmax(gamma log(w~ + eps))."""
    return torch.softmax(gamma * torch.log(w + eps), dim=-1)


def address(params, memory, w_prev, shifts, eps=1e-8):
    """Full addressing pipeline (Figure 2): content -> interpolation -> shift -> sharpening."""
    w_c = content_weighting(params["k"], params["beta"], memory, eps)
    w_g = interpolate(w_c, w_prev, params["g"])
    w_s = circular_shift(w_g, params["s"], shifts)
    return sharpen(w_s, params["gamma"], eps)


# ----------------------------------------------------------------------------------------------------
# Reading and writing (sections 3.1, 3.2)
# ----------------------------------------------------------------------------------------------------


def read_memory(memory, w):
    """Eq. 2: r = sum_i w(i) M[i].  memory (B, N, M), w (B, N) -> (B, M)."""
    return (w[:, :, None] * memory).sum(1)


def write_memory(memory, weights, erases, adds):
    """Eq. 3-4 with all write heads applied simultaneously.

    M_t = M_{t-1} * prod_j (1 - w_j e_j^T) + sum_j w_j a_j^T
    memory (B, N, M); weights: list of (B, N); erases, adds: lists of (B, M).
    """
    keep = torch.ones_like(memory)
    add = torch.zeros_like(memory)
    for w, e, a in zip(weights, erases, adds):
        keep = keep * (1.0 - w[:, :, None] * e[:, None, :])  # outer product w e^T
        add = add + w[:, :, None] * a[:, None, :]  # outer product w a^T
    return memory * keep + add


# ----------------------------------------------------------------------------------------------------
# Full forward pass
# ----------------------------------------------------------------------------------------------------


def reference_ntm(x, w, *, slots, width, read_heads, write_heads, shifts, eps=1e-8):
    """x: (B, T, I). w: dict of tensors (see the module docstring). Returns dict with
    "y": (B, T, O) outputs (logits),
    "read_weights": (B, T, R, N), "write_weights": (B, T, W, N), "memory": (B, T, N, M) memory after each step's writes.
    """
    B, T, _ = x.shape
    N, M, R, W, S = slots, width, read_heads, write_heads, len(shifts)
    shifts = [int(o) for o in shifts]
    H = w["lstm.weight_hh"].shape[1]
    assert w["mem_init"].shape == (N, M)

    # State before the first step.
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    memory = w["mem_init"][None].expand(B, N, M)
    reads = [w[f"read_init{j}"][None].expand(B, M) for j in range(R)]
    read_w = [w[f"read_w_init{j}"][None].expand(B, N) for j in range(R)]
    write_w = [w[f"write_w_init{j}"][None].expand(B, N) for j in range(W)]

    ys, read_ws, write_ws, memories = [], [], [], []
    for t in range(T):
        # 1. controller sees the input and the previous step's read vectors
        ctrl_in = torch.cat([x[:, t]] + reads, dim=-1)
        h, c = lstm_cell(ctrl_in, h, c, w["lstm.weight_ih"], w["lstm.weight_hh"], w["lstm.bias_ih"], w["lstm.bias_hh"])

        # 2. write heads address the memory before this step's writes
        erases, adds = [], []
        for j in range(W):
            raw = h @ w[f"write{j}.weight"].T + w[f"write{j}.bias"]
            params = split_head_params(raw, M, S, write=True)
            write_w[j] = address(params, memory, write_w[j], shifts, eps)
            erases.append(params["e"])
            adds.append(params["a"])

        # 3. all writes at once
        memory = write_memory(memory, write_w, erases, adds)

        # 4. read heads address the memory after this step's writes
        for j in range(R):
            raw = h @ w[f"read{j}.weight"].T + w[f"read{j}.bias"]
            params = split_head_params(raw, M, S, write=False)
            read_w[j] = address(params, memory, read_w[j], shifts, eps)
            reads[j] = read_memory(memory, read_w[j])

        # 5. output from the controller state and this step's reads
        y = torch.cat([h] + reads, dim=-1) @ w["out.weight"].T + w["out.bias"]

        ys.append(y)
        read_ws.append(torch.stack(read_w, dim=1) if R else x.new_zeros(B, 0, N))
        write_ws.append(torch.stack(write_w, dim=1) if W else x.new_zeros(B, 0, N))
        memories.append(memory)

    return {
        "y": torch.stack(ys, dim=1),
        "read_weights": torch.stack(read_ws, dim=1),
        "write_weights": torch.stack(write_ws, dim=1),
        "memory": torch.stack(memories, dim=1),
    }


def random_weights(I, H, O, *, slots, width, read_heads, write_heads, shifts, seed, dtype=torch.float64):  # noqa: E741
    """A weights dict for ``reference_ntm`` with sensible random values (deterministic in ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    N, M, R, W, S = slots, width, read_heads, write_heads, len(shifts)
    P_r = M + 1 + 1 + S + 1
    P_w = P_r + 2 * M

    def uniform(*shape, scale=0.3):
        return (torch.rand(*shape, generator=gen, dtype=dtype) * 2.0 - 1.0) * scale

    def distribution(n):
        return torch.softmax(torch.randn(n, generator=gen, dtype=dtype), dim=-1)

    w = {
        "lstm.weight_ih": uniform(4 * H, I + R * M),
        "lstm.weight_hh": uniform(4 * H, H),
        "lstm.bias_ih": uniform(4 * H),
        "lstm.bias_hh": uniform(4 * H),
    }
    for j in range(R):
        w[f"read{j}.weight"] = uniform(P_r, H)
        w[f"read{j}.bias"] = uniform(P_r)
    for j in range(W):
        w[f"write{j}.weight"] = uniform(P_w, H)
        w[f"write{j}.bias"] = uniform(P_w)
    w["out.weight"] = uniform(O, H + R * M)
    w["out.bias"] = uniform(O)
    w["mem_init"] = uniform(N, M, scale=0.1)
    for j in range(R):
        w[f"read_w_init{j}"] = distribution(N)
        w[f"read_init{j}"] = uniform(M, scale=0.1)
    for j in range(W):
        w[f"write_w_init{j}"] = distribution(N)
    return w

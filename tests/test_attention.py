"""The attention component against hand-written references, one example at a time.

The references use only tensor arithmetic on the valid positions of each example (so they know nothing of
masking) and the module's weights, read from its state dict: no attngraph component code, no torch.nn layers.
"""
from __future__ import annotations

import copy
import math
import pickle
from types import SimpleNamespace

import pytest
import torch

from attngraph.components.base import REGISTRY, ShapeError, VType

B, S, Q, K, V = 3, 7, 5, 4, 6
LENGTHS = [7, 4, 2]
SCORES = ["dot", "scaled_dot", "general", "additive", "concat", "cosine"]
Attention = REGISTRY["attention"]


# ------------------------------------------------------------------------------------------------ helpers
def params(**overrides) -> SimpleNamespace:
    p = SimpleNamespace(**{name: param.default for name, param in Attention.params.items()})
    for name, value in overrides.items():
        setattr(p, name, value)
    return p


def make(q: int = Q, k: int = K, v: int | None = V, step: bool = True, seed: int = 0, **overrides):
    """A module with random weights in [-1, 1) (so tanh layers are not near-linear) and its output types."""
    p = params(**overrides)
    ins = {"query": VType(q, None if step else "y"), "keys": VType(k, "x")}
    if v is not None:
        ins["values"] = VType(v, "x")
    outs = Attention.infer(p, ins, step)
    module = Attention(p, ins, outs).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.rand(param.shape, generator=gen, dtype=torch.float64) * 2 - 1)
    return module, outs


def mask_of(lengths: list[int], steps: int = S) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def padded(lengths: list[int], features: int, seed: int) -> torch.Tensor:
    """A batch whose padded positions hold large garbage (it must never reach an output)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), S, features, generator=gen, dtype=torch.float64)
    for i, n in enumerate(lengths):
        x[i, n:] = 1e3 * torch.randn(S - n, features, generator=gen, dtype=torch.float64)
    return x


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run_steps(module, queries, keys, values, mask):
    """Step through queries (B, T, Q) from a fresh state: contexts (B, T, ·) and weights (B, T, S)."""
    state = module.init_state(queries.shape[0], queries)
    outs = []
    for t in range(queries.shape[1]):
        context, weights, _, _, state = module.step(state, queries[:, t], keys, values, mask=mask)
        outs.append((context, weights))
    return torch.stack([c for c, _ in outs], 1), torch.stack([w for _, w in outs], 1)


# --------------------------------------------------------------------------------------------- hand math
def norm(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((x * x).sum(-1) + 1e-8)


def hand_conv(prev: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """f[c, s] = Σ_j w[c, 0, j] α[s + j − pad], zero outside: prev (S,), w (F, 1, k) -> (F, S)."""
    filters, _, width = w.shape
    pad = width // 2
    padded_prev = torch.cat([prev.new_zeros(pad), prev, prev.new_zeros(pad)])
    return torch.stack([torch.stack([(w[c, 0] * padded_prev[s:s + width]).sum() for s in range(len(prev))])
                        for c in range(filters)])


def hand_scores(sd: dict, score: str, q: torch.Tensor, keys: torch.Tensor, prev: torch.Tensor | None = None,
                head: int | None = None) -> torch.Tensor:
    """Scores of one example's valid keys (L, K) against its query (Q,); ``head`` picks per-head weights."""
    def w(name):
        return sd[name] if head is None else sd[name][head]

    if score == "dot":
        return keys @ q
    if score == "scaled_dot":
        return keys @ q / math.sqrt(keys.shape[-1])
    if score == "cosine":
        return keys @ q / (norm(q) * norm(keys))
    if score == "general":
        return torch.stack([q @ w("W") @ k for k in keys])
    if score == "concat":
        return torch.stack([w("v") @ torch.tanh(w("W_a.weight") @ torch.cat([q, k]) + w("W_a.bias")) for k in keys])
    loc = 0.0
    if score == "location_aware":
        loc = (sd["V.weight"] @ hand_conv(prev, sd["conv.weight"])).T[:len(keys)]  # (L, hidden)
    pre = w("W.weight") @ q + keys @ w("U.weight").T + w("U.bias") + loc
    return torch.tanh(pre) @ w("v")


def softmax(s: torch.Tensor) -> torch.Tensor:
    e = torch.exp(s - s.max())
    return e / e.sum()


def hand_attend(sd, score, q, keys, values, n, prev=None):
    """One example of length n: (context, weights over all S positions, zero past n)."""
    a = softmax(hand_scores(sd, score, q, keys[:n], prev))
    full = torch.zeros(keys.shape[0], dtype=a.dtype)
    full[:n] = a
    return a @ values[:n], full


# ---------------------------------------------------------------------------------------- global scores
@pytest.mark.parametrize("score", SCORES)
def test_step_matches_hand_scores_with_padding(score):
    k = Q if score in ("dot", "scaled_dot", "cosine") else K
    module, outs = make(k=k, score=score, hidden=3)
    assert outs == {"out": VType(V), "weights": VType(0, layout=("alignment", "x")),
                    "scores": VType(0, layout=("positions", "x"))}
    sd, q, keys, values = module.state_dict(), randn(B, Q, seed=1), padded(LENGTHS, k, 2), padded(LENGTHS, V, 3)
    state = module.init_state(B, q)
    context, weights, _, scores, new_state = module.step(state, q, keys, values, mask=mask_of(LENGTHS))
    assert context.shape == (B, V) and weights.shape == (B, S) and scores.shape == (B, S)
    assert new_state[0] is weights and torch.equal(new_state[1], state[1])
    for i, n in enumerate(LENGTHS):
        ref_context, ref_weights = hand_attend(sd, score, q[i], keys[i], values[i], n)
        torch.testing.assert_close(context[i], ref_context, msg=f"context of example {i}")
        torch.testing.assert_close(weights[i], ref_weights, msg=f"weights of example {i}")
        assert torch.all(weights[i, n:] == 0)
        # the pointer's output: the raw scores at the valid positions, the dtype's minimum at padding
        torch.testing.assert_close(scores[i, :n], hand_scores(sd, score, q[i], keys[i, :n]), msg=f"scores {i}")
        assert torch.all(scores[i, n:] == torch.finfo(scores.dtype).min)


@pytest.mark.parametrize("score", SCORES + ["location_aware"])
def test_padding_never_reaches_the_output(score):
    k = Q if score in ("dot", "scaled_dot", "cosine") else K
    module, _ = make(k=k, score=score, location_kernel=3, location_filters=2)
    q, mask = randn(B, 2, Q, seed=1), mask_of(LENGTHS)
    keys, values = padded(LENGTHS, k, 2), padded(LENGTHS, V, 3)
    first = run_steps(module, q, keys, values, mask)
    keys2, values2 = padded(LENGTHS, k, 4), padded(LENGTHS, V, 5)
    for i, n in enumerate(LENGTHS):
        keys2[i, :n], values2[i, :n] = keys[i, :n], values[i, :n]
    second = run_steps(module, q, keys2, values2, mask)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("score, window", [("additive", "global"), ("dot", "global"), ("general", "local_m"),
                                           ("dot", "local_p")])
def test_values_default_to_the_keys_and_no_mask_means_all_valid(score, window):
    module, outs = make(k=Q, v=None, score=score, window=window, half_width=2)
    assert outs["out"] == VType(Q)
    q, keys = randn(B, S + 2, Q, seed=1), randn(B, S, Q, seed=2)
    full = run_steps(module, q, keys, None, None)
    masked = run_steps(module, q, keys, keys, torch.ones(B, S, dtype=torch.bool))
    for a, b in zip(full, masked):
        torch.testing.assert_close(a, b)
    if window == "global":
        sd = module.state_dict()
        for i in range(B):
            torch.testing.assert_close(full[0][i, 0], hand_attend(sd, score, q[i, 0], keys[i], keys[i], S)[0])


def test_state_dict_names_follow_the_papers():
    shapes = {name: tuple(p.shape) for name, p in make(score="concat", hidden=3)[0].state_dict().items()}
    assert shapes == {"W_a.weight": (3, Q + K), "W_a.bias": (3,), "v": (3,)}
    shapes = {name: tuple(p.shape) for name, p in make(score="general")[0].state_dict().items()}
    assert shapes == {"W": (Q, K)}
    shapes = {name: tuple(p.shape) for name, p in make(score="additive")[0].state_dict().items()}
    assert shapes == {"W.weight": (K, Q), "U.weight": (K, K), "U.bias": (K,), "v": (K,)}  # hidden = key size
    shapes = {name: tuple(p.shape) for name, p in make(score="location_aware", hidden=3)[0].state_dict().items()}
    assert shapes == {"W.weight": (3, Q), "U.weight": (3, K), "U.bias": (3,), "conv.weight": (10, 1, 9),
                      "V.weight": (3, 10), "v": (3,)}


# ------------------------------------------------------------------------------------------ location-aware
def test_location_aware_reads_the_previous_alignment_through_the_state():
    module, _ = make(score="location_aware", hidden=3, location_filters=2, location_kernel=3)
    sd, mask = module.state_dict(), mask_of(LENGTHS)
    q, keys, values = randn(B, 2, Q, seed=1), padded(LENGTHS, K, 2), padded(LENGTHS, V, 3)
    state = module.init_state(B, q)
    assert [tuple(s.shape) for s in state] == [(B, 1), (B, 1)]
    c1, w1, _, _, state = module.step(state, q[:, 0], keys, values, mask=mask)
    c2, w2, _, _, state = module.step(state, q[:, 1], keys, values, mask=mask)
    for i, n in enumerate(LENGTHS):
        r1, a1 = hand_attend(sd, "location_aware", q[i, 0], keys[i], values[i], n, prev=torch.zeros(S, dtype=q.dtype))
        r2, a2 = hand_attend(sd, "location_aware", q[i, 1], keys[i], values[i], n, prev=a1)
        torch.testing.assert_close(c1[i], r1)
        torch.testing.assert_close(w1[i], a1)
        torch.testing.assert_close(c2[i], r2)
        torch.testing.assert_close(w2[i], a2)
    # the first alignment matters: the second step differs from one taken from zeros
    _, w2_from_zeros, _, _, _ = module.step(module.init_state(B, q), q[:, 1], keys, values, mask=mask)
    assert not torch.allclose(w2, w2_from_zeros)


def test_location_aware_state_survives_a_masked_carry():
    """The codegen carries state with torch.where((B, 1) step mask, new, old): (B, 1) zeros broadcast."""
    module, _ = make(score="location_aware", location_filters=2, location_kernel=3)
    q, keys = randn(B, 2, Q, seed=1), padded(LENGTHS, K, 2)
    state = module.init_state(B, q)
    _, w1, _, _, new = module.step(state, q[:, 0], keys, None, mask=mask_of(LENGTHS))
    valid = torch.tensor([[True], [False], [True]])
    state = tuple(torch.where(valid, a, b) for a, b in zip(new, state))
    assert state[0].shape == (B, S) and torch.all(state[0][1] == 0)
    _, w2, _, _, _ = module.step(state, q[:, 1], keys, None, mask=mask_of(LENGTHS))
    _, w2_fresh, _, _, _ = module.step(module.init_state(B, q), q[:, 1], keys, None, mask=mask_of(LENGTHS))
    torch.testing.assert_close(w2[1], w2_fresh[1])  # example 1 skipped its first step: α_{i−1} is still zeros


# ---------------------------------------------------------------------------------------------- windows
def test_local_m_attends_around_the_step_clamped_to_the_last_position():
    module, _ = make(window="local_m", half_width=1, score="general")
    sd, mask = module.state_dict(), mask_of(LENGTHS)
    q, keys, values = randn(B, S, Q, seed=1), padded(LENGTHS, K, 2), padded(LENGTHS, V, 3)
    contexts, weights = run_steps(module, q, keys, values, mask)
    for t in range(S):
        for i, n in enumerate(LENGTHS):
            p = min(t, n - 1)
            inside = [s for s in range(n) if abs(s - p) <= 1]
            a = softmax(hand_scores(sd, "general", q[i, t], keys[i, inside]))
            ref = torch.zeros(S, dtype=a.dtype)
            ref[inside] = a
            torch.testing.assert_close(weights[i, t], ref, msg=f"step {t}, example {i}")
            torch.testing.assert_close(contexts[i, t], a @ values[i, inside])
            assert torch.all(weights[i, t][ref == 0] == 0)


def hand_local_p(sd, q, keys, values, n, half_width):
    """Luong's local-p for one example of length n: window around p = n·σ(v_pᵀ tanh(W_p q)), Gaussian σ = D/2."""
    p = n / (1 + torch.exp(-(sd["v_p"] @ torch.tanh(sd["W_p.weight"] @ q))))
    inside = [s for s in range(n) if abs(s - p) <= half_width]
    a = softmax(hand_scores(sd, "dot", q, keys[inside]))
    sigma = half_width / 2
    a = a * torch.exp(-(torch.tensor(inside, dtype=q.dtype) - p) ** 2 / (2 * sigma ** 2))
    full = torch.zeros(S, dtype=q.dtype)
    full[inside] = a
    return a @ values[inside], full, p


def test_local_p_window_and_gaussian_against_hand():
    module, outs = make(k=Q, step=False, window="local_p", half_width=2, score="dot", hidden=3, seed=3)
    assert outs["out"] == VType(V, "y")
    sd, mask = module.state_dict(), mask_of(LENGTHS)
    q, keys, values = randn(B, 4, Q, seed=1) * 2, padded(LENGTHS, Q, 2), padded(LENGTHS, V, 3)
    contexts, weights, _, _ = module(q, keys, values, mask=mask)
    centers = []
    for t in range(4):
        for i, n in enumerate(LENGTHS):
            ref_c, ref_w, p = hand_local_p(sd, q[i, t], keys[i], values[i], n, 2)
            centers.append(float(p))
            torch.testing.assert_close(contexts[i, t], ref_c, msg=f"step {t}, example {i}")
            torch.testing.assert_close(weights[i, t], ref_w, msg=f"step {t}, example {i}")
    assert weights.sum(-1).max() < 1  # the Gaussian factor is not renormalised
    assert len({round(c, 3) for c in centers}) > 6  # the predicted centres vary


# ------------------------------------------------------------------------------------------- multi-head
@pytest.mark.parametrize("score", ["scaled_dot", "general", "additive", "concat", "cosine"])
def test_multi_head_against_hand(score):
    heads, d = 2, V // 2
    module, outs = make(score=score, heads=heads, hidden=4)
    assert outs["out"] == VType(heads * d)
    sd, mask = module.state_dict(), mask_of(LENGTHS)
    q, keys, values = randn(B, Q, seed=1), padded(LENGTHS, K, 2), padded(LENGTHS, V, 3)
    context, weights, _, _, _ = module.step(module.init_state(B, q), q, keys, values, mask=mask)
    for i, n in enumerate(LENGTHS):
        qp = (sd["q_proj.weight"] @ q[i] + sd["q_proj.bias"]).view(heads, d)
        kp = (keys[i, :n] @ sd["k_proj.weight"].T + sd["k_proj.bias"]).view(n, heads, d)
        vp = (values[i, :n] @ sd["v_proj.weight"].T + sd["v_proj.bias"]).view(n, heads, d)
        alphas = [softmax(hand_scores(sd, score, qp[h], kp[:, h], head=h)) for h in range(heads)]
        ref_context = torch.cat([alphas[h] @ vp[:, h] for h in range(heads)])
        torch.testing.assert_close(context[i], ref_context)
        torch.testing.assert_close(weights[i, :n], sum(alphas) / heads)
        assert torch.all(weights[i, n:] == 0)


def test_multi_head_head_size():
    module, outs = make(score="dot", heads=3, head_size=2)
    assert outs["out"] == VType(6)
    assert module.state_dict()["k_proj.weight"].shape == (6, K)
    context, weights, _, _, _ = module.step(module.init_state(B, randn(1, seed=0)), randn(B, Q, seed=1),
                                      padded(LENGTHS, K, 2), padded(LENGTHS, V, 3), mask=mask_of(LENGTHS))
    assert context.shape == (B, 6) and weights.shape == (B, S)


# ------------------------------------------------------------------------------ sequence mode, gradients
CASES = [dict(score=s) for s in SCORES] + [dict(score="additive", heads=2), dict(score="general", heads=3, head_size=2),
                                           dict(score="dot", window="local_p", half_width=2, hidden=3)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_forward_over_a_query_sequence_equals_steps_with_gradients(case):
    k = Q if case["score"] in ("dot", "scaled_dot", "cosine") else K
    module, outs = make(k=k, step=False, **case)
    assert outs["out"].time == "y" and outs["weights"] == VType(0, "y", layout=("alignment", "x"))
    mask = mask_of(LENGTHS)
    q, keys, values = randn(B, 4, Q, seed=1), padded(LENGTHS, k, 2), padded(LENGTHS, V, 3)
    probe = randn(B, 4, outs["out"].size, seed=4)
    grads = []
    for run in (lambda: module(q, keys, values, mask=mask)[:2], lambda: run_steps(module, q, keys, values, mask)):
        module.zero_grad()
        context, weights = run()
        if list(module.parameters()):  # dot and scaled_dot with one head have none
            ((context * probe).sum() + (weights[..., 0] ** 2).sum()).backward()
        grads.append((context.detach(), weights.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}))
    (c1, w1, g1), (c2, w2, g2) = grads
    torch.testing.assert_close(c1, c2)
    torch.testing.assert_close(w1, w2)
    for name in g1:  # the steps share the keys' precomputation (one autograd node): the same gradients
        torch.testing.assert_close(g1[name], g2[name], msg=name)
        assert g1[name].abs().sum() > 0, f"no gradient reaches {name}"


def test_gradients_reach_every_parameter_of_location_aware_and_local_m():
    for case in (dict(score="location_aware", location_filters=2, location_kernel=3), dict(window="local_m")):
        module, _ = make(**case)
        context, weights = run_steps(module, randn(B, 3, Q, seed=1), padded(LENGTHS, K, 2), None, mask_of(LENGTHS))
        (context * randn(*context.shape, seed=4)).sum().backward()
        for name, param in module.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name


class Steps(torch.nn.Module):
    """run_steps as a module, so torch.func.functional_call can hand the attention its weights as inputs."""

    def __init__(self, att):
        super().__init__()
        self.att = att

    def forward(self, queries, keys, mask):
        return run_steps(self.att, queries, keys, None, mask)


@pytest.mark.parametrize("score", ["additive", "location_aware"])
def test_gradcheck(score):
    """Two steps (the second reads the first's alignment), gradients for the inputs and every weight."""
    module, _ = make(q=3, k=2, v=None, score=score, hidden=3, location_filters=2, location_kernel=3)
    names = [f"att.{n}" for n, _ in module.named_parameters()]
    mask = torch.tensor([[True] * 4, [True, True, True, False]])

    def f(queries, keys, *weights):
        return torch.func.functional_call(Steps(module), dict(zip(names, weights)), (queries, keys, mask))

    inputs = (randn(2, 2, 3, seed=1), randn(2, 4, 2, seed=2), *(p.detach().clone() for p in module.parameters()))
    assert torch.autograd.gradcheck(f, tuple(x.requires_grad_() for x in inputs))


# ---------------------------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("case", [dict(score="additive"), dict(window="local_m", half_width=0),
                                  dict(window="local_p", half_width=1), dict(score="dot", heads=2)])
def test_an_example_with_no_valid_position_gives_no_nan(case):
    module, _ = make(k=Q, v=None, **case)
    lengths = [3, 0, 7]
    context, weights = run_steps(module, randn(3, 3, Q, seed=1), padded(lengths, Q, 2), None, mask_of(lengths))
    assert torch.isfinite(context).all() and torch.isfinite(weights).all()
    assert torch.all(weights[0, :, 3:] == 0)


def test_the_cache_is_per_loop_run_and_never_copied():
    module, _ = make(score="additive")
    q, keys = randn(B, 2, Q, seed=1), padded(LENGTHS, K, 2)
    first = run_steps(module, q, keys, None, mask_of(LENGTHS))
    with torch.no_grad():
        module.U.bias.add_(1.0)  # changes U k: a new loop run (init_state) must not reuse the old one
    second = run_steps(module, q, keys, None, mask_of(LENGTHS))
    assert not torch.allclose(first[1], second[1])
    torch.testing.assert_close(second[1], module(q, keys, None, mask_of(LENGTHS))[1])
    clone = copy.deepcopy(module)
    assert clone._cache.keys is None
    assert pickle.loads(pickle.dumps(module))._cache.prep is None
    keys.add_(1.0)  # an in-place change of the keys between steps is seen too
    state = module.init_state(B, q)
    _, w_a, _, _, _ = module.step(state, q[:, 0], keys, None, mask=None)
    keys.add_(1.0)
    _, w_b, _, _, _ = module.step(state, q[:, 0], keys, None, mask=None)
    assert not torch.allclose(w_a, w_b)


# ------------------------------------------------------------------------------------------- shape errors
def infer_error(ins: dict, step: bool = True, **overrides) -> ShapeError:
    with pytest.raises(ShapeError) as err:
        Attention.infer(params(**overrides), ins, step)
    return err.value


def test_shape_errors():
    ins = {"query": VType(5), "keys": VType(4, "x")}
    err = infer_error(ins, score="dot")
    assert err.input == "query" and "5 features and the keys 4" in err.message
    assert "general" in err.hint and "additive" in err.hint
    err = infer_error({"query": VType(5), "keys": VType(4)})
    assert err.input == "keys" and "must be a sequence" in err.message
    err = infer_error({"query": VType(5), "keys": VType(4, "x", index=True)})
    assert err.input == "keys" and "class indices" in err.message
    err = infer_error({**ins, "values": VType(3, "z")})
    assert err.input == "values" and "'values'" in err.message
    err = infer_error(ins, heads=2, window="local_p")
    assert "heads" in err.message and "window" in err.message
    err = infer_error(ins, heads=2, score="location_aware")
    assert "heads" in err.message and "location_aware" in err.message
    err = infer_error(ins, score="location_aware", location_kernel=4)
    assert "location_kernel" in err.message and "odd" in err.message
    assert Attention.infer(params(location_kernel=4), ins, True)["out"] == VType(4)  # read by location_aware only
    err = infer_error(ins, heads=8, score="dot")
    assert err.input == "keys" and "0 features" in err.message
    err = infer_error({"query": VType(5, "y"), "keys": VType(4, "x")})
    assert err.input == "query" and "inside a loop" in err.message
    err = infer_error({"query": VType(5), "keys": VType(4, "x")}, step=False)
    assert err.input == "query" and "outside a loop" in err.message
    seq = {"query": VType(5, "y"), "keys": VType(4, "x")}
    assert "needs to run inside a loop" in infer_error(seq, step=False, score="location_aware").message
    assert "needs to run inside a loop" in infer_error(seq, step=False, window="local_m").message
    assert "half_width" in infer_error(ins, window="local_p", half_width=0).message


def test_guess_type_reads_the_values_or_keys():
    edges = {"keys": ["k1", "k2"], "values": ["v"]}
    types = {"k1": VType(3, "x"), "k2": VType(4, "x"), "v": VType(6, "x")}
    assert Attention.guess_type(params(), edges, "out", types.get) == VType(6)
    assert Attention.guess_type(params(), {"keys": ["k1", "k2"]}, "out", types.get) == VType(7)
    assert Attention.guess_type(params(heads=2), edges, "out", types.get) == VType(6)
    assert Attention.guess_type(params(heads=4), edges, "out", types.get) == VType(4)
    assert Attention.guess_type(params(heads=2, head_size=5), edges, "out", types.get) == VType(10)
    assert Attention.guess_type(params(), edges, "weights", types.get) is None
    assert Attention.guess_type(params(), {"keys": ["unknown"]}, "out", types.get) is None
    assert Attention.static_type(params(), "out") is None


def test_registration():
    assert Attention.family == "attention" and Attention.ports == ("out", "weights", "logp", "scores") and Attention.stateful
    assert Attention.inputs == ("query", "keys", "values") and Attention.watch == ("weights",)
    assert Attention.mask_for == "keys"
    assert all(param.doc for param in Attention.params.values())


def test_eval_argmax_is_soft_in_training_and_picks_the_most_probable_valid_position_in_evaluation():
    soft, _ = make(score="additive", seed=4)
    pick, _ = make(score="additive", seed=4, eval_argmax=True)
    lengths = [5, 3, 1]
    keys, values = padded(lengths, K, seed=1), padded(lengths, V, seed=2)
    queries, mask = randn(3, 4, Q, seed=3), mask_of(lengths)
    ctx_soft, w_soft = run_steps(soft, queries, keys, values, mask)
    ctx_pick, w_pick = run_steps(pick.train(), queries, keys, values, mask)
    torch.testing.assert_close(ctx_pick, ctx_soft, rtol=0, atol=0)  # training: the soft attention, unchanged
    ctx_eval, w_eval = run_steps(pick.eval(), queries, keys, values, mask)
    best = w_soft.argmax(-1)  # (B, T): never a padded position
    assert bool((best < torch.tensor(lengths)[:, None]).all())
    assert torch.equal(w_eval, torch.nn.functional.one_hot(best, S).double())
    expected = torch.stack([values[b, best[b]] for b in range(3)])  # exactly the picked position's value
    torch.testing.assert_close(ctx_eval, expected, rtol=0, atol=0)
    # every query step at once (outside a loop) gives the same pick
    whole, _ = make(score="additive", seed=4, step=False, eval_argmax=True)
    ctx_whole, w_whole, _, _ = whole.eval()(queries, keys, values, mask)
    assert torch.equal(w_whole, w_eval)
    torch.testing.assert_close(ctx_whole, expected, rtol=0, atol=0)

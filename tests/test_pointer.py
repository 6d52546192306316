"""Pointer networks (Vinyals et al. 2015) against a pointer network written here by hand.

The reference uses tensor arithmetic and the compiled model's weights (from its state dict): the embedding
as an affine map, the GRU encoder run step by step, additive attention vᵀ tanh(W q + U k + b) with a
softmax over the valid positions, a GRU decoder fed the embedded point chosen last and a glimpse (the
attention context queried by the previous decoder state). Its constraints (no_repeat, permutation) are
written independently, with a Python set of chosen positions per example.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from test_reference import affine, build_decisive, gru_cell

import attngraph
from attngraph.compiler.codegen import BLOCKED
from attngraph.components import REGISTRY

SPEC = Path(__file__).parent / "good_specs" / "pointer_gru.yaml"
EOS = 0  # position 0 of x: the end marker, fed first (bos) and written last (eos)
MIN = torch.finfo(torch.float64).min  # the score of a padding position (the attention's mask)
N = (4, 2, 4)  # points per example: the second one is shorter (padding at its tail)


def build(overrides: list[str] = (), seed: int = 0) -> attngraph.CompiledModel:
    return build_decisive(SPEC, overrides, seed)


def batch(n: tuple[int, ...] = N, seed: int = 3) -> dict[str, torch.Tensor]:
    """Number sorting: x (B, S, 2) = the end marker [0, 1] at position 0, then n points [value, 0], zeros
    beyond; y = the positions of the points by increasing value, then 0 (eos), then padding 0."""
    g = torch.Generator().manual_seed(seed)
    S, T = 1 + max(n), 1 + max(n)
    x = torch.zeros(len(n), S, 2, dtype=torch.float64)
    mask = torch.arange(S) < 1 + torch.tensor(n)[:, None]
    y = torch.zeros(len(n), T, dtype=torch.long)
    for b, k in enumerate(n):
        x[b, 0, 1] = 1.0
        x[b, 1:1 + k, 0] = torch.rand(k, generator=g, dtype=torch.float64)
        y[b, :k] = x[b, 1:1 + k, 0].argsort() + 1
    y_mask = torch.arange(T) < 1 + torch.tensor(n)[:, None]
    return {"x": x, "x.mask": mask, "y": y, "y.mask": y_mask}


def inputs(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"x": data["x"], "x.mask": data["x.mask"]}


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------- the reference
def gru(w, prefix: str, x, h):
    return gru_cell(x, h, w[f"{prefix}.weight_ih_l0"], w[f"{prefix}.weight_hh_l0"],
                    w[f"{prefix}.bias_ih_l0"], w[f"{prefix}.bias_hh_l0"])


def encode(w, x):
    """The embedded points (B, S, 5) and the encoder's states (B, S, 8), the GRU run one position at a time
    (a shorter example runs on over its padding: its valid positions do not see it)."""
    emb = affine(x, w["nodes.emb.proj.weight"], w["nodes.emb.proj.bias"])
    h, states = x.new_zeros(x.shape[0], 8), []
    for s in range(x.shape[1]):
        h = gru(w, "nodes.enc.rnn", emb[:, s], h)
        states.append(h)
    return emb, torch.stack(states, 1)


def additive(w, name: str, q, keys):
    """Bahdanau's score vᵀ tanh(W q + U k + b) of every key: (B, S). U holds the bias, W has none."""
    a = f"nodes.dec.{name}"
    hidden = affine(q, w[f"{a}.W.weight"], None).unsqueeze(1) + affine(keys, w[f"{a}.U.weight"], w[f"{a}.U.bias"])
    return torch.tanh(hidden) @ w[f"{a}.v"]


def step(w, emb, enc, valid, token, h):
    """One decoder step: (the pointer's raw scores (B, S), the new state)."""
    chosen = emb[torch.arange(emb.shape[0]), token]  # the point chosen last (the marker at the first step)
    alpha = torch.softmax(additive(w, "glimpse", h, enc).masked_fill(~valid, -torch.inf), -1)
    glimpse = (alpha.unsqueeze(-1) * enc).sum(1)
    h = gru(w, "nodes.dec.rnn.rnn", torch.cat([chosen, glimpse], -1), h)
    return additive(w, "ptr", h, enc), h


def allowed_positions(constraint: str, valid: set[int], chosen: set[int]) -> set[int]:
    """The positions a step may choose: valid ones; no_repeat: none chosen before (eos is never 'chosen');
    permutation: besides, eos only once every valid point is chosen."""
    allowed = set(valid)
    if constraint in ("no_repeat", "permutation"):
        allowed -= chosen
    if constraint == "permutation" and not (valid - {EOS}) <= chosen:
        allowed.discard(EOS)
    return allowed


def reference(w, data, steps: int, feed, constraint: str = "permutation"):
    """(raw scores (B, steps, S), allowed (B, steps, S) bool); ``feed(t, scores)`` gives the next positions
    from this step's scores (−inf where not allowed)."""
    mask = data["x.mask"]
    B, S = mask.shape
    emb, enc = encode(w, data["x"])
    valid = [set(mask[b].nonzero().flatten().tolist()) for b in range(B)]
    chosen: list[set[int]] = [set() for _ in range(B)]
    token, h = torch.full((B,), EOS), enc.new_zeros(B, 8)
    raws, alloweds = [], []
    for t in range(steps):
        raw, h = step(w, emb, enc, mask, token, h)
        sets = [allowed_positions(constraint, valid[b], chosen[b]) for b in range(B)]
        allowed = torch.tensor([[s in sets[b] for s in range(S)] for b in range(B)])
        raws.append(raw)
        alloweds.append(allowed)
        token = feed(t, raw.detach().masked_fill(~allowed, -torch.inf))
        for b in range(B):
            if int(token[b]) != EOS:
                chosen[b].add(int(token[b]))
    return torch.stack(raws, 1), torch.stack(alloweds, 1)


def greedy(t, scores):
    return scores.argmax(-1)


def assert_scores(got, raw, allowed, valid):
    """The model's scores: the reference's where allowed; exactly BLOCKED where the constraint forbids a valid
    position; exactly the dtype's minimum at padding."""
    assert got.shape == raw.shape
    valid = valid[:, None, :].expand_as(allowed)
    torch.testing.assert_close(got[allowed], raw.detach()[allowed])
    assert (got[valid & ~allowed] == BLOCKED).all()
    assert (got[~valid] == MIN).all()


def answer(ids: list[int]) -> list[int]:
    """The positions up to (not including) the first eos."""
    return ids[:ids.index(EOS)] if EOS in ids else ids


def assert_permutations(ids: torch.Tensor, n=N):
    """Each example: a permutation of its points 1..n, then eos to the end."""
    for b, k in enumerate(n):
        row = ids[b].tolist()
        assert sorted(answer(row)) == list(range(1, k + 1)), (b, row)
        assert row[k:] == [EOS] * (len(row) - k), (b, row)


# ------------------------------------------------------------------------------------------------- tests
def test_the_spec_checks():
    from attngraph_cli.main import main

    result = CliRunner().invoke(main, ["check", str(SPEC)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("pointer_gru.yaml: ok (7 nodes)")


def test_teacher_forcing_scores_match_the_reference_with_the_permutation_constraint():
    model, data = build(), batch()
    model.train()
    got = model(data)["y"]
    raw, allowed = reference(weights(model), data, data["y"].shape[1], lambda t, _: data["y"][:, t])
    # the reference's constraint bites: eos is blocked at first, a chosen point afterwards
    assert not allowed[:, 0, EOS].any()
    assert (~allowed & data["x.mask"][:, None, :]).sum() > 3
    assert_scores(got, raw, allowed, data["x.mask"])


def test_loss_and_gradients_match_the_reference():
    model, data = build(), batch()
    model.train()
    loss, _ = model.loss(model(data), data)
    loss.backward()
    params = {k: v.detach().clone().requires_grad_() for k, v in model.state_dict().items()}
    raw, allowed = reference(params, data, data["y"].shape[1], lambda t, _: data["y"][:, t])
    # cross-entropy over the allowed positions: −(s_y − log Σ_allowed exp s), a mean over y.mask
    logz = raw.masked_fill(~allowed, -torch.inf).logsumexp(-1)
    per = logz - raw.gather(2, data["y"].unsqueeze(-1)).squeeze(-1)
    m = data["y.mask"].double()
    want = (per * m).sum() / m.sum()
    want.backward()
    torch.testing.assert_close(loss, want)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, params[name].grad, msg=name)


def test_evaluation_runs_free_and_answers_permutations():
    model, data = build(), batch()
    model.eval()
    got = model(data)["y"]
    raw, allowed = reference(weights(model), data, data["y"].shape[1], greedy)
    assert_scores(got, raw, allowed, data["x.mask"])
    assert not torch.equal(got.argmax(-1), data["y"])  # random weights: not the target (not teacher-forced)
    assert_permutations(got.argmax(-1))
    for seed in range(1, 6):  # any weights
        other = build(seed=seed).eval()
        assert_permutations(other(batch(seed=seed))["y"].argmax(-1))


def repeats(ids: torch.Tensor) -> bool:
    return any(len(set(a)) < len(a) for a in (answer(row) for row in ids.tolist()))


def test_no_repeat_never_chooses_a_position_twice():
    model, data = build(["model.dec.constraint=no_repeat"]), batch()
    model.eval()
    got = model(inputs(data))["y"]
    raw, allowed = reference(weights(model), data, got.shape[1], greedy, "no_repeat")
    assert allowed[:, 0, EOS].all()  # eos may come at any step
    assert_scores(got, raw, allowed, data["x.mask"])
    for seed in range(6):
        ids = build(["model.dec.constraint=no_repeat"], seed=seed).eval()(inputs(batch(seed=seed)))["y"].argmax(-1)
        assert not repeats(ids)
        for b, k in enumerate(N):
            assert set(answer(ids[b].tolist())) <= set(range(1, k + 1))
    model.train()
    raw, allowed = reference(weights(model), data, data["y"].shape[1], lambda t, _: data["y"][:, t], "no_repeat")
    assert allowed[:, :, EOS].all() and (~allowed & data["x.mask"][:, None, :]).any()  # eos is never blocked
    assert_scores(model(data)["y"], raw, allowed, data["x.mask"])


def test_no_constraint_scores_every_valid_position_and_may_repeat():
    model, data = build(["model.dec.constraint=none"]), batch()
    model.train()
    raw, allowed = reference(weights(model), data, data["y"].shape[1], lambda t, _: data["y"][:, t], "none")
    assert torch.equal(allowed, data["x.mask"][:, None, :].expand_as(allowed))
    assert_scores(model(data)["y"], raw, allowed, data["x.mask"])
    model.eval()
    got = model(inputs(data))["y"]
    raw, allowed = reference(weights(model), data, got.shape[1], greedy, "none")
    assert_scores(got, raw, allowed, data["x.mask"])
    # repeats are possible: some model (random weights) repeats a position before its eos
    assert any(repeats(build(["model.dec.constraint=none"], seed=s).eval()(inputs(batch(seed=s)))["y"].argmax(-1))
               for s in range(10))


def test_prediction_without_target_stops_at_eos_after_every_point():
    model, data = build(), batch()
    model.eval()
    got = model(inputs(data))["y"]
    tokens = []
    raw, allowed = reference(weights(model), data, 6, lambda t, s: tokens.append(s.argmax(-1)) or tokens[-1])
    ids = torch.stack(tokens, 1)
    finished = (ids == EOS).cumsum(1) > 0
    stop = int(finished.all(0).nonzero()[0]) + 1 if bool(finished.all(0).any()) else 6
    assert got.shape[1] == stop == max(N) + 1  # a permutation of the longest example's points, then eos
    assert_scores(got, raw[:, :stop], allowed[:, :stop], data["x.mask"])
    assert_permutations(got.argmax(-1))
    short = build(["model.dec.max_length=3"]).eval()(inputs(data))["y"]  # max_length cuts the answer
    assert short.shape[1] == 3
    assert_scores(short, raw[:, :3], allowed[:, :3], data["x.mask"])


def test_beam_of_one_is_greedy():
    model, data = build(), batch()
    ids = model.generate(inputs(data), beam=1)["y"]
    tokens = []
    reference(weights(model), data, 6, lambda t, s: tokens.append(s.argmax(-1)) or tokens[-1])
    want = torch.stack(tokens, 1)[:, :max(N) + 1]
    assert ids.tolist() == want.tolist()
    assert_permutations(ids)


def answers(n: int, constraint: str):
    """Every answer the constraint allows for n points: the points (all, or with no_repeat any of them, in
    any order), then eos."""
    sizes = [n] if constraint == "permutation" else range(n + 1)
    return [[*p, EOS] for k in sizes for p in itertools.permutations(range(1, n + 1), k)]


def exhaustive_best(w, data, b: int, constraint: str, alpha: float) -> list[int]:
    """The answer with the best log p / length^alpha, log p summed over the hand-written decoder's steps
    (a softmax over the allowed positions)."""
    one = {k: v[b:b + 1] for k, v in data.items()}
    n = int(one["x.mask"].sum()) - 1
    best, best_score = None, -torch.inf
    for seq in answers(n, constraint):
        raw, allowed = reference(w, one, len(seq), lambda t, _, seq=seq: torch.tensor([seq[t]]),
                                 constraint)
        assert all(bool(allowed[0, t, s]) for t, s in enumerate(seq))
        logp = raw[0] - raw[0].masked_fill(~allowed[0], -torch.inf).logsumexp(-1, keepdim=True)
        score = float(sum(logp[t, s] for t, s in enumerate(seq))) / len(seq) ** alpha
        if score > best_score:
            best, best_score = seq, score
    return best


@pytest.mark.parametrize("width", [6, 24])
def test_wide_beam_finds_the_best_permutation(width):
    """3 points: 6 permutations, never more than 6 partial answers at a step; a beam of K ≥ 6 is exhaustive.
    All answers have length 4: the length penalty does not change the ranking. (A beam wider than the
    answers keeps hopeless beams that never write eos: it may run to max_length; the answer is padded with
    eos.)"""
    n = (3, 3, 2)
    model, data = build(seed=1), batch(n, seed=0)
    ids = model.generate(inputs(data), beam=width)["y"]
    w = weights(model)
    assert 4 <= ids.shape[1] <= 6
    bests = []
    for b in range(3):
        want = exhaustive_best(w, data, b, "permutation", 1.0)
        want += [EOS] * (ids.shape[1] - len(want))
        assert ids[b].tolist() == want, b
        bests.append(want)
    assert_permutations(ids, n)
    tokens = []
    reference(w, data, ids.shape[1], lambda t, s: tokens.append(s.argmax(-1)) or tokens[-1])
    assert torch.stack(tokens, 1).tolist() != bests  # the search matters here: greedy misses one best answer


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_with_no_repeat_finds_the_exhaustive_best(alpha):
    """no_repeat with 3 points: 16 answers (any ordered subset, then eos) and never more than 16 partial
    ones; answers differ in length, so the length penalty matters."""
    n = (3, 3, 2)
    model = build(["model.dec.constraint=no_repeat", f"model.dec.length_penalty={alpha}"], seed=1)
    data = batch(n, seed=0)
    ids = model.generate(inputs(data), beam=20)["y"]
    w = weights(model)
    for b in range(3):
        want = exhaustive_best(w, data, b, "no_repeat", alpha)
        row = ids[b].tolist()
        assert row[:len(want)] == want and set(row[len(want):]) <= {EOS}, (b, row, want)


def test_pick_takes_the_element_at_each_position_and_its_gradient_reaches_only_there():
    pick = REGISTRY["pick"](None, None, None)
    seq = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    at = torch.tensor([2, 0, 4])
    out = pick(seq, at)
    assert out.shape == (3, 4)
    torch.testing.assert_close(out, seq.detach()[torch.arange(3), at])
    r = torch.randn(3, 4, dtype=torch.float64)
    (out * r).sum().backward()
    want = torch.zeros(3, 5, 4, dtype=torch.float64)
    want[torch.arange(3), at] = r
    torch.testing.assert_close(seq.grad, want)

    seq.grad = None
    at = torch.tensor([[1, 3, 1], [0, 0, 2], [4, 3, 2]])  # a sequence of positions; repeats accumulate
    out = pick(seq, at)
    assert out.shape == (3, 3, 4)
    torch.testing.assert_close(out, torch.stack([seq.detach()[b, at[b]] for b in range(3)]))
    r = torch.randn(3, 3, 4, dtype=torch.float64)
    (out * r).sum().backward()
    want = torch.zeros(3, 5, 4, dtype=torch.float64)
    for b in range(3):
        for t in range(3):
            want[b, at[b, t]] += r[b, t]
    torch.testing.assert_close(seq.grad, want)



def test_inspect_draws_the_choices_with_the_points_as_labels(tmp_path):
    """inspect on a pointer task: a picture of p(position) per step (the constrained softmax the answer is read
    from), and the task names positions by the numbers they hold."""
    from attngraph.inspect import inspect
    from attngraph.tasks.base import TASKS

    sorter = TASKS["sort_numbers"](SimpleNamespace(n=[3, 3], input="x", target="y"))
    data = sorter.sample(1, torch.Generator().manual_seed(0))
    names = sorter.position_names(data)["x"]
    assert names == ["end"] + [f"{v:.2f}" for v in data["x"][0, 1:, 0].tolist()]
    data["x"] = data["x"].double()
    written = inspect(build(), data, tmp_path, task=sorter)
    assert tmp_path / "pointer-y.png" in written and (tmp_path / "pointer-y.png").stat().st_size > 0
    assert tmp_path / "alignment-dec.ptr.png" in written

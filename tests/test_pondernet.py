"""The ``pondernet`` halting scope (Banino et al. 2021) against hand-written references.

The references run one example at a time, with an explicit Python loop over input steps and ponder steps, from
the equations of the paper: at input step t, ponder step n = 1, 2, ...

    sⁿ = tanh-RNN(sⁿ⁻¹, [x_t, δ_{n,1}]),  s⁰ = the state step t − 1 left,  λₙ = σ(w·sⁿ + b),  yⁿ = W sⁿ + c,
    pₙ = λₙ Π_{j<n} (1 − λⱼ),  K = min{n : Π_{j≤n} (1 − λⱼ) ≤ ε} (at most M),  p_K = Π_{j<K} (1 − λⱼ),
    y_t = Σ pₙ yⁿ,  state for t + 1 = Σ pₙ sⁿ,
    cost_t = KL(p ‖ q) = Σ pₙ log(pₙ / qₙ),  qₙ = λ_p (1 − λ_p)^(n−1) / (1 − (1 − λ_p)^K),

and in training the loss of y is Σₙ pₙ · bce(yⁿ, target) (averaged over examples and steps). Outside training
with ``sample: true`` each example halts at a sampled step S (at step n with probability λₙ, at M if not
before); y_t = y^S, the state for t + 1 is s^S and ``steps`` is S. The cells are computed from the weights
alone, read from the compiled model's parameters. Everything runs in float64.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import attngraph

torch.set_num_threads(1)

D, H = 6, 8
PREFIX = "nodes.seq.ponder."

SPEC = """\
attngraph: 1
name: pondernet-test
inputs:
  x: {{size: {d}}}
targets:
  y: {{size: 1}}
model:
  seq:
    kind: loop
    over: x
    body:
      ponder:
        kind: pondernet
        halt: h
{prior}        epsilon: {eps}
        max_steps: {m}
        sample: {sample}
        body:
          rnn: {{kind: rnn, size: {h}, in: [x, ponder.first]}}
          h:   {{kind: halting_unit, in: rnn, bias: -1.0}}
          y:   {{kind: linear, size: 1, in: rnn}}
        output: y
    output: ponder
outputs:
  y: {{from: seq, loss: bce}}
  kl: {{from: seq.ponder.cost, loss: ponder_cost, weight: {beta}}}
"""


# ------------------------------------------------------------------------------------------------ helpers
def spec_text(*, prior="0.3", eps: float = 0.05, m: int = 6, sample: bool = True, beta: float = 0.01) -> str:
    line = "" if prior is None else f"        prior: {prior}\n"
    return SPEC.format(d=D, h=H, prior=line, eps=eps, m=m, sample="true" if sample else "false", beta=beta)


def build(tmp_path, *, prior: float = 0.3, eps: float = 0.05, m: int = 6, sample: bool = True, beta: float = 0.01,
          seed: int = 0, scale: float = 0.8, halt_scale: float = 3.0, halt_bias: float = -0.5,
          constant: float | None = None):
    """The pondernet model in float64 with random weights (scale ``scale``), the halting unit's weights scaled
    by ``halt_scale`` and its bias ``halt_bias``: with the defaults K varies between 1 and the cap. With
    ``constant`` the halting unit's weights are zero and its bias logit(constant): λₙ = constant everywhere."""
    path = tmp_path / "pondernet.yaml"
    path.write_text(spec_text(prior=prior, eps=eps, m=m, sample=sample, beta=beta))
    model = attngraph.build(path).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64) * scale)
        unit = model.node_module("seq.ponder.h").proj
        if constant is None:
            unit.weight.mul_(halt_scale / scale)
            unit.bias.fill_(halt_bias)
        else:
            unit.weight.zero_()
            unit.bias.fill_(math.log(constant / (1.0 - constant)))
    return model


def leaves(model) -> dict[str, torch.Tensor]:
    """The model's parameters under their names inside the pondernet scope, as fresh leaves for the reference."""
    return {k.removeprefix(PREFIX): v.detach().clone().requires_grad_() for k, v in model.named_parameters()}


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def body_of(w):
    """One ponder step of the body on the weights ``w``: (s, x, first) -> (s, λ, y)."""
    def body(s, x, first):
        inp = torch.cat([x, x.new_tensor([first])])
        s = torch.tanh(w["rnn.rnn.weight_ih_l0"] @ inp + w["rnn.rnn.bias_ih_l0"]
                       + w["rnn.rnn.weight_hh_l0"] @ s + w["rnn.rnn.bias_hh_l0"])
        lam = torch.sigmoid(w["h.proj.weight"] @ s + w["h.proj.bias"])
        return s, lam, w["y.proj.weight"] @ s + w["y.proj.bias"]
    return body


def kl_to_prior(p: list[torch.Tensor], prior: float) -> torch.Tensor:
    """KL(p ‖ q), q the geometric prior truncated to len(p) steps and renormalised."""
    z = 1.0 - (1.0 - prior) ** len(p)
    return sum(pn * torch.log(pn / (prior * (1.0 - prior) ** n / z)) for n, pn in enumerate(p))


def reference(model, x, *, prior: float = 0.3, eps: float = 0.05, m: int = 6):
    """PonderNet in training, every example through its own loops. Returns, each (B, T, ...): the mean outputs
    (B, T, 1), K (B, T), the costs (B, T), the weights p (B, T, M) and the values yⁿ (B, T, M, 1), both zero
    after K; and the leaves ``w`` the reference computed from (for gradients)."""
    w = leaves(model)
    body = body_of(w)
    zero = torch.zeros(1, dtype=torch.float64)
    ys, ks, costs, ps, values = [], [], [], [], []
    for b in range(x.shape[0]):
        s = torch.zeros(H, dtype=torch.float64)
        row = ([], [], [], [], [])
        for t in range(x.shape[1]):
            left, p, outs, states = torch.ones(1, dtype=torch.float64), [], [], []
            inner = s
            for n in range(1, m + 1):
                inner, lam, y = body(inner, x[b, t], 1.0 if n == 1 else 0.0)
                outs.append(y)
                states.append(inner)
                if float((left - left * lam).detach()) <= eps or n == m:
                    p.append(left)  # the last step takes all the probability left
                    break
                p.append(left * lam)
                left = left * (1.0 - lam)
            k = len(p)
            s = sum(p[i] * states[i] for i in range(k))
            row[0].append(sum(p[i] * outs[i] for i in range(k)))
            row[1].append(k)
            row[2].append(kl_to_prior(p, prior).squeeze(0))
            row[3].append(torch.cat(p + [zero] * (m - k)))
            row[4].append(torch.stack(outs + [zero] * (m - k)))
        ys.append(torch.stack(row[0]))
        ks.append(row[1])
        costs.append(torch.stack(row[2]))
        ps.append(torch.stack(row[3]))
        values.append(torch.stack(row[4]))
    return (torch.stack(ys), torch.tensor(ks, dtype=torch.float64), torch.stack(costs), torch.stack(ps),
            torch.stack(values), w)


def sampled_reference(model, x, steps):
    """PonderNet outside training with the halting steps ``steps`` (B, T) given: each example runs its body
    ``steps[b, t]`` times, and the output and the state it carries on are those of the last of them."""
    body = body_of(leaves(model))
    ys = []
    for b in range(x.shape[0]):
        s, row = torch.zeros(H, dtype=torch.float64), []
        for t in range(x.shape[1]):
            for n in range(int(steps[b, t])):
                s, _, y = body(s, x[b, t], 1.0 if n == 0 else 0.0)
            row.append(y)
        ys.append(torch.stack(row))
    return torch.stack(ys).detach()


def bce(logits, target):
    """Elementwise bce summed over features: (..., 1) -> (...)."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)


def closeness(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def check_errors(tmp_path, **kw) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(spec_text(**kw))
    spec, report = attngraph.check(path)
    assert spec is None
    return [str(d).replace(str(path), "{file}") for d in report if d.severity == "error"]


# ------------------------------------------------------------------------------------------------ tests
def test_training_forward_equals_the_reference_with_varying_ponder_steps(tmp_path):
    model = build(tmp_path)
    x = randn(8, 3, D, seed=0)
    out = model({"x": x})
    want_y, want_k, want_cost, want_p, want_values, _ = reference(model, x)
    k = out["ponder:seq.ponder"].squeeze(-1)
    assert out["y"].shape == out["kl"].shape == (8, 3, 1)
    assert out["y.ponder_p"].shape == (8, 3, 6) and out["y.ponder_values"].shape == (8, 3, 6, 1)
    assert {1, 6} < set(k.flatten().tolist()), "the premise: some halt at once, some at the cap, some between"
    assert torch.equal(k, want_k)
    closeness(out["y.ponder_p"], want_p)
    closeness(out["y"], want_y)
    closeness(out["kl"].squeeze(-1), want_cost)
    # the values: those of the reference up to each example's K (after it, the body runs on with weight 0)
    unrolled = torch.arange(1, 7, dtype=torch.float64) <= want_k[..., None]
    closeness(out["y.ponder_values"][unrolled], want_values[unrolled])
    assert bool((out["y.ponder_p"][~unrolled] == 0).all())
    closeness(out["y.ponder_p"].sum(-1), torch.ones(8, 3, dtype=torch.float64), tol=1e-12)
    assert bool((out["kl"] >= -1e-12).all())
    assert model.extra_metrics(out, {"x": x})["mean_ponder"] == pytest.approx(float(want_k.mean()), abs=1e-12)


def test_loss_and_gradients_equal_the_reference(tmp_path):
    model = build(tmp_path, beta=0.01)
    x = randn(8, 3, D, seed=0)
    batch = {"x": x, "y": (randn(8, 3, 1, seed=1) > 0).double()}
    out = model(batch)
    assert out["ponder:seq.ponder"].grad_fn is None, "K carries no gradient"
    total, parts = model.loss(out, batch)
    total.backward()

    _, want_k, want_cost, want_p, want_values, w = reference(model, x)
    assert len(set(want_k.flatten().tolist())) >= 3, "the premise: K varies"
    target = batch["y"][:, :, None, :].expand_as(want_values)  # (B, T, M, 1): the same target at every step
    expected = (want_p * bce(want_values, target)).sum(-1)  # Σₙ pₙ bce(yⁿ): (B, T)
    ref_total = expected.mean() + 0.01 * want_cost.mean()
    closeness(parts["y"], expected.mean())
    closeness(parts["kl"], want_cost.mean())
    closeness(total, ref_total)
    # the premise: the expected loss differs from the loss of the mean output
    mean_y = (want_p[..., None] * want_values).sum(-2)
    assert abs(float((bce(mean_y, batch["y"]).mean() - expected.mean()).detach())) > 1e-3
    ref_total.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
        closeness(param.grad, w[name.removeprefix(PREFIX)].grad, tol=1e-9)


@pytest.mark.parametrize("lam, prior, eps, m, k", [
    (0.5, 0.2, 0.05, 10, 5),   # 0.5⁵ ≤ 0.05 at the fifth step: p = .5, .25, .125, .0625, .0625
    (0.3, 0.3, 0.01, 4, 4),    # the cap: p_4 = 0.7³
    (0.9, 0.5, 0.05, 10, 2),   # 0.1 > 0.05, 0.01 ≤ 0.05
    (0.97, 0.1, 0.05, 10, 1),  # 0.03 ≤ 0.05 at once: p = (1,), KL = −log q_1 = 0
])
def test_cost_is_kl_from_p_to_the_truncated_prior(tmp_path, lam, prior, eps, m, k):
    """Constant λ, one input step: the cost is Σ pₙ log(pₙ / qₙ) written out by hand — not KL(q ‖ p)."""
    model = build(tmp_path, prior=prior, eps=eps, m=m, constant=lam)
    out = model({"x": randn(3, 1, D, seed=2)})
    assert bool((out["ponder:seq.ponder"] == k).all())
    p = [lam * (1 - lam) ** n for n in range(k - 1)] + [(1 - lam) ** (k - 1)]
    z = 1 - (1 - prior) ** k
    q = [prior * (1 - prior) ** n / z for n in range(k)]
    assert sum(p) == pytest.approx(1.0) and sum(q) == pytest.approx(1.0)
    forward = sum(a * math.log(a / b) for a, b in zip(p, q))
    closeness(out["y.ponder_p"][:, 0, :k], torch.tensor([p] * 3, dtype=torch.float64))
    closeness(out["kl"], torch.full((3, 1, 1), forward, dtype=torch.float64))
    if k > 1:
        reverse = sum(b * math.log(b / a) for a, b in zip(p, q))
        assert abs(forward - reverse) > 1e-3, "the premise: the two directions differ"
        assert not torch.allclose(out["kl"], torch.full((3, 1, 1), reverse, dtype=torch.float64))


@pytest.mark.parametrize("eps", [0.01, 0.5])
def test_sampled_halting_step_follows_p(tmp_path, eps):
    """Outside training, each example halts at step n with probability pₙ = λ(1 − λ)^(n−1) (n < M) and at M
    with (1 − λ)^(M−1), whatever ε (ε bounds the unrolling of the expectation in training, not sampling)."""
    lam, m, batch = 0.3, 6, 4000
    model = build(tmp_path, eps=eps, m=m, constant=lam).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = model({"x": randn(batch, 1, D, seed=3)})
    steps = out["ponder:seq.ponder"].flatten()
    assert bool((steps == steps.round()).all()) and int(steps.min()) == 1 and int(steps.max()) == m
    freq = torch.stack([(steps == n).double().mean() for n in range(1, m + 1)])
    p = torch.tensor([lam * (1 - lam) ** n for n in range(m - 1)] + [(1 - lam) ** (m - 1)], dtype=torch.float64)
    assert float((freq - p).abs().max()) < 0.03, (freq, p)
    assert model.extra_metrics(out, {})["mean_ponder"] == pytest.approx(float(steps.mean()), abs=1e-12)


def test_sampled_output_and_state_are_those_of_the_halting_step(tmp_path):
    model = build(tmp_path).eval()
    x = randn(8, 3, D, seed=4)
    torch.manual_seed(1)
    with torch.no_grad():
        out = model({"x": x})
    steps = out["ponder:seq.ponder"].squeeze(-1)
    trained_k = reference(model, x)[1]
    assert len(set(steps.flatten().tolist())) >= 3, "the premise: the sampled steps vary"
    assert not torch.equal(steps, trained_k), "the premise: sampling is not the training unroll"
    # the output and the state the next input step starts from: those of the sampled step
    closeness(out["y"], sampled_reference(model, x, steps))
    at_step = out["y.ponder_values"].gather(2, (steps.long() - 1)[..., None, None]).squeeze(2)
    assert torch.equal(out["y"], at_step)
    assert model.extra_metrics(out, {"x": x})["mean_ponder"] == pytest.approx(float(steps.mean()), abs=1e-12)
    # the mean over the training distribution would be another output
    assert not torch.allclose(out["y"], reference(model, x)[0].detach())
    # another seed samples other steps
    torch.manual_seed(2)
    with torch.no_grad():
        again = model({"x": x})
    assert not torch.equal(again["ponder:seq.ponder"], out["ponder:seq.ponder"])
    closeness(again["y"], sampled_reference(model, x, again["ponder:seq.ponder"].squeeze(-1)))


def test_without_sampling_eval_is_the_training_forward(tmp_path):
    model = build(tmp_path, sample=False)
    x = randn(8, 3, D, seed=5)
    trained = model({"x": x})
    with torch.no_grad():
        evaluated = model.eval()({"x": x})
    for key in ("y", "kl", "ponder:seq.ponder", "y.ponder_p", "y.ponder_values"):
        torch.testing.assert_close(evaluated[key], trained[key].detach(), rtol=0, atol=0)
    want_y, want_k, _, _, _, _ = reference(model, x)
    closeness(evaluated["y"], want_y.detach())
    assert torch.equal(evaluated["ponder:seq.ponder"].squeeze(-1), want_k)


@pytest.mark.parametrize("sample, training", [(True, True), (False, True), (False, False)])
def test_a_forward_that_does_not_sample_leaves_the_global_rng_alone(tmp_path, sample, training):
    model = build(tmp_path, sample=sample).train(training)
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    model({"x": randn(2, 2, D, seed=6)})
    assert torch.equal(torch.random.get_rng_state(), state)


def test_prior_must_lie_strictly_between_0_and_1(tmp_path):
    assert check_errors(tmp_path, prior="1") == [
        "{file}:15:16: model.seq.body.ponder.prior: prior 1.0 must lie strictly between 0 and 1 (e.g. prior: 0.2)"]
    assert check_errors(tmp_path, prior=None) == [
        "{file}:12:7: model.seq.body.ponder: pondernet 'ponder' needs 'prior:', the λ_p of its geometric prior "
        "(e.g. prior: 0.2, which expects 1 / 0.2 = 5 ponder steps)"]
    for value in ("-0.2", "1.5"):
        assert check_errors(tmp_path, prior=value) == [
            f"{{file}}:15:16: model.seq.body.ponder.prior: {value} is out of range: expected a number in (0.0, 1.0]"]
    for value in ("0", "0.0"):  # the range says 0 is left out
        assert check_errors(tmp_path, prior=value) == [
            f"{{file}}:15:16: model.seq.body.ponder.prior: {value} is out of range: expected a number in (0.0, 1.0]"]


def test_an_evaluation_that_samples_repeats_exactly_and_leaves_the_global_rng_as_it_was(tmp_path):
    """``evaluate`` seeds the halting steps PonderNet samples from its data generator's seed: the same seed
    gives the same numbers whatever the global generator holds (``attngraph eval`` and a gallery entry's
    re-check repeat), another seed other numbers, and the caller's global state is given back (an evaluation
    in the middle of training leaves the training run's random stream as it was)."""
    from test_ntm_tasks import make

    from attngraph.training.evaluate import evaluate

    model = build(tmp_path).float()
    task = make("parity", size=D)

    def run(seed):
        return evaluate(model, task, 64, 2, torch.Generator().manual_seed(seed))

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = run(7)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(456)  # another global state: the same numbers
    assert run(7) == first
    assert run(8)["mean_ponder"] != first["mean_ponder"]
    # the premise: the model does sample (a forward under another global seed halts at other steps)
    x = task.sample(64, torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.manual_seed(0)
        a = model.eval()(x)["ponder:seq.ponder"]
        torch.manual_seed(1)
        b = model(x)["ponder:seq.ponder"]
    assert not torch.equal(a, b)


def test_an_inspection_repeats_whatever_the_global_generator_holds(tmp_path):
    """``ponder_by_difficulty`` samples PonderNet's halting steps from its own seed (and gives the global state
    back), so the same seed draws the same picture and CSV."""
    from test_ntm_tasks import make

    from attngraph.inspect import ponder_by_difficulty

    model, task = build(tmp_path).float(), make("parity", size=D)

    def table(seed, folder):
        written = ponder_by_difficulty(model, task, tmp_path / folder, seed=seed, examples=256)
        return next(p for p in written if p.suffix == ".csv").read_text()

    tables = []
    for glob in (0, 1):
        torch.manual_seed(glob)
        state = torch.random.get_rng_state()
        tables.append(table(5, f"out{glob}"))
        assert torch.equal(torch.random.get_rng_state(), state)
    assert tables[0] == tables[1]
    assert table(6, "other") != tables[0]

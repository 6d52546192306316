"""The ``act`` halting scope (Adaptive Computation Time, Graves 2016) against hand-written references.

The references run one example at a time, with an explicit Python loop over input steps and ponder steps, from
the equations of the paper: at input step t, ponder step n = 1 .. N,

    sⁿ = cell(sⁿ⁻¹, [x_t, δ_{n,1}]),  s⁰ = the state step t − 1 left,  hⁿ = σ(W sⁿ + b),
    N = min{n : h¹ + … + hⁿ ≥ 1 − ε} (at most M),  R = 1 − (h¹ + … + h^{N−1}),  pⁿ = hⁿ (n < N), p^N = R,
    y_t = Σ pⁿ yⁿ,  state for t + 1 = Σ pⁿ sⁿ (every carried state),  ρ_t = N + R (N a plain number).

They stop at N (the compiled model runs the whole batch until its last example halts) and compute the cells
from the weights alone (tanh RNN and LSTM equations, the NTM of tests/reference_ntm.py), read from the compiled
model's parameters. Everything runs in float64.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from reference_ntm import address, lstm_cell, read_memory, split_head_params, write_memory

import attngraph

torch.set_num_threads(1)

D, H, EPS = 6, 8, 0.01
PREFIX = "nodes.seq.ponder."

SPEC = """\
attngraph: 1
name: act-test
inputs:
  x: {{size: {d}}}
targets:
  y: {{size: {o}}}
model:
  seq:
    kind: loop
    over: x
    body:
      ponder:
        kind: act
        halt: h
        epsilon: {eps}
        max_steps: {m}
        body:
{body}
        output: y
    output: ponder
outputs:
  y: {{from: seq, loss: bce}}
  ponder: {{from: seq.ponder.cost, loss: ponder_cost, weight: {tau}}}
"""

RNN_BODY = f"""\
          rnn: {{kind: rnn, size: {H}, in: [x, ponder.first]}}
          h:   {{kind: halting_unit, in: rnn, bias: 1.0}}
          y:   {{kind: linear, size: 1, in: rnn}}"""

LSTM_BODY = f"""\
          rnn: {{kind: lstm, size: {H}, in: [x, ponder.first, prev(y)]}}
          h:   {{kind: halting_unit, in: rnn, bias: 1.0}}
          y:   {{kind: linear, size: 1, in: rnn}}"""

SLOTS, WIDTH, NTM_H, NTM_IN, NTM_OUT, SHIFTS = 4, 3, 5, 3, 2, [-1, 0, 1]
NTM_BODY = f"""\
          ctrl:  {{kind: lstm, size: {NTM_H}, in: [x, ponder.first, prev(read)]}}
          write: {{kind: ntm_write, memory: prev(mem), in: ctrl, shifts: {SHIFTS}, init: learned}}
          mem:   {{kind: ntm_memory, slots: {SLOTS}, width: {WIDTH}, writes: write, init: learned}}
          read:  {{kind: ntm_read, memory: mem, in: ctrl, shifts: {SHIFTS}, init: learned}}
          h:     {{kind: halting_unit, in: ctrl, bias: 1.0}}
          y:     {{kind: linear, size: {NTM_OUT}, in: [ctrl, read]}}"""


# ------------------------------------------------------------------------------------------------ helpers
def build(tmp_path, body: str = RNN_BODY, *, d: int = D, o: int = 1, eps: float = EPS, m: int = 5,
          tau: float = 0.01, seed: int = 0, scale: float = 0.8, halt_scale: float = 3.0, halt_bias: float = 0.5):
    """The act model in float64 with random weights (scale ``scale``), the halting unit's weights scaled by
    ``halt_scale`` and its bias ``halt_bias``: with the defaults N varies between 1 and the cap."""
    path = tmp_path / "act.yaml"
    path.write_text(SPEC.format(d=d, o=o, eps=eps, m=m, tau=tau, body=body))
    model = attngraph.build(path).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64) * scale)
        unit = model.node_module("seq.ponder.h").proj
        unit.weight.mul_(halt_scale / scale)
        unit.bias.fill_(halt_bias)
    return model


def leaves(model) -> dict[str, torch.Tensor]:
    """The model's parameters under their names inside the act scope, as fresh leaves for the reference."""
    return {k.removeprefix(PREFIX): v.detach().clone().requires_grad_() for k, v in model.named_parameters()}


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def linear(w, name, v):
    return w[f"{name}.weight"] @ v + w[f"{name}.bias"]


def ponder(xs, valid, state, body, *, eps: float, m: int):
    """ACT over one example's sequence ``xs`` (T, D): ``body(state, x, first) -> (state, h, y)`` with ``state``
    a tuple of tensors. Returns per step the output, N, ρ = N + R, the halting values h¹..h^N and the state
    it leaves; a step with ``valid[t]`` False is skipped (state kept, N = 0)."""
    ys, steps, costs, halts, states = [], [], [], [], []
    for t in range(xs.shape[0]):
        if not valid[t]:
            ys.append(None)
            steps.append(0)
            costs.append(None)
            halts.append([])
            states.append(state)
            continue
        hs, outs, inner = [], [], []
        s = state
        for n in range(1, m + 1):
            s, h, y = body(s, xs[t], 1.0 if n == 1 else 0.0)
            hs.append(h)
            outs.append(y)
            inner.append(s)
            if float(sum(hs).detach()) >= 1.0 - eps or n == m:
                break
        big_n = len(hs)
        remainder = 1.0 - sum(hs[:-1]) if big_n > 1 else torch.ones_like(hs[0])
        p = hs[:-1] + [remainder]
        ys.append(sum(p[i] * outs[i] for i in range(big_n)))
        state = tuple(sum(p[i] * inner[i][k] for i in range(big_n)) for k in range(len(state)))
        steps.append(big_n)
        costs.append(big_n + remainder)
        halts.append(hs)
        states.append(state)
    return ys, steps, costs, halts, states


def rnn_body(w):
    """The tanh RNN body of RNN_BODY on the weights ``w``: state (s,)."""
    def body(state, x, first):
        (s,) = state
        inp = torch.cat([x, x.new_tensor([first])])
        s = torch.tanh(w["rnn.rnn.weight_ih_l0"] @ inp + w["rnn.rnn.bias_ih_l0"]
                       + w["rnn.rnn.weight_hh_l0"] @ s + w["rnn.rnn.bias_hh_l0"])
        return (s,), torch.sigmoid(linear(w, "h.proj", s)), linear(w, "y.proj", s)
    return body


def lstm_body(w):
    """The LSTM body of LSTM_BODY: state (h, c, prev(y)); the gates written out (torch's order i, f, g, o)."""
    def body(state, x, first):
        h, c, prev_y = state
        inp = torch.cat([x, x.new_tensor([first]), prev_y])
        gates = (w["rnn.rnn.weight_ih_l0"] @ inp + w["rnn.rnn.bias_ih_l0"]
                 + w["rnn.rnn.weight_hh_l0"] @ h + w["rnn.rnn.bias_hh_l0"])
        i, f, g, o = gates.chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        y = linear(w, "y.proj", h)
        return (h, c, y), torch.sigmoid(linear(w, "h.proj", h)), y
    return body


def reference(model_or_w, x, mask=None, *, body=rnn_body, state0=None, eps=EPS, m=5):
    """Every example through ``ponder``: outputs (B, T, O) (zeros where masked), N (B, T), ρ (B, T) (zeros
    where masked), the halting values [b][t] and the states [b][t]."""
    w = leaves(model_or_w) if not isinstance(model_or_w, dict) else model_or_w
    state0 = state0 or (lambda: (torch.zeros(H, dtype=torch.float64),))
    ys, steps, costs, halts, states = [], [], [], [], []
    for b in range(x.shape[0]):
        valid = [True] * x.shape[1] if mask is None else mask[b].tolist()
        y, n, c, hs, st = ponder(x[b], valid, state0(), body(w), eps=eps, m=m)
        zero = next(v for v in y if v is not None) * 0
        ys.append(torch.stack([v if v is not None else zero for v in y]))
        steps.append(n)
        costs.append(torch.stack([v if v is not None else zero[:1] for v in c]).squeeze(-1))
        halts.append(hs)
        states.append(st)
    return torch.stack(ys), torch.tensor(steps, dtype=torch.float64), torch.stack(costs), halts, states, w


def bce(logits, target):
    """The bce loss: summed over features, averaged over examples and steps."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1).mean()


def closeness(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------------ tests
def test_forward_equals_the_reference_with_varying_ponder_steps(tmp_path):
    model = build(tmp_path, m=5)
    x = randn(6, 3, D, seed=0)
    out = model({"x": x})
    want_y, want_n, want_cost, _, _, _ = reference(model, x, m=5)
    n = out["ponder:seq.ponder"].squeeze(-1)
    assert out["y"].shape == (6, 3, 1) and out["ponder"].shape == n.unsqueeze(-1).shape == (6, 3, 1)
    assert {1, 5} < set(n.flatten().tolist()), "the premise: some halt at once, some at the cap, some between"
    assert torch.equal(n, want_n)
    closeness(out["y"], want_y)
    closeness(out["ponder"].squeeze(-1), want_cost)
    r = out["ponder"].squeeze(-1) - n
    assert bool(((r > 0) & (r <= 1)).all()), "R lies in (0, 1]"
    assert "break" in model.code and "break" in model.masked_code  # stops once the whole batch has halted


def test_loss_and_gradients_equal_the_reference(tmp_path):
    model = build(tmp_path, m=5, tau=0.01)
    x = randn(6, 3, D, seed=0)
    batch = {"x": x, "y": (randn(6, 3, 1, seed=1) > 0).double()}
    out = model(batch)
    assert out["ponder:seq.ponder"].grad_fn is None, "N carries no gradient"
    total, parts = model.loss(out, batch)
    total.backward()

    want_y, _, want_cost, _, _, w = reference(model, x, m=5)
    ref_bce = bce(want_y, batch["y"])
    ref_total = ref_bce + 0.01 * want_cost.mean()
    closeness(parts["y"], ref_bce)
    closeness(parts["ponder"], want_cost.mean())
    closeness(total, ref_total)
    ref_total.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
        closeness(param.grad, w[name.removeprefix(PREFIX)].grad, tol=1e-9)


def test_ponder_cost_reaches_the_halting_unit_only_through_the_remainder(tmp_path):
    """One input step, the ponder loss alone: dρ/db = dR/db = −Σ_{n<N} hⁿ(1 − hⁿ) for the halting bias b
    (N is a constant, and the states within one step do not depend on b)."""
    model = build(tmp_path, m=5, tau=1.0)
    x = randn(8, 1, D, seed=3)
    out = model({"x": x})
    _, parts = model.loss(out, {"x": x, "y": torch.zeros(8, 1, 1, dtype=torch.float64)})
    parts["ponder"].backward()
    _, steps, _, halts, _, _ = reference(model, x, m=5)
    assert steps.max() > 1
    want = -sum(sum(float((h * (1 - h)).detach()) for h in hs[0][:-1]) for hs in halts) / len(halts)
    bias = model.node_module("seq.ponder.h").proj.bias
    closeness(bias.grad, torch.tensor([want], dtype=torch.float64))
    assert model.node_module("seq.ponder.y").proj.weight.grad is None  # the cost does not read y


def test_padded_steps_keep_the_state_and_are_not_counted(tmp_path):
    model = build(tmp_path, m=5)
    x = randn(3, 4, D, seed=5)
    lengths = [4, 2, 3]
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    for b, n in enumerate(lengths):
        x[b, n:] = 1e3 * randn(4 - n, D, seed=10 + b)  # garbage: must reach nothing
    out = model({"x": x, "x.mask": mask})
    want_y, want_n, want_cost, _, _, _ = reference(model, x, mask, m=5)
    steps = out["ponder:seq.ponder"].squeeze(-1)
    assert torch.equal(steps[mask], want_n[mask])
    closeness(out["y"][mask], want_y[mask])
    closeness(out["ponder"].squeeze(-1)[mask], want_cost[mask])
    # a padding step halts at once: no ponder step, no cost (it does not keep the batch pondering)
    assert bool((steps[~mask] == 0).all()) and bool((out["ponder"].squeeze(-1)[~mask] == 0).all())
    for b, n in enumerate(lengths):  # the same example alone, cut to its length
        alone = model({"x": x[b:b + 1, :n]})
        closeness(out["y"][b:b + 1, :n], alone["y"])
        assert torch.equal(steps[b:b + 1, :n], alone["ponder:seq.ponder"].squeeze(-1))

    valid_mean = float(want_n[mask].mean())
    assert valid_mean != pytest.approx(float(steps.mean()))  # the premise: counting padding would differ
    assert model.extra_metrics(out, {"x": x, "x.mask": mask})["mean_ponder"] == pytest.approx(valid_mean, abs=1e-12)
    batch = {"x": x, "x.mask": mask, "y": torch.ones(3, 4, 1, dtype=torch.float64)}
    _, parts = model.loss(out, batch)
    closeness(parts["ponder"], want_cost[mask].mean())


def test_a_padding_step_in_the_middle_leaves_the_state_unchanged(tmp_path):
    """A step the mask drops changes nothing after it: the later outputs equal those of the sequence without
    that step."""
    model = build(tmp_path, m=5)
    x = randn(2, 4, D, seed=7)
    x[0, 1] = 1e3
    mask = torch.tensor([[True, False, True, True], [True, True, True, True]])
    out = model({"x": x, "x.mask": mask})
    without = model({"x": x[0:1, [0, 2, 3]]})
    closeness(out["y"][0, [0, 2, 3]], without["y"][0])
    assert torch.equal(out["ponder:seq.ponder"][0, [0, 2, 3]], without["ponder:seq.ponder"][0])
    want_y, want_n, _, _, _, _ = reference(model, x, mask, m=5)
    closeness(out["y"][mask], want_y[mask])
    assert torch.equal(out["ponder:seq.ponder"].squeeze(-1)[mask], want_n[mask])


def test_lstm_inside_act_carries_the_mean_of_h_c_and_prev(tmp_path):
    model = build(tmp_path, LSTM_BODY, m=4, seed=1, halt_scale=4.0, halt_bias=0.0)
    x = randn(5, 3, D, seed=2)
    batch = {"x": x, "y": (randn(5, 3, 1, seed=3) > 0).double()}
    out = model(batch)

    def zeros():  # h, c, prev(y)
        return torch.zeros(H, dtype=torch.float64), torch.zeros(H, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)

    want_y, want_n, want_cost, _, _, w = reference(model, x, body=lstm_body, state0=zeros, m=4)
    n = out["ponder:seq.ponder"].squeeze(-1)
    assert len(set(n.flatten().tolist())) >= 3, "the premise: N varies"
    assert torch.equal(n, want_n)
    closeness(out["y"], want_y)
    closeness(out["ponder"].squeeze(-1), want_cost)
    total, _ = model.loss(out, batch)
    total.backward()
    (bce(want_y, batch["y"]) + 0.01 * want_cost.mean()).backward()
    for name, param in model.named_parameters():
        closeness(param.grad, w[name.removeprefix(PREFIX)].grad, tol=1e-9)



def test_each_example_ponders_on_its_own(tmp_path):
    """Per-example halting: one example halts at once at every step, another ponders to the cap of 8; each
    example's outputs equal those of running it alone."""
    model = build(tmp_path, m=8, seed=4)
    with torch.no_grad():  # the state follows the sign of x[0]; the halting unit reads that sign
        rnn = model.node_module("seq.ponder.rnn").rnn
        rnn.weight_ih_l0.mul_(0.05)
        rnn.weight_ih_l0[:, 0] = 5.0
        rnn.weight_hh_l0.mul_(0.05)
        unit = model.node_module("seq.ponder.h").proj
        unit.weight.fill_(1.0)
        unit.bias.fill_(0.0)
    x = randn(4, 3, D, seed=6)
    x[0, :, 0], x[1, :, 0] = 3.0, -3.0
    out = model({"x": x})
    n = out["ponder:seq.ponder"].squeeze(-1)
    assert n[0].tolist() == [1, 1, 1] and n[1].tolist() == [8, 8, 8]
    want_y, want_n, _, _, _, _ = reference(model, x, m=8)
    assert torch.equal(n, want_n)
    closeness(out["y"], want_y)
    for b in range(4):
        alone = model({"x": x[b:b + 1]})
        closeness(out["y"][b:b + 1], alone["y"])
        closeness(out["ponder"][b:b + 1], alone["ponder"])
        assert torch.equal(n[b:b + 1], alone["ponder:seq.ponder"].squeeze(-1))


@pytest.mark.parametrize("h, eps, m, n, r", [
    (0.3, 0.01, 10, 4, 0.1),  # 0.3 + 0.3 + 0.3 + 0.3 ≥ 0.99: R = 1 − 0.9
    (0.3, 0.2, 10, 3, 0.4),   # 0.9 ≥ 0.8 at the third step: R = 1 − 0.6
    (0.3, 0.01, 2, 2, 0.7),   # the cap: R = 1 − 0.3
    (0.995, 0.01, 10, 1, 1.0),  # h¹ ≥ 1 − ε
    (0.995, 0.001, 10, 2, 0.005),  # ... but not with a smaller ε
])
def test_constant_halting_probability_gives_the_closed_form(tmp_path, h, eps, m, n, r):
    model = build(tmp_path, eps=eps, m=m)
    with torch.no_grad():
        unit = model.node_module("seq.ponder.h").proj
        unit.weight.zero_()
        unit.bias.fill_(torch.logit(torch.tensor(h, dtype=torch.float64)))
    x = randn(3, 2, D, seed=8)
    out = model({"x": x})
    assert bool((out["ponder:seq.ponder"] == n).all())
    closeness(out["ponder"], torch.full((3, 2, 1), n + r, dtype=torch.float64))
    want_y, _, _, _, _, _ = reference(model, x, eps=eps, m=m)
    closeness(out["y"], want_y)


PLAIN = f"""\
attngraph: 1
inputs: {{x: {{size: {D + 1}}}}}
model:
  seq:
    kind: loop
    over: x
    body:
      rnn: {{kind: rnn, size: {H}, in: x}}
      y:   {{kind: linear, size: 1, in: rnn}}
    output: y
outputs: {{y: {{from: seq}}}}
"""


def test_halting_at_once_is_a_plain_recurrent_step(tmp_path):
    """h¹ ≥ 1 − ε everywhere: N = 1, R = 1, and the model is a plain loop over [x_t, 1] — exactly."""
    model = build(tmp_path, halt_bias=10.0, halt_scale=0.0)
    (tmp_path / "plain.yaml").write_text(PLAIN)
    plain = attngraph.build(tmp_path / "plain.yaml").double()
    plain.load_state_dict({k.replace(PREFIX, "nodes.seq."): v for k, v in model.state_dict().items()
                           if not k.startswith(PREFIX + "h.")})
    x = randn(4, 5, D, seed=9)
    out = model({"x": x})
    assert bool((out["ponder:seq.ponder"] == 1).all()) and bool((out["ponder"] == 2).all())
    want = plain({"x": torch.cat([x, torch.ones(4, 5, 1, dtype=torch.float64)], -1)})["y"]
    torch.testing.assert_close(out["y"], want, rtol=0, atol=1e-14)


def test_record_gives_the_forward_steps_and_cost(tmp_path):
    model = build(tmp_path, m=5)
    x = randn(6, 3, D, seed=0)
    out = model({"x": x})
    outputs, rec = model.record({"x": x})
    closeness(outputs["y"], out["y"])
    assert torch.equal(rec["seq.ponder.steps"], out["ponder:seq.ponder"])
    closeness(rec["seq.ponder.cost"], out["ponder"])
    assert torch.equal(rec["seq.ponder.steps"].squeeze(-1), reference(model, x, m=5)[1])


# ------------------------------------------------------------------------------------------------ NTM in act
def ntm_body(w):
    """The NTM of NTM_BODY one example at a time (batch dimension 1, for tests/reference_ntm.py's functions):
    state (h, c, memory, read weighting, write weighting, read vector)."""
    def body(state, x, first):
        h, c, memory, read_w, write_w, read = state
        inp = torch.cat([x, x.new_tensor([first]), read[0]])[None]
        h, c = lstm_cell(inp, h, c, w["ctrl.rnn.weight_ih_l0"], w["ctrl.rnn.weight_hh_l0"],
                         w["ctrl.rnn.bias_ih_l0"], w["ctrl.rnn.bias_hh_l0"])
        pw = split_head_params(h @ w["write.fc.weight"].T + w["write.fc.bias"], WIDTH, len(SHIFTS), write=True)
        write_w = address(pw, memory, write_w, SHIFTS)
        memory = write_memory(memory, [write_w], [pw["e"]], [pw["a"]])
        pr = split_head_params(h @ w["read.fc.weight"].T + w["read.fc.bias"], WIDTH, len(SHIFTS), write=False)
        read_w = address(pr, memory, read_w, SHIFTS)
        read = read_memory(memory, read_w)
        halt = torch.sigmoid(h[0] @ w["h.proj.weight"][0] + w["h.proj.bias"])
        y = linear(w, "y.proj", torch.cat([h[0], read[0]]))
        return (h, c, memory, read_w, write_w, read), halt, y
    return body


def ntm_state0(w):
    def state0():
        zero = torch.zeros(1, NTM_H, dtype=torch.float64)
        return (zero, zero, w["mem.m0"].view(1, SLOTS, WIDTH), torch.softmax(w["read.w0"], -1)[None],
                torch.softmax(w["write.w0"], -1)[None], w["read.prev_init"][None])
    return state0


def test_ntm_inside_act_averages_its_memory_and_weightings(tmp_path):
    model = build(tmp_path, NTM_BODY, d=NTM_IN, o=NTM_OUT, m=4, seed=11, scale=0.7, halt_scale=2.0, halt_bias=0.0)
    x = randn(4, 3, NTM_IN, seed=12)
    batch = {"x": x, "y": (randn(4, 3, NTM_OUT, seed=13) > 0).double()}
    out = model(batch)
    w = leaves(model)
    want_y, want_n, want_cost, _, states, _ = reference(w, x, body=ntm_body, state0=ntm_state0(w), m=4)
    n = out["ponder:seq.ponder"].squeeze(-1)
    assert len(set(n.flatten().tolist())) >= 2 and n.max() > 1, "the premise: several ponder steps, N varies"
    assert torch.equal(n, want_n)
    closeness(out["y"], want_y)
    closeness(out["ponder"].squeeze(-1), want_cost)

    _, rec = model.record(batch)  # the memory and weightings the scope leaves: the p-weighted means
    memory = torch.stack([torch.stack([s[2].reshape(-1) for s in row]) for row in states])
    closeness(rec["seq.ponder.mem.out"], memory)
    closeness(rec["seq.ponder.read.weights"], torch.stack([torch.stack([s[3][0] for s in row]) for row in states]))
    closeness(rec["seq.ponder.write.weights"], torch.stack([torch.stack([s[4][0] for s in row]) for row in states]))

    total, _ = model.loss(out, batch)
    total.backward()
    (bce(want_y, batch["y"]) + 0.01 * want_cost.mean()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and bool(torch.isfinite(param.grad).all()), name
        closeness(param.grad, w[name.removeprefix(PREFIX)].grad, tol=1e-8)

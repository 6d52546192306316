"""Losses without a target (the doubly stochastic attention penalty, REINFORCE) and hard attention.

References: the penalty of Xu et al. 2015 (eq. 14) written here from the recorded alignments; the REINFORCE
estimate against the exact gradient of the expected loss, Σ_s α_s L(s), which autograd gives in closed form.
"""
from __future__ import annotations

from pathlib import Path

import torch
from test_attention import make, mask_of, padded, randn
from test_decode import batch

import attngraph
from attngraph.components.losses import LOSSES

SPEC = Path(__file__).parent / "good_specs" / "decode_attention_penalties.yaml"


def penalties_model(seed: int = 0, overrides: list[str] = ()) -> attngraph.CompiledModel:
    torch.manual_seed(seed)
    return attngraph.build(attngraph.load(SPEC, list(overrides))).double()


def test_doubly_stochastic_equals_the_hand_sum_over_counted_steps_and_valid_positions():
    model, data = penalties_model(), batch()
    data["tgt.mask"][1, 2] = False  # one padded decoder step: its alignment must not count
    out = model(data)
    alignment = out["pen"]  # (B, T, S): read from outside the decoder, one row per step
    assert alignment.shape == (3, 3, 4)
    expected = []
    for b in range(3):
        steps = data["tgt.mask"][b]
        valid = data["src.mask"][b]
        column = alignment[b][steps].sum(0)  # Σ_t α_ts over the counted steps
        expected.append(((1 - column[valid]) ** 2).sum())
    loss, parts = model.loss(out, data)
    torch.testing.assert_close(parts["pen"], torch.stack(expected).mean())
    ce = LOSSES["cross_entropy"](out["tgt"], data["tgt"], data["tgt.mask"])
    torch.testing.assert_close(loss, ce + 0.5 * parts["pen"] + parts["choose"])


def test_padded_source_positions_hold_no_weight_and_add_nothing():
    model, data = penalties_model(), batch()
    model.eval()  # the most probable position: the same choices with and without padding
    out = model(data)
    assert bool((out["pen"][~data["src.mask"].unsqueeze(1).expand_as(out["pen"])] == 0).all())
    one = {k: v[1:2, :2] if k.startswith("src") else v[1:2] for k, v in data.items()}  # example 1 unpadded
    alone = model.loss(model(one), one)[1]["pen"]
    total = LOSSES["doubly_stochastic"](out["pen"][1:2], None, data["tgt.mask"][1:2], keys_mask=data["src.mask"][1:2])
    torch.testing.assert_close(total, alone)


def test_reinforce_reward_is_the_log_likelihood_and_the_baseline_the_others_mean():
    model, data = penalties_model(), batch()
    model.train()
    out = model(data)
    per_step = torch.nn.functional.cross_entropy(out["tgt"].transpose(1, 2), data["tgt"], reduction="none")
    reward = -(per_step * data["tgt.mask"]).sum(1)
    baseline = torch.stack([(reward.sum() - reward[b]) / 2 for b in range(3)])
    logp = out["choose"].squeeze(-1)
    mask = data["tgt.mask"].double()
    expected = (-(reward - baseline).unsqueeze(1) * logp * mask).sum() / mask.sum()
    torch.testing.assert_close(model.loss(out, data)[1]["choose"], expected.detach(), check_dtype=False)


def test_reinforce_estimates_the_gradient_of_the_expected_loss():
    """One example copied N times: hard attention samples s ~ α; REINFORCE with the leave-one-out baseline
    must average to ∇_θ Σ_s α_s L(s), computed exactly with soft weights (loose: a Monte Carlo estimate)."""
    module, _ = make(score="additive", hidden=3, hard=True)
    module.train()
    q, keys, values = randn(1, 5, seed=1), padded([7], 4, 2), padded([7], 6, 3)  # 7 valid positions
    target = randn(1, 6, seed=5)
    state = module.init_state(1, q)
    _, weights, _, _, _ = module.step(state, q, keys, values)
    loss_of = ((values[0] - target) ** 2).sum(-1)  # L(s) for each position s
    exact = torch.autograd.grad((weights[0] * loss_of).sum(), list(module.parameters()))
    n = 20000
    torch.manual_seed(0)
    context, _, logp, _, _ = module.step(module.init_state(n, q), q.expand(n, -1), keys.expand(n, -1, -1),
                                      values.expand(n, -1, -1))
    picked_loss = ((context - target) ** 2).sum(-1).detach()
    surrogate = LOSSES["reinforce"](logp, None, None, reward=-picked_loss)
    estimate = torch.autograd.grad(surrogate, list(module.parameters()))
    for e, x in zip(estimate, exact):
        torch.testing.assert_close(e, x, rtol=0.1, atol=0.03 * float(x.abs().max()))


def test_hard_attention_samples_by_alpha_never_padding_and_takes_the_argmax_in_eval():
    module, _ = make(q=4, k=4, score="dot", hard=True)
    q, keys, values = randn(2, 4, seed=1), padded([3, 2], 4, 2), padded([3, 2], 6, 3)
    mask = mask_of([3, 2])
    module.train()
    torch.manual_seed(1)
    n = 4000
    qs, ks, vs, ms = (x.repeat_interleave(n, 0) for x in (q, keys, values, mask))
    context, weights, logp, _, _ = module.step(module.init_state(2 * n, q), qs, ks, vs, mask=ms)
    picks = (context.unsqueeze(1) == vs).all(-1).double().argmax(-1).view(2, n)  # which value was taken
    for b in range(2):
        freq = torch.bincount(picks[b], minlength=7).double() / n
        torch.testing.assert_close(freq, weights[b * n], atol=0.03, rtol=0)
    assert not bool((picks[0] >= 3).any() or (picks[1] >= 2).any())  # padding: α = 0, never drawn
    torch.testing.assert_close(logp.squeeze(-1), weights.gather(1, picks.view(-1, 1)).squeeze(-1).log())
    module.eval()
    context, weights, logp, _, _ = module.step(module.init_state(2, q), q, keys, values, mask=mask)
    best = weights.argmax(-1)
    torch.testing.assert_close(context, values[torch.arange(2), best])
    torch.testing.assert_close(logp.squeeze(-1), weights.max(-1).values.log())


def test_hard_attention_over_a_sequence_of_queries_matches_its_steps_in_eval():
    module, _ = make(score="general", step=False, hard=True)
    module.eval()
    q, keys, values = randn(2, 3, 5, seed=1), padded([7, 7], 4, 2), padded([7, 7], 6, 3)
    context, weights, logp, _ = module(q, keys, values)
    for t in range(3):
        c, w, lp, _, _ = module.step(module.init_state(2, q), q[:, t], keys, values)
        torch.testing.assert_close(context[:, t], c)
        torch.testing.assert_close(logp[:, t], lp)


def test_beam_search_leaves_out_outputs_read_inside_the_decoder():
    model, data = penalties_model(), batch()
    inputs = {k: v for k, v in data.items() if k.startswith("src")}
    got = model.generate(inputs, beam=1)
    assert set(got) == {"tgt"}
    model.eval()
    greedy = model(inputs)["tgt"].argmax(-1)  # eval: the most probable position, the greedy token
    for row, ref in zip(got["tgt"].tolist(), greedy.tolist()):  # the same answer up to its eos
        n = ref.index(0) + 1 if 0 in ref else len(ref)
        assert row[:n] == ref[:n]
    assert model.generate(inputs, beam=3)["tgt"].shape[0] == 3


def test_a_model_with_penalties_trains_and_evaluates(tmp_path):
    from attngraph.training.trainer import Trainer

    spec = attngraph.load(SPEC, ["train.steps=3", "train.eval_every=3", "train.batch=4", "train.eval_batches=1"])
    result = Trainer(spec, tmp_path / "run", quiet=True).run()
    assert result.status == "done" and result.metrics["loss"] == result.metrics["loss"]

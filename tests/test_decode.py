"""The ``decode`` scope against a decoder written here by hand, and beam search against exhaustive search.

The references use tensor arithmetic and the compiled model's weights (from its state dict): embedding rows,
GRU cells as PyTorch documents them, the pooled last encoder state, a linear read-out.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from test_reference import affine, build_decisive, gru_cell

import attngraph

SPEC = Path(__file__).parent / "good_specs" / "decode_gru.yaml"
BOS, EOS = 1, 0


def build(overrides: list[str] = (), seed: int = 0) -> attngraph.CompiledModel:
    return build_decisive(SPEC, overrides, seed)


def batch(seed: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([4, 2, 3])
    src = torch.randint(1, 6, (3, 4), generator=g)
    mask = torch.arange(4) < lengths[:, None]
    tgt = torch.randint(2, 7, (3, 3), generator=g)
    tgt[:, -1] = EOS
    return {"src": src * mask, "src.mask": mask, "tgt": tgt, "tgt.mask": torch.ones_like(tgt, dtype=torch.bool)}


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.state_dict().items()}


def summary(w, src, mask) -> torch.Tensor:
    """The encoder GRU run by hand over each example's valid steps; its last state."""
    x = w["nodes.semb.table.weight"][src]
    h = torch.zeros(src.shape[0], 8, dtype=x.dtype)
    last = torch.zeros_like(h)
    for t in range(src.shape[1]):
        h = gru_cell(x[:, t], h, w["nodes.enc.rnn.weight_ih_l0"], w["nodes.enc.rnn.weight_hh_l0"],
                     w["nodes.enc.rnn.bias_ih_l0"], w["nodes.enc.rnn.bias_hh_l0"])
        last = torch.where(mask[:, t:t + 1], h, last)
    return last


def step(w, token, h, c):
    """One decoder step: (logits, new state)."""
    x = torch.cat([w["nodes.dec.emb.table.weight"][token], c], -1)
    h = gru_cell(x, h, w["nodes.dec.rnn.rnn.weight_ih_l0"], w["nodes.dec.rnn.rnn.weight_hh_l0"],
                 w["nodes.dec.rnn.rnn.bias_ih_l0"], w["nodes.dec.rnn.rnn.bias_hh_l0"])
    return affine(h, w["nodes.dec.logits.proj.weight"], w["nodes.dec.logits.proj.bias"]), h


def reference(w, data, steps: int, feed) -> torch.Tensor:
    """Logits (B, steps, V); ``feed(t, logits)`` gives the next token from this step's logits."""
    c = summary(w, data["src"], data["src.mask"])
    h = torch.zeros_like(c)
    token = torch.full((c.shape[0],), BOS)
    out = []
    for t in range(steps):
        logits, h = step(w, token, h, c)
        out.append(logits)
        token = feed(t, logits)
    return torch.stack(out, 1)


def test_teacher_forcing_feeds_the_previous_target_token():
    model, data = build(), batch()
    model.train()
    got = model(data)["tgt"]
    want = reference(weights(model), data, 3, lambda t, logits: data["tgt"][:, t])
    torch.testing.assert_close(got, want)


def test_gradients_match_the_hand_written_decoder():
    model, data = build(), batch()
    model.train()
    loss, _ = model.loss(model(data), data)
    loss.backward()
    params = {k: v.detach().clone().requires_grad_() for k, v in model.state_dict().items()}
    logits = reference(params, data, 3, lambda t, _: data["tgt"][:, t])
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), data["tgt"].reshape(-1))
    want.backward()
    torch.testing.assert_close(loss, want)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, msg=name)


def test_evaluation_runs_free_for_as_many_steps_as_the_target():
    model, data = build(), batch()
    model.eval()
    got = model(data)["tgt"]
    want = reference(weights(model), data, 3, lambda t, logits: logits.argmax(-1))
    torch.testing.assert_close(got, want)


def test_teacher_forcing_ratio_mixes_target_and_own_tokens_per_example():
    model, data = build(["model.dec.teacher_forcing=0.5"]), batch()
    model.train()
    torch.manual_seed(11)
    got = model(data)["tgt"]
    torch.manual_seed(11)
    want = reference(weights(model), data, 3, lambda t, logits: torch.where(
        torch.rand(3) < 0.5, data["tgt"][:, t], logits.argmax(-1)))
    torch.testing.assert_close(got, want)
    none = build(["model.dec.teacher_forcing=0"])
    none.train()
    torch.testing.assert_close(none(data)["tgt"], reference(weights(none), data, 3, lambda t, lg: lg.argmax(-1)))


def test_prediction_without_target_stops_at_eos_or_max_length():
    model, data = build(), batch()
    model.eval()
    src = {"src": data["src"], "src.mask": data["src.mask"]}
    got = model(src)["tgt"]
    tokens = []
    want = reference(weights(model), data, 4, lambda t, logits: tokens.append(logits.argmax(-1)) or tokens[-1])
    ids = torch.stack(tokens, 1)
    finished = (ids == EOS).cumsum(1) > 0
    stop = int(finished.all(0).nonzero()[0]) + 1 if bool(finished.all(0).any()) else 4
    assert got.shape[1] == stop <= 4
    torch.testing.assert_close(got, want[:, :stop])


def test_beam_of_one_is_greedy():
    model, data = build(), batch()
    src = {"src": data["src"], "src.mask": data["src.mask"]}
    ids = model.generate(src, beam=1)["tgt"]
    tokens = []
    reference(weights(model), data, 4, lambda t, logits: tokens.append(logits.argmax(-1)) or tokens[-1])
    greedy = torch.stack(tokens, 1)
    for b in range(3):  # equal up to and including the first eos; eos after it
        n = int((greedy[b] == EOS).nonzero()[0]) + 1 if bool((greedy[b] == EOS).any()) else 4
        assert ids[b, :n].tolist() == greedy[b, :n].tolist()
        assert (ids[b, n:] == EOS).all()


def exhaustive_best(w, data, b: int, max_length: int, alpha: float) -> list[int]:
    """The answer with the best log p / length^alpha among every token sequence of up to max_length tokens
    (one that writes eos ends there; otherwise it stops at max_length), scored by the hand-written decoder."""
    one = {k: v[b:b + 1] for k, v in data.items()}
    c = summary(w, one["src"], one["src.mask"])
    best, best_score = None, -math.inf
    for seq in itertools.product(range(7), repeat=max_length):
        if EOS in seq and any(s != EOS for s in seq[seq.index(EOS):]):
            continue  # after eos only eos: the same answer as its shorter form, counted once
        h, token, logp, n = torch.zeros_like(c), torch.tensor([BOS]), 0.0, 0
        for s in seq:
            logits, h = step(w, token, h, c)
            logp += float(torch.log_softmax(logits, -1)[0, s])
            n += 1
            if s == EOS:
                break
            token = torch.tensor([s])
        score = logp / n ** alpha
        if score > best_score:
            best, best_score = list(seq), score
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_best(alpha):
    """With K ≥ every partial answer (7^3 = 343 ≤ 400), beam search is exhaustive: it must return the answer
    that enumerating every sequence finds best (3 tokens here: max_length 3)."""
    model, data = build(["model.dec.max_length=3", f"model.dec.length_penalty={alpha}"]), batch()
    src = {"src": data["src"], "src.mask": data["src.mask"]}
    ids = model.generate(src, beam=400)["tgt"]
    w = weights(model)
    for b in range(3):
        want = exhaustive_best(w, data, b, 3, alpha)
        assert ids[b].tolist()[:len(want)] == want


def test_generate_needs_a_decoder_and_a_valid_width():
    model = build()
    with pytest.raises(ValueError, match="beam width must be at least 1, not 0"):
        model.generate(batch(), beam=0)
    plain = attngraph.build(Path(__file__).parents[1] / "specs" / "examples" / "lstm_seq.yaml")
    with pytest.raises(ValueError, match="model 'lstm-seq' has no decode scope to generate with"):
        plain.generate({"x": torch.zeros(1, 2, 9)})


def test_generate_ignores_targets_and_restores_training_mode():
    model, data = build(), batch()
    model.train()
    with_target = model.generate(data, beam=3)["tgt"]
    without = model.generate({"src": data["src"], "src.mask": data["src.mask"]}, beam=3)["tgt"]
    assert model.training
    assert torch.equal(with_target, without)


def test_inspect_draws_the_decoder_alignment_with_the_task_symbols(tmp_path):
    from attngraph.inspect import inspect

    spec_path = tmp_path / "att.yaml"
    spec_path.write_text(SPEC.read_text().replace(
        "      rnn: {kind: gru, size: 8, in: [emb, summary]}",
        "      att: {kind: attention, score: general, query: prev(rnn), keys: enc}\n"
        "      rnn: {kind: gru, size: 8, in: [emb, att]}") + "task: {kind: reversal, vocab: 5, length: [3, 3]}\n")
    spec = attngraph.load(spec_path)
    model, task = attngraph.build(spec), spec.sections["task"].eval
    data = task.sample(1, torch.Generator().manual_seed(0))
    written = inspect(model, data, tmp_path / "pics", task)
    assert tmp_path / "pics" / "alignment-dec.att.png" in written
    from safetensors.torch import load_file
    weights = load_file(str(tmp_path / "pics" / "record.safetensors"))["record.dec.att.weights"]
    assert weights.shape[1] == 3 and weights.shape[0] <= 4  # output steps x source positions
    torch.testing.assert_close(weights.sum(1), torch.ones(weights.shape[0]))

"""``time: OTHER``: an input sequence on another input's time axis (the Neural Programmer's question numbers,
one per question position). It shares OTHER's lengths and mask: a batch holds ``question.mask`` and no
``qnum.mask``, and an attention whose keys come from ``question`` may average ``qnum``."""
from __future__ import annotations

import pytest
import torch

import attngraph
from attngraph.components.base import VType
from attngraph.tasks.base import TASKS, Task, task

SPEC = """\
attngraph: 1
name: shared-axis
inputs:
  question: {vocab: 40}
  qnum: {size: 1, time: question}
  probe: {size: 4}
targets:
  answer: {size: 1}
model:
  emb: {kind: embedding, size: 4, in: question}
  att: {kind: attention, score: dot, query: probe, keys: emb, values: qnum}
outputs:
  answer: {from: att, loss: mse}
"""


def build(tmp_path, text: str = SPEC):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return attngraph.build(attngraph.load(path))


def padded_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 3, 1, 4])
    mask = torch.arange(5)[None, :] < lengths[:, None]
    return {"question": torch.randint(40, (4, 5), generator=g), "question.mask": mask,
            "qnum": torch.randn(4, 5, 1, generator=g) * mask[..., None],  # padded with zeros, as tasks do
            "probe": torch.randn(4, 2, 4, generator=g)}


def by_hand(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σₜ softmax(probe · E[question])ₜ · qnumₜ over each example's valid question positions."""
    keys = model.node_module("emb").table.weight[batch["question"]]  # (B, T, 4)
    scores = torch.einsum("bsd,btd->bst", batch["probe"], keys)
    scores = scores.masked_fill(~batch["question.mask"][:, None, :], float("-inf"))
    return torch.einsum("bst,bto->bso", scores.softmax(-1), batch["qnum"])


def test_the_input_is_on_the_other_inputs_time_axis(tmp_path):
    model = build(tmp_path)
    assert model.ir.inputs["qnum"].types["out"] == VType(1, "question")
    assert model.ir.inputs["question"].types["out"].time == "question"


def test_values_on_the_keys_axis_give_the_weighted_sum_over_valid_positions(tmp_path):
    model = build(tmp_path)
    batch = padded_batch()
    got = model(batch)["answer"]
    assert torch.allclose(got, by_hand(model, batch), atol=1e-6)
    # the padding of qnum does not leak in: anything there changes nothing
    poisoned = dict(batch, qnum=batch["qnum"] + 100.0 * (~batch["question.mask"])[..., None])
    assert torch.allclose(model(poisoned)["answer"], got, atol=1e-6)


def test_the_owners_mask_covers_the_input_even_against_its_own(tmp_path):
    """A batch's qnum.mask (a task that pads every sequence writes one) is not what masks the axis."""
    model = build(tmp_path)
    batch = padded_batch(1)
    expected = by_hand(model, batch)
    for own in (torch.ones_like(batch["question.mask"]), ~batch["question.mask"]):
        assert torch.allclose(model(dict(batch, **{"qnum.mask": own}))["answer"], expected, atol=1e-6)


def test_without_the_shared_axis_values_from_another_input_are_refused(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("qnum: {size: 1, time: question}", "qnum: {size: 1}"))
    spec, diags = attngraph.check(path)
    assert spec is None
    assert "'values' must be a sequence on the keys' time axis (question), but it is seq[qnum]×1" in str(diags[0])


def test_show_writes_the_axis_and_reads_back(tmp_path):
    from attngraph.resolved import resolved

    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    inputs = resolved(attngraph.load(path))["inputs"]
    assert inputs["qnum"] == {"size": 1, "time": "question"} and inputs["question"]["time"] is True


def test_json_schema_takes_a_name_for_an_inputs_time_only():
    from attngraph.schema import json_schema

    props = json_schema()["properties"]
    time = props["inputs"]["additionalProperties"]["properties"]["time"]
    assert {"type": "boolean"} in time["anyOf"] and any(a.get("type") == "string" for a in time["anyOf"])
    assert props["targets"]["additionalProperties"]["properties"]["time"]["type"] == "boolean"


@pytest.mark.parametrize("inputs, expected", [
    ("  question: {vocab: 40, time: qnum}\n  qnum: {size: 1, time: question}\n  probe: {size: 4}\n",
     "{file}:4:31: inputs.question.time: 'question' and 'qnum' are each on the other's time axis "
     "(one of them owns the axis: write time: true on it)"),
    ("  question: {vocab: 40}\n  qnum: {size: 1, time: yes}\n  probe: {size: 4}\n",
     "{file}:5:25: inputs.qnum.time: expected true or false, got 'yes' "
     "(attngraph reads YAML 1.2: 'yes' is a string here, not a boolean; write true or false)"),
    ("  question: {vocab: 40}\n  qnum: {size: 1, time: 3}\n  probe: {size: 4}\n",
     "{file}:5:25: inputs.qnum.time: expected true, false or the name of an input sequence, got integer '3'"),
])
def test_more_mistakes_are_reported_where_they_are(tmp_path, inputs, expected):
    path = tmp_path / "spec.yaml"
    head, rest = SPEC.split("inputs:\n")
    path.write_text(head + "inputs:\n" + inputs + rest[rest.index("targets:"):])
    spec, diags = attngraph.check(path)
    assert spec is None
    assert [str(d).replace(str(path), "{file}") for d in diags if d.severity == "error"] == [expected]


def test_a_loop_may_run_over_both_inputs_of_one_axis(tmp_path):
    """over: [question, qnum] is a list of sequences on one time axis; masked steps leave the state alone."""
    model = build(tmp_path, SPEC.replace("""  att: {kind: attention, score: dot, query: probe, keys: emb, values: qnum}
outputs:
  answer: {from: att, loss: mse}""", """  seq:
    kind: loop
    over: [question, qnum]
    body:
      emb2: {kind: embedding, size: 4, in: question}
      rnn: {kind: gru, size: 4, in: [emb2, qnum]}
    output: rnn
  last: {kind: pool, mode: last, in: seq}
  out: {kind: linear, size: 1, in: [last, probe]}
outputs:
  answer: {from: out, loss: mse}""").replace("probe: {size: 4}", "probe: {size: 4, time: false}")
                  .replace("answer: {size: 1}", "answer: {size: 1, time: false}").replace(
                      "  emb: {kind: embedding, size: 4, in: question}\n", ""))
    batch = padded_batch(2)
    batch["probe"] = batch["probe"][:, 0]
    got = model(batch)["answer"]
    for i, n in enumerate(batch["question.mask"].sum(1).tolist()):  # each example alone, unpadded
        alone = {"question": batch["question"][i:i + 1, :n], "qnum": batch["qnum"][i:i + 1, :n],
                 "probe": batch["probe"][i:i + 1]}
        assert torch.allclose(model(alone)["answer"], got[i:i + 1], atol=1e-5)


class QuestionNumbers(Task):
    """Questions of 2..5 tokens and one number per token; answer: the sum of the numbers. Writes
    question.mask and no qnum.mask (the tasks' way for an input on another's axis)."""

    def sizes(self):
        return {"inputs": {"question": VType(40, "question", True), "qnum": VType(1, "question"),
                           "probe": VType(4, "probe")},
                "targets": {"answer": VType(1, "probe")}}

    def sample(self, batch, gen):
        lengths = torch.randint(2, 6, (batch,), generator=gen)
        mask = torch.arange(5)[None, :] < lengths[:, None]
        qnum = torch.randn(batch, 5, 1, generator=gen) * mask[..., None]
        return {"question": torch.randint(40, (batch, 5), generator=gen) * mask, "question.mask": mask,
                "qnum": qnum, "probe": torch.randn(batch, 2, 4, generator=gen),
                "answer": qnum.sum(1, keepdim=True).expand(batch, 2, 1).clone()}

    def metrics(self, outputs, batch):
        return {}


if "question_numbers" not in TASKS:
    task("question_numbers", params={}, metrics=("loss",))(QuestionNumbers)


def test_a_task_giving_the_shared_axis_matches_and_trains(tmp_path):
    from attngraph.training.trainer import Trainer

    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + "task: {kind: question_numbers}\n"
                           "train: {batch: 4, steps: 2, eval_every: 2, eval_batches: 1, checkpoint_every: 2}\n")
    spec, diags = attngraph.check(path)
    assert spec is not None, [str(d) for d in diags]
    result = Trainer(spec, tmp_path / "run", quiet=True).run()
    assert result.status == "done" and result.metrics["loss"] == result.metrics["loss"]  # finite, not NaN

"""Command-line overrides and building-block includes."""
from pathlib import Path

import pytest
import torch

import attngraph
from attngraph.resolved import resolved
from attngraph.spec.overrides import split_path

EXAMPLES = Path(__file__).resolve().parents[1] / "specs" / "examples"


def errors(path, overrides=()):
    spec, report = attngraph.check(path, list(overrides))
    return [str(d) for d in report if d.severity == "error"]


@pytest.mark.parametrize("text, parts", [
    ("model.ctrl.size", ["model", "ctrl", "size"]),
    ("model.ctrl.in[1]", ["model", "ctrl", "in", 1]),
    ("model.ctrl.in.1", ["model", "ctrl", "in", 1]),
    ("a[0][2].b", ["a", 0, 2, "b"]),
    ("", None), ("a..b", None), ("a.", None), ("a[x]", None),
])
def test_split_path(text, parts):
    assert split_path(text) == parts


def test_override_changes_the_model():
    spec = attngraph.load(EXAMPLES / "lstm_seq.yaml", ["model.ctrl.size=32", "model.ctrl.layers=2"])
    model = attngraph.build(spec)
    assert model.node_module("ctrl").rnn.hidden_size == 32
    assert model.node_module("ctrl").rnn.num_layers == 2


def test_override_list_index_and_yaml_values():
    spec = attngraph.load(EXAMPLES / "loop_feedback.yaml", ["model.seq.body.ctrl.in[1]=x", "model.seq.reverse=true"])
    data = resolved(spec)["model"]["seq"]
    assert data["body"]["ctrl"]["in"] == ["x", "x"]
    assert data["reverse"] is True


def test_override_can_set_a_defaulted_parameter_and_reads_1e_numbers():
    spec = attngraph.load(EXAMPLES / "lstm_seq.yaml", ["model.head.activation=tanh", "model.ctrl.size=1e2"])
    data = resolved(spec)["model"]
    assert data["head"]["activation"] == "tanh" and data["ctrl"]["size"] == 100


def test_override_creates_an_omitted_eval_block_but_no_other_path(tmp_path):
    spec = tmp_path / "copy.yaml"
    text = (EXAMPLES / "lstm_copy.yaml").read_text().replace("  eval: {length: [1, 20]}\n", "")
    assert "eval:" not in text.split("train:")[0]
    spec.write_text(text)
    loaded = attngraph.load(spec, ["task.eval.length=[40, 40]"])
    assert loaded.sections["task"].eval.p.length == [40, 40] and loaded.sections["task"].train.p.length == [1, 20]
    assert errors(spec, ["task.evl.length=[40, 40]"]) == [
        "--set task.evl.length=[40, 40]: task.evl: unknown key 'evl' in task (did you mean 'eval'?)"]


def test_unknown_override_paths_are_errors():
    assert errors(EXAMPLES / "lstm_seq.yaml", ["model.ctrll.size=3"]) == [
        "--set model.ctrll.size=3: model.ctrll: unknown key 'ctrll' in model (did you mean 'ctrl'?)"]
    assert errors(EXAMPLES / "lstm_seq.yaml", ["model.ctrl.sise=3"]) == [
        "--set model.ctrl.sise=3: model.ctrl.sise: unknown key 'sise' for kind 'lstm' (did you mean 'size'?)"]
    assert errors(EXAMPLES / "loop_feedback.yaml", ["model.seq.body.ctrl.in[5]=x"]) == [
        "--set model.seq.body.ctrl.in[5]=x: model.seq.body.ctrl.in[5]: no item 5 in model.seq.body.ctrl.in "
        "(the list has 2 items (indices 0–1))"]
    assert errors(EXAMPLES / "lstm_seq.yaml", ["model.ctrl.size"]) == [
        "--set model.ctrl.size: an override is written key.path=value (e.g. --set model.ctrl.size=256)"]
    assert errors(EXAMPLES / "lstm_seq.yaml", ["model.ctrl.size=big"]) == [
        "--set model.ctrl.size=big: model.ctrl.size: expected an integer ≥ 1, got 'big'"]


def test_include_expands_to_a_group_with_block_parameters():
    spec = attngraph.load(EXAMPLES / "include_block.yaml")
    cell = resolved(spec)["model"]["seq"]["body"]["cell"]
    assert cell["kind"] == "group" and cell["output"] == "y"
    assert cell["body"]["ctrl"]["kind"] == "gru" and cell["body"]["ctrl"]["size"] == 32
    model = attngraph.build(spec)
    out = model({"x": torch.randn(2, 4, 9)})
    assert out["y"].shape == (2, 4, 8)


def test_include_parameter_override():
    spec = attngraph.load(EXAMPLES / "include_block.yaml", ["model.seq.body.cell.with.size=16"])
    assert attngraph.build(spec).node_module("seq.cell.ctrl").rnn.hidden_size == 16


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


SPEC = """attngraph: 1
inputs: {{x: {{size: 4}}}}
model:
  enc:
    include: {block}
    with: {{input: x{extra}}}
outputs: {{y: {{from: enc}}}}
"""
BLOCK = """attngraph: 1
block: proj
params:
  input: {type: refs}
  size: {type: int, default: 3}
nodes:
  p: {kind: linear, size: "${size}", in: "${input}"}
output: p
"""


def test_include_next_to_the_spec_and_errors_inside_the_block(tmp_path):
    write(tmp_path, "blocks/proj.yaml", BLOCK)
    good = write(tmp_path, "good.yaml", SPEC.format(block="blocks/proj.yaml", extra=""))
    assert attngraph.build(attngraph.load(good))({"x": torch.randn(2, 5, 4)})["y"].shape == (2, 5, 3)
    bad_param = write(tmp_path, "bad1.yaml", SPEC.format(block="blocks/proj.yaml", extra=", sizee: 3"))
    assert errors(bad_param) == [f"{bad_param}:6:22: model.enc.with.sizee: unknown key 'sizee' for block "
                                 "'blocks/proj.yaml' (did you mean 'size'?)"]
    bad_type = write(tmp_path, "bad2.yaml", SPEC.format(block="blocks/proj.yaml", extra=", size: many"))
    assert errors(bad_type) == [f"{bad_type}:6:28: model.enc.with.size: expected an integer, got 'many'"]
    missing = write(tmp_path, "bad3.yaml", SPEC.format(block="blocks/nope.yaml", extra=""))
    assert errors(missing)[0].startswith(f"{missing}:5:14: model.enc.include: block file 'blocks/nope.yaml' not found")


def test_include_cycle_is_reported(tmp_path):
    write(tmp_path, "a.yaml", "attngraph: 1\nnodes:\n  b: {include: b.yaml}\n")
    write(tmp_path, "b.yaml", "attngraph: 1\nnodes:\n  a: {include: a.yaml}\n")
    spec = write(tmp_path, "s.yaml", "attngraph: 1\ninputs: {x: {size: 2}}\nmodel:\n  a: {include: a.yaml}\n"
                                     "outputs: {y: {from: x}}\n")
    assert any("include cycle: a.yaml -> b.yaml -> a.yaml" in e for e in errors(spec))


@pytest.mark.parametrize("target", ["/etc/passwd", "/tmp/block.yaml", "blocks/notes.txt"])
def test_include_takes_only_relative_yaml_paths(tmp_path, target):
    spec = write(tmp_path, "s.yaml", SPEC.format(block=target, extra=""))
    assert errors(spec) == [f"{spec}:5:14: model.enc.include: '{target}' is not a relative path to a .yaml block file "
                            "(includes are looked up next to the spec and in specs/, e.g. blocks/ntm.yaml)"]

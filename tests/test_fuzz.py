"""Fuzzing ``attngraph.check``: a mutated spec never makes it raise, a rejection always says why in located
diagnostics, and an accepted spec builds and runs a forward pass.

The seeds are the example specs plus a few inline ones. Each example applies one to three mutations, as text
(a line deleted, duplicated or re-indented, tabs, YAML punctuation or random characters inserted, truncation)
or as data (a key deleted, a value replaced by one of another type or by a reference to another node, a node
renamed). Set ``ATTNGRAPH_FUZZ_EXAMPLES`` for a longer run than the default quick one.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attngraph

EXAMPLES = int(os.environ.get("ATTNGRAPH_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
LOCATED = re.compile(r"^[^:\n]+\.yaml(:[1-9][0-9]*:[1-9][0-9]*)?: \S")  # FILE:LINE:COL: or FILE: (the spec or a block)
MAX_BUILD_NUMBER = 512  # build only specs whose numbers are at most this (the point is shapes, not memory)
B, T = 2, 3

ROOT = Path(__file__).resolve().parents[1]
BLOCK = """\
attngraph: 1
block: proj
params:
  src: {type: ref, doc: the input}
  width: {type: int, default: 8}
nodes:
  hid: {kind: linear, size: "${width}", in: "${src}", activation: tanh}
  out: {kind: layer_norm, in: hid}
output: out
"""
INLINE = [
    """\
attngraph: 1
name: tokens
inputs:
  tok: {vocab: 20}
targets:
  cls: {classes: 5}
model:
  emb: {kind: embedding, size: 6, in: tok}
  enc: {kind: gru, size: 8, in: emb, layers: 2}
  head: {kind: mlp, hidden: [8], size: 5, in: enc, activation: gelu}
outputs:
  cls: {from: head, loss: cross_entropy}
""",
    """\
attngraph: 1
inputs:
  x: {size: 4}
  z: {size: 3, time: false}
targets:
  y: {size: 2}
model:
  fixed: {kind: linear, size: 5, in: z, bias: false}
  seq:
    kind: loop
    over: x
    reverse: true
    output: out
    body:
      cell: {kind: rnn, size: 5, in: [x, prev(out)], nonlinearity: relu}
      proj: {include: blocks/proj.yaml, with: {src: cell, width: 5}}
      mix: {kind: sum, in: [proj, fixed]}
      out: {kind: linear, size: 5, in: mix, init: learned}
  drop: {kind: dropout, in: seq, p: 0.5}
  head: {kind: linear, size: 2, in: [drop, x]}
outputs:
  y: {from: head, loss: mse, weight: 0.5}
  state: {from: seq.cell}
""",
    """\
attngraph: 1
inputs:
  x: {size: 3, time: false}
targets:
  y: {size: 2, time: false}
model:
  g:
    kind: group
    output: inner.h
    body:
      inner:
        kind: group
        output: h
        body:
          h: {kind: mlp, hidden: [4, 4], size: 2, in: x, out_activation: sigmoid}
  n: {kind: layer_norm, in: g, affine: false}
outputs:
  y: {from: n, loss: bce}
  raw: {from: g.inner}
""",
]
SEEDS = [p.read_text() for p in sorted((ROOT / "specs" / "examples").glob("*.yaml"))] + INLINE


# ---------------------------------------------------------------------------------------------- text level
PUNCT = list(":-{}[],&*!|>'\"#%@`?\t\n ") + ["${", "prev(", "..", "<<: ", "!!python/object ", "é", "\u2028", "\x00"]
TEXT_OPS = ["delete", "duplicate", "insert", "indent", "dedent", "tab", "truncate"]


def text_mutation(draw, text: str) -> str:
    lines = text.split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(TEXT_OPS))
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "insert":
        col = draw(st.integers(0, len(lines[i])))
        junk = draw(st.lists(st.one_of(st.sampled_from(PUNCT), st.text(max_size=2)), min_size=1, max_size=3))
        lines[i] = lines[i][:col] + "".join(junk) + lines[i][col:]
    elif op == "indent":
        lines[i] = "  " + lines[i]
    elif op == "dedent":
        lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i].lstrip()
    elif op == "tab":
        lines[i] = lines[i].replace("  ", "\t", 1)
    else:
        return text[:draw(st.integers(0, len(text)))]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- data level
WORDS = ["prev(x)", "..", "x", "y", "seq", "ctrl.out", "^x", "prev(^x)", "ünïcødé", "loop", "group", "linear", "lstm",
         "yes", "1e-3", "${width}", "", " ", "blocks/proj.yaml", "none", "relu", "2fast", "self"]
SCALARS = st.one_of(
    st.integers(-3, 70), st.integers(min_value=10**12, max_value=10**30), st.integers(max_value=-10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(), st.text(max_size=6),
    st.sampled_from(WORDS),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.sampled_from([*WORDS, "kind", "in", "body"]), SCALARS, max_size=2))


def _paths(data, prefix: tuple = ()) -> list[tuple]:
    """Every key path (keys and list indices) in ``data``."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    out = []
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


def _node_refs(data) -> list[str]:
    """References to the spec's own nodes, as written inside and outside their scopes."""
    refs = []
    for path in _paths(data.get("model")):
        names = [str(k) for k in path if k != "body"]
        if path[-1] != "body" and len(path) % 2 == 1:
            refs += [names[-1], ".".join(names), f"prev({names[-1]})", f"^{names[-1]}"]
    return refs or ["x"]


def _parent(data, path: tuple):
    for key in path[:-1]:
        data = data[key]
    return data


def _leaves(data, paths: list[tuple], kind: type) -> list[tuple]:
    return [p for p in paths if isinstance(_parent(data, p)[p[-1]], kind) and not isinstance(_parent(data, p)[p[-1]], bool)]


def data_mutation(draw, text: str, ops: tuple[str, ...] = ("delete", "replace", "resize", "rewire", "rename")) -> str:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text_mutation(draw, text)
    paths = _paths(data)
    if not isinstance(data, dict) or not paths:
        return text_mutation(draw, text)
    op = draw(st.sampled_from(ops))
    # resizing numbers and rewiring references keep a spec valid often enough to exercise build and forward
    targets = {"resize": _leaves(data, paths, int), "rewire": _leaves(data, paths, str)}.get(op) or paths
    path = draw(st.sampled_from(targets))
    parent, key = _parent(data, path), path[-1]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = draw(VALUES)
    elif op == "resize":
        parent[key] = draw(st.integers(1, 12))
    elif op == "rewire":
        parent[key] = draw(st.sampled_from(_node_refs(data)))
    elif isinstance(parent, dict):
        new = draw(st.sampled_from([*WORDS, *_node_refs(data)]))
        renamed = [(new if k == key else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(renamed)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@st.composite
def mutated_specs(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        text = draw(st.sampled_from([text_mutation, data_mutation]))(draw, text)
    return text


@st.composite
def rewired_specs(draw) -> str:
    """Specs with sizes changed and references pointed elsewhere: often still valid, so they reach build()."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        text = data_mutation(draw, text, ("resize", "rewire"))
    return text


# ---------------------------------------------------------------------------------------------- properties
def _small(data) -> bool:
    """True if every number in the spec is small enough to build a model from cheaply."""
    if isinstance(data, dict):
        return all(_small(v) for v in data.values())
    if isinstance(data, list):
        return all(_small(v) for v in data)
    return not isinstance(data, (int, float)) or isinstance(data, bool) or abs(data) <= MAX_BUILD_NUMBER


def random_batch(spec: attngraph.Spec) -> dict[str, torch.Tensor]:
    batch = {}
    for name, node in spec.ir.inputs.items():
        t = node.types["out"]
        shape = (B, T) if t.time else (B,)
        batch[name] = torch.randint(0, t.size, shape) if t.index else torch.randn(*shape, t.size)
    return batch


def check_text(text: str) -> attngraph.Spec | None:
    """Check ``text`` as a spec (next to a block file it may include); assert the properties; build if valid."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "blocks").mkdir()
        (Path(tmp) / "blocks" / "proj.yaml").write_text(BLOCK)
        path = Path(tmp) / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        spec, report = attngraph.check(path)
    for diag in report:
        assert LOCATED.match(str(diag)), str(diag)
        assert "\n" not in str(diag), str(diag)
    errors = [d for d in report if d.severity == "error"]
    assert (spec is None) == bool(errors), [str(d) for d in report]
    if spec is not None and _small(spec.tree.plain_value()):
        model = attngraph.build(spec)
        assert set(model(random_batch(spec))) == model.output_keys
    return spec


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_seeds_are_valid_and_run(seed: int) -> None:
    assert check_text(SEEDS[seed]) is not None


@FUZZ
@given(mutated_specs())
def test_mutated_specs_never_crash(text: str) -> None:
    check_text(text)


@FUZZ
@given(rewired_specs())
def test_rewired_specs_never_crash_and_valid_ones_run(text: str) -> None:
    check_text(text)

"""One namespace for generated code: a spec may name its nodes like any identifier the code generator emits
(the function's arguments, the batch size, loop and ponder-step counters, runtime helpers, builtins it calls,
the prefixes of the variables it mints) and computes what the same spec with other names computes."""
from __future__ import annotations

import builtins
import re
from pathlib import Path

import pytest
import torch

import attngraph
from attngraph.compiler.codegen import RESERVED
from attngraph.resolve import MODULE_ATTRIBUTES

# every name the generator spells out, the counters it mints, and names shaped like the variables it mints
# (but those of torch module methods, 'forward', 'float', which the spec refuses as node names: bad spec 127)
EMITTED = sorted(RESERVED - set(dir(builtins)) - MODULE_ATTRIBUTES) + [
    "len", "range", "zip", "tuple", "bool", "t", "n", "_step", "t_2", "n_2", "m_v1", "prev_v1", "acc_v1", "s_v1",
    "B_examples", "_step_v2", "v1_t", "v2_valid", "v1_mask", "v1_lengths"]

HEAD = "attngraph: 1\nname: names\n"

SPECS = {
    # a top-level act over vectors, a node read after it, a group around a stateful node
    "act_top": """
inputs: {v0: {size: 3, time: false}}
targets: {y: {size: 2, time: false}}
model:
  v1: {kind: linear, size: 2, in: v0}
  v2:
    kind: act
    halt: v4
    max_steps: 4
    body:
      v3: {kind: gru, size: 5, in: [v1, v2.first, prev(v5)]}
      v4: {kind: halting_unit, in: v3, bias: 0.5}
      v5: {kind: linear, size: 2, in: v3}
    output: v5
  v6: {kind: sum, in: [v2, v1]}
  v7: {kind: linear, size: 2, in: [v6, v2.steps]}
outputs: {y: {from: v7, loss: mse}, v8: {from: v2.cost, loss: ponder_cost, weight: 0.01}}
""",
    # a loop with a pondernet and a group inside, over a padded sequence, a node read after the loop
    "loop_pondernet": """
inputs: {v0: {size: 3}}
targets: {y: {size: 2}}
model:
  v1: {kind: linear, size: 4, in: v0}
  v2:
    kind: loop
    over: v1
    body:
      v3:
        kind: group
        output: v4
        body:
          v4: {kind: lstm, size: 5, in: [v1, prev(v9)]}
      v5:
        kind: pondernet
        halt: v7
        prior: 0.3
        max_steps: 3
        sample: false
        body:
          v6: {kind: gru, size: 5, in: [v3, v5.first]}
          v7: {kind: halting_unit, in: v6, bias: -0.5}
          v8: {kind: linear, size: 2, in: v6}
        output: v8
      v9: {kind: linear, size: 2, in: [v5, v3]}
    output: v9
  v10: {kind: linear, size: 2, in: [v2, v1]}
outputs: {y: {from: v10, loss: bce}, v11: {from: v2.v5.cost, loss: ponder_cost, weight: 0.01}}
""",
    # an attention decoder: teacher forcing, free running and beam search
    "decode": """
inputs: {v0: {vocab: 5}}
targets: {y: {classes: 6}}
model:
  v1: {kind: embedding, size: 4, in: v0}
  v2: {kind: gru, size: 6, in: v1}
  v3:
    kind: decode
    target: y
    max_length: 4
    beam: 2
    body:
      v4: {kind: embedding, size: 4, in: prev(v3)}
      v5: {kind: attention, score: dot, query: prev(v6), keys: v2}
      v6: {kind: gru, size: 6, in: [v4, v5]}
      v7: {kind: linear, size: 6, in: v6}
    output: v7
outputs: {y: {from: v3, loss: cross_entropy}}
""",
    # a program over a table
    "program": """
inputs: {v0: {vocab: 19}, v1: {size: 1, time: v0}, v2: {size: 1}}
targets: {y: {size: 1, time: false}}
model:
  v3: {kind: embedding, size: 8, in: v0}
  v4: {kind: gru, size: 8, in: v3}
  v5: {kind: pool, in: v4}
  v6: {kind: pool, mode: max, in: v1}
  v7:
    kind: program
    library: neelakantan
    table: v2
    steps: 3
    ops: v9
    columns: v10
    pivot: v11
    body:
      v8: {kind: rnn, size: 8, in: [v5, v7.prev_op, v7.prev_column]}
      v9: {kind: mlp, hidden: [8], size: 9, activation: tanh, in: [v5, v8]}
      v10: {kind: mlp, hidden: [8], size: 1, activation: tanh, in: [v5, v8]}
      v11: {kind: sum, in: v6}
  v12: {kind: linear, size: 1, in: [v7.scalar, v5]}
outputs: {y: {from: v12, loss: mse}}
""",
}


def renamed(text: str, names: list[str]) -> str:
    """``text`` with node vK named ``names[K]`` (input, node and output names alike)."""
    return re.sub(r"\bv(\d+)\b", lambda m: names[int(m.group(1))], text)


def batch(kind: str, spec: attngraph.Spec, names: list[str]) -> dict[str, torch.Tensor]:
    """Random inputs (and targets) for the spec, keyed by its own input names; sequences padded."""
    g = torch.Generator().manual_seed(3)
    B, T = 3, 5
    mask = torch.arange(T)[None, :] < torch.tensor([[5], [3], [2]])
    if kind == "act_top":
        return {names[0]: torch.randn(B, 3, generator=g), "y": torch.rand(B, 2, generator=g)}
    if kind == "loop_pondernet":
        return {names[0]: torch.randn(B, T, 3, generator=g), f"{names[0]}.mask": mask,
                "y": torch.rand(B, T, 2, generator=g).round()}
    if kind == "decode":
        return {names[0]: torch.randint(0, 5, (B, T), generator=g), f"{names[0]}.mask": mask,
                "y": torch.randint(0, 6, (B, 4), generator=g)}
    return {names[0]: torch.randint(0, 19, (B, T), generator=g), names[1]: torch.randn(B, T, 1, generator=g),
            f"{names[0]}.mask": mask, names[2]: torch.randn(B, 6, 1, generator=g), "y": torch.randn(B, 1, generator=g)}


def run(kind: str, names: list[str], tmp: Path) -> dict[str, torch.Tensor]:
    """Outputs of the spec named ``names`` (seed 0): forward in training and eval mode, masked and not,
    recording, with compiled-style step functions, and beam search where there is a decoder; keyed without
    the node names."""
    path = tmp / f"{kind}-{abs(hash(tuple(names)))}.yaml"
    path.write_text(HEAD + renamed(SPECS[kind], names))
    spec = attngraph.load(path)
    torch.manual_seed(0)
    model = attngraph.build(spec)
    data = batch(kind, spec, names)
    plain = {k: v[:1] for k, v in data.items() if not k.endswith(".mask")}  # one example: the unmasked variant
    got = {}
    for mode in (True, False):
        model.train(mode)
        torch.manual_seed(1)
        got |= {f"{mode}.{i}": v for i, v in enumerate(model(data).values())}
        got |= {f"{mode}.plain.{i}": v for i, v in enumerate(model(plain).values())}
    outs, recs = model.record(plain)
    got |= {f"rec.{i}": v for i, v in enumerate([*outs.values(), *recs.values()])}
    model.compile_steps(lambda f: f)
    got |= {f"steps.{i}": v for i, v in enumerate(model(data).values())}
    if kind == "decode":
        got |= {f"beam.{i}": v for i, v in enumerate(model.generate(data).values())}
    return got


def chunks(n: int) -> list[list[str]]:
    """EMITTED in chunks of n (the last one filled up from the start): every emitted name names a node."""
    out = [EMITTED[i:i + n] for i in range(0, len(EMITTED), n)]
    out[-1] += EMITTED[:n - len(out[-1])]
    return out


SIZES = {"act_top": 9, "loop_pondernet": 12, "decode": 8, "program": 13}


@pytest.mark.parametrize("kind,names", [(k, c) for k, n in SIZES.items() for c in chunks(n)],
                         ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_emitted_names_compute_what_other_names_compute(kind, names, tmp_path):
    want = run(kind, [f"node{i}" for i in range(SIZES[kind])], tmp_path)
    got = run(kind, names, tmp_path)
    assert len(got) == len(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), (key, names)


def test_a_node_named_n_read_after_an_act_is_its_tensor(tmp_path):
    """Found by a user: the halting loop's ``for n in range(...)`` overwrote the node's value with an int."""
    names = [f"node{i}" for i in range(SIZES["act_top"])]
    names[1] = "n"
    got = run("act_top", names, tmp_path)
    assert all(isinstance(v, torch.Tensor) for v in got.values())
    assert torch.equal(got["True.0"], run("act_top", [f"node{i}" for i in range(SIZES["act_top"])], tmp_path)["True.0"])

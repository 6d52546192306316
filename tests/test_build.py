"""Every example and good spec builds into a working nn.Module: forward, backward, masks, state dicts, dtype and
device moves, deepcopy, torch.compile, dropout modes and token inputs."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import networkx as nx
import pytest
import torch

import attngraph
from attngraph.ir import nodes_in

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted([*(ROOT / "specs" / "examples").glob("*.yaml"), *(Path(__file__).resolve().parent / "good_specs").glob("*.yaml")])
LSTM_SEQ = ROOT / "specs" / "examples" / "lstm_seq.yaml"
GOOD = Path(__file__).resolve().parent / "good_specs"
BATCH, STEPS = 3, 5
LENGTHS = [5, 2, 4]


def spec_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def build(path: Path, seed: int = 0, overrides: list[str] = ()) -> attngraph.CompiledModel:
    torch.manual_seed(seed)
    return attngraph.build(attngraph.load(path, list(overrides)))


def random_value(vtype: attngraph.VType, gen: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of ``vtype``: (B, [T,] size) features, or (B, [T]) class indices."""
    shape = (BATCH, STEPS) if vtype.time else (BATCH,)
    if vtype.index:  # a pointer's target (points_to:, size 0) holds positions of an input of STEPS positions
        return torch.randint(0, vtype.size or STEPS, shape, generator=gen)
    return torch.randn(*shape, vtype.size, generator=gen, dtype=dtype)


def make_batch(model: attngraph.CompiledModel, seed: int = 1, masked: bool = False) -> dict[str, torch.Tensor]:
    """Random inputs and targets for a model's declarations; ``masked`` adds a mask for every time axis."""
    gen = torch.Generator().manual_seed(seed)
    batch = {name: random_value(node.types["out"], gen) for name, node in model.ir.inputs.items()}
    for name, vtype in model.ir.targets.items():
        value = random_value(vtype, gen)
        batch[name] = value if vtype.index else value.gt(0).float()
    if masked:
        for name, node in model.ir.inputs.items():
            if node.types["out"].time:
                batch[f"{name}.mask"] = torch.arange(STEPS)[None, :] < torch.tensor(LENGTHS)[:, None]
    return batch


def objective(model: attngraph.CompiledModel, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss plus a random projection of every output (so outputs without a loss get gradients too)."""
    total, _ = model.loss(outputs, batch)
    gen = torch.Generator().manual_seed(9)
    for out in outputs.values():
        total = total + (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    return total


def used_parameters(model: attngraph.CompiledModel) -> set[str]:
    """Names of the parameters of every node that an output depends on (through prev() edges too)."""
    ir = model.ir
    used: set[str] = set()
    for out in ir.outputs.values():
        used |= {out.edge.src.dotted, *nx.ancestors(ir.graph, out.edge.src.dotted)}
    for scope in ir.nodes():  # a halting scope's halt decides how its body's values are mixed
        if scope.is_scope and any(n.dotted in used for n in nodes_in(scope.body)):
            used |= {ref[0].dotted for ref in scope.refs.values()}
            used |= {a for ref in scope.refs.values() for a in nx.ancestors(ir.graph, ref[0].dotted)}
    used &= {node.dotted for node in ir.nodes() if not node.is_scope}
    names = set()
    for name, _ in model.named_parameters():
        path = name.removeprefix("nodes.").split(".")
        if any(".".join(path[:i]) in used for i in range(1, len(path))):
            names.add(name)
    return names


def outputs_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        got = b[name].to(a[name].dtype)
        if got.is_floating_point():  # a wider dtype's minimum (masked scores) becomes -inf: this dtype's minimum
            got = got.clamp_min(torch.finfo(got.dtype).min)
        torch.testing.assert_close(a[name], got, atol=atol, rtol=1e-5, msg=name)


@pytest.fixture(params=SPECS, ids=spec_id)
def spec_path(request) -> Path:
    return request.param


def test_there_are_specs_to_check():
    assert {p.stem for p in SPECS} >= {"lstm_seq", "loop_feedback", "loop_lstm", "tokens", "dropout"}


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_forward_and_backward(spec_path, masked):
    model = build(spec_path)
    batch = make_batch(model, masked=masked)
    outputs = model(batch)
    assert set(outputs) == model.output_keys  # the declared outputs, and a halting scope's N (mean_ponder)
    outputs = {k: v for k, v in outputs.items() if k in model.ir.outputs}
    for name, out in outputs.items():
        vtype = model.ir.outputs[name].edge.type
        over_source = vtype.layout is not None and vtype.layout[0] in ("alignment", "positions")
        size = STEPS if over_source else vtype.size  # an alignment, a pointer's scores: over the source
        assert out.shape == ((BATCH, STEPS, size) if vtype.time else (BATCH, size)), name
        assert torch.isfinite(out).all(), name
    objective(model, outputs, batch).backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == used_parameters(model)
    for name, param in model.named_parameters():
        assert param.grad is None or torch.isfinite(param.grad).all(), name


def test_full_mask_equals_no_mask(spec_path):
    model = build(spec_path).eval()
    batch = make_batch(model)
    full = dict(batch)
    for name, node in model.ir.inputs.items():
        if node.types["out"].time:
            full[f"{name}.mask"] = torch.ones(BATCH, STEPS, dtype=torch.bool)
    outputs_close(model(batch), model(full))


def test_state_dict_round_trip(spec_path):
    model = build(spec_path, seed=0).eval()
    fresh = build(spec_path, seed=1).eval()
    batch = make_batch(model)
    if model.state_dict():  # a model with weights: the fresh one starts different
        assert any((a != b).any() for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    fresh.load_state_dict(model.state_dict())
    outputs_close(model(batch), fresh(batch), atol=0)


def test_to_float64_and_cpu(spec_path):
    model = build(spec_path).eval()
    batch = make_batch(model)
    expected = model(batch)
    model.to("cpu")
    model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    wide = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    outputs = model(wide)
    assert all(out.dtype == torch.float64 for out in outputs.values())
    outputs_close(expected, outputs, atol=1e-5)
    objective(model, outputs, wide).backward()


def test_deepcopy_is_independent(spec_path):
    model = build(spec_path).eval()
    batch = make_batch(model)
    twin = copy.deepcopy(model)
    outputs_close(model(batch), twin(batch), atol=0)
    expected = model(batch)
    if not list(twin.parameters()):
        return
    with torch.no_grad():
        for param in twin.parameters():
            param.add_(0.1)
    outputs_close(expected, model(batch), atol=0)
    moved = twin(batch)
    assert any(not torch.allclose(moved[k], expected[k]) for k in expected)
    objective(twin, moved, batch).backward()
    assert all(p.grad is None for p in model.parameters())
    assert any(p.grad is not None for p in twin.parameters())


def test_generated_code_is_shown():
    model = build(GOOD / "loop_lstm.yaml")
    assert model.code.startswith("def forward(self, batch):")
    assert "for t in range(" in model.code
    assert "torch.where" in model.masked_code and "torch.where" not in model.code


# ------------------------------------------------------------------------------------------ torch.compile
def _compile_backend() -> str | None:
    """inductor where a C compiler is present, else aot_eager; None where torch.compile cannot run at all."""
    try:
        import torch._dynamo as dynamo
    except ImportError:
        return None
    if not hasattr(torch, "compile") or not dynamo.is_dynamo_supported():
        return None
    return "inductor" if shutil.which("cc") or shutil.which("gcc") or shutil.which("clang") else "aot_eager"


BACKEND = _compile_backend()


@pytest.mark.skipif(BACKEND is None, reason="torch.compile is not supported on this platform")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised from inside torch.jit while dynamo traces
def test_torch_compile_matches_eager():
    model = build(LSTM_SEQ, overrides=["model.ctrl.size=16"])
    batch = make_batch(model)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model, backend=BACKEND)
        out = compiled(batch)
        loss, _ = model.loss(out, batch)
        loss.backward()
    finally:
        torch._dynamo.reset()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    eager = model(batch)
    outputs_close(eager, out, atol=1e-5)
    model.loss(eager, batch)[0].backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, atol=1e-5, rtol=1e-4, msg=name)


def _grads(model: attngraph.CompiledModel, batch: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same dropout masks for every variant
    outputs = model(batch)
    objective(model, outputs, batch).backward()
    return outputs, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


NTM_COPY = ROOT / "gallery" / "ntm-copy" / "spec.yaml"


@pytest.mark.parametrize("path", [*SPECS, NTM_COPY], ids=lambda p: spec_id(p))
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_loop_bodies_as_step_functions_compute_the_same(path, masked):
    """compile_steps() emits each loop body as a function of (step input, mask, carried values); with an
    identity compiler the model must compute what the inline loop computes, gradients included."""
    inline = build(path, overrides=["model.seq.body.mem.slots=16"] if path == NTM_COPY else [])
    stepped = copy.deepcopy(inline)
    bodies = stepped.compile_steps(lambda fn: fn)
    assert bodies == sum(1 for n in inline.ir.nodes() if n.is_scope and n.cls.kind == "loop"
                         and not any(u.is_scope for u in inline.ir.units(n.body)))
    assert ("def _step_" in stepped.code) == (bodies > 0)
    batch = make_batch(inline, masked=masked)
    want, want_grads = _grads(inline, batch)
    got, got_grads = _grads(stepped, batch)
    outputs_close(want, got)  # equal up to summation order: the step inputs are laid out time-major
    assert want_grads.keys() == got_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], msg=name)


@pytest.mark.skipif(BACKEND is None, reason="torch.compile is not supported on this platform")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compile_steps_serves_every_sequence_length_with_one_graph():
    """train.compile: the loop body is compiled once (twice: at the first step the initial state needs no
    gradient), without graph breaks; a batch of another length reuses it (compiling the whole forward would
    unroll the loop and compile again for every length)."""
    from torch._dynamo.utils import counters

    model = build(GOOD / "loop_lstm.yaml", overrides=["model.seq.body.ctrl.size=4"])
    eager = copy.deepcopy(model)
    torch._dynamo.reset()
    counters.clear()
    try:
        assert model.compile_steps(lambda fn: torch.compile(fn, backend="aot_eager", dynamic=False)) == 1
        graphs = []
        for seed, steps in ((1, STEPS), (2, STEPS + 3)):
            batch = make_batch(model, seed=seed, masked=True)
            if steps != STEPS:
                batch = {k: torch.cat([v, v[:, :3]], 1) if v.dim() > 1 else v for k, v in batch.items()}
            want, want_grads = _grads(eager, batch)
            got, got_grads = _grads(model, batch)
            outputs_close(want, got, atol=1e-5)
            for name in want_grads:
                torch.testing.assert_close(got_grads[name], want_grads[name], atol=1e-5, rtol=1e-4, msg=name)
            graphs.append(counters["stats"]["unique_graphs"])
        assert graphs == [2, 2]
        assert not counters["graph_break"]
    finally:
        torch._dynamo.reset()


# ------------------------------------------------------------------------------------------------ dropout
def test_dropout_is_random_in_training_and_off_in_eval():
    model = build(GOOD / "dropout.yaml")
    batch = make_batch(model)
    model.train()
    first, second = model(batch)["y"], model(batch)["y"]
    assert not torch.equal(first, second)
    model.eval()
    off = build(GOOD / "dropout.yaml", overrides=["model.drop.p=0.0", "model.seq.body.cell_drop.p=0.0"]).eval()
    off.load_state_dict(model.state_dict())
    assert torch.equal(model(batch)["y"], model(batch)["y"])
    torch.testing.assert_close(model(batch)["y"], off(batch)["y"])


# ---------------------------------------------------------------------------------------------- embedding
def test_embedding_reads_token_indices():
    model = build(GOOD / "tokens.yaml")
    batch = make_batch(model)
    assert batch["tok"].dtype == torch.int64 and batch["tok"].shape == (BATCH, STEPS)
    out = model(batch)["next"]
    assert out.shape == (BATCH, STEPS, 11)
    model.loss({"next": out}, batch)[0].backward()
    table = model.node_module("emb").table.weight
    seen = torch.zeros(11, dtype=torch.bool)
    seen[batch["tok"].unique()] = True
    assert table.grad[~seen].eq(0).all() and table.grad[seen].ne(0).any(dim=1).all()
    predictions = model.predict({"next": out})["next"]
    assert predictions.dtype == torch.int64 and torch.equal(predictions, out.argmax(-1))


def test_a_target_mask_alone_keeps_the_unmasked_forward(monkeypatch):
    """Only input masks change the forward pass; a target's mask ("y.mask") is read by the loss alone."""
    model = attngraph.build(attngraph.load(ROOT / "specs" / "examples" / "loop_feedback.yaml"))

    def masked_forward(*args):
        raise AssertionError("the masked forward ran for a batch without input masks")

    monkeypatch.setattr(model, "_forward_masked", masked_forward)
    batch = {"x": torch.randn(2, 3, 9), "y": torch.rand(2, 3, 8), "y.mask": torch.tensor([[1, 1, 0], [1, 0, 0]]).bool()}
    loss, _ = model.loss(model(batch), batch)
    assert torch.isfinite(loss)


def test_an_all_true_input_mask_runs_the_unmasked_forward(monkeypatch):
    """A batch whose input mask marks every step (a batch of one, equal lengths) needs no torch.where per
    state per step; a mask with a padded step does."""
    model = attngraph.build(attngraph.load(ROOT / "specs" / "examples" / "loop_feedback.yaml"))
    calls = []
    masked = model._forward_masked
    monkeypatch.setattr(model, "_forward_masked", lambda *a: calls.append(1) or masked(*a))
    batch = {"x": torch.randn(2, 3, 9), "x.mask": torch.ones(2, 3, dtype=torch.bool)}
    full = model(batch)["y"]
    assert calls == []
    torch.testing.assert_close(full, masked(model, batch)["y"])
    batch["x.mask"] = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
    model(batch)
    assert calls == [1]

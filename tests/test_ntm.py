"""The NTM components against the hand-written reference (tests/reference_ntm.py): outputs and gradients on the
same weights; the addressing's stability at its edges; the NTM spec trains."""
from __future__ import annotations

import math

import torch
from reference_ntm import random_weights, reference_ntm

import attngraph
from attngraph.components.ntm import address, content_weights, sharpen, shift

N, M, H, IN, OUT = 6, 4, 7, 3, 3
SHIFTS = [-1, 0, 1]

SPEC = f"""\
attngraph: 1
inputs: {{x: {{size: {IN}}}}}
model:
  seq:
    kind: loop
    over: x
    body:
      ctrl:   {{kind: lstm, size: {H}, in: [x, prev(read0), prev(read1)]}}
      write0: {{kind: ntm_write, memory: prev(mem), in: ctrl, init: learned}}
      write1: {{kind: ntm_write, memory: prev(mem), in: ctrl, init: learned}}
      mem:    {{kind: ntm_memory, slots: {N}, width: {M}, writes: [write0, write1], init: learned}}
      read0:  {{kind: ntm_read, memory: mem, in: ctrl, init: learned}}
      read1:  {{kind: ntm_read, memory: mem, in: ctrl, init: learned}}
      y:      {{kind: linear, size: {OUT}, in: [ctrl, read0, read1]}}
    output: y
outputs: {{y: {{from: seq}}}}
"""


def compiled_with(w: dict[str, torch.Tensor], tmp_path):
    """The compiled two-read, two-write NTM holding the reference's weights ``w`` (float64)."""
    path = tmp_path / "ntm.yaml"
    path.write_text(SPEC)
    model = attngraph.build(path).double()
    state = {
        "ctrl.rnn.weight_ih_l0": w["lstm.weight_ih"], "ctrl.rnn.weight_hh_l0": w["lstm.weight_hh"],
        "ctrl.rnn.bias_ih_l0": w["lstm.bias_ih"], "ctrl.rnn.bias_hh_l0": w["lstm.bias_hh"],
        "mem.m0": w["mem_init"].reshape(-1), "y.proj.weight": w["out.weight"], "y.proj.bias": w["out.bias"],
    }
    for kind in ("read", "write"):
        for j in range(2):
            state[f"{kind}{j}.fc.weight"], state[f"{kind}{j}.fc.bias"] = w[f"{kind}{j}.weight"], w[f"{kind}{j}.bias"]
            state[f"{kind}{j}.w0"] = w[f"{kind}_w_init{j}"].log()  # softmax(log w) = w for a weighting summing to 1
    for j in range(2):
        state[f"read{j}.prev_init"] = w[f"read_init{j}"]
    model.load_state_dict({f"nodes.seq.{k}": v for k, v in state.items()})
    return model


def test_compiled_ntm_matches_the_reference_outputs_and_gradients(tmp_path):
    w = random_weights(IN, H, OUT, slots=N, width=M, read_heads=2, write_heads=2, shifts=SHIFTS, seed=3)
    model = compiled_with(w, tmp_path)
    x = torch.rand(3, 7, IN, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    probe = torch.randn(3, 7, OUT, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    ours = model({"x": x})["y"]
    leaves = {k: v.detach().clone().requires_grad_() for k, v in w.items()}
    want = reference_ntm(x, leaves, slots=N, width=M, read_heads=2, write_heads=2, shifts=SHIFTS)["y"]
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-12)

    (ours * probe).sum().backward()
    (want * probe).sum().backward()
    grads = dict(model.named_parameters())
    pairs = [("nodes.seq.ctrl.rnn.weight_ih_l0", "lstm.weight_ih"), ("nodes.seq.ctrl.rnn.weight_hh_l0", "lstm.weight_hh"),
             ("nodes.seq.y.proj.weight", "out.weight")]
    pairs += [(f"nodes.seq.{k}{j}.fc.weight", f"{k}{j}.weight") for k in ("read", "write") for j in range(2)]
    pairs += [(f"nodes.seq.read{j}.prev_init", f"read_init{j}") for j in range(2)]
    for ours_name, ref_name in pairs:
        torch.testing.assert_close(grads[ours_name].grad, leaves[ref_name].grad, rtol=1e-8, atol=1e-11, msg=ours_name)
    torch.testing.assert_close(grads["nodes.seq.mem.m0"].grad, leaves["mem_init"].grad.reshape(-1), rtol=1e-8, atol=1e-11)


def test_masked_batch_equals_each_sequence_alone(tmp_path):
    """Padding after a sequence's end changes neither its outputs nor its memory."""
    w = random_weights(IN, H, OUT, slots=N, width=M, read_heads=2, write_heads=2, shifts=SHIFTS, seed=4)
    model = compiled_with(w, tmp_path)
    x = torch.rand(2, 6, IN, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    both = model({"x": x, "x.mask": mask})["y"]
    alone = model({"x": x[1:, :3]})["y"]
    torch.testing.assert_close(both[1, :3], alone[0], rtol=1e-10, atol=1e-12)


def _finite_grads(*tensors):
    return all(t.grad is not None and torch.isfinite(t.grad).all() for t in tensors)


def test_content_addressing_is_finite_for_zero_memory_and_zero_key():
    memory = torch.zeros(2, 5, 3, requires_grad=True)
    key = torch.zeros(2, 3, requires_grad=True)
    beta = torch.full((2, 1), 10.0, requires_grad=True)
    w = content_weights(memory, key, beta)
    torch.testing.assert_close(w, torch.full((2, 5), 0.2))  # nothing to prefer: uniform
    w[:, 0].sum().backward()
    assert _finite_grads(memory, key, beta)


def test_sharpening_is_finite_for_tiny_weights_and_huge_gamma():
    w = torch.tensor([[1e-30, 1e-30, 1.0 - 2e-30], [0.0, 0.0, 1.0], [0.3, 0.3, 0.4]], requires_grad=True)
    gamma = torch.full((3, 1), 1e4, requires_grad=True)
    out = sharpen(w, gamma)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(3))
    assert out[2].argmax() == 2 and out[2, 2] > 0.999  # γ large: one-hot on the largest
    (out * torch.arange(3.0)).sum().backward()
    assert _finite_grads(w, gamma)


def test_full_addressing_with_zero_previous_weighting_stays_a_distribution():
    """A head that starts from an all-zero weighting (init: zeros) with g → 0 must not divide 0 by 0."""
    memory = torch.zeros(1, 4, 2)
    w = address(memory, torch.zeros(1, 4), torch.zeros(1, 2), torch.ones(1, 1), torch.zeros(1, 1),
                torch.tensor([[0.0, 1.0, 0.0]]), torch.full((1, 1), 50.0), (-1, 0, 1))
    assert torch.isfinite(w).all() and math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)


def test_shift_moves_attention_forward_with_positive_offsets():
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    assert shift(w, torch.tensor([[0.0, 0.0, 1.0]]), (-1, 0, 1)).tolist() == [[0.0, 0.0, 1.0, 0.0]]
    assert shift(w, torch.tensor([[1.0, 0.0, 0.0]]), (-1, 0, 1)).tolist() == [[1.0, 0.0, 0.0, 0.0]]
    last = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    assert shift(last, torch.tensor([[0.0, 0.0, 1.0]]), (-1, 0, 1)).tolist() == [[1.0, 0.0, 0.0, 0.0]]  # wraps


def test_ntm_learns_a_short_copy(tmp_path):
    """Integration: the NTM spec trains on copy through the trainer and the loss falls."""
    from attngraph.training.trainer import Trainer

    spec = tmp_path / "ntm_copy.yaml"
    spec.write_text("""\
attngraph: 1
inputs: {x: {size: 5}}
targets: {y: {size: 4}}
model:
  seq:
    kind: loop
    over: x
    body:
      ctrl:  {kind: lstm, size: 32, in: [x, prev(read)]}
      write: {kind: ntm_write, memory: prev(mem), in: ctrl}
      mem:   {kind: ntm_memory, slots: 16, width: 8, writes: write}
      read:  {kind: ntm_read, memory: mem, in: ctrl}
      y:     {kind: linear, size: 4, in: [ctrl, read]}
    output: y
outputs: {y: {from: seq, loss: bce}}
task: {kind: copy, width: 4, length: [1, 3]}
train: {optimizer: adam, lr: 0.01, batch: 16, steps: 60, eval_every: 20, eval_batches: 2, checkpoint_every: 60}
""")
    result = Trainer(attngraph.load(spec), tmp_path / "run", quiet=True).run()
    assert result.status == "done"
    import csv

    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    chance = 4 * math.log(2)  # bce summed over 4 bits, predicting 0.5 everywhere
    losses = [float(r["eval_loss"]) for r in rows]
    assert losses[-1] < losses[0] and losses[-1] < 0.85 * chance, losses


def test_inspect_draws_every_head_and_records_its_weights(tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from attngraph.training.trainer import Trainer
    from attngraph_cli.main import main

    spec = tmp_path / "ntm.yaml"
    text = SPEC.replace(f"kind: linear, size: {OUT},", "kind: linear, size: 2,")  # copy of 2-bit vectors
    spec.write_text(text.replace("outputs: {y: {from: seq}}", "targets: {y: {size: 2}}\noutputs: {y: {from: seq, loss: bce}}\n"
                                 "task: {kind: copy, width: 2, length: [2, 4]}\ntrain: {batch: 2, steps: 2, eval_batches: 1}"))
    Trainer(attngraph.load(spec), tmp_path / "run", quiet=True).run()
    out = CliRunner().invoke(main, ["inspect", str(spec), "--checkpoint", str(tmp_path / "run/checkpoints/last.safetensors"),
                                    "-o", str(tmp_path / "pics"), "--seed", "3"])
    assert out.exit_code == 0, out.output
    for name in ("io.png", "attention.png", "seq.mem.out.png", "record.safetensors"):
        assert (tmp_path / "pics" / name).is_file(), name
    rec = load_file(str(tmp_path / "pics" / "record.safetensors"))
    steps = rec["batch.x"].shape[0]
    for head in ("read0", "read1", "write0", "write1"):
        w = rec[f"record.seq.{head}.weights"]
        assert w.shape == (steps, N)
        torch.testing.assert_close(w.sum(-1), torch.ones(steps))
    assert rec["record.seq.mem.out"].shape == (steps, N * M)
    model = attngraph.build(spec)
    outputs, _ = model.record({"x": rec["batch.x"][None]})
    torch.testing.assert_close(outputs["y"], model({"x": rec["batch.x"][None]})["y"])  # recording changes nothing

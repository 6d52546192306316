"""What Transformers train with: label smoothing, the inverse-square-root warm-up, mixed precision (bf16,
fp16 with a gradient scaler) and gradient accumulation, each against a closed form or an independent run."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from training_helpers import SPEC

import attngraph
from attngraph.components.losses import LOSSES
from attngraph.training.checkpoint import load_checkpoint, model_tensors
from attngraph.training.config import Schedule, TrainConfig
from attngraph.training.optim import lr_at
from attngraph.training.trainer import Trainer, TrainingError

CE = LOSSES["cross_entropy"]
TRAIN = "  batch: 8\n  steps: 6\n  lr: 0.05\n  optimizer: sgd\n  checkpoint_every: 3\n  eval_every: 3\n  eval_batches: 1\n"


# the echo task with a feed-forward model: CPU autocast has no fp16 LSTM kernel (oneDNN refuses it)
FEED_FORWARD = SPEC.replace("{{kind: lstm, size: 6, in: x}}", "{{kind: mlp, hidden: [8], size: 6, in: x}}")


def write_spec(directory, train: str, name: str = "spec.yaml"):
    path = directory / name
    path.write_text(FEED_FORWARD.format(train=train, task=""))
    return path


def run(tmp_path, name: str, extra: str = "", **kw) -> Trainer:
    spec = attngraph.load(write_spec(tmp_path, TRAIN + extra, name=f"{name}.yaml"))
    trainer = Trainer(spec, tmp_path / name, quiet=True, **kw)
    result = trainer.run()
    assert result.status == "done", result.message
    return trainer


def final_params(path) -> dict[str, torch.Tensor]:
    return model_tensors(load_checkpoint(path / "checkpoints" / "last.safetensors")[0])


# ------------------------------------------------------------------------------------------ label smoothing
@pytest.mark.parametrize("shape", [(4, 6), (3, 5, 6)])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch(shape, eps) -> None:
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, shape[-1], shape[:-1], generator=gen)
    ours = CE.elementwise(pred, target, label_smoothing=eps)
    theirs = F.cross_entropy(pred.movedim(-1, 1) if len(shape) == 3 else pred, target, reduction="none",
                             label_smoothing=eps)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), pred)[0], torch.autograd.grad(theirs.sum(), pred)[0])


def test_label_smoothing_over_a_pointers_positions_leaves_out_the_padding() -> None:
    scores = torch.tensor([[1.0, 2.0, 0.5, torch.finfo(torch.float32).min]])  # position 3 is padding
    target = torch.tensor([1])
    expected = F.cross_entropy(scores[:, :3], target, label_smoothing=0.2)  # smoothing over the 3 real positions
    torch.testing.assert_close(CE.elementwise(scores, target, label_smoothing=0.2), expected.view(1))


def test_an_output_with_label_smoothing_trains_on_the_smoothed_loss(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("attngraph: 1\nname: s\ninputs: {x: {size: 3}}\ntargets: {y: {classes: 4}}\n"
                    "model: {h: {kind: linear, size: 4, in: x}}\n"
                    "outputs: {y: {from: h, loss: cross_entropy, label_smoothing: 0.1}}\n")
    model = attngraph.build(path)
    batch = {"x": torch.randn(2, 5, 3), "y": torch.randint(0, 4, (2, 5))}
    loss, _ = model.loss(model(batch), batch)
    expected = F.cross_entropy(model(batch)["y"].movedim(-1, 1), batch["y"], label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)


# ---------------------------------------------------------------------------------------- the warm-up schedule
def test_inverse_sqrt_is_vaswanis_schedule() -> None:
    d_model, warmup = 512, 4000
    cfg = TrainConfig(lr=(d_model * warmup) ** -0.5, steps=20000, schedule=Schedule("inverse_sqrt", warmup=warmup))
    for step in (0, 1, 999, 3998, 3999, 4000, 12345, 19999):
        n = step + 1
        assert lr_at(step, cfg) == pytest.approx(d_model ** -0.5 * min(n ** -0.5, n * warmup ** -1.5), rel=1e-12)
    assert max(lr_at(s, cfg) for s in range(20000)) == pytest.approx(cfg.lr)  # the peak, at update n = warmup


# -------------------------------------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_trains_and_stays_finite(tmp_path, precision) -> None:
    trainer = run(tmp_path, precision, f"  precision: {precision}\n")
    params = final_params(tmp_path / precision)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in params.values())
    assert math.isfinite(trainer.last_metrics["loss"])
    fp32 = final_params(run(tmp_path, "fp32").out)
    assert any(not torch.equal(params[k], fp32[k]) for k in params)  # the forward really ran in half precision


def test_fp16_resume_restores_the_gradient_scale(tmp_path) -> None:
    straight = run(tmp_path, "straight", "  precision: fp16\n")
    spec = attngraph.load(write_spec(tmp_path, TRAIN + "  precision: fp16\n", name="split.yaml"))
    assert Trainer(spec, tmp_path / "split", quiet=True).run(until=3).status == "paused"
    resumed = Trainer(spec, tmp_path / "split", quiet=True, resume=True)
    assert resumed.run().status == "done"
    assert resumed.scaler.get_scale() == straight.scaler.get_scale()
    a, b = final_params(tmp_path / "straight"), final_params(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------- gradient accumulation
@pytest.mark.parametrize("k", [2, 4])
def test_accumulating_k_micro_batches_equals_one_batch(tmp_path, monkeypatch, k) -> None:
    """Equal-length sequences: the mean of k micro-batch means is the batch mean, so the updates agree."""
    one = final_params(run(tmp_path, "one").out)
    sizes, loss = [], Trainer._loss
    monkeypatch.setattr(Trainer, "_loss", lambda self, batch: sizes.append(batch["x"].shape[0]) or loss(self, batch))
    split = final_params(run(tmp_path, f"k{k}", f"  accumulate: {k}\n").out)
    assert sizes == [8 // k] * (6 * k)  # 6 steps of k micro-batches
    for name in one:
        torch.testing.assert_close(split[name], one[name], rtol=1e-5, atol=1e-6, msg=name)


def test_accumulation_must_split_each_process_batch(tmp_path) -> None:
    spec = attngraph.load(write_spec(tmp_path, TRAIN + "  accumulate: 8\n"))
    from attngraph.training.distributed import World

    with pytest.raises(TrainingError, match="train.accumulate = 8 does not split the 4 sequences of each of the 2"):
        Trainer(spec, tmp_path / "r", quiet=True, world=World(rank=0, size=2))

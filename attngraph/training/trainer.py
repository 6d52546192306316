"""The training loop: seeded batches, gradient noise, clipping, schedules, evaluation, checkpoints, resume and
stopping.

A run may start from another checkpoint's weights (``init_from=``, ``attngraph train --init``): a fine-tune, or
the next stage of a curriculum. Only the parameters are taken; the optimiser, the step count and the random
streams start afresh, and the run records where its weights came from (``init.json``, and ``init`` in every
checkpoint's metadata, which ``gallery publish`` copies into the entry's results).

On CPU a run interrupted and resumed (``resume=True``) ends with exactly the parameters and metrics of an
uninterrupted one: the model, the optimiser, torch's and python's RNGs, the batch generator and the running
train-loss average are all in the checkpoint, and evaluation draws from its own generator, seeded
``seed + 1`` afresh at every evaluation (so every evaluation sees the same data). Gradient noise
(``train.gradient_noise``) is drawn from a generator seeded from (seed, step) at every step: nothing to save.
"""
from __future__ import annotations

import dataclasses
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..api import Spec
from ..compiler.module import CompiledModel, extra_metric_names
from ..spec.diagnostics import did_you_mean
from ..tasks.base import Task
from .checkpoint import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_weights,
    model_tensors,
    optimizer_join,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import World, init, rank_seed
from .evaluate import better, evaluate, main_metric, to_device
from .optim import add_gradient_noise, curriculum_value, lr_at, make_optimizer
from .precision import autocast, make_scaler, micro_batches, to_fp32
from .rundir import EventLog, MetricsLog, config_hash, default_run_dir, plot_learning_curve, write_run_files


class TrainingError(Exception):
    """A run that cannot start or continue: no task, too large a model, a bad stop metric, no checkpoint."""


@dataclass
class TrainResult:
    """How a run ended. ``status``: done (all steps), target (the stop metric was reached), paused (``until``),
    interrupted (Ctrl-C), nan (a NaN/inf loss with ``nan: stop``)."""

    status: str
    step: int
    out: Path
    message: str
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return self.status != "nan"


def count_parameters(spec: Spec) -> int:
    """The model's parameter count, from a build on the meta device (no memory is allocated)."""
    with torch.device("meta"):
        model = CompiledModel(spec.ir)
    return sum(p.numel() for p in model.parameters())


class Trainer:
    """Trains ``spec``'s model on its task into the run directory ``out``.

    ``train_task``/``eval_task`` default to ``spec.sections["task"].train`` / ``.eval``; ``seed`` overrides
    ``train.seed``; ``resume`` continues from ``out/checkpoints/last.safetensors``; ``init_from`` starts a new run
    from the parameters of that checkpoint (a fine-tune; not with ``resume``). ``world`` makes this
    process one rank of a data-parallel run (see :mod:`attngraph.training.distributed`).
    """

    def __init__(self, spec: Spec, out: Path | None = None, *, device: str = "cpu", quiet: bool = False,
                 resume: bool = False, seed: int | None = None, train_task: Task | None = None,
                 eval_task: Task | None = None, world: World | None = None,
                 init_from: Path | None = None):
        if init_from is not None and resume:
            raise TrainingError("--init starts a new run from a checkpoint's weights and --resume continues a run "
                                "where it stopped: use one of them")
        self.spec = spec
        self.init_from = Path(init_from) if init_from is not None else None
        self.init_info: dict[str, Any] | None = None
        cfg: TrainConfig = spec.sections.get("train") or TrainConfig()
        self.cfg = dataclasses.replace(cfg, seed=seed) if seed is not None else cfg
        section = spec.sections.get("task")
        if train_task is None and section is None:
            raise TrainingError(f"{spec.path}: the spec has no task: section, so there is nothing to train on")
        self.train_task = train_task or section.train
        self.eval_task = eval_task or (section.eval if section is not None and train_task is None else self.train_task)
        self.world = world or World()
        self.eval_batch = self.cfg.eval_batch or self.cfg.batch
        for key, size in (("batch", self.cfg.batch), ("eval_batch", self.eval_batch)):  # each rank takes an equal share
            if size % self.world.size:
                raise TrainingError(f"train.{key} = {size} does not split evenly over {self.world.size} processes "
                                    f"(use a multiple of {self.world.size})")
        self.local_batch = self.cfg.batch // self.world.size
        if self.local_batch % self.cfg.accumulate:
            raise TrainingError(f"train.accumulate = {self.cfg.accumulate} does not split the {self.local_batch} "
                                f"sequences of each of the {self.world.size} processes into equal micro-batches")
        self.device = init(self.world, device)  # joins the process group when distributed
        if out is None:  # every rank must agree on the directory: rank 0's clock names it
            when = self.world.broadcast_int(int(time.time()), self.device)
        self.out = Path(out) if out is not None else default_run_dir(spec, when=when)
        self.quiet, self.resume = quiet or not self.world.writer, resume
        self.metric = main_metric(self.eval_task)
        self.metric_names = (*self.eval_task.metric_names, *extra_metric_names(spec.ir))
        self._interrupt = False
        self._bar = None
        self._check_names()

    def _check_names(self) -> None:
        cfg, names = self.cfg, self.metric_names
        if cfg.stop is not None and cfg.stop.metric not in names:
            raise TrainingError(f"train.stop.metric: '{cfg.stop.metric}' is not a metric of task "
                                f"'{self.eval_task.name}' ({did_you_mean(cfg.stop.metric, names)})")
        if cfg.curriculum is not None and not hasattr(self.train_task.p, cfg.curriculum.param):
            params = list(vars(self.train_task.p))
            raise TrainingError(f"train.curriculum.param: '{cfg.curriculum.param}' is not a parameter of task "
                                f"'{self.train_task.name}' ({did_you_mean(cfg.curriculum.param, params)})")

    def say(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None and not self._bar.disable:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    # -- set-up ---------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.cfg
        n = count_parameters(self.spec)
        if n > cfg.max_params:
            raise TrainingError(f"the model has {n:,} parameters, more than train.max_params = {cfg.max_params:,} "
                                f"(raise it with --set train.max_params={n})")
        self.n_params = n
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.model = CompiledModel(self.spec.ir).to(self.device)
        self.eval_forward = self.model
        if cfg.compile and not self.model.compile_steps():  # no loop: the whole forward is one graph
            self.eval_forward = torch.compile(self.model, dynamic=True)
        self.forward = self.eval_forward
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.eval_forward, device_ids=ids)
        self.optimizer = make_optimizer(self.model.parameters(), cfg)
        self.scaler = make_scaler(cfg.precision, self.device)  # fp16 only
        self.batch_gen = torch.Generator().manual_seed(rank_seed(cfg.seed, self.world.rank))
        self.step, self.sequences, self.seconds, self.skipped = 0, 0, 0.0, 0
        self.loss_sum, self.loss_count = 0.0, 0
        self.best: float | None = None
        self.best_loss: float | None = None  # the evaluation loss at the best checkpoint: breaks ties
        self.last_metrics: dict[str, float] = {}
        self.hash = config_hash(self.spec)
        self.ckpt_dir = self.out / "checkpoints"
        if self.init_from is not None:
            self._warm_start()
        if self.resume:
            self._restore()
        elif self.world.writer:
            write_run_files(self.out, self.spec, self.init_info)
        self.log = MetricsLog(self.out / "metrics.csv", self.metric_names)
        self.events = None
        if self.world.writer:
            self.log.start(keep_until=self.step if self.resume else None)
            self.events = EventLog(self.out, self.log.rows if self.resume else None)

    def _warm_start(self) -> None:
        """The parameters of checkpoint ``self.init_from``, nothing else; what they came from goes into init_info."""
        try:
            meta = load_weights(self.model, self.init_from)
        except CheckpointError as err:
            raise TrainingError(f"--init: {err}") from err
        self.init_info = {"checkpoint": str(self.init_from), "sha256": file_sha256(self.init_from),
                          "step": meta.get("step"), "config_hash": meta.get("config_hash"), "metrics": meta.get("metrics")}
        if meta.get("init"):  # a chain of warm starts: keep where the first one began
            self.init_info["init"] = meta["init"]
        self.say(f"starting from the weights of {self.init_from} (step {meta.get('step')})")

    def _restore(self) -> None:
        path = self.ckpt_dir / "last.safetensors"
        try:
            tensors, meta = load_checkpoint(path)
        except CheckpointError as err:
            raise TrainingError(f"cannot resume: {err}") from err
        self.model.load_state_dict({k: v.to(self.device) for k, v in model_tensors(tensors).items()})
        self.optimizer.load_state_dict(optimizer_join(tensors, meta["optimizer"]))
        restore_rng(tensors, meta, self.batch_gen)
        rank = self.world.rank
        if rank:  # every rank's own generator states were saved by rank 0 under rng.rank<r>.*
            if f"rng.rank{rank}.batch" in tensors:
                torch.set_rng_state(tensors[f"rng.rank{rank}.torch"])
                self.batch_gen.set_state(tensors[f"rng.rank{rank}.batch"])
            else:
                self.say(f"attngraph: warning: the checkpoint has no generator state for rank {rank} "
                         "(saved by a run with fewer processes): its data will differ from an uninterrupted run")
        self.step, self.sequences, self.seconds = meta["step"], meta["sequences"], meta["seconds"]
        self.skipped, self.best, self.last_metrics = meta["skipped"], meta["best"], meta["metrics"]
        self.best_loss = meta.get("best_loss")
        self.init_info = meta.get("init")
        self.loss_sum, self.loss_count = meta["loss_sum"], meta["loss_count"]
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        if meta.get("config_hash") != self.hash:
            self.say("attngraph: warning: the spec differs from the one the checkpoint was trained with")
        self.say(f"resumed from {path} at step {self.step}")

    # -- checkpoints ------------------------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {"step": self.step, "sequences": self.sequences, "seconds": self.seconds, "metrics": self.last_metrics,
                "best": self.best, "best_loss": self.best_loss, "best_metric": self.metric, "skipped": self.skipped,
                "loss_sum": self.loss_sum, "loss_count": self.loss_count, "seed": self.cfg.seed, "config_hash": self.hash,
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
                **({"init": self.init_info} if self.init_info is not None else {})}

    def save(self, name: str) -> Path:
        """Write ``checkpoints/NAME.safetensors`` and ``NAME.json`` for the current state."""
        path = self.ckpt_dir / f"{name}.safetensors"
        extra = {}
        if self.world.distributed:  # collective: every rank calls save() at the same steps
            batch_states = self.world.gather(self.batch_gen.get_state())
            torch_states = self.world.gather(torch.get_rng_state())
            for rank in range(1, self.world.size):
                extra[f"rng.rank{rank}.batch"], extra[f"rng.rank{rank}.torch"] = batch_states[rank], torch_states[rank]
        if self.world.writer:
            meta = dict(self._meta(), world_size=self.world.size)
            save_checkpoint(path, self.model, self.optimizer, self.batch_gen, meta, extra)
        return path

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self, until: int | None = None) -> TrainResult:
        """Train to ``train.steps`` (or pause after step ``until``, saving the last checkpoint)."""
        self._setup()
        from tqdm import tqdm

        cfg = self.cfg
        self._bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr,
                         disable=self.quiet or not sys.stderr.isatty())
        previous = self._catch_sigint()
        try:
            return self._loop(until)
        except KeyboardInterrupt:  # arrived outside the step boundary (no handler installed): state may be torn
            last = self.ckpt_dir / "last.safetensors"
            return TrainResult("interrupted", self.step, self.out,
                               f"interrupted; resume from the last checkpoint ({last}) with --resume --out {self.out}",
                               self.last_metrics, self.skipped)
        finally:
            self._bar.close()
            self._bar = None
            if self.events is not None:
                self.events.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _catch_sigint(self):
        """Turn Ctrl-C into a flag checked between steps, so the checkpoint saved on it is consistent."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):  # noqa: ARG001 - signal handler signature
            if self._interrupt:  # a second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self._interrupt = True

        return signal.signal(signal.SIGINT, handler)

    def _loop(self, until: int | None) -> TrainResult:
        cfg = self.cfg
        t0, start_seconds, start_sequences = time.monotonic(), self.seconds, self.sequences
        task, task_value = self.train_task, None
        while self.step < cfg.steps:
            if self._interrupt or (until is not None and self.step >= until):
                path = self.save("last")
                status = "interrupted" if self._interrupt else "paused"
                return TrainResult(status, self.step, self.out, f"{status} at step {self.step}; saved {path}; continue "
                                   f"with: attngraph train SPEC --resume --out {self.out}", self.last_metrics, self.skipped)
            if cfg.curriculum is not None:
                value = curriculum_value(self.step, cfg.curriculum)
                if value != task_value:
                    task, task_value = self.train_task.with_params(**{cfg.curriculum.param: value}), value
            lr = lr_at(self.step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = to_device(task.sample(self.local_batch, self.batch_gen), self.device)
            self.optimizer.zero_grad(set_to_none=True)
            value = self._backward(batch)
            if not math.isfinite(value):
                if cfg.nan == "stop":
                    last = self.ckpt_dir / "last.safetensors"
                    kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was saved"
                    return TrainResult("nan", self.step + 1, self.out,
                                       f"loss is {value} at step {self.step + 1}: stopped ({kept}; "
                                       "lower train.lr, set train.clip_norm, or use train.nan=skip)",
                                       self.last_metrics, self.skipped)
                self.skipped += 1
                self.say(f"step {self.step + 1}: loss is {value}; update skipped ({self.skipped} so far)")
            else:
                if self.scaler is not None:  # the true gradients, before noise and clipping
                    self.scaler.unscale_(self.optimizer)
                if cfg.gradient_noise is not None:  # before clipping (as TensorFlow's optimize_loss does it)
                    add_gradient_noise(self.model.parameters(), self.step, cfg)
                if cfg.clip_value is not None:
                    torch.nn.utils.clip_grad_value_(self.model.parameters(), cfg.clip_value)
                if cfg.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
                if self.scaler is not None:  # skips the update if a gradient overflowed, and adapts the scale
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.loss_sum += value
                self.loss_count += 1
            self.step += 1
            self.sequences += cfg.batch
            self.seconds = start_seconds + time.monotonic() - t0
            reached = False
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                reached = self._evaluate(lr)
            if reached or self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save("last")
            rate = (self.sequences - start_sequences) / max(self.seconds - start_seconds, 1e-9)
            self._bar.set_postfix({"loss": f"{value:.4g}", self.metric: f"{self.last_metrics.get(self.metric, math.nan):.4g}",
                                   "seq/s": f"{rate:.0f}"}, refresh=False)
            self._bar.update(1)
            if reached:
                stop = cfg.stop
                target = f"below {stop.below}" if stop.below is not None else f"above {stop.above}"
                return TrainResult("target", self.step, self.out, f"{stop.metric} = {self.last_metrics[stop.metric]:.4g} "
                                   f"is {target} at step {self.step}: stopped", self.last_metrics, self.skipped)
        return TrainResult("done", self.step, self.out, f"trained {self.step} steps; checkpoints in {self.ckpt_dir}",
                           self.last_metrics, self.skipped)

    def _backward(self, batch: dict[str, torch.Tensor]) -> float:
        """Gradients of the step's loss into ``.grad`` (``train.accumulate`` micro-batches, ``train.precision``;
        see :mod:`attngraph.training.precision`); returns the loss value, the mean over the micro-batches."""
        parts = micro_batches(batch, self.cfg.accumulate)
        total = 0.0
        for part in parts:
            loss, value = self._loss(part)
            loss = loss / len(parts) if len(parts) > 1 else loss
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total += value
        return total / len(parts)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
        """The loss to differentiate and the global loss value. Distributed: each sum is divided by the
        count of all ranks (times the world size, as DDP averages gradients), so the gradient is that of
        the whole global batch; Ctrl-C on any rank travels in the same all-reduce, so all ranks stop together."""
        with autocast(self.cfg.precision, self.device):
            outputs = self.forward(batch)
        if self.cfg.precision != "fp32":
            outputs = to_fp32(outputs)
        if not self.world.distributed:
            loss, _ = self.model.loss(outputs, batch)
            return loss, float(loss.detach())
        terms = self.model.loss_terms(outputs, batch)
        names = list(terms)
        local = torch.stack([terms[n][0].detach() for n in names] + [terms[n][1].detach() for n in names]
                            + [torch.tensor(float(self._interrupt), device=self.device)]).float()
        total = self.world.sum(local)
        self._interrupt = bool(total[-1] > 0)
        counts = {n: total[len(names) + i] for i, n in enumerate(names)}
        loss = self.model.combine_terms(terms, counts, scale=self.world.size)
        value = self.model.combine_terms({n: (total[i], total[len(names) + i]) for i, n in enumerate(names)})
        return loss, float(value)

    def _evaluate(self, lr: float) -> bool:
        """Evaluate, log a metrics.csv row, save best, redraw the curve; True if the stop target is reached."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.last_metrics = evaluate(self.model, self.eval_task, self.eval_batch, cfg.eval_batches, gen, self.device,
                                     self.eval_forward, self.world)
        train_loss = self.loss_sum / self.loss_count if self.loss_count else math.nan
        self.loss_sum, self.loss_count = 0.0, 0
        row = {"step": self.step, "seconds": self.seconds, "sequences": self.sequences, "lr": lr, "train_loss": train_loss}
        row.update({f"eval_{k}": v for k, v in self.last_metrics.items()})
        value, loss = self.last_metrics[self.metric], self.last_metrics.get("loss")
        if better(self.eval_task, self.metric, value, self.best, loss, self.best_loss):
            self.best, self.best_loss = value, loss
            self.save("best")
        if self.world.writer:
            self.log.append(row)
            self.events.append(row)
            plot_learning_curve(self.log.rows, self.out / "learning_curve.png", self.metric_names)
        self.say(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in self.last_metrics.items()))
        return cfg.stop is not None and cfg.stop.reached(self.last_metrics[cfg.stop.metric])

"""The training loop: seeded batches, gradient noise, clipping, schedules, evaluation, checkpoints, resume and
stopping.

A run may start from another checkpoint's weights (``init_from=``, ``attngraph train --init``): a fine-tune, or
the next stage of a curriculum. Only the parameters are taken; the optimiser, the step count and the random
streams start afresh, and the run records where its weights came from (``init.json``, and ``init`` in every
checkpoint's metadata, which ``gallery publish`` copies into the entry's results).

On CPU a run interrupted and resumed (``resume=True``) ends with exactly the parameters and metrics of an
uninterrupted one: the model, the optimiser, torch's and python's RNGs, the batch generator and the running
train-loss averages are all in the checkpoint, and evaluation draws from its own generator, seeded
``seed + 1`` afresh at every evaluation (so every evaluation sees the same data). Gradient noise
(``train.gradient_noise``) is drawn from a generator seeded from (seed, step) at every step: nothing to save.

SIGINT (Ctrl-C) and SIGTERM (``kill``, Slurm, Kubernetes) save the last checkpoint and end the run after the
step in progress; a second signal abandons the step in progress (its batch is drawn again on resume) and saves
the state it started from. Nothing non-finite is ever saved: a non-finite loss or gradient stops the run or skips
the update (``train.nan``), and parameters that became non-finite stop it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
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
    read_meta,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import World, init, rank_seed
from .evaluate import better, evaluate, main_metric, to_device
from .optim import add_gradient_noise, curriculum_value, lr_at, make_optimizer
from .outdir import RunDirError, RunLock, check_out, default_run_dir, prepare
from .precision import autocast, make_scaler, micro_batches, to_fp32
from .progress import Progress
from .rundir import (
    EventLog,
    MetricsLog,
    config_hash,
    plot_learning_curve,
    record_session,
    resume_hash,
    run_record_spec,
    spec_differences,
    write_run_files,
)
from .signals import EXIT_CODE, Interrupts


class TrainingError(Exception):
    """A run that cannot start or continue: no task, too large a model, a bad stop metric, no checkpoint."""


@dataclass
class TrainResult:
    """How a run ended. ``status``: done (all steps), target (the stop metric was reached), paused (``until``),
    interrupted (SIGINT/SIGTERM), nan (a non-finite loss, gradient or parameter that the ``nan`` policy cannot get
    past)."""

    status: str
    step: int
    out: Path
    message: str
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: int = 0
    signal: str | None = None  # SIGINT or SIGTERM for an interrupted run

    @property
    def ok(self) -> bool:
        return self.status != "nan"

    @property
    def exit_code(self) -> int:
        """0 done/target/paused, 1 nan, 130 SIGINT, 143 SIGTERM (so ``train && publish`` stops on an interrupted run)."""
        return EXIT_CODE.get(self.signal or "", 0) if self.ok else 1


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

    A fresh run needs an empty ``out`` (``overwrite`` empties one holding an earlier run); ``resume`` refuses a
    checkpoint of another spec unless ``allow_spec_change``. ``progress_every``: seconds between progress lines
    where no bar can be drawn.
    """

    def __init__(self, spec: Spec, out: Path | None = None, *, device: str = "cpu", quiet: bool = False,
                 resume: bool = False, seed: int | None = None, train_task: Task | None = None,
                 eval_task: Task | None = None, world: World | None = None,
                 init_from: Path | None = None, overwrite: bool = False, allow_spec_change: bool = False,
                 progress_every: float = 10.0):
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
        self.out = Path(out) if out is not None else default_run_dir(spec.name, when=when)
        try:
            check_out(self.out)
        except RunDirError as err:
            raise TrainingError(str(err)) from err
        self.quiet, self.resume = quiet or not self.world.writer, resume
        self.overwrite, self.allow_spec_change, self.progress_every = overwrite, allow_spec_change, progress_every
        self.lock: RunLock | None = None
        self.metric = main_metric(self.eval_task)
        self.metric_names = (*self.eval_task.metric_names, *extra_metric_names(spec.ir))
        self.interrupts = Interrupts(self.say)
        self._bar: Progress | None = None
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
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, file=sys.stderr, flush=True)

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
        self.step, self.sequences, self.seconds, self.skipped, self.skipped_run = 0, 0, 0.0, 0, 0
        self.loss_sum, self.loss_count, self.log_sum, self.log_count = 0.0, 0, 0.0, 0
        self.best: float | None = None
        self.best_loss: float | None = None  # the evaluation loss at the best checkpoint: breaks ties
        self.last_metrics: dict[str, float] = {}
        self.hash, self.resume_hash = config_hash(self.spec), resume_hash(self.spec)
        self.ckpt_dir = self.out / "checkpoints"
        if self.world.writer:
            self._claim_out()
        if self.init_from is not None:
            self._warm_start()
        if self.resume:
            self._restore()
        self.log = MetricsLog(self.out / "metrics.csv", self.metric_names)
        self.train_log = MetricsLog(self.out / "train_loss.csv", ())
        self.events = None
        if self.world.writer:
            try:
                if not self.resume:
                    write_run_files(self.out, self.spec, self.init_info)
                record_session(self.out, seed=cfg.seed, device=str(self.device), world_size=self.world.size,
                               resumed_at=self.step if self.resume else None)
                keep = self.step if self.resume else None
                self.log.start(keep_until=keep)
                self.train_log.start(keep_until=keep)
            except OSError as err:
                raise TrainingError(f"cannot write the run directory {self.out}: {err.strerror or err}") from err
            replay = None
            if self.resume:
                replay = sorted([*self.train_log.rows, *({k: v for k, v in r.items() if k == "step" or k.startswith("eval_")}
                                                         for r in self.log.rows)], key=lambda r: r["step"])
            self.events = EventLog(self.out, replay)

    def _claim_out(self) -> None:
        """Lock the run directory and check that this run may use it (see :mod:`attngraph.training.outdir`)."""
        try:
            self.lock = RunLock(self.out)
            prepare(self.out, resume=self.resume, overwrite=self.overwrite)
            for stale in self.ckpt_dir.glob(".*.tmp"):  # what a save killed half-way left (never read)
                stale.unlink()
        except RunDirError as err:
            self._release(undo=True)
            raise TrainingError(str(err)) from err
        except OSError as err:
            self._release()
            raise TrainingError(f"cannot use {self.out} as the run directory: {err.strerror or err}") from err

    def _release(self, undo: bool = False) -> None:
        if self.lock is not None:
            self.lock.release(undo)
            self.lock = None

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
            self._release(undo=True)  # a mistyped --out is not left behind as an empty run directory
            raise TrainingError(f"cannot resume: {err}") from err
        self._check_same_spec(path, meta)
        try:
            self.model.load_state_dict({k: v.to(self.device) for k, v in model_tensors(tensors).items()})
            self.optimizer.load_state_dict(optimizer_join(tensors, meta["optimizer"]))
            restore_rng(tensors, meta, self.batch_gen)
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise TrainingError(f"cannot resume: {path} does not fit this spec's model and optimiser: "
                                f"{str(err).splitlines()[0]}") from err
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
        self.log_sum, self.log_count = meta.get("log_sum", 0.0), meta.get("log_count", 0)
        self.skipped_run = meta.get("skipped_run", 0)
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        self.say(f"resumed from {path} at step {self.step}")

    def _check_same_spec(self, path: Path, meta: dict[str, Any]) -> None:
        """Refuse to continue a checkpoint trained from another spec (by :func:`resume_hash`; a checkpoint from
        before it was recorded: by config hash) unless told to."""
        key, ours = ("resume_hash", self.resume_hash) if "resume_hash" in meta else ("config_hash", self.hash)
        theirs = meta.get(key)
        if theirs == ours:
            return
        changed = spec_differences(self.out / "spec.resolved.yaml", run_record_spec(self.spec))
        what = f" (differing: {', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''})" if changed else ""
        if not self.allow_spec_change:
            raise TrainingError(f"cannot resume: {path} was trained from another spec{what}: config hash "
                                f"{str(theirs)[:12]}, this spec's {ours[:12]}; continue it anyway with "
                                "--allow-spec-change, or start a new run without --resume")
        self.say(f"attngraph: warning: continuing {path}, trained from another spec{what} (--allow-spec-change)")

    # -- checkpoints ------------------------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {"step": self.step, "sequences": self.sequences, "seconds": self.seconds, "metrics": self.last_metrics,
                "best": self.best, "best_loss": self.best_loss, "best_metric": self.metric, "skipped": self.skipped,
                "loss_sum": self.loss_sum, "loss_count": self.loss_count, "log_sum": self.log_sum,
                "log_count": self.log_count, "skipped_run": self.skipped_run, "seed": self.cfg.seed, "config_hash": self.hash,
                "resume_hash": self.resume_hash,
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
                **({"init": self.init_info} if self.init_info is not None else {})}

    def save(self, name: str) -> Path:
        """Write ``checkpoints/NAME.safetensors`` for the current state (parameters checked finite first).
        A signal arriving meanwhile waits for the write to finish."""
        path = self.ckpt_dir / f"{name}.safetensors"
        extra = {}
        if self.world.distributed:  # collective: every rank calls save() at the same steps
            batch_states = self.world.gather(self.batch_gen.get_state())
            torch_states = self.world.gather(torch.get_rng_state())
            for rank in range(1, self.world.size):
                extra[f"rng.rank{rank}.batch"], extra[f"rng.rank{rank}.torch"] = batch_states[rank], torch_states[rank]
        if not self.world.writer:
            return path
        if not all_finite(self.model.parameters()):
            raise TrainingError(f"not saving {path}: the parameters at step {self.step} are not finite; {self.on_disk()}")
        meta = dict(self._meta(), world_size=self.world.size)
        try:
            save_checkpoint(path, self.model, self.optimizer, self.batch_gen, meta, extra)
        except OSError as err:
            raise TrainingError(f"cannot write checkpoint {path}: {err.strerror or err}; {self.on_disk()}") from err
        return path

    def on_disk(self) -> str:
        """What the run directory holds to resume from, in words (never a checkpoint that is not there)."""
        last = self.ckpt_dir / "last.safetensors"
        try:
            step = read_meta(last)["step"]
        except (CheckpointError, KeyError, json.JSONDecodeError):
            return f"no checkpoint to resume from in {self.ckpt_dir}"
        return f"the last checkpoint ({last}, step {step}) is intact: continue with --resume --out {self.out}"

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self, until: int | None = None) -> TrainResult:
        """Train to ``train.steps`` (or pause after step ``until``, saving the last checkpoint)."""
        try:
            self._setup()
            self._bar = Progress(self.cfg.steps, self.step, quiet=self.quiet, every=self.progress_every)
            with self.interrupts.installed():
                try:
                    return self._loop(until)
                except KeyboardInterrupt:  # arrived where no handler was installed (not the main thread)
                    return TrainResult("interrupted", self.step, self.out, f"interrupted; {self.on_disk()}",
                                       self.last_metrics, self.skipped, "SIGINT")
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if getattr(self, "events", None) is not None:
                self.events.close()
            self._release()

    def _stopped(self, status: str) -> TrainResult:
        path, received = self.save("last"), self.interrupts.received
        where = f" ({received})" if received else ""
        return TrainResult(status, self.step, self.out, f"{status}{where} at step {self.step}; saved {path}; continue "
                           f"with: attngraph train SPEC --resume --out {self.out}", self.last_metrics, self.skipped,
                           received)

    def _nan(self, what: str, step: int) -> TrainResult:
        return TrainResult("nan", step, self.out, f"{what} at step {step}: stopped (nothing non-finite was saved; "
                           f"{self.on_disk()}; lower train.lr, set train.clip_norm, or use train.nan=skip)",
                           self.last_metrics, self.skipped)

    def _loop(self, until: int | None) -> TrainResult:
        cfg = self.cfg
        t0, start_seconds, start_sequences = time.monotonic(), self.seconds, self.sequences
        task, task_value = self.train_task, None
        while self.step < cfg.steps:
            if self.interrupts.received or (until is not None and self.step >= until):
                return self._stopped("interrupted" if self.interrupts.received else "paused")
            if cfg.curriculum is not None:
                value = curriculum_value(self.step, cfg.curriculum)
                if value != task_value:
                    task, task_value = self.train_task.with_params(**{cfg.curriculum.param: value}), value
            lr = lr_at(self.step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            rng = self._rng_snapshot()
            try:  # distributed ranks must stay in step: no abandoned step there
                with self.interrupts.abortable(not self.world.distributed):
                    value, finite = self._gradients(task)
            except KeyboardInterrupt:  # the second signal: forget this step, save the state it started from
                self._rng_restore(rng)
                return self._stopped("interrupted")
            if finite is not None:
                if cfg.nan == "stop":
                    return self._nan(f"{finite} is {value}", self.step + 1)
                self.skipped += 1
                self.skipped_run += 1
                self.say(f"step {self.step + 1}: {finite} is {value}; update skipped ({self.skipped} so far)")
                if self.skipped_run >= cfg.checkpoint_every:
                    return self._nan(f"no finite update in {self.skipped_run} steps (train.nan=skip cannot recover)",
                                     self.step + 1)
            else:
                try:
                    if self.scaler is not None:  # skips the update if a gradient overflowed, and adapts the scale
                        self.scaler.step(self.optimizer)
                        self.scaler.update()
                    else:
                        self.optimizer.step()
                except RuntimeError as err:  # adam: lr / bias correction beyond float32
                    if "overflow" not in str(err):
                        raise
                    return self._nan(f"the update overflowed ({err})", self.step + 1)
                if not all_finite(self.model.parameters()):
                    return self._nan("the parameters are not finite after the update", self.step + 1)
                self.skipped_run = 0
                self.loss_sum += value
                self.loss_count += 1
                self.log_sum += value
                self.log_count += 1
            self.step += 1
            self.sequences += cfg.batch
            self.seconds = start_seconds + time.monotonic() - t0
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self._log_train(lr)
            reached = False
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                reached = self._evaluate(lr)
            if reached or self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save("last")
            rate = (self.sequences - start_sequences) / max(self.seconds - start_seconds, 1e-9)
            self._bar.update(self.step, value, rate,
                             {self.metric: f"{self.last_metrics.get(self.metric, math.nan):.4g}"})
            if reached:
                stop = cfg.stop
                target = f"below {stop.below}" if stop.below is not None else f"above {stop.above}"
                return TrainResult("target", self.step, self.out, f"{stop.metric} = {self.last_metrics[stop.metric]:.4g} "
                                   f"is {target} at step {self.step}: stopped", self.last_metrics, self.skipped)
        return TrainResult("done", self.step, self.out, f"trained {self.step} steps; checkpoints in {self.ckpt_dir}",
                           self.last_metrics, self.skipped)

    def _gradients(self, task: Task) -> tuple[float, str | None]:
        """Draw a batch, compute the loss and its gradients into ``.grad`` (``train.accumulate`` micro-batches,
        ``train.precision``, see :mod:`attngraph.training.precision`; noised and clipped as configured). Returns the
        loss value (the mean over the micro-batches) and what was not finite: None, "loss" or "a gradient". With
        fp16's gradient scaler an overflowing gradient is not reported: the scaler skips that update itself."""
        cfg = self.cfg
        batch = to_device(task.sample(self.local_batch, self.batch_gen), self.device)
        self.optimizer.zero_grad(set_to_none=True)
        parts = micro_batches(batch, cfg.accumulate)
        total = 0.0
        for part in parts:
            loss, value = self._loss(part)
            if not math.isfinite(value):
                self.optimizer.zero_grad(set_to_none=True)
                return value, "loss"
            loss = loss / len(parts) if len(parts) > 1 else loss
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total += value
        if self.scaler is not None:  # the true gradients, before noise and clipping
            self.scaler.unscale_(self.optimizer)
        if cfg.gradient_noise is not None:  # before clipping (as TensorFlow's optimize_loss does it)
            add_gradient_noise(self.model.parameters(), self.step, cfg)
        if cfg.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), cfg.clip_value)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if self.scaler is None and not all_finite(grads):  # clip_grad_norm_ would spread one inf over every gradient
            self.optimizer.zero_grad(set_to_none=True)
            return total / len(parts), "a gradient"
        if cfg.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        return total / len(parts), None

    def _rng_snapshot(self) -> tuple[Any, ...]:
        return torch.get_rng_state(), self.batch_gen.get_state(), random.getstate()

    def _rng_restore(self, snapshot: tuple[Any, ...]) -> None:
        torch.set_rng_state(snapshot[0])
        self.batch_gen.set_state(snapshot[1])
        random.setstate(snapshot[2])

    def _log_train(self, lr: float) -> None:
        """A train_loss.csv row (and TensorBoard's train/loss, train/lr): the mean loss since the last row."""
        if not self.world.writer:
            return
        row = {"step": self.step, "seconds": self.seconds, "sequences": self.sequences, "lr": lr,
               "train_loss": self.log_sum / self.log_count if self.log_count else math.nan}
        self.log_sum, self.log_count = 0.0, 0
        self.train_log.append(row)
        self.events.append(row)

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
                            + [torch.tensor(float(self.interrupts.received is not None), device=self.device)]).float()
        total = self.world.sum(local)
        if total[-1] > 0 and self.interrupts.received is None:  # another rank was signalled
            self.interrupts.received = "SIGINT"
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
            self.events.append({k: v for k, v in row.items() if k == "step" or k.startswith("eval_")})
            plot_learning_curve(self.log.rows, self.out / "learning_curve.png", self.metric_names, self.train_log.rows)
        self.say(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in self.last_metrics.items()))
        return cfg.stop is not None and cfg.stop.reached(self.last_metrics[cfg.stop.metric])


def all_finite(tensors) -> bool:
    """True when every element of every tensor is finite (one synchronisation for the lot)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True

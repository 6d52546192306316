"""The ``train:`` section: optimiser, schedule, batch and step counts, checkpoints, stopping, curriculum.

Validated like every other section (located errors, did-you-mean) into a frozen :class:`TrainConfig`::

    train:
      optimizer: rmsprop        # adam | adamw | sgd | rmsprop
      lr: 1e-4
      momentum: 0.9
      centered: true            # rmsprop's centred form (Graves 2013)
      batch: 16
      steps: 20000
      clip_norm: 10
      gradient_noise: 0.01      # Neelakantan et al. 2015: N(0, η / (1 + t)^0.55) added to every gradient
      schedule: {kind: cosine, warmup: 100}
      precision: bf16           # fp32 | bf16 | fp16: autocast (fp16 with a gradient scaler)
      accumulate: 4             # each step sums the gradients of 4 micro-batches of batch / 4 sequences
      eval_batches: 16          # each evaluation: 16 batches ...
      eval_batch: 64            # ... of 64 sequences (default: the training batch)
      stop: {metric: bits_per_seq, below: 0.1}
      curriculum: {param: length, start: [1, 5], end: [1, 20], steps: 10000}
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..spec.diagnostics import Diagnostics
from ..spec.document import SECTIONS
from ..spec.params import INVALID, Bool, Choice, Either, Float, Int, IntList, Param, ParamType, Str, check_mapping
from ..spec.yamlload import Node

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# the optimiser settings each optimiser reads; giving another one is an error (it would be silently ignored)
OPTIMIZER_KEYS = {
    "adam": {"betas", "eps", "weight_decay"},
    "adamw": {"betas", "eps", "weight_decay"},
    "sgd": {"momentum", "weight_decay"},
    "rmsprop": {"momentum", "alpha", "eps", "centered", "weight_decay"},
}


class FloatPair(ParamType):
    """Two numbers in [0, 1), e.g. Adam's betas."""

    name = "a list of two numbers in [0, 1)"

    def check(self, node, path, diags):
        if not node.is_list or len(node.value) != 2:
            return self.expected(node, path, diags)
        values = [Float(0.0, 1.0).check(v, f"{path}[{i}]", diags) for i, v in enumerate(node.value)]
        if INVALID in values:
            return INVALID
        if any(v >= 1.0 for v in values):
            diags.error(node.pos, path, f"{node.value[0].text or values[0]}, {node.value[1].text or values[1]} "
                                        f"is out of range: expected {self.name}")
            return INVALID
        return tuple(values)

    def schema(self):
        return {"type": "array", "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                "minItems": 2, "maxItems": 2}


@dataclass(frozen=True)
class Schedule:
    """Learning-rate schedule; see :func:`attngraph.training.optim.lr_at` for the closed forms."""

    kind: str = "constant"
    warmup: int = 0       # steps of linear warm-up (linear_warmup, cosine, inverse_sqrt)
    min_lr: float = 0.0   # the floor cosine decays to
    every: int = 1        # step: multiply by gamma every this many steps
    gamma: float = 0.1


SCHEDULE_SCHEMAS: dict[str, dict[str, Param]] = {
    "constant": {},
    "linear_warmup": {"warmup": Param(Int(1), doc="steps over which the rate rises linearly to lr")},
    "cosine": {"warmup": Param(Int(0), 0, "steps of linear warm-up before the decay"),
               "min_lr": Param(Float(0.0), 0.0, "the rate at the last step")},
    "inverse_sqrt": {"warmup": Param(Int(1), doc="steps of linear warm-up to lr, then lr·√(warmup / step) "
                                                 "(Vaswani et al. 2017, §5.3)")},
    "step": {"every": Param(Int(1), doc="steps between decays"),
             "gamma": Param(Float(0.0, 1.0, open_min=True), 0.1, "factor applied at each decay")},
}


@dataclass(frozen=True)
class Stop:
    """Stop training once an eval metric crosses a target (exactly one of below/above is set)."""

    metric: str
    below: float | None = None
    above: float | None = None

    def reached(self, value: float) -> bool:
        return (self.below is not None and value < self.below) or (self.above is not None and value > self.above)


@dataclass(frozen=True)
class Curriculum:
    """Move an integer (or [lo, hi]) task parameter linearly from ``start`` to ``end`` over ``steps`` steps."""

    param: str
    start: int | tuple[int, ...]
    end: int | tuple[int, ...]
    steps: int


@dataclass(frozen=True)
class TrainConfig:
    """The validated ``train:`` section. ``lr`` is the peak learning rate; counts are optimiser steps."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    alpha: float = 0.99
    eps: float = 1e-8
    centered: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] | None = None
    batch: int = 32
    steps: int = 1000
    clip_norm: float | None = None
    clip_value: float | None = None
    gradient_noise: float | None = None  # η: Gaussian noise of variance η / (1 + t)^γ added to the gradients
    gradient_noise_decay: float = 0.55  # γ
    schedule: Schedule = Schedule()
    checkpoint_every: int = 500
    eval_every: int = 200
    eval_batches: int = 4
    eval_batch: int | None = None  # sequences per evaluation batch; None: the training batch
    log_every: int = 10  # steps between train_loss.csv rows (and TensorBoard's train/loss)
    stop: Stop | None = None
    curriculum: Curriculum | None = None
    nan: str = "stop"
    max_params: int = 50_000_000
    seed: int = 0
    compile: bool = False
    precision: str = "fp32"
    accumulate: int = 1


PRECISIONS = ("fp32", "bf16", "fp16")
_D = TrainConfig()
SCHEMA: dict[str, Param] = {
    "optimizer": Param(Choice(*OPTIMIZERS), _D.optimizer, "adam, adamw, sgd or rmsprop"),
    "lr": Param(Float(0.0, open_min=True), _D.lr, "peak learning rate"),
    "momentum": Param(Float(0.0, 1.0), _D.momentum, "momentum (sgd, rmsprop)"),
    "alpha": Param(Float(0.0, 1.0), _D.alpha, "rmsprop's decay of the squared-gradient average"),
    "eps": Param(Float(0.0, open_min=True), _D.eps, "added to the denominator (adam, adamw, rmsprop)"),
    "centered": Param(Bool(), _D.centered, "rmsprop's centred form (Graves 2013): divide by the gradient's variance"),
    "weight_decay": Param(Float(0.0), _D.weight_decay, "L2 penalty (decoupled for adamw)"),
    "betas": Param(FloatPair(), None, "adam's averaging coefficients, default [0.9, 0.999]"),
    "batch": Param(Int(1), _D.batch, "sequences per step"),
    "steps": Param(Int(1), _D.steps, "optimiser steps"),
    "clip_norm": Param(Float(0.0, open_min=True), None, "clip the gradients' global L2 norm to this"),
    "clip_value": Param(Float(0.0, open_min=True), None, "clip every gradient element to [-v, v]"),
    "gradient_noise": Param(Float(0.0, open_min=True), None, "η: add N(0, η / (1 + t)^γ) to every gradient element "
                            "at step t, before clipping (Neelakantan et al. 2015; they try 0.01, 0.3, 1)"),
    "gradient_noise_decay": Param(Float(0.0), _D.gradient_noise_decay, "γ, the decay of the gradient noise's variance"),
    "schedule": Param(Str(), "constant",
                      "learning-rate schedule: {kind: constant|linear_warmup|cosine|inverse_sqrt|step, ...}"),
    "checkpoint_every": Param(Int(1), _D.checkpoint_every, "steps between checkpoints/last.safetensors"),
    "eval_every": Param(Int(1), _D.eval_every, "steps between evaluations"),
    "eval_batches": Param(Int(1), _D.eval_batches, "batches of the eval task per evaluation"),
    "eval_batch": Param(Int(1), None, "sequences per evaluation batch, default the training batch: a model "
                        "trained one sequence at a time can be evaluated on many sequences at once"),
    "log_every": Param(Int(1), _D.log_every, "steps between rows of train_loss.csv (the mean training loss since "
                       "the previous row) and TensorBoard's train/loss"),
    "stop": Param(Str(), None, "{metric: NAME, below: X} or {metric: NAME, above: X}"),
    "curriculum": Param(Str(), None, "{param: NAME, start: V, end: V, steps: N}"),
    "nan": Param(Choice("stop", "skip"), _D.nan, "on a NaN/inf loss: stop, or skip the update"),
    "max_params": Param(Int(1), _D.max_params, "refuse to train a larger model"),
    "seed": Param(Int(0), _D.seed, "seeds the model's initialisation and the training data"),
    "compile": Param(Bool(), _D.compile, "run the model through torch.compile"),
    "precision": Param(Choice(*PRECISIONS), _D.precision, "fp32; bf16 or fp16: the forward pass under autocast "
                       "(parameters, optimiser and losses stay fp32), fp16 with a dynamic gradient scaler"),
    "accumulate": Param(Int(1), _D.accumulate, "k: each optimiser step adds the gradients of k micro-batches of "
                        "batch / k sequences (the mean of their losses): the memory of a smaller batch"),
}
_NESTED = ("schedule", "stop", "curriculum")  # mappings validated by their own schemas below
_STOP_SCHEMA = {
    "metric": Param(Str(), doc="an eval metric of the task, e.g. bits_per_seq"),
    "below": Param(Float(), None, "stop once the metric is below this"),
    "above": Param(Float(), None, "stop once the metric is above this"),
}
_VALUE = Either(Int(0), IntList(0))
_CURRICULUM_SCHEMA = {
    "param": Param(Str(), doc="the task parameter to move, e.g. length"),
    "start": Param(_VALUE, doc="its value at step 0: an integer or [lo, hi]"),
    "end": Param(_VALUE, doc="its value from `steps` on"),
    "steps": Param(Int(1), doc="steps over which it moves"),
}


def check_train(node: Node, diags: Diagnostics, ir: Any = None) -> TrainConfig | None:
    """Validate a ``train:`` section; None (with every error in ``diags``) if it has any."""
    if not node.is_map:
        if not node.broken:
            diags.error(node.pos, "train", "expected a mapping of training settings", "e.g. {optimizer: adam, lr: 1e-3}")
        return None
    before = len(diags.errors)
    values = check_mapping(node, SCHEMA, "train", diags, "train", skip=_NESTED)
    _check_finite(node, values, diags)
    for key in _NESTED:
        values[key] = None
    optimizer = values["optimizer"]
    if optimizer is not INVALID:
        for key in node.value:
            owners = [name for name, keys in OPTIMIZER_KEYS.items() if key in keys]
            if owners and optimizer not in owners:
                diags.error(node.key_pos[key], f"train.{key}", f"'{key}' does not apply to optimizer {optimizer}",
                            f"it is read by {', '.join(owners)}")
    if "gradient_noise_decay" in node.value and "gradient_noise" not in node.value:
        diags.error(node.key_pos["gradient_noise_decay"], "train.gradient_noise_decay",
                    "'gradient_noise_decay' applies only with gradient_noise", "set train.gradient_noise: η as well")
    _check_accumulate(node, values, diags)
    if "schedule" in node.value:
        values["schedule"] = _check_schedule(node.value["schedule"], diags)
    else:
        values["schedule"] = Schedule()
    if "stop" in node.value:
        values["stop"] = _check_stop(node.value["stop"], diags)
    if "curriculum" in node.value:
        values["curriculum"] = _check_curriculum(node.value["curriculum"], diags)
    if len(diags.errors) > before or INVALID in values.values():
        return None
    return TrainConfig(**values)


def _check_finite(node: Node, values: dict[str, Any], diags: Diagnostics) -> None:
    """``lr: .inf`` and the like: a non-finite number is never a training setting (it would make every parameter
    non-finite at the first step)."""
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            diags.error(node.value[key].pos, f"train.{key}", f"{node.value[key].text or value} is not a finite number")
            values[key] = INVALID


def _check_accumulate(node: Node, values: dict[str, Any], diags: Diagnostics) -> None:
    k, batch = values["accumulate"], values["batch"]
    if k is not INVALID and batch is not INVALID and batch % k:
        diags.error(node.key_pos["accumulate"], "train.accumulate", f"train.batch = {batch} does not split into {k} "
                    "equal micro-batches", f"use a batch that is a multiple of {k}")


def _check_schedule(node: Node, diags: Diagnostics) -> Schedule | Any:
    path = "train.schedule"
    if node.is_map:
        kind_node = node.value.get("kind")
        if kind_node is None:
            diags.error(node.pos, path, "missing required key 'kind' for a schedule", ", ".join(SCHEDULE_SCHEMAS))
            return INVALID
    elif not node.is_list and isinstance(node.value, str):
        kind_node, node = node, Node({"kind": node}, node.pos, key_pos={"kind": node.pos})
    else:
        diags.error(node.pos, path, "expected a schedule: a kind or {kind: KIND, ...}",
                    "kinds: " + ", ".join(SCHEDULE_SCHEMAS))
        return INVALID
    kind = Choice(*SCHEDULE_SCHEMAS).check(kind_node, f"{path}.kind", diags)
    if kind is INVALID:
        return INVALID
    values = check_mapping(node, SCHEDULE_SCHEMAS[kind], path, diags, f"schedule {kind}", skip=("kind",))
    if INVALID in values.values():
        return INVALID
    return Schedule(kind=kind, **values)


def _check_stop(node: Node, diags: Diagnostics) -> Stop | Any:
    if not node.is_map:
        diags.error(node.pos, "train.stop", "expected {metric: NAME, below: X} or {metric: NAME, above: X}")
        return INVALID
    values = check_mapping(node, _STOP_SCHEMA, "train.stop", diags, "stop")
    if INVALID in values.values():
        return INVALID
    if (values["below"] is None) == (values["above"] is None):
        diags.error(node.pos, "train.stop", "give exactly one of 'below' and 'above'",
                    "e.g. {metric: bits_per_seq, below: 0.1}")
        return INVALID
    return Stop(**values)


def _check_curriculum(node: Node, diags: Diagnostics) -> Curriculum | Any:
    path = "train.curriculum"
    if not node.is_map:
        diags.error(node.pos, path, "expected {param: NAME, start: VALUE, end: VALUE, steps: N}")
        return INVALID
    values = check_mapping(node, _CURRICULUM_SCHEMA, path, diags, "curriculum")
    if INVALID in values.values():
        return INVALID
    start, end = values["start"], values["end"]
    if isinstance(start, list) != isinstance(end, list) or (isinstance(start, list) and len(start) != len(end)):
        diags.error(node.value["end"].pos, f"{path}.end", "'start' and 'end' must have the same shape",
                    "two integers, or two lists of the same length")
        return INVALID
    if isinstance(start, list):
        values["start"], values["end"] = tuple(start), tuple(end)
    return Curriculum(**values)


SECTIONS["train"] = (False, check_train, "how to train: optimizer, lr, batch, steps, schedule, checkpoints, stop")

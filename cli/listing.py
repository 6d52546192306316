"""Text for ``attngraph list``: every kind with its parameters, types, defaults and docs."""
from __future__ import annotations

from attngraph.components import LIBRARIES, LOSSES, REGISTRY
from attngraph.scopes import SCOPES
from attngraph.spec.params import Param
from attngraph.tasks import TASKS
from attngraph.training.config import _CURRICULUM_SCHEMA, _NESTED, _STOP_SCHEMA, SCHEDULE_SCHEMAS, SCHEMA


def _param_lines(params: dict[str, Param]) -> list[str]:
    width = max((len(n) for n in params), default=0)
    lines = []
    for name, p in params.items():
        default = "required" if p.required else f"default {_fmt(p.default)}" if p.default is not None else "optional"
        lines.append(f"    {name.ljust(width)}  {p.type.name}; {default}. {p.doc}".rstrip())
    return lines


def describe_kind(kind: str) -> str | None:
    if kind == "train":
        return describe_train()
    cls = REGISTRY.get(kind) or SCOPES.get(kind)
    if cls is None:
        found = [text for text in (describe_task(kind), describe_library(kind)) if text]  # both: e.g. arithmetic
        return "\n\n".join(found) or None
    lines = [f"{kind} ({cls.family}): {cls.doc}"]
    if kind in REGISTRY:
        lines.append(f"  ports: {', '.join(cls.ports)}" + ("; stateful inside a loop" if cls.stateful else ""))
    lines += _param_lines(cls.params)
    if kind in SCOPES:
        lines.append("    body  a mapping of nodes; required.")
    return "\n".join(lines)


def describe_task(name: str) -> str | None:
    cls = TASKS.get(name)
    if cls is None:
        return None
    lines = [f"{name} (task): {cls.doc}", f"  metrics: {', '.join(cls.metric_names)}", *_param_lines(cls.params)]
    lines.append("    eval  a mapping of the parameters above to change for evaluation data; optional.")
    return "\n".join(lines)


def describe_train() -> str:
    """The ``train:`` section's keys, the schedule kinds and the ``stop`` and ``curriculum`` mappings."""
    lines = ["train (section): how the model is trained, e.g. train: {optimizer: adam, lr: 1e-3, batch: 32}",
             *_param_lines({k: p for k, p in SCHEMA.items() if k not in _NESTED})]
    lines.append(f"  schedule: a kind, or {{kind: KIND, ...}}; default constant. {SCHEMA['schedule'].doc}")
    for kind, params in SCHEDULE_SCHEMAS.items():
        lines.append(f"    {kind}" + ("" if params else " (no settings)"))
        lines += ["    " + line for line in _param_lines(params)]
    for key, params in (("stop", _STOP_SCHEMA), ("curriculum", _CURRICULUM_SCHEMA)):
        lines.append(f"  {key}: a mapping; optional. {SCHEMA[key].doc}")
        lines += ["  " + line for line in _param_lines(params)]
    return "\n".join(lines)


def describe_library(name: str) -> str | None:
    """An op library of the ``program`` scope: its ops in order (the order of the ``ops:`` node's scores)."""
    ops = LIBRARIES.get(name)
    if ops is None:
        return None
    lines = [f"{name} (op library, {len(ops)} ops, in the order of the program's op scores):"]
    lines += [f"    {o.name}({', '.join(o.takes)}) -> {o.gives}. {o.doc}" for o in ops.values()]
    return "\n".join(lines)


def describe_all() -> str:
    blocks = []
    families: dict[str, list[str]] = {}
    for kind, cls in REGISTRY.items():
        families.setdefault(cls.family, []).append(kind)
    for family in sorted(families):
        blocks.append(f"== {family} ==")
        blocks += [describe_kind(k) + "\n" for k in sorted(families[family])]
    blocks.append("== scope ==")
    blocks += [describe_kind(k) + "\n" for k in sorted(SCOPES)]
    blocks.append("== tasks (task: {kind: NAME, ...}) ==")
    blocks += [describe_task(k) + "\n" for k in sorted(TASKS)]
    blocks.append("== op libraries (program: {library: NAME}) ==")
    blocks += [describe_library(k) + "\n" for k in sorted(LIBRARIES)]
    blocks.append("== losses (outputs: {from: NODE, loss: NAME}) ==")
    blocks += [f"{name}: {loss.doc}" for name, loss in LOSSES.items()]
    blocks.append("\n== train ==")
    blocks.append(describe_train())
    return "\n".join(blocks)


def _fmt(value) -> str:
    """A default as it is written in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

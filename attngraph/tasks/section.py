"""The ``task:`` section: which task a spec trains on, its parameters, the evaluation variant, and the
check that the task produces exactly the inputs and targets the model declares.

    task:
      kind: copy
      length: [1, 20]
      eval: {length: [1, 20]}      # changes for evaluation data (e.g. longer sequences); default: none
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..components.base import VType
from ..spec.diagnostics import Diagnostics, did_you_mean
from ..spec.document import SECTIONS
from ..spec.params import INVALID, Param, check_mapping
from ..spec.yamlload import Node
from .base import TASKS, Task, TaskError


@dataclass
class TaskSection:
    """The validated ``task:`` section: the training task and the evaluation variant."""

    train: Task
    eval: Task


def check_task(node: Node, diags: Diagnostics, ir: Any) -> TaskSection | None:
    """Validate ``task:`` (located errors) and compare what it produces with the model's inputs/targets."""
    if not node.is_map:
        diags.error(node.pos, "task", "expected a mapping such as {kind: copy, length: [1, 20]}")
        return None
    kind = node.get("kind")
    if kind is None:
        diags.error(node.pos, "task", "missing 'kind'", f"one of: {', '.join(sorted(TASKS))}")
        return None
    cls = TASKS.get(kind.value) if isinstance(kind.value, str) else None
    if cls is None:
        diags.error(kind.pos, "task.kind", f"unknown task '{kind.text or kind.value}'", did_you_mean(str(kind.value), TASKS))
        return None
    p = check_mapping(node, cls.params, "task", diags, f"task '{cls.name}'", skip=("kind", "eval"))
    changes = _eval_changes(node.get("eval"), cls, diags)
    if INVALID in p.values() or changes is None:
        return None
    if ir is None:
        return None
    try:
        train = cls(SimpleNamespace(**p, outputs={}))
    except TaskError as err:
        diags.error(node.pos, "task", str(err))
        return None
    try:
        evaluation = train.with_params(**changes)
    except TaskError as err:
        diags.error(node.get("eval").pos, "task.eval", str(err))
        return None
    if hasattr(cls, "bind"):  # a file loader: validate its data against the model's declarations
        inputs = {n: i.types["out"] for n, i in ir.inputs.items()}
        spec_dir = Path(node.pos.file).parent if node.pos.line else Path.cwd()
        bound = train.bind(spec_dir, inputs, ir.targets, diags)
        if evaluation.p.path != train.p.path:
            bound = evaluation.bind(spec_dir, inputs, ir.targets, diags) and bound
        else:
            evaluation = train
        if not bound:
            return None
    if not _matches(node, train, ir, diags):
        return None
    # an evaluation variant can change sizes too (copy's width, addition's max_digits): it must fit the model
    if changes and evaluation is not train and not _matches(node.get("eval"), evaluation, ir, diags,
                                                            kind=kind.value, when=" for evaluation"):
        return None
    outputs = {o.target: name for name, o in ir.outputs.items() if o.target}
    for target in train.sizes()["targets"]:
        if target not in outputs:
            diags.error(node.pos, "task", f"no output is trained against target '{target}'",
                        f"add an output with loss: and target: {target}")
            return None
    train.p.outputs = evaluation.p.outputs = outputs
    return TaskSection(train, evaluation)


def _eval_changes(node: Node | None, cls: type[Task], diags: Diagnostics) -> dict[str, Any] | None:
    if node is None:
        return {}
    if not node.is_map:
        diags.error(node.pos, "task.eval", "expected a mapping of task parameters to change for evaluation")
        return None
    optional = {k: Param(v.type, None, v.doc) for k, v in cls.params.items()}
    before = len(diags.errors)
    values = check_mapping(node, optional, "task.eval", diags, f"task '{cls.name}' (evaluation)")
    if len(diags.errors) > before:
        return None
    return {k: v for k, v in values.items() if k in node.value}


def _matches(node: Node, task: Task, ir: Any, diags: Diagnostics, kind: str | None = None, when: str = "") -> bool:
    """Compare what ``task`` produces with the model's declarations; errors at ``node`` (``task:``, or
    ``task.eval:`` with ``when`` = " for evaluation")."""
    sizes = task.sizes()
    where = Where(node, "task.eval" if when else "task", kind or node.get("kind").value, when)
    ok = _compare(where, "input", sizes["inputs"], {n: i.types["out"] for n, i in ir.inputs.items()}, diags)
    return _compare(where, "target", sizes["targets"], ir.targets, diags) and ok


@dataclass
class Where:
    """Where a size mismatch is reported: the section node, its dotted name, the task's kind, and
    " for evaluation" when the evaluation variant is compared."""

    node: Node
    section: str
    kind: str
    when: str


def _compare(where: Where, what: str, produced: dict[str, VType], declared: dict[str, VType],
             diags: Diagnostics) -> bool:
    ok = True
    section = "inputs" if what == "input" else "targets"
    pos, label, when = where.node.pos, where.section, where.when
    for name, t in produced.items():
        if name not in declared:
            diags.error(pos, label, f"the task produces {what} '{name}'{when} but the model declares no such {what}",
                        did_you_mean(name, declared) if declared else f"declare it under {section}:")
            ok = False
        elif (declared[name].size, declared[name].index, declared[name].time is None, declared[name].layout) != \
                (t.size, t.index, t.time is None, t.layout):
            fix = f"change {section}.{name} or the task's parameters" if not when else \
                "the model's sizes are fixed: let task.eval change only what keeps them, such as lengths"
            diags.error(pos, label, f"{what} '{name}': the task produces {_show(t)}{when} but the model declares "
                        f"{_show(declared[name])}", fix)
            ok = False
    for name in declared:
        if name not in produced:
            diags.error(pos, label, f"the model declares {what} '{name}' but task '{where.kind}' does not produce "
                        f"it{when}", f"it produces: {', '.join(produced) or 'nothing'}")
            ok = False
    return ok


def _show(t: VType) -> str:
    if t.layout is not None:  # e.g. image[1×24×80]
        return f"{t.layout[0]} {'×'.join(str(d) for d in t.layout[1:])}"
    kind = f"{t.size} classes" if t.index else f"{t.size} features"
    return f"a sequence of {kind}" if t.time else kind


SECTIONS["task"] = (False, check_task, "the task trained on: {kind: copy, ...}; attngraph list shows every task")

"""The Python API: ``check``, ``load``, ``build`` and ``pretrained``.

    >>> spec = attngraph.load("ntm-copy")              # a gallery entry's spec, by name (or any spec file)
    >>> model = attngraph.pretrained("ntm-copy")       # built, with the entry's shipped weights, in eval mode
    >>> meta = model.load_checkpoint("runs/my-run")    # or any run's checkpoint (a file or a run directory)
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .ir import IR
from .resolve import Builder
from .spec.diagnostics import Diagnostic, Diagnostics, Pos, SpecError
from .spec.document import SECTIONS, read_spec
from .spec.yamlload import Node

ENTRY_POINT_GROUP = "attngraph.components"
_loaded_plugins: set[str] = set()


@dataclass
class Spec:
    """A validated spec: the expanded located tree, its IR, and the warnings it raised."""

    path: Path
    tree: Node
    ir: IR
    overrides: list[str] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)  # validated values of task:, train:, ...

    @property
    def name(self) -> str:
        node = self.tree.get("name")
        return str(node.value) if node is not None and node.value is not None else self.path.stem


def load_plugins(imports: list[str] = ()) -> None:
    """Import third-party components: every ``attngraph.components`` entry point, then ``imports``."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value not in _loaded_plugins:
            try:
                ep.load()
            except Exception as err:  # noqa: BLE001 - a broken plug-in must not break attngraph
                print(f"attngraph: warning: plug-in '{ep.name}' ({ep.value}) failed to load: {err}", file=sys.stderr)
            _loaded_plugins.add(ep.value)
    for module in imports:
        if module not in _loaded_plugins:
            importlib.import_module(module)
            _loaded_plugins.add(module)


def spec_file(spec: str | Path) -> Path:
    """Where a spec is read from: ``spec`` itself when it is a file, else ``gallery/NAME/spec.yaml`` when it is
    the bare name (no ``/``) of a gallery entry, else ``spec`` as given (reading it then says what is wrong)."""
    from .gallery import gallery_root

    path = Path(spec)
    entry = gallery_root() / str(spec) / "spec.yaml"
    if path.is_file() or "/" in str(spec) or not entry.is_file():
        return path
    return entry


def check(path: str | Path, overrides: list[str] = ()) -> tuple[Spec | None, list[Diagnostic]]:
    """Validate a spec (a file, or a gallery entry's name: see :func:`spec_file`); returns the Spec (None if it
    has errors) and every diagnostic, sorted."""
    path = spec_file(path)
    diags = Diagnostics()
    tree = read_spec(path, diags, list(overrides))
    ir = None
    sections: dict[str, Any] = {}
    if tree is not None:
        ir = Builder(diags).build(tree)
        sections = _check_sections(tree, diags, ir)
    report = diags.sorted()
    if diags.errors or ir is None:
        if not diags.errors:
            report.insert(0, Diagnostic(Pos(str(path)), "", "the spec defines no model"))
        return None, report
    spec = Spec(Path(path), tree, ir, list(overrides), report, sections)
    ir.name = spec.name
    return spec, report


def _check_sections(tree: Node, diags: Diagnostics, ir: IR | None) -> dict[str, Any]:
    """Run the checker of every registered section present in the spec (task:, train:, ...)."""
    values = {}
    for name, (_, checker, _) in SECTIONS.items():
        node = tree.get(name)
        if checker is not None and node is not None:
            values[name] = checker(node, diags, ir)
    return values


def load(path: str | Path, overrides: list[str] = ()) -> Spec:
    """Load and validate a spec: a file, or a gallery entry's name (``attngraph.load("ntm-copy")``, as the CLI
    reads it). Raises :class:`SpecError` listing every error."""
    spec, report = check(path, overrides)
    if spec is None:
        raise SpecError([d for d in report if d.severity == "error"])
    return spec


def build(spec: Spec | str | Path):
    """Compile a spec (or a spec file) into a :class:`CompiledModel`."""
    from .compiler.module import CompiledModel

    if not isinstance(spec, Spec):
        spec = load(spec)
    return CompiledModel(spec.ir)


def pretrained(name: str, overrides: list[str] = ()):
    """The trained model of gallery entry ``name``: its spec built and its shipped checkpoint loaded, in eval
    mode. ``overrides`` may change what does not change the parameters (e.g. ``task.eval.length=[40, 40]``).
    An unknown name raises :class:`SpecError` listing the entries (closest first)."""
    from .gallery import entry_names, gallery_root

    weights = gallery_root() / name / "checkpoint.safetensors"
    if "/" in name or not weights.is_file():
        import difflib

        names = entry_names()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"the entries: {', '.join(names)}"
        raise SpecError([Diagnostic(Pos(name), "", f"no gallery entry named '{name}' with a checkpoint", hint)])
    model = build(load(gallery_root() / name / "spec.yaml", overrides))
    model.load_checkpoint(weights)
    return model.eval()

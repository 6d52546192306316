"""Command-line overrides: ``--set key.path=value`` (list indices as ``in[1]`` or ``in.1``)."""
from __future__ import annotations

import re

from .diagnostics import Diagnostics, Pos, did_you_mean
from .yamlload import Node, load_yaml

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def split_path(path: str) -> list[str | int] | None:
    """``model.ctrl.in[1]`` -> ['model', 'ctrl', 'in', 1]; None if malformed."""
    parts: list[str | int] = []
    pos = 0
    for match in _PART.finditer(path):
        if match.start() != pos:
            return None
        name, index = match.groups()
        parts.append(int(index) if index is not None else int(name) if name.isdigit() else name)
        pos = match.end()
        if pos < len(path) and path[pos] == ".":
            pos += 1
    return parts if parts and pos == len(path) and not path.endswith(".") else None


def apply_overrides(root: Node, overrides: list[str], diags: Diagnostics) -> None:
    """Set each ``key.path=value`` in ``root``; a value is read as YAML (``[1, 2]``, ``1e-3``, ``true``)."""
    for text in overrides:
        where = Pos(f"--set {text}")
        key, sep, raw = text.partition("=")
        key = key.strip()
        parts = split_path(key) if sep else None
        if not parts:
            diags.error(where, "", "an override is written key.path=value", "e.g. --set model.ctrl.size=256")
            continue
        scratch = Diagnostics()  # the value's own line:col would point into the --set text, not into a file
        value = load_yaml(raw if raw.strip() else "''", where.file, scratch)
        for problem in scratch.items:
            diags.error(where, key, problem.message, problem.hint)
        if value is None:
            continue
        _relocate(value, where)
        _set(root, parts, value, where, key, diags)


def _relocate(node: Node, pos: Pos) -> None:
    node.pos = pos
    node.key_pos = {k: pos for k in node.key_pos}
    children = node.value.values() if node.is_map else node.value if node.is_list else ()
    for child in children:
        _relocate(child, pos)


# Optional sub-mappings that ``--set`` may create when the spec leaves them out, so that
# ``--set task.eval.length=[40,40]`` works on a spec without an eval: block. Anything else must exist
# (a typo in a path is reported with a "did you mean" rather than silently creating a node).
CREATABLE = frozenset({"task.eval", "train.stop", "train.curriculum"})


def _set(root: Node, parts: list[str | int], value: Node, where: Pos, key: str, diags: Diagnostics) -> None:
    node, walked = root, ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        label = f"{walked}[{part}]" if isinstance(part, int) else (f"{walked}.{part}" if walked else part)
        if node.is_list:
            if not isinstance(part, int) or not 0 <= part < len(node.value):
                diags.error(where, label, f"no item {part} in {walked or 'the spec'}",
                            f"the list has {len(node.value)} items (indices 0–{len(node.value) - 1})")
                return
            if last:
                node.value[part] = value
                return
            node = node.value[part]
        elif node.is_map:
            part = str(part)
            if last:
                node.value[part] = value
                node.key_pos[part] = where
                return
            if part not in node.value and label in CREATABLE:
                node.value[part] = Node({}, where)
                node.key_pos[part] = where
            elif part not in node.value:
                creatable = [c.rsplit(".", 1)[1] for c in CREATABLE if c.rsplit(".", 1)[0] == walked]
                diags.error(where, label, f"unknown key '{part}' in {walked or 'the spec'}",
                            did_you_mean(part, [*node.value, *creatable]))
                return
            node = node.value[part]
        else:
            diags.error(where, label, f"{walked} is a single value; it has no '{part}' inside")
            return
        walked = label

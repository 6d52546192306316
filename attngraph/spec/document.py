"""From a spec file to one expanded, located tree: read, override, expand includes, check the sections.

Top-level sections are registered in :data:`SECTIONS` (later features add ``task`` and ``train``).
"""
from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from .diagnostics import Diagnostics, Pos, did_you_mean
from .overrides import apply_overrides
from .params import INVALID, NAME_RE, Bool, Choice, Float, Int, IntList, Param, RefList, RefType, Str, check_mapping
from .yamlload import Node, load_yaml

VERSION = 1
BROKEN = "<broken include>"  # the kind of an include that failed: reported once, then silently unresolvable
MAX_FILE_BYTES = 4_000_000
MAX_INCLUDES = 1_000  # block files expanded for one spec, over every level: a fan-out of 10 per level and 5
# levels is 100,000 expansions, minutes of work from a few KB of files
SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"

# section name -> (required, checker(node, diags) -> value, one-line doc)
# A checker validates its section once the model's IR exists (so it can compare against the model):
# checker(section_node, diags, ir) -> value, kept in Spec.sections[name]; ir is None if the model failed.
SECTIONS: dict[str, tuple[bool, Callable[[Node, Diagnostics, Any], Any] | None, str]] = {
    "attngraph": (True, None, "spec language version (1)"),
    "name": (False, None, "model name"),
    "doc": (False, None, "free text shown by 'attngraph show' and in diagrams"),
    "inputs": (True, None, "named model inputs: {size: N} features or {vocab: N} token indices"),
    "targets": (False, None, "named training targets: {size: N} or {classes: N}"),
    "model": (True, None, "the graph: named nodes and scopes"),
    "outputs": (True, None, "named outputs: {from: node, loss: bce|cross_entropy|mse|none}"),
}

BLOCK_PARAM_TYPES = {
    "int": Int(), "float": Float(), "bool": Bool(), "str": Str(), "ints": IntList(),
    "ref": RefType(), "refs": RefList(),
}
_BLOCK_PARAM_SCHEMA = {
    "type": Param(Choice(*BLOCK_PARAM_TYPES), doc="parameter type"),
    "default": Param(Str(), None, "default value"),
    "doc": Param(Str(), "", "what the parameter does"),
    "choices": Param(Str(), None, "a str parameter's allowed values, a list, e.g. [pre, post]"),
}


def read_spec(path: str | Path, diags: Diagnostics, overrides: list[str] = ()) -> Node | None:
    """Read ``path``, apply ``overrides`` and expand includes. Problems go to ``diags``."""
    root = read_file(Path(path), diags)
    if root is None:
        return None
    if not root.is_map:
        if not root.broken:
            diags.error(root.pos, "", f"a spec is a mapping of sections, not {'a list' if root.is_list else 'one value'}",
                        "it starts with 'attngraph: 1'")
        return None
    apply_overrides(root, list(overrides), diags)
    _check_sections(root, Path(path), diags)
    _check_version(root, Path(path), diags)
    model = root.get("model")
    if model is not None:
        expansion = Expansion((Path(path).resolve().parent, SPECS_DIR))
        expand_includes(model, "model", Path(path), diags, [Path(path).resolve()], expansion)
    return root


def _check_sections(root: Node, path: Path, diags: Diagnostics) -> None:
    """Unknown sections (did you mean) and missing required ones. A misspelt section that is the only close
    match of a missing one is read as that section, so its contents are still checked, without a second error."""
    for key in list(root.value):
        if key in SECTIONS:
            continue
        diags.error(root.key_pos[key], key, f"unknown section '{key}'", did_you_mean(key, SECTIONS))
        close = get_close_matches(key, SECTIONS, n=2, cutoff=0.6)
        if len(close) == 1 and close[0] not in root.value:
            root.value[close[0]], root.key_pos[close[0]] = root.value.pop(key), root.key_pos.pop(key)
    for key, (required, _, doc) in SECTIONS.items():
        if required and key not in root.value and key != "attngraph":
            diags.error(Pos(str(path), 1, 1), "", f"missing section '{key}'", doc)


def read_file(path: Path, diags: Diagnostics) -> Node | None:
    """The YAML tree of ``path``: a regular file of at most ``MAX_FILE_BYTES``, checked before it is opened (a
    FIFO would block the open, ``/dev/zero`` never ends) and again while it is read (a file that grows)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            diags.error(Pos(str(path)), "", f"not a regular file ({_file_type(info.st_mode)}): a spec is a .yaml file")
            return None
        if info.st_size > MAX_FILE_BYTES:
            diags.error(Pos(str(path)), "", f"the file is {info.st_size} bytes; a spec may have at most {MAX_FILE_BYTES}")
            return None
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
        diags.error(Pos(str(path)), "", f"cannot read the file: {getattr(err, 'strerror', None) or err}")
        return None
    if len(data) > MAX_FILE_BYTES:
        diags.error(Pos(str(path)), "", f"the file has grown past {MAX_FILE_BYTES} bytes; a spec may have at most that")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        diags.error(Pos(str(path)), "", f"the file is not UTF-8 text (byte {err.start})")
        return None
    return load_yaml(text, str(path), diags)


def _file_type(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def _check_version(root: Node, path: Path, diags: Diagnostics) -> None:
    version = root.get("attngraph")
    if version is not None and version.broken:
        return
    if version is None:
        diags.error(Pos(str(path), 1, 1), "", "missing 'attngraph: 1' (the spec language version)")
    elif version.value != VERSION or isinstance(version.value, bool):
        diags.error(version.pos, "attngraph", f"unsupported spec language version {version.text or version.value!r}",
                    f"this attngraph reads version {VERSION}")


@dataclass
class Expansion:
    """What the includes of one spec may read, and how many they have read: block files must lie (symlinks
    followed) under ``roots``, the spec's own folder and the standard specs folder; at most ``MAX_INCLUDES``."""

    roots: tuple[Path, ...]
    count: int = 0

    def inside(self, candidate: Path) -> bool:
        where = candidate.resolve()
        return any(where.is_relative_to(root.resolve()) for root in self.roots)


def _find_block(name: str, here: Path, expansion: Expansion) -> tuple[Path | None, bool]:
    """The block file ``name`` next to ``here`` or in the standard specs folder (as written, not resolved,
    so that diagnostics in it name it the way the spec's own path was given), and whether one was found only
    outside the folders includes may read (it is then not returned, and not read)."""
    outside = False
    for base in (here.parent, SPECS_DIR):
        candidate = base / name
        try:
            if candidate.is_file():
                if expansion.inside(candidate):
                    return candidate, False
                outside = True
        except (OSError, ValueError):  # a name too long, or with a NUL byte
            continue
    return None, outside


def expand_includes(body: Node, path: str, file: Path, diags: Diagnostics, stack: list[Path],
                    expansion: Expansion) -> None:
    """Replace every ``{include: FILE, with: {...}}`` node under ``body`` by a ``group`` scope."""
    if not body.is_map:
        return
    for name, node in list(body.value.items()):
        sub = f"{path}.{name}"
        if not node.is_map:
            continue
        if "include" in node.value:
            expanded = _include(node, sub, file, diags, stack, expansion)
            body.value[name] = expanded if expanded is not None else Node({"kind": Node(BROKEN, node.pos)}, node.pos)
        elif "body" in node.value:
            expand_includes(node.value["body"], f"{sub}.body", file, diags, stack, expansion)


def _include(node: Node, path: str, file: Path, diags: Diagnostics, stack: list[Path],
             expansion: Expansion) -> Node | None:
    for key in node.value:
        if key not in ("include", "with"):
            diags.error(node.key_pos[key], f"{path}.{key}", f"unknown key '{key}' for an include",
                        did_you_mean(key, ("include", "with")))
    target = node.value["include"]
    if not isinstance(target.value, str):
        diags.error(target.pos, f"{path}.include", "expected a block file name, e.g. blocks/ntm.yaml")
        return None
    if Path(target.value).is_absolute() or Path(target.value).suffix not in (".yaml", ".yml"):
        diags.error(target.pos, f"{path}.include", f"'{target.value}' is not a relative path to a .yaml block file",
                    "includes are looked up next to the spec and in specs/, e.g. blocks/ntm.yaml")
        return None
    found, outside = _find_block(target.value, file, expansion)
    if outside:
        diags.error(target.pos, f"{path}.include", f"block file '{target.value}' is outside the folders includes may "
                    "read", f"a block lies under the spec's folder or {SPECS_DIR} (symlinks followed)")
        return None
    if found is None:
        diags.error(target.pos, f"{path}.include", f"block file '{target.value}' not found",
                    f"looked next to {file.name} and in {SPECS_DIR}")
        return None
    if found.resolve() in stack:
        chain = " -> ".join(p.name for p in [*stack[stack.index(found.resolve()):], found])
        diags.error(target.pos, f"{path}.include", f"include cycle: {chain}")
        return None
    expansion.count += 1
    if expansion.count > MAX_INCLUDES:
        if expansion.count == MAX_INCLUDES + 1:  # said once, where the budget ran out
            diags.error(target.pos, f"{path}.include", f"more than {MAX_INCLUDES} block files included in all",
                        "includes fan out: each include of a block that includes others multiplies them")
        return None
    block = read_file(found, diags)
    if block is None or not block.is_map:
        if block is not None:
            diags.error(block.pos, "", "a block file is a mapping with 'nodes:'")
        return None
    schema = _block_schema(block, found, diags)
    args = node.value.get("with") or Node({}, node.pos)
    if not args.is_map:
        diags.error(args.pos, f"{path}.with", "expected a mapping of block parameters")
        return None
    values = check_mapping(args, schema, f"{path}.with", diags, f"block '{target.value}'")
    if INVALID in values.values():
        return None
    nodes = block.get("nodes")
    if nodes is None or not nodes.is_map:
        diags.error(block.pos, "", "a block file needs 'nodes:', a mapping of nodes")
        return None
    body = nodes.copy()
    given = {k: v for k, v in values.items() if v is not INVALID}
    raw = {k: args.value[k] for k in args.value if k in given}
    _substitute(body, given, raw, schema, depth=1, diags=diags)
    expand_includes(body, f"{path}.body", found, diags, [*stack, found.resolve()], expansion)
    group = {"kind": Node("group", node.pos, "group"), "body": body}
    output = block.get("output")
    if output is not None:
        group["output"] = output
    return Node(group, node.pos, key_pos={"kind": node.pos, "body": node.pos, "output": node.pos})


def _block_schema(block: Node, file: Path, diags: Diagnostics) -> dict[str, Param]:
    for key in block.value:
        if key not in ("attngraph", "block", "doc", "params", "nodes", "output"):
            diags.error(block.key_pos[key], key, f"unknown key '{key}' in a block file",
                        did_you_mean(key, ("attngraph", "block", "doc", "params", "nodes", "output")))
    _check_version(block, file, diags)
    params = block.get("params") or Node({}, block.pos)
    schema: dict[str, Param] = {}
    for name, decl in (params.value.items() if params.is_map else ()):
        if not decl.is_map:
            diags.error(decl.pos, f"params.{name}", "declare a block parameter as {type: int, default: ...}")
            continue
        spec = check_mapping(decl, _BLOCK_PARAM_SCHEMA, f"params.{name}", diags, "a block parameter", skip=("choices",))
        ptype = BLOCK_PARAM_TYPES.get(spec["type"]) if spec["type"] is not INVALID else None
        if ptype is None:
            continue
        if "choices" in decl.value:  # an invalid list is reported and the parameter keeps its plain type
            ptype = _choices(decl, name, spec["type"], diags) or ptype
        default = spec["default"]
        if "default" in decl.value:
            default = ptype.check(decl.value["default"], f"params.{name}.default", diags)
        schema[name] = Param(ptype, default if "default" in decl.value else Param(ptype).default, spec["doc"])
    return schema


def _choices(decl: Node, name: str, kind: str, diags: Diagnostics) -> Choice | None:
    """The Choice type of a str block parameter declared with ``choices: [a, b, ...]`` (None: reported)."""
    node, path = decl.value["choices"], f"params.{name}.choices"
    if kind != "str":
        diags.error(node.pos, path, f"choices apply to a str parameter, not to type {kind}", "set type: str")
        return None
    if not node.is_list or not node.value or not all(isinstance(v.value, str) for v in node.value):
        diags.error(node.pos, path, "expected a non-empty list of names, e.g. [pre, post]")
        return None
    return Choice(*(v.value for v in node.value))


def _substitute(node: Node, values: dict, raw: dict, schema: dict[str, Param], depth: int,
                diags: Diagnostics) -> None:
    """Replace ``${name}`` in the block's values. References passed in are resolved where the include is."""
    items = list(node.value.items()) if node.is_map else list(enumerate(node.value)) if node.is_list else []
    for key, child in items:
        if child.is_map or child.is_list:
            inner = depth + 1 if key == "body" else depth
            _substitute(child, values, raw, schema, inner, diags)
            continue
        if not isinstance(child.value, str) or "${" not in child.value:
            continue
        replaced = _replace(child, values, raw, schema, depth, diags)
        if node.is_map:
            node.value[key] = replaced
        else:
            node.value[key] = replaced


def _replace(child: Node, values: dict, raw: dict, schema: dict, depth: int, diags: Diagnostics) -> Node:
    text = child.value
    for name in values:
        token = "${" + name + "}"
        if token not in text:
            continue
        value, ptype = values[name], schema[name].type
        if isinstance(ptype, (RefType, RefList)):
            refs = value if isinstance(value, list) else [value]
            outer = ["^" * depth + r.text if not r.prev else f"prev({'^' * depth}{r.text[5:-1]})" for r in refs]
            if text == token:
                if len(outer) == 1:
                    return Node(outer[0], child.pos, outer[0], plain=True)
                return Node([Node(o, child.pos, o, plain=True) for o in outer], child.pos)
            text = text.replace(token, outer[0])
        elif text == token:
            node = raw[name].copy() if name in raw else Node(value, child.pos, str(value), plain=True)
            node.pos = child.pos
            return node
        else:
            text = text.replace(token, str(value))
    if "${" in text:
        start = text.index("${")
        name = text[start + 2:text.find("}", start)] if "}" in text[start:] else text[start + 2:]
        diags.error(child.pos, "", f"unknown block parameter '${{{name}}}'", did_you_mean(name, values))
    return Node(text, child.pos, text, plain=True)


def is_name(name: str) -> bool:
    return bool(NAME_RE.match(name))

"""Safe, position-keeping YAML loading.

The loader only *composes* YAML (it never constructs Python objects), so a ``!!python/...`` tag can never
run code: any tag outside plain YAML's str/int/float/bool/null/seq/map is an error. Every value comes back
as a :class:`Node` that knows where it was written. Plain scalars are resolved as YAML 1.2 does, which
removes PyYAML's two classic traps: ``1e-3`` is the float 0.001 (PyYAML 1.1 reads a string) and
``yes``/``no``/``on``/``off`` are strings (PyYAML reads booleans); a bool parameter given one of those
words is reported with a hint. Duplicate keys are errors (PyYAML silently keeps the last).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from .diagnostics import Diagnostics, Pos

MAX_NODES = 200_000
_PLAIN = "tag:attngraph:plain"
_STD = "tag:yaml.org,2002:"
_INT = re.compile(r"[-+]?[0-9]+$")
_OCT = re.compile(r"0o[0-7]+$")
_HEX = re.compile(r"0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"\.(nan|NaN|NAN)$")
YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n"}


@dataclass(eq=False)
class Node:
    """A YAML value with its position. ``value`` is a dict[str, Node], a list[Node] or a scalar.

    ``text`` is the scalar's source text (for a string parameter given an unquoted ``1e-3`` or ``no``,
    the text is what the user meant); ``plain`` says the scalar was unquoted. ``broken`` marks a value whose
    error was already reported (a forbidden tag, a failed include): checkers skip it without a second error.
    """

    value: Any
    pos: Pos
    text: str = ""
    plain: bool = False
    key_pos: dict[str, Pos] = field(default_factory=dict)
    broken: bool = False

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def plain_value(self) -> Any:
        """The value as plain Python data (dicts, lists, scalars), positions dropped."""
        if self.is_map:
            return {k: v.plain_value() for k, v in self.value.items()}
        if self.is_list:
            return [v.plain_value() for v in self.value]
        return self.value

    def get(self, key: str) -> Node | None:
        return self.value.get(key) if self.is_map else None

    def copy(self) -> Node:
        if self.is_map:
            value: Any = {k: v.copy() for k, v in self.value.items()}
        elif self.is_list:
            value = [v.copy() for v in self.value]
        else:
            value = self.value
        return Node(value, self.pos, self.text, self.plain, dict(self.key_pos), self.broken)


def from_python(value: Any, pos: Pos) -> Node:
    """Wrap plain Python data as a Node tree, every node at ``pos`` (used for defaults and overrides)."""
    if isinstance(value, dict):
        return Node({str(k): from_python(v, pos) for k, v in value.items()}, pos, key_pos={str(k): pos for k in value})
    if isinstance(value, (list, tuple)):
        return Node([from_python(v, pos) for v in value], pos)
    return Node(value, pos, text=str(value))


class _Resolver(BaseResolver):
    """Marks every unquoted scalar as plain; attngraph resolves them itself (YAML 1.2 core schema)."""

    def resolve(self, kind, value, implicit):  # noqa: ANN001 - PyYAML's signature
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


class _Loader(Reader, Scanner, Parser, Composer, _Resolver):
    def __init__(self, stream: str):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)


def resolve_plain(text: str) -> Any:
    """YAML 1.2 core-schema resolution of an unquoted scalar."""
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def _pos(file: str, node: yaml.Node) -> Pos:
    return Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str, diags: Diagnostics):
        self.file = file
        self.diags = diags
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: yaml.Node, path: str) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge
        if id(node) in self.active:
            self.diags.error(_pos(self.file, node), path, "recursive YAML alias", "an anchor may not contain itself")
            return Node(None, _pos(self.file, node), broken=True)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                self._check_tag(node, "seq", path)
                return Node([self.build(v, f"{path}[{i}]") for i, v in enumerate(node.value)], _pos(self.file, node))
            return self._scalar(node, path)
        finally:
            self.active.discard(id(node))

    def _check_tag(self, node: yaml.Node, expected: str, path: str) -> None:
        if node.tag not in (_STD + expected, _PLAIN):
            self._bad_tag(node, path)

    def _bad_tag(self, node: yaml.Node, path: str) -> None:
        self.diags.error(
            _pos(self.file, node), path, f"YAML tag '{_short_tag(node.tag)}' is not allowed",
            "specs are plain data: attngraph never constructs Python objects from YAML",
        )

    def _scalar(self, node: yaml.ScalarNode, path: str) -> Node:
        pos = _pos(self.file, node)
        text = node.value
        if node.tag == _PLAIN:
            return Node(resolve_plain(text), pos, text, plain=True)
        kind = node.tag[len(_STD):] if node.tag.startswith(_STD) else ""
        if kind == "str":
            return Node(text, pos, text)
        if kind in ("int", "float", "bool", "null"):
            value = resolve_plain(text)
            wanted = {"int": int, "float": (int, float), "bool": bool, "null": type(None)}[kind]
            if isinstance(value, wanted) and not (kind in ("int", "float") and isinstance(value, bool)):
                return Node(float(value) if kind == "float" else value, pos, text)
            self.diags.error(pos, path, f"'{text}' is not a valid !!{kind}")
            return Node(text, pos, text, broken=True)
        self._bad_tag(node, path)
        return Node(None, pos, text, broken=True)

    def _mapping(self, node: yaml.MappingNode, path: str) -> Node:
        self._check_tag(node, "map", path)
        out = Node({}, _pos(self.file, node))
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.diags.error(_pos(self.file, key_node), path, "a mapping key must be a plain name, not a list or mapping")
                continue
            key = key_node.value
            if key == "<<" and key_node.tag in (_PLAIN, _STD + "merge"):
                merged.append(value_node)
                continue
            sub = f"{path}.{key}" if path else key
            kpos = _pos(self.file, key_node)
            if key in out.value:
                first = out.key_pos[key]
                self.diags.error(kpos, sub, f"duplicate key '{key}' (first defined at line {first.line})",
                                 "YAML would silently keep only the last one")
                continue
            out.value[key] = self.build(value_node, sub)
            out.key_pos[key] = kpos
        for m in merged:
            sources = m.value if isinstance(m, yaml.SequenceNode) else [m]
            for src in sources:
                built = self.build(src, path)
                if not built.is_map:
                    self.diags.error(_pos(self.file, src), path, "'<<' (YAML merge) needs a mapping")
                    continue
                for k, v in built.value.items():
                    if k not in out.value:
                        out.value[k] = v
                        out.key_pos[k] = built.key_pos[k]
        return out


class _TooLarge(Exception):
    pass


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_STD):] if tag.startswith(_STD) else tag


def _syntax_hint(err: yaml.MarkedYAMLError) -> str:
    """Where the construct that failed began, and what usually causes the problem."""
    hints = []
    context, start = err.context, err.context_mark
    if context and err.problem and start is not None and start is not err.problem_mark:
        hints.append(f"{context} that starts at line {start.line + 1}, column {start.column + 1}")
    problem = err.problem or ""
    if "'\\t'" in problem:
        hints.append("indent with spaces: YAML does not allow tabs here")
    elif "<block" in problem or "mapping values are not allowed" in problem:
        hints.append("check the indentation, and quote values that contain ': '")
    return "; ".join(hints)


def load_yaml(text: str, file: str, diags: Diagnostics) -> Node | None:
    """Compose ``text`` into a located Node tree; problems go to ``diags``. Returns None if unreadable."""
    try:
        documents = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        pos = Pos(file, mark.line + 1, mark.column + 1) if mark else Pos(file)
        diags.error(pos, "", f"YAML syntax error: {err.problem or err.context or 'invalid YAML'}", _syntax_hint(err))
        return None
    except ReaderError as err:  # a control character
        code = f"U+{err.character:04X}" if isinstance(err.character, int) else repr(err.character)
        line = text.count("\n", 0, err.position) + 1
        col = err.position - text.rfind("\n", 0, err.position)
        diags.error(Pos(file, line, col), "", f"the character {code} is not allowed in YAML",
                    'write it escaped inside a double-quoted string, e.g. "\\x07"')
        return None
    except yaml.YAMLError as err:
        diags.error(Pos(file), "", f"YAML error: {err}")
        return None
    except RecursionError:
        diags.error(Pos(file), "", "the document nests too deeply to read")
        return None
    documents = [d for d in documents if d is not None]
    if not documents:
        diags.error(Pos(file, 1, 1), "", "the spec is empty", "a spec starts with 'attngraph: 1'")
        return None
    if len(documents) > 1:
        diags.error(_pos(file, documents[1]), "", "a spec file holds one YAML document, found more ('---')")
    builder = _Builder(file, diags)
    try:
        return builder.build(documents[0], "")
    except _TooLarge:
        diags.error(Pos(file, 1, 1), "", f"the document expands to more than {MAX_NODES} values",
                    "YAML aliases can multiply a document; write it out instead")
    except RecursionError:
        diags.error(Pos(file), "", "the document nests too deeply to read")
    return None

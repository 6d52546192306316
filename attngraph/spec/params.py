"""Typed parameters: validation of located YAML values, docs for ``attngraph list``, and JSON Schema."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .diagnostics import Diagnostics, Pos, did_you_mean
from .yamlload import YAML11_BOOLS, Node

REQUIRED = object()
INVALID = object()
INT_LIMIT = 2**63 - 1  # what a tensor dimension or a seed can hold
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
PATH_RE = re.compile(_PATH + "$")  # node, node.port, scope.node.port
_REF_RE = re.compile(r"(\^*)(" + _PATH + ")$")


@dataclass(frozen=True)
class Ref:
    """A reference to a value: ``node``, ``node.port``, ``scope.node`` or ``prev(...)`` of one.

    ``up`` counts leading ``^``: resolve starting that many scopes further out (includes use it for the
    references passed in as block parameters).
    """

    parts: tuple[str, ...]
    prev: bool
    up: int
    pos: Pos
    text: str

    def __str__(self) -> str:
        return self.text


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "list", dict: "mapping", type(None): "null"}.get(
        type(value), type(value).__name__)


def _show(node: Node) -> str:
    if node.is_map:
        return "a mapping"
    if node.is_list:
        return "a list"
    if node.value is None:
        return "null"
    return f"{_type_name(node.value)} {node.text or node.value!r}" if not isinstance(node.value, str) else repr(node.value)


class ParamType:
    """Base of parameter types. ``check`` validates a Node and returns the Python value or INVALID."""

    name = "value"

    def check(self, node: Node, path: str, diags: Diagnostics) -> Any:
        raise NotImplementedError  # abstract: every concrete type defines it

    def schema(self) -> dict:
        return {}

    def expected(self, node: Node, path: str, diags: Diagnostics, hint: str = "") -> Any:
        if not node.broken:
            diags.error(node.pos, path, f"expected {self.name}, got {_show(node)}", hint)
        return INVALID


class Int(ParamType):
    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max
        self.name = "an integer" + _range(min, max)

    def check(self, node, path, diags):
        v = node.value
        if isinstance(v, float) and not isinstance(v, bool) and v.is_integer() and "e" in node.text.lower():
            v = int(v)  # 1e5 for a step count
        if not isinstance(v, int) or isinstance(v, bool):
            return self.expected(node, path, diags)
        if abs(v) > INT_LIMIT:
            diags.error(node.pos, path, f"{node.text or v} is too large: expected {self.name}", "integers are limited to 64 bits")
            return INVALID
        if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
            diags.error(node.pos, path, f"{v} is out of range: expected {self.name}")
            return INVALID
        return v

    def schema(self):
        return _bounds({"type": "integer"}, self.min, self.max)


class Float(ParamType):
    def __init__(self, min: float | None = None, max: float | None = None, open_min: bool = False):
        self.min, self.max, self.open_min = min, max, open_min
        self.name = "a number" + _range(min, max, open_min)

    def check(self, node, path, diags):
        v = node.value
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return self.expected(node, path, diags)
        v = float(v)
        if math.isnan(v) or (self.min is not None and (v < self.min or (self.open_min and v == self.min))) or (
                self.max is not None and v > self.max):
            diags.error(node.pos, path, f"{node.text or v} is out of range: expected {self.name}")
            return INVALID
        return v

    def schema(self):
        s = _bounds({"type": "number"}, self.min, self.max)
        if self.open_min and self.min is not None:
            s["exclusiveMinimum"] = s.pop("minimum")
        return s


class Bool(ParamType):
    name = "true or false"

    def check(self, node, path, diags):
        if isinstance(node.value, bool):
            return node.value
        hint = ""
        if node.plain and isinstance(node.value, str) and node.value.lower() in YAML11_BOOLS:
            hint = f"attngraph reads YAML 1.2: '{node.value}' is a string here, not a boolean; write true or false"
        return self.expected(node, path, diags, hint)

    def schema(self):
        return {"type": "boolean"}


class Str(ParamType):
    name = "a string"

    def check(self, node, path, diags):
        if node.is_map or node.is_list or node.value is None:
            return self.expected(node, path, diags)
        return node.text if node.plain else str(node.value)

    def schema(self):
        return {"type": "string"}


class Choice(ParamType):
    def __init__(self, *options: str):
        self.options = options
        self.name = "one of " + ", ".join(options)

    def check(self, node, path, diags):
        text = node.text if (node.plain or isinstance(node.value, str)) and not node.is_map and not node.is_list else None
        if text in self.options:
            return text
        if isinstance(node.value, bool) and not node.plain:
            return self.expected(node, path, diags)
        if text is None or node.value is None:
            return self.expected(node, path, diags)
        hint = did_you_mean(text, self.options)  # the message lists the options already: keep only a close match
        diags.error(node.pos, path, f"unknown value '{text}': expected {self.name}", "" if hint.startswith("expected") else hint)
        return INVALID

    def schema(self):
        return {"enum": list(self.options)}


class NameList(ParamType):
    """A non-empty list of names from ``options`` without repeats (or one name)."""

    def __init__(self, options: Sequence[str], what: str):
        self.item = Choice(*options)
        self.what = what
        self.name = f"a list of {what}s from: " + ", ".join(options)

    def check(self, node, path, diags):
        if not node.is_list:
            if node.is_map:
                return self.expected(node, path, diags)
            value = self.item.check(node, path, diags)
            return INVALID if value is INVALID else [value]
        if not node.value:
            return self.expected(node, path, diags)
        values = [self.item.check(v, f"{path}[{i}]", diags) for i, v in enumerate(node.value)]
        if INVALID in values:
            return INVALID
        for i, v in enumerate(values):
            if v in values[:i]:
                diags.error(node.value[i].pos, f"{path}[{i}]", f"{self.what} '{v}' is listed twice")
                return INVALID
        return values

    def schema(self):
        one = self.item.schema()
        return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1, "uniqueItems": True}]}


class Either(ParamType):
    """The first alternative that accepts the value wins (e.g. an init that is 'zeros', 'learned' or a number)."""

    def __init__(self, *alternatives: ParamType):
        self.alternatives = alternatives
        self.name = " or ".join(a.name for a in alternatives)

    def check(self, node, path, diags):
        for alt in self.alternatives:
            scratch = Diagnostics()
            value = alt.check(node, path, scratch)
            if value is not INVALID:
                return value
        return self.expected(node, path, diags)

    def schema(self):
        return {"anyOf": [a.schema() for a in self.alternatives]}


class IntList(ParamType):
    def __init__(self, min: int | None = None, nonempty: bool = True):
        self.item = Int(min)
        self.nonempty = nonempty
        self.name = f"a list of integers{_range(min, None)}"

    def check(self, node, path, diags):
        items = node.value if node.is_list else None
        if items is None or (self.nonempty and not items):
            return self.expected(node, path, diags)
        values = [self.item.check(v, f"{path}[{i}]", diags) for i, v in enumerate(items)]
        return INVALID if INVALID in values else values

    def schema(self):
        return {"type": "array", "items": self.item.schema(), "minItems": 1 if self.nonempty else 0}


class IntRange(ParamType):
    """``[lo, hi]`` (inclusive) with lo ≤ hi, or one integer n meaning [n, n]."""

    def __init__(self, min: int | None = None):
        self.item = Int(min)
        self.name = f"[min, max] integers{_range(min, None)} (or one integer)"

    def check(self, node, path, diags):
        if not node.is_list:
            value = self.item.check(node, path, diags) if not node.is_map else self.expected(node, path, diags)
            return INVALID if value is INVALID else [value, value]
        if len(node.value) != 2:
            diags.error(node.pos, path, f"expected {self.name}, got a list of {len(node.value)}")
            return INVALID
        lo, hi = (self.item.check(v, f"{path}[{i}]", diags) for i, v in enumerate(node.value))
        if INVALID in (lo, hi):
            return INVALID
        if lo > hi:
            diags.error(node.pos, path, f"the range [{lo}, {hi}] is empty", "write [min, max] with min ≤ max")
            return INVALID
        return [lo, hi]

    def schema(self):
        return {"anyOf": [self.item.schema(), {"type": "array", "items": self.item.schema(), "minItems": 2, "maxItems": 2}]}


class RefType(ParamType):
    """One reference (``node``, ``node.port``, ``prev(node)``)."""

    name = "a reference to a node (name, name.port or prev(name))"

    def check(self, node, path, diags):
        return parse_ref(node, path, diags)

    def schema(self):
        return {"type": "string", "pattern": r"^(prev\()?\^*[A-Za-z_][A-Za-z0-9_.]*\)?$"}


class RefList(RefType):
    """One reference or a list of them; several inputs are concatenated on the feature axis."""

    name = "a reference or a list of references"

    def check(self, node, path, diags):
        if node.is_list:
            if not node.value:
                diags.error(node.pos, path, "an empty input list", "name at least one node")
                return INVALID
            refs = [parse_ref(v, f"{path}[{i}]", diags) for i, v in enumerate(node.value)]
            return INVALID if INVALID in refs else refs
        ref = parse_ref(node, path, diags)
        return INVALID if ref is INVALID else [ref]

    def schema(self):
        one = super().schema()
        return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}


def parse_ref(node: Node, path: str, diags: Diagnostics) -> Ref | Any:
    if node.broken:
        return INVALID
    if node.is_map or node.is_list or not isinstance(node.value, str) or not node.value.strip():
        diags.error(node.pos, path, f"expected a reference to a node (name, name.port or prev(name)), got {_show(node)}")
        return INVALID
    text = node.value.strip()
    inner, prev = text, False
    if text.startswith("prev(") and text.endswith(")"):
        inner, prev = text[5:-1].strip(), True
    match = _REF_RE.match(inner)
    if not match:
        hint = "write prev(name) for the previous step's value" if "prev" in text or "[" in text else \
            "a reference is a node name, optionally with .port"
        diags.error(node.pos, path, f"malformed reference '{text}'", hint)
        return INVALID
    up = len(match.group(1))
    return Ref(tuple(match.group(2).split(".")), prev, up, node.pos, text)


def _range(lo, hi, open_lo=False) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if open_lo else '['}{lo}, {hi}]"
    if lo is not None:
        return f" > {lo}" if open_lo else f" ≥ {lo}"
    if hi is not None:
        return f" ≤ {hi}"
    return ""


def _bounds(schema: dict, lo, hi) -> dict:
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return schema


@dataclass(frozen=True)
class Param:
    """A parameter of a component, scope or section: its type, default and one-line doc."""

    type: ParamType
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def check_mapping(node: Node, schema: dict[str, Param], path: str, diags: Diagnostics, what: str,
                  skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validate a mapping against ``schema``: unknown keys (did you mean), missing required keys, types.

    Returns the values with defaults filled in (INVALID for a value that failed).
    """
    out: dict[str, Any] = {}
    for key, value in node.value.items():
        if key in skip:
            continue
        sub = f"{path}.{key}" if path else key
        if key not in schema:
            diags.error(node.key_pos.get(key, value.pos), sub, f"unknown key '{key}' for {what}",
                        did_you_mean(key, schema))
            continue
        out[key] = INVALID if value.broken else schema[key].type.check(value, sub, diags)
    for key, param in schema.items():
        if key in out or key in node.value:
            continue
        if param.required:
            diags.error(node.pos, path, f"missing required key '{key}' for {what}", param.doc)
            out[key] = INVALID
        else:
            out[key] = param.default
    return out

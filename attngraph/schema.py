"""JSON Schema of the spec language, generated from the registries (``attngraph schema``).

Editors that speak the YAML language server validate and complete specs with it: put
``# yaml-language-server: $schema=attngraph.schema.json`` on the first line of a spec.
"""
from __future__ import annotations

from typing import Any

from .components.base import REGISTRY
from .components.losses import LOSSES
from .resolve import TimeAxis
from .scopes.base import SCOPES
from .spec.document import BLOCK_PARAM_TYPES, SECTIONS
from .spec.params import Param
from .training.config import _CURRICULUM_SCHEMA, _NESTED, _STOP_SCHEMA, SCHEDULE_SCHEMAS, SCHEMA

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _properties(params: dict[str, Param]) -> dict[str, Any]:
    props = {}
    for name, p in params.items():
        prop = dict(p.type.schema())
        prop["description"] = p.doc
        if not p.required and p.default is not None:
            prop["default"] = p.default
        props[name] = prop
    return props


def _node(kind: str, cls, is_scope: bool) -> dict[str, Any]:
    props = {"kind": {"const": kind, "description": cls.doc}, **_properties(cls.params)}
    required = ["kind", *(n for n, p in cls.params.items() if p.required)]
    if is_scope:
        props["body"] = {"$ref": "#/$defs/body"}
        required.append("body")
    return {"type": "object", "title": kind, "description": cls.doc, "properties": props, "required": required,
            "additionalProperties": False}


def _decl(either: tuple[str, ...], time: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {k: {"type": "integer", "minimum": 1} for k in either if k not in ("image", "points_to")}
    if "points_to" in either:
        props["points_to"] = {"type": "string", "description": "an input sequence whose positions the values are"}
    if "image" in either:
        props["image"] = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3, "maxItems": 3,
                          "description": "[channels, height, width]"}
    return {"type": "object", "properties": {**props, "time": time}, "additionalProperties": False}


def _closed(params: dict[str, Param], description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": {**extra, **_properties(params)},
            "required": [n for n, p in params.items() if p.required], "additionalProperties": False}


def _train() -> dict[str, Any]:
    """The ``train:`` section: its keys, each schedule kind, ``stop`` and ``curriculum``."""
    schedules = [_closed(params, f"schedule {kind}", kind={"const": kind}) | {"required": ["kind", *(
        n for n, p in params.items() if p.required)]} for kind, params in SCHEDULE_SCHEMAS.items()]
    props = _properties({k: p for k, p in SCHEMA.items() if k not in _NESTED})
    props["schedule"] = {"description": SCHEMA["schedule"].doc,
                         "anyOf": [{"enum": [k for k, p in SCHEDULE_SCHEMAS.items()
                                             if not any(q.required for q in p.values())]}, *schedules]}
    props["stop"] = _closed(_STOP_SCHEMA, SCHEMA["stop"].doc)
    props["curriculum"] = _closed(_CURRICULUM_SCHEMA, SCHEMA["curriculum"].doc)
    return {"type": "object", "properties": props, "additionalProperties": False}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec, with one alternative per component and scope kind."""
    nodes = [_node(k, c, False) for k, c in sorted(REGISTRY.items())]
    nodes += [_node(k, c, True) for k, c in sorted(SCOPES.items())]
    include = {"type": "object", "title": "include", "properties": {
        "include": {"type": "string", "description": "block file, e.g. blocks/lstm_encoder.yaml"},
        "with": {"type": "object", "description": "block parameters"}},
        "required": ["include"], "additionalProperties": False}
    body = {"type": "object", "propertyNames": {"pattern": NAME_PATTERN}, "minProperties": 1,
            "additionalProperties": {"anyOf": [*nodes, include]}}
    output = {"type": "object", "properties": {
        "from": {"type": "string"}, "loss": {"enum": [*LOSSES, "none"]}, "target": {"type": "string"},
        "weight": {"type": "number", "minimum": 0}, "reward": {"type": "string"},
        **_properties({k: p for loss in LOSSES.values() for k, p in loss.options.items()})},
        "required": ["from"], "additionalProperties": False}
    named = {"type": "object", "propertyNames": {"pattern": NAME_PATTERN}}
    props: dict[str, Any] = {
        "attngraph": {"const": 1},
        "name": {"type": "string"},
        "doc": {"type": "string"},
        "inputs": {**named, "additionalProperties": _decl(("size", "vocab", "image"), {
            **TimeAxis().schema(), "description": "true: a sequence; false: one value per example; an input's "
                                                  "name: a sequence on that input's time axis"})},
        "targets": {**named, "additionalProperties": _decl(("size", "classes", "points_to"), {"type": "boolean"})},
        "model": {"$ref": "#/$defs/body"},
        "outputs": {**named, "additionalProperties": output},
        "train": _train(),
    }
    for name, (_, _, doc) in SECTIONS.items():
        props.setdefault(name, {"type": "object"})["description"] = doc
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "attngraph spec",
        "type": "object",
        "properties": props,
        "required": [k for k, (req, _, _) in SECTIONS.items() if req],
        "additionalProperties": False,
        "$defs": {"body": body, "block_param_types": {"enum": list(BLOCK_PARAM_TYPES)}},
    }

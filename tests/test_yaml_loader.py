"""The located, safe YAML loader: tags, duplicate keys, YAML 1.2 scalars, positions, alias bombs."""
import math

import pytest

from attngraph.spec.diagnostics import Diagnostics
from attngraph.spec.yamlload import load_yaml, resolve_plain


def load(text: str):
    diags = Diagnostics()
    node = load_yaml(text, "f.yaml", diags)
    return node, [str(d) for d in diags.sorted()]


@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("1.0e-4", 1e-4), ("-2E+2", -200.0), (".5", 0.5), ("12", 12), ("0x1f", 31), ("0o17", 15),
    ("true", True), ("False", False), ("null", None), ("~", None), ("", None), (".inf", math.inf),
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("1_000", "1_000"), ("0.1.2", "0.1.2"),
])
def test_plain_scalars_resolve_as_yaml_1_2(text, value):
    assert resolve_plain(text) == value
    assert type(resolve_plain(text)) is type(value)


def test_nan_resolves_to_float_nan():
    assert math.isnan(resolve_plain(".nan"))


def test_positions_are_one_based_line_and_column():
    node, errors = load("a:\n  b: [1, 2]\n  c: {d: x}\n")
    assert errors == []
    b = node.value["a"].value["b"]
    assert (b.pos.line, b.pos.col) == (2, 6)
    assert (b.value[1].pos.line, b.value[1].pos.col) == (2, 10)
    assert node.value["a"].key_pos["c"].line == 3
    assert node.plain_value() == {"a": {"b": [1, 2], "c": {"d": "x"}}}


def test_quoted_scalars_stay_strings_and_keep_text():
    node, _ = load("a: '1e-3'\nb: \"true\"\nc: 1e-3\n")
    assert node.value["a"].value == "1e-3" and not node.value["a"].plain
    assert node.value["b"].value == "true"
    assert node.value["c"].value == 0.001 and node.value["c"].text == "1e-3"


@pytest.mark.parametrize("text, tag", [
    ("a: !!python/object:os.system {}\n", "!!python/object:os.system"),
    ("a: !!python/name:os.system\n", "!!python/name:os.system"),
    ("a: !!python/object/apply:os.system [ls]\n", "!!python/object/apply:os.system"),
    ("a: !custom 3\n", "!custom"),
])
def test_python_and_custom_tags_are_errors(text, tag):
    _, errors = load(text)
    assert errors[0] == (f"f.yaml:1:4: a: YAML tag '{tag}' is not allowed "
                         "(specs are plain data: attngraph never constructs Python objects from YAML)")


def test_standard_tags_are_allowed():
    node, errors = load("a: !!str 12\nb: !!float 3\nc: !!int '7'\n")
    assert errors == []
    assert node.plain_value() == {"a": "12", "b": 3.0, "c": 7}


def test_bad_standard_tag_value():
    _, errors = load("a: !!int x\n")
    assert errors == ["f.yaml:1:4: a: 'x' is not a valid !!int"]


def test_duplicate_keys_are_errors_with_both_lines():
    _, errors = load("model:\n  a: 1\n  b: 2\n  a: 3\n")
    assert errors == ["f.yaml:4:3: model.a: duplicate key 'a' (first defined at line 2) "
                      "(YAML would silently keep only the last one)"]


def test_syntax_error_is_located():
    _, errors = load("a: [1, 2\nb: 3\n")
    assert len(errors) == 1 and errors[0].startswith("f.yaml:2:") and "YAML syntax error" in errors[0]


def test_merge_keys_merge_without_overriding():
    node, errors = load("base: &b {size: 8, kind: linear}\nn:\n  <<: *b\n  size: 4\n")
    assert errors == []
    assert node.plain_value()["n"] == {"size": 4, "kind": "linear"}


def test_alias_bomb_is_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              for i in range(1, 9)]
    node, errors = load("\n".join(lines) + "\n")
    assert node is None
    assert errors[0].startswith("f.yaml:1:1: the document expands to more than")


def test_recursive_alias_is_an_error():
    _, errors = load("a: &a [1, *a]\n")
    assert any("recursive YAML alias" in e for e in errors)


def test_deep_nesting_does_not_crash():
    node, errors = load("[" * 5000 + "]" * 5000)
    assert errors  # reported, not raised


def test_empty_and_multi_document():
    assert load("")[1] == ["f.yaml:1:1: the spec is empty (a spec starts with 'attngraph: 1')"]
    assert load("# only a comment\n")[1] == ["f.yaml:1:1: the spec is empty (a spec starts with 'attngraph: 1')"]
    assert load("a: 1\n---\nb: 2\n")[1] == ["f.yaml:3:1: a spec file holds one YAML document, found more ('---')"]


def test_non_scalar_key():
    _, errors = load("? [a, b]\n: 1\n")
    assert errors == ["f.yaml:1:3: a mapping key must be a plain name, not a list or mapping"]

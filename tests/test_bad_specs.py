"""The bad-spec corpus: every file in tests/bad_specs/ holds one mistake, and its first comment lines give the
exact diagnostics ``attngraph.check`` reports for it, warnings included, in the order check returns them::

    # set: model.ctrl.size=4          (optional, repeatable) an override passed to check
    # expect: {file}:7:22: model.ctrl.in: unknown node 'xx' (did you mean 'x'?)

``{file}`` stands for the spec's path as passed to check, ``{dir}`` for its folder (blocks it includes are
named from there) and ``{specs}`` for attngraph's standard specs folder. ``NN_warn_*.yaml`` files are valid
specs whose only diagnostics are warnings. Block files used by the corpus live in tests/bad_specs/blocks/.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import attngraph
from attngraph.spec.document import SPECS_DIR

CORPUS = Path(__file__).parent / "bad_specs"
CASES = sorted(CORPUS.glob("*.yaml"))


def header(path: Path, tag: str) -> list[str]:
    """The values of the ``# tag: value`` lines at the top of ``path``."""
    values = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(f"# {tag}: "):
            values.append(line[len(tag) + 4:])
    return values


def expected(path: Path) -> list[str]:
    places = {"{file}": str(path), "{dir}": str(path.parent), "{specs}": str(SPECS_DIR)}
    lines = []
    for line in header(path, "expect"):
        for placeholder, value in places.items():
            line = line.replace(placeholder, value)
        lines.append(line)
    return lines


def test_corpus_covers_many_distinct_mistakes() -> None:
    assert len(CASES) >= 36
    reports = [tuple(header(path, "expect")) for path in CASES]
    assert all(reports), [p.name for p, r in zip(CASES, reports) if not r]
    assert len(set(reports)) == len(reports), "two cases expect the same report"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_spec_reports_exactly_its_mistake(path: Path) -> None:
    spec, report = attngraph.check(path, header(path, "set"))
    assert [str(d) for d in report] == expected(path)
    if "_warn_" in path.name:
        assert spec is not None
        assert report and all(d.severity == "warning" for d in report)
        assert [str(d) for d in spec.warnings] == expected(path)
    else:
        assert spec is None
        assert any(d.severity == "error" for d in report)


SEVERAL = """\
attngraph: 1
inputs:
  x: {size: 9, time: yes}
  z: {size: 4}
model:
  a: {kind: linera, size: 8, in: z}
  b: {kind: linear, size: 0, in: z}
  c: {kind: linear, size: 8, in: [z, zz]}
  d: {kind: lstm, size: 8, in: z, layers: two}
outputs:
  y: {from: d, loss: mse}
"""


def test_several_mistakes_are_reported_at_once_in_line_order(tmp_path: Path) -> None:
    path = tmp_path / "several.yaml"
    path.write_text(SEVERAL)
    spec, report = attngraph.check(path)
    assert spec is None
    assert [str(d) for d in report] == [
        f"{path}:3:22: inputs.x.time: expected true or false, got 'yes' "
        "(attngraph reads YAML 1.2: 'yes' is a string here, not a boolean; write true or false)",
        f"{path}:6:13: model.a.kind: unknown kind 'linera' (did you mean 'linear'?)",
        f"{path}:7:27: model.b.size: 0 is out of range: expected an integer ≥ 1",
        f"{path}:8:38: model.c.in[1]: unknown node 'zz' (did you mean 'z'?)",
        f"{path}:9:43: model.d.layers: expected an integer ≥ 1, got 'two'",
        f"{path}:11:6: outputs.y.target: no target named 'y' for the 'mse' loss (declare it under targets:)",
    ]

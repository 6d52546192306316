"""Hostile inputs to the spec reader (issue 27, findings 9 and 11): files that never end or block, includes
that reach outside the spec's folder, and includes that fan out. Each is refused at once with its message."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from attngraph.api import check
from attngraph.spec.document import MAX_INCLUDES, SPECS_DIR

SPEC = """\
attngraph: 1
name: hostile
inputs: {{x: {{size: 3}}}}
model:
  cell: {{include: {target}}}
outputs: {{y: {{from: cell, loss: mse}}}}
"""

BLOCK = """\
attngraph: 1
block: {name}
nodes:
{nodes}
output: {output}
"""


def errors(path, overrides=()) -> list[str]:
    spec, report = check(path, list(overrides))
    assert spec is None
    return [str(d) for d in report if d.severity == "error"]


def test_dev_zero_is_refused_before_it_is_read():
    assert errors("/dev/zero") == ["/dev/zero: not a regular file (a character device): a spec is a .yaml file"]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    assert errors(fifo) == [f"{fifo}: not a regular file (a FIFO): a spec is a .yaml file"]
    assert time.monotonic() - t0 < 5  # an open() of a FIFO with no writer would never return


def test_a_folder_is_named_as_one(tmp_path):
    assert errors(tmp_path) == [f"{tmp_path}: not a regular file (a folder): a spec is a .yaml file"]


def outside_block(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.yaml"
    secret.parent.mkdir()
    secret.write_text(BLOCK.format(name="secret", nodes="  password_hunter2: {kind: linear, size: 2, in: x}",
                                   output="password_hunter2"))
    (tmp_path / "project").mkdir()
    return secret


def test_an_include_above_the_spec_folder_is_refused_and_not_echoed(tmp_path):
    outside_block(tmp_path)
    spec = tmp_path / "project" / "spec.yaml"
    spec.write_text(SPEC.format(target="../outside/secret.yaml"))
    got = errors(spec)
    assert got == [f"{spec}:5:19: model.cell.include: block file '../outside/secret.yaml' is outside the folders "
                   f"includes may read (a block lies under the spec's folder or {SPECS_DIR} (symlinks followed))"]
    assert "password" not in "\n".join(got)


def test_a_symlink_out_of_the_spec_folder_is_refused(tmp_path):
    secret = outside_block(tmp_path)
    (tmp_path / "project" / "blocks").mkdir()
    (tmp_path / "project" / "blocks" / "cell.yaml").symlink_to(secret)
    spec = tmp_path / "project" / "spec.yaml"
    spec.write_text(SPEC.format(target="blocks/cell.yaml"))
    got = errors(spec)
    assert len(got) == 1 and "block file 'blocks/cell.yaml' is outside the folders includes may read" in got[0]
    assert "password" not in got[0]


def test_an_include_fan_out_stops_at_the_budget(tmp_path):
    """Ten includes per level, five levels: 100,000 expansions from a few KB; refused after MAX_INCLUDES."""
    for level in range(5):
        inner = "  a: {kind: linear, size: 3, in: x}" if level == 4 else "\n".join(
            f"  b{i}: {{include: level{level + 1}.yaml}}" for i in range(10))
        (tmp_path / f"level{level}.yaml").write_text(
            BLOCK.format(name=f"level{level}", nodes=inner, output="a" if level == 4 else "b0"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(target="level0.yaml"))
    t0 = time.monotonic()
    got = errors(spec)
    assert time.monotonic() - t0 < 60
    budget = [e for e in got if f"more than {MAX_INCLUDES} block files included in all" in e]
    assert len(budget) == 1


@pytest.mark.parametrize("block", ["blocks/feedback_cell.yaml", "blocks/transformer_encoder_layer.yaml"])
def test_the_standard_blocks_stay_includable(tmp_path, block):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(target=block))
    _, report = check(spec)
    assert not any("outside the folders" in str(d) for d in report)

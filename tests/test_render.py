"""Diagrams: golden DOT files (no `dot` binary needed), structure, determinism, and the missing-dot path.

After an intended change to the drawing, rewrite the goldens and review their diff:

    ATTNGRAPH_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py
"""
import os
import shutil
from pathlib import Path

import pytest

import attngraph
from attngraph.render import DotNotFound, render, to_dot

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
SPECS = sorted([*(ROOT / "specs" / "examples").glob("*.yaml"),
                *(Path(__file__).resolve().parent / "good_specs").glob("*.yaml")])
HAS_DOT = shutil.which("dot") is not None


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_dot_matches_golden(path):
    text = to_dot(attngraph.load(path))
    golden = GOLDEN / f"{path.stem}.dot"
    if os.environ.get("ATTNGRAPH_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden for {path.name}: run with ATTNGRAPH_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


def test_dot_is_deterministic_across_loads():
    path = ROOT / "specs" / "examples" / "include_block.yaml"
    assert to_dot(attngraph.load(path)) == to_dot(attngraph.load(path)) == to_dot(path)


def test_recurrent_edges_are_dashed_and_labelled_t_minus_1():
    text = to_dot(ROOT / "specs" / "examples" / "loop_feedback.yaml")
    line = next(ln for ln in text.splitlines() if '"node:seq.y" -> "node:seq.ctrl"' in ln)
    assert 'label="t−1 · 8"' in line and "style=dashed" in line and "constraint=false" in line


def test_scopes_are_nested_clusters_with_kind_labels():
    text = to_dot(ROOT / "specs" / "examples" / "include_block.yaml")
    outer, inner = text.index('subgraph "cluster_seq"'), text.index('subgraph "cluster_seq.cell"')
    assert outer < inner
    assert 'label="seq (loop)"' in text and 'label="cell (group)"' in text


def test_edges_carry_inferred_sizes_and_families_have_colours():
    text = to_dot(ROOT / "specs" / "examples" / "lstm_seq.yaml")
    assert '"in:x" -> "node:ctrl" [label="seq×9"];' in text
    assert '"node:ctrl" -> "node:head" [label="seq×64"];' in text
    fills = {ln.split('fillcolor="')[1][:7] for ln in text.splitlines() if "fillcolor=" in ln and "node:" in ln}
    assert len(fills) == 2  # a controller and a layer


@pytest.mark.parametrize("rankdir", ["LR", "TB", "RL", "BT"])
def test_rankdir(rankdir):
    assert f"rankdir={rankdir}" in to_dot(ROOT / "specs" / "examples" / "lstm_seq.yaml", rankdir)


def test_bad_rankdir_and_suffix(tmp_path):
    spec = ROOT / "specs" / "examples" / "lstm_seq.yaml"
    with pytest.raises(ValueError, match="rankdir must be one of LR, TB, RL, BT"):
        to_dot(spec, "XY")
    with pytest.raises(ValueError, match="unsupported suffix '.gif'"):
        render(spec, tmp_path / "m.gif")


def test_without_dot_the_source_is_written_and_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DotNotFound) as err:
        render(ROOT / "specs" / "examples" / "lstm_seq.yaml", tmp_path / "sub" / "m.png")
    assert err.value.dot_path == tmp_path / "sub" / "m.dot"
    assert err.value.dot_path.read_text(encoding="utf-8").startswith('digraph "lstm-seq"')
    assert "apt-get install graphviz" in str(err.value)


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
def test_svg_png_pdf_with_dot(tmp_path):
    spec = attngraph.load(ROOT / "specs" / "examples" / "loop_feedback.yaml")
    assert "<svg" in render(spec, tmp_path / "m.svg").read_text(encoding="utf-8")
    assert render(spec, tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert render(spec, tmp_path / "m.pdf").read_bytes()[:5] == b"%PDF-"

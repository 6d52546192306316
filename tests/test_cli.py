"""The command line: exit codes, output formats, help text, plug-ins."""
import json
import os
import re
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import attngraph
from attngraph import api
from attngraph_cli.main import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "specs" / "examples"
PLUGINS = Path(__file__).resolve().parent / "plugins"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_check_valid_spec_exits_0():
    result = run("check", EXAMPLES / "loop_feedback.yaml")
    assert result.exit_code == 0
    assert result.output.strip().endswith("loop_feedback.yaml: ok (3 nodes)")


def test_check_reports_every_error_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("attngraph: 1\ninputs: {x: {size: 9}}\nmodel:\n  a: {kind: lstm, size: 0, in: x}\n"
                   "  b: {kind: linaer, size: 3, in: a}\noutputs: {y: {from: c}}\n")
    result = run("check", bad)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{bad}:4:25: model.a.size: 0 is out of range: expected an integer ≥ 1",
        f"{bad}:5:13: model.b.kind: unknown kind 'linaer' (did you mean 'linear'?)",
        f"{bad}:6:21: outputs.y.from: unknown node 'c' (expected one of: a, x)",
        f"{bad}: 3 errors",
    ]


def test_check_missing_file_is_a_located_error(tmp_path):
    result = run("check", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "nope.yaml: cannot read the file: No such file or directory" in result.output


def test_warnings_do_not_fail_check(tmp_path):
    spec = tmp_path / "w.yaml"
    spec.write_text("attngraph: 1\ninputs: {x: {size: 3}, z: {size: 2}}\nmodel:\n  a: {kind: linear, size: 2, in: x}\n"
                    "outputs: {y: {from: a}}\n")
    result = run("check", spec)
    assert result.exit_code == 0
    assert f"{spec}:2:24: warning: inputs.z: input 'z' is never used (nothing reads it and it is not an output)" \
        in result.output


def test_show_round_trips(tmp_path):
    result = run("show", EXAMPLES / "include_block.yaml", "--set", "model.seq.body.cell.with.size=12")
    assert result.exit_code == 0
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(result.output)
    again = run("show", resolved)
    assert again.exit_code == 0, again.output
    assert yaml.safe_load(again.output) == yaml.safe_load(result.output)
    assert yaml.safe_load(result.output)["model"]["seq"]["body"]["cell"]["body"]["ctrl"]["size"] == 12


def test_list_all_and_one_kind():
    everything = run("list").output
    for kind in ("rnn", "lstm", "gru", "mlp", "linear", "embedding", "concat", "sum", "layer_norm", "dropout", "loop"):
        assert f"\n{kind} (" in everything
    assert "bce:" in everything and "cross_entropy:" in everything and "mse:" in everything
    one = run("list", "lstm")
    assert one.output.startswith("lstm (controller): Long short-term memory")
    assert re.search(r"layers +an integer ≥ 1; default 1\. number of stacked layers", one.output)
    bad = run("list", "lstn")
    assert bad.exit_code == 2 and "did you mean 'lstm'?" in bad.output


def test_schema_is_json_and_covers_every_kind():
    schema = json.loads(run("schema").output)
    titles = {alt.get("title") for alt in schema["$defs"]["body"]["additionalProperties"]["anyOf"]}
    assert {"lstm", "loop", "group", "include", "linear"} <= titles
    assert schema["required"] == ["attngraph", "inputs", "model", "outputs"]


def test_schema_validates_the_examples():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(run("schema").output)
    for path in EXAMPLES.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_summary_counts_parameters():
    result = run("summary", EXAMPLES / "lstm_seq.yaml")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[-1] == "total parameters: 19,720 (19,720 trainable)"  # 4*64*(9+64+2) + 64*8 + 8
    assert any(line.startswith("ctrl  lstm    in=seq[x]×9   seq[x]×64") and line.endswith("19,200") for line in lines)


def test_render_without_dot_writes_the_source_and_exits_1(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on PATH
    result = run("render", EXAMPLES / "lstm_seq.yaml", "-o", tmp_path / "m.svg")
    assert result.exit_code == 1
    assert (tmp_path / "m.dot").read_text().startswith("digraph")
    assert "apt-get install graphviz" in result.output


def test_render_dot_suffix(tmp_path):
    result = run("render", EXAMPLES / "lstm_seq.yaml", "-o", tmp_path / "m.dot", "--rankdir", "TB")
    assert result.exit_code == 0
    assert "rankdir=TB" in (tmp_path / "m.dot").read_text().replace(" ", "").replace('"', "")


def test_spec_verbs_take_a_gallery_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    """check, show, summary and render read gallery/NAME/spec.yaml for a bare NAME, as train and eval do; a file
    of that name in the working directory is read instead, and an unknown bare name stays a located missing-file
    error."""
    entry = tmp_path / "gallery" / "toy"
    entry.mkdir(parents=True)
    spec = entry / "spec.yaml"
    spec.write_text((EXAMPLES / "lstm_seq.yaml").read_text())
    monkeypatch.setenv("ATTNGRAPH_GALLERY", str(tmp_path / "gallery"))
    monkeypatch.chdir(tmp_path)
    checked = run("check", "toy")
    assert checked.exit_code == 0 and checked.output.strip() == f"{spec}: ok (2 nodes)"
    for verb in ("show", "summary"):
        by_name, by_path = run(verb, "toy"), run(verb, spec)
        assert by_name.exit_code == 0 and by_name.output == by_path.output
    assert run("render", "toy", "-o", "by_name.dot").exit_code == 0
    assert run("render", spec, "-o", "by_path.dot").exit_code == 0
    assert Path("by_name.dot").read_text() == Path("by_path.dot").read_text()

    Path("toy").write_text("attngraph: 1\ninputs: {x: {size: 3}}\nmodel:\n  a: {kind: linaer, size: 2, in: x}\n"
                           "outputs: {y: {from: a}}\n")
    local = run("check", "toy")  # the file in the working directory, not the entry
    assert local.exit_code == 2 and "toy:4:13: model.a.kind: unknown kind 'linaer'" in local.output
    Path("toy").unlink()
    Path("toy").mkdir()  # a folder of that name (the working directory is gallery/): the entry is read
    assert run("check", "toy").output.strip() == f"{spec}: ok (2 nodes)"
    missing = run("check", "nope")
    assert missing.exit_code == 2 and "nope: cannot read the file: No such file or directory" in missing.output


def test_every_verb_has_help_with_examples():
    for verb in ("check", "show", "list", "schema", "summary", "render"):
        text = run(verb, "--help").output
        assert "Example" in text, verb


def test_no_traceback_for_binary_garbage(tmp_path):
    garbage = tmp_path / "g.yaml"
    garbage.write_bytes(bytes(range(256)) * 4)
    result = run("check", garbage)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_internal_errors_are_one_line_reports(monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(attngraph, "check", explode)
    result = CliRunner().invoke(main, ["check", str(EXAMPLES / "lstm_seq.yaml")])
    assert result.exit_code == 3
    assert result.output.startswith("attngraph: internal error: RuntimeError: boom")


def test_import_flag_registers_a_plugin_component(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    spec = tmp_path / "p.yaml"
    spec.write_text("attngraph: 1\ninputs: {x: {size: 3}}\nmodel:\n  s: {kind: test_scale, start: 2.0, in: x}\n"
                    "outputs: {y: {from: s}}\n")
    result = run("check", spec, "--import", "ag_plugin_scale")
    assert result.exit_code == 0, result.output
    assert "test_scale (layer): Multiply by a learned scalar" in run("list", "--import", "ag_plugin_scale").output


def test_import_flag_with_a_missing_module_is_a_clean_error():
    result = run("check", EXAMPLES / "lstm_seq.yaml", "--import", "no_such_plugin_module")
    assert result.exit_code == 2
    assert "attngraph: cannot import 'no_such_plugin_module'" in result.output


def test_entry_point_plugins_are_loaded(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    ep = EntryPoint(name="scale", value="ag_plugin_scale", group=api.ENTRY_POINT_GROUP)
    monkeypatch.setattr(api, "entry_points", lambda group: [ep] if group == api.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(api, "_loaded_plugins", set())
    attngraph.load_plugins()
    assert "test_scale" in attngraph.components.REGISTRY


def test_installed_command_and_python_m_agree():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "attngraph", "check", str(EXAMPLES / "lstm_seq.yaml")],
                         capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("lstm_seq.yaml: ok (2 nodes)")

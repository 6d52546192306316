"""The train: section is documented where every other key is: `attngraph list` and the JSON Schema."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from attngraph.schema import json_schema
from attngraph.training.config import SCHEDULE_SCHEMAS, SCHEMA
from attngraph_cli.main import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted([*(ROOT / "gallery").glob("*/spec.yaml"), *(ROOT / "specs" / "examples").glob("*.yaml")])


def test_list_train_documents_every_key_and_schedule() -> None:
    result = CliRunner().invoke(main, ["list", "train"])
    assert result.exit_code == 0
    for key in SCHEMA:
        assert any(line.lstrip().startswith(key + " ") or line.lstrip().startswith(key + ":")
                   for line in result.output.splitlines()), key
    assert all(f"    {kind}" in result.output for kind in SCHEDULE_SCHEMAS)
    assert "precision             one of fp32, bf16, fp16; default fp32." in result.output
    assert "== train ==" in CliRunner().invoke(main, ["list"]).output


@pytest.mark.parametrize("path", SPECS, ids=[p.parent.name if p.name == "spec.yaml" else p.stem for p in SPECS])
def test_the_schema_accepts_every_shipped_spec(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema())


@pytest.mark.parametrize("train", [
    {"precison": "bf16"},
    {"precision": "fp8"},
    {"accumulate": 0},
    {"schedule": {"kind": "inverse_sqrt"}},
    {"schedule": "linear_warmup"},
    {"stop": {"metric": "loss", "blow": 1}},
])
def test_the_schema_rejects_bad_train_settings(train: dict) -> None:
    spec = {"attngraph": 1, "inputs": {"x": {"size": 2}}, "model": {"h": {"kind": "linear", "size": 2, "in": "x"}},
            "outputs": {"y": {"from": "h", "loss": "none"}}}
    jsonschema.validate(spec, json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**spec, "train": train}, json_schema())


def test_the_schema_describes_the_train_keys() -> None:
    train = json.loads(json.dumps(json_schema()))["properties"]["train"]["properties"]
    assert train["precision"]["enum"] == ["fp32", "bf16", "fp16"]
    assert train["accumulate"] == {"type": "integer", "minimum": 1, "description": SCHEMA["accumulate"].doc, "default": 1}

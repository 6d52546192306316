"""``attngraph show`` writes a spec that ``check`` accepts and that compiles to the same model.

Every shipped spec (gallery entries and examples) is resolved, written back as YAML, loaded again and compiled:
the parameters (names and shapes), the outputs with their losses, weights and options, the targets and the
task must all come out as from the original.
"""
import json
from pathlib import Path

import pytest
import yaml

import attngraph
from attngraph import api
from attngraph.resolved import resolved

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted([*(ROOT / "gallery").glob("*/spec.yaml"), *(ROOT / "specs" / "examples").glob("*.yaml")])


def _shapes(spec):
    return {k: tuple(v.shape) for k, v in api.build(spec).state_dict().items()}


def _outputs(spec):
    return {name: (str(o.edge.ref), o.loss, o.target, o.weight, o.reward, o.options)
            for name, o in spec.ir.outputs.items()}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_show_round_trips_to_the_same_model(path, tmp_path):
    original = api.load(path)
    text = yaml.safe_dump(resolved(original), sort_keys=False)
    again_path = tmp_path / "resolved.yaml"
    again_path.write_text(text)
    spec, report = api.check(again_path)
    assert spec is not None, "\n".join(str(d) for d in report)
    assert [d for d in report if d.severity == "error"] == []
    assert _shapes(spec) == _shapes(original)
    assert _outputs(spec) == _outputs(original)
    assert spec.ir.targets == original.ir.targets
    assert {n: v.types["out"] for n, v in spec.ir.inputs.items()} == \
           {n: v.types["out"] for n, v in original.ir.inputs.items()}
    # resolving is idempotent: showing the shown spec gives the same text
    assert yaml.safe_dump(resolved(spec), sort_keys=False) == text


def test_the_round_trip_covers_what_was_lost_before():
    """Pointer targets, image inputs, a reinforce output's reward and unset optional parameters (which were
    written as ``null`` and then refused) are all among the shipped specs."""
    text = "\n".join(yaml.safe_dump(resolved(api.load(p))) for p in SPECS)
    assert "points_to:" in text and "image:" in text and "reward:" in text and "null" not in text


def test_every_gallery_spec_keeps_the_config_hash_it_was_trained_with():
    """A gallery entry's runs resume and publish only while its spec's config hash stays what it was when they
    were trained (tests/golden/gallery_config_hashes.json, recorded before cross-entropy gained label_smoothing):
    an option added to a loss, at its default, must not change it."""
    from attngraph.training.rundir import config_hash

    golden = json.loads((Path(__file__).parent / "golden" / "gallery_config_hashes.json").read_text())
    gallery = Path(__file__).resolve().parents[1] / "gallery"
    assert sorted(golden) == sorted(p.parent.name for p in gallery.glob("*/spec.yaml"))
    changed = [name for name, h in golden.items() if config_hash(attngraph.load(gallery / name / "spec.yaml")) != h]
    assert changed == []

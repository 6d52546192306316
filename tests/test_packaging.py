"""Packaging: every subpackage is installed, and no generic top-level `cli` package is."""
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "attngraph").rglob("__init__.py")}
    assert on_disk <= listed
    assert "cli" not in listed and "attngraph_cli" in listed


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "bash setup.sh && python -m pytest"
    assert command in readme and command in ci

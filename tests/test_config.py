"""agentflow's settings (agentflow/config.py): environment > agentflow.toml (or pyproject's
[tool.agentflow]) > default, each value's source said, a bad one named with its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow import config
from agentflow.errors import ConfigError

pytestmark = pytest.mark.unit


def values(start: Path, **environ: str) -> dict[str, tuple]:
    return {v.name: (v.value, v.source) for v in config.read(start, environ)}


def test_defaults_then_the_file_then_the_environment(tmp_path):
    (tmp_path / ".git").mkdir()
    nested = tmp_path / "src" / "deep"
    nested.mkdir(parents=True)
    assert values(nested)["max_patch_mb"] == (50, "default")
    (tmp_path / "agentflow.toml").write_text("# agentflow\nmax_patch_mb = 5\nmetrics_port = 9400\n")
    found = values(nested, AGENTFLOW_METRICS_PORT="9500")
    assert found["max_patch_mb"] == (5, "agentflow.toml:2")  # found from a folder below the root
    assert found["metrics_port"] == (9500, "AGENTFLOW_METRICS_PORT")
    assert found["log_file"] == (None, "default")


def test_pyproject_tool_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.agentflow]\nworkflows = "flows"\n')
    assert values(tmp_path)["workflows"] == (Path("flows"), "pyproject.toml [tool.agentflow]:5")


def test_the_search_stops_at_the_repository_root(tmp_path):
    (tmp_path / "agentflow.toml").write_text("max_patch_mb = 5\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert values(repo)["max_patch_mb"] == (50, "default")


@pytest.mark.parametrize("text, environ, message", [
    ("max_patch_mb = 'lots'\n", {}, "agentflow.toml:1: max_patch_mb = 'lots': input should be a valid number"),
    ("\ncolour = 1\n", {}, "agentflow.toml:2: `colour` is not an agentflow setting; use one of log_file"),
    ("", {"AGENTFLOW_METRICS_PORT": "70000"}, "AGENTFLOW_METRICS_PORT='70000': input should be less than or equal"),
    ("max_patch_mb = \n", {}, "agentflow.toml: not valid TOML"),
])
def test_a_bad_value_names_its_source(tmp_path, text, environ, message):
    (tmp_path / ".git").mkdir()
    (tmp_path / "agentflow.toml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        config.read(tmp_path, environ)
    assert message in str(raised.value)

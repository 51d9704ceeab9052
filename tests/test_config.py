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


WORKFLOW = """name: wf
steps:
  - {id: a, agent: echoer, prompt: hi}
"""
AGENTS = """agents:
  echoer: {kind: shell, command: [cat]}
  remote: {kind: http, url: "http://127.0.0.1:9/x"}
  own: {kind: http, url: "http://127.0.0.1:9/y", circuit_breaker: {failures: 9}}
  none: {kind: http, url: "http://127.0.0.1:9/z", circuit_breaker: false}
"""


def test_a_workflow_takes_what_it_does_not_say_from_the_settings(tmp_path, monkeypatch):
    """deliver, workspace, work pool, budget, the agents file and breakers: the settings fill in
    what a workflow (or an agent) leaves out; what it says wins; built-in values change nothing."""
    from agentflow.flows.language.loader import load_workflow

    for name in [n for n in __import__("os").environ if n.startswith("AGENTFLOW_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".git").mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "agents.yaml").write_text(AGENTS)
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("name: wf", "name: wf\nagents: shared/agents.yaml"))
    before = load_workflow(tmp_path / "wf.yaml")
    (tmp_path / "agentflow.toml").write_text('workspace = "worktree"\ncircuit_failures = 5\n')
    assert load_workflow(tmp_path / "wf.yaml").spec_hash == before.spec_hash  # built-in values: same version

    (tmp_path / "agentflow.toml").write_text('deliver = "none"\nwork_pool = "gpu"\nbudget_usd = 0.5\n'
                                             'agents_file = "shared/agents.yaml"\ncircuit_failures = 2\n')
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "wf.yaml").write_text(WORKFLOW)  # no `agents:`: the settings' file, from a folder below
    loaded = load_workflow(tmp_path / "flows" / "wf.yaml")
    assert (loaded.spec.deliver, loaded.spec.work_pool, loaded.spec.budget.usd) == ("none", "gpu", 0.5)
    assert loaded.spec_hash != before.spec_hash
    breakers = {name: agent.breaker for name, agent in loaded.agents.items()}
    assert (breakers["remote"].failures, breakers["remote"].cooldown) == (2, 60)
    assert breakers["own"].failures == 9 and breakers["echoer"] is None and breakers["none"] is None

    (tmp_path / "flows" / "wf.yaml").write_text(WORKFLOW.replace("name: wf", "name: wf\ndeliver: apply\nbudget: {usd: 2}"))
    said = load_workflow(tmp_path / "flows" / "wf.yaml").spec
    assert (said.deliver, said.budget.usd, said.work_pool) == ("apply", 2, "gpu")
    monkeypatch.setenv("AGENTFLOW_DELIVER", "branch")
    assert load_workflow(tmp_path / "wf.yaml").spec.deliver == "branch"  # the environment over the file


def test_a_bad_setting_stops_validate_with_its_source(tmp_path):
    import subprocess
    import sys

    (tmp_path / ".git").mkdir()
    (tmp_path / "wf.yaml").write_text("name: wf\nsteps:\n  - {id: a, run: [echo, hi]}\n")
    (tmp_path / "agentflow.toml").write_text('\nworkspace = "elsewhere"\n')
    done = subprocess.run([sys.executable, "-m", "agentflow", "validate", "wf.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("agentflow: agentflow.toml:2: workspace = 'elsewhere': input should be 'worktree'")

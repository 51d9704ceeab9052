"""Where a step may write (`writes:`), which tools its agent keeps (`allowed_tools`), and
phases with gates; each refused definition says where and how to fix it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agentflow import build_flow
from agentflow.errors import SpecError, WorkflowFailed
from agentflow.flows.engine import requests
from agentflow.flows.engine.compile import compile_workflow
from agentflow.flows.language.loader import load_text, load_workflow


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def add(a, b):\n    return a + b\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", f"init {tmp_path.name}")
    monkeypatch.chdir(root)
    return root


def run(repo: Path, text: str):
    (repo / "wf.yaml").write_text(text)
    try:
        return build_flow(load_workflow(repo / "wf.yaml"))()
    except WorkflowFailed as exc:
        return exc.result


def test_a_change_outside_writes_fails_the_step_and_is_discarded(repo):
    """`writes: [tests/*]`: a step that also edits src/ fails naming the file, its changes are
    not in the run's tree, and the next step never sees them."""
    result = run(repo, """
name: bounded
steps:
  - id: w
    writes: ["tests/*"]
    run: [sh, -c, "mkdir -p tests; echo ok > tests/test_x.py; echo hacked >> src/app.py"]
  - {id: after, run: [cat, src/app.py]}
""")
    assert result.status == "failed" and result.failed_steps == ["w"]
    assert "outside its `writes:` (tests/*): src/app.py" in result["w"].error
    assert "tests/test_x.py" not in result["w"].error
    assert result.steps["after"].status == "not_run"
    assert result.work["commits"] == []


def test_writes_inside_the_bound_pass(repo):
    """Changes that all match `writes:` are the step's work as usual."""
    result = run(repo, """
name: bounded-ok
steps:
  - {id: w, writes: ["tests/*", "docs/*.md"], run: [sh, -c, "mkdir -p tests docs; echo 1 > tests/a.py; echo 2 > docs/b.md"]}
""")
    assert result.status == "completed"
    assert sorted(f.path for f in result["w"].changes.files) == ["docs/b.md", "tests/a.py"]


AGENTS = """
agents:
  coder: {kind: claude-code, allowed_tools: [Read, Grep, Write, Edit], disallowed_tools: [WebFetch]}
"""


@pytest.mark.unit
def test_a_step_narrows_its_agents_tools_and_never_widens_them():
    """A step's allowed_tools are intersected with its agent's; its disallowed_tools added."""
    workflow = load_text(f"""
name: narrow
{AGENTS}
steps:
  - {{id: read, agent: coder, prompt: look, allowed_tools: [Read, Bash], disallowed_tools: [Write]}}
""")
    plan = compile_workflow(workflow).plans["read"]
    request = requests.build("narrow", plan, {"inputs": {}, "steps": {}})
    assert request.agent_config["allowed_tools"] == ["Read"]  # Bash is not the agent's to give
    assert request.agent_config["disallowed_tools"] == ["WebFetch", "Write"]


def test_phases_order_steps_narrow_them_and_gate_the_next_phase(repo):
    """Each phase waits for the previous one's gate; a phase's writes bound its steps; the gate
    checks its files (and their JSON Schema) and its command, in the run's tree."""
    result = run(repo, """
name: phased
phases:
  - {id: analyse, steps: [look]}
  - id: implement
    steps: [write]
    writes: ["tests/*", "report.json"]
    gate:
      files: ["tests/test_*.py", {path: report.json, schema: {type: object, required: [ok]}}]
      run: [python, -c, "import pathlib, sys; sys.exit(0 if pathlib.Path('tests/test_app.py').exists() else 5)"]
  - {id: verify, steps: [check]}
steps:
  - {id: look, run: [ls, src]}
  - {id: write, run: [sh, -c, "mkdir -p tests; echo 'assert True' > tests/test_app.py; echo '{\\"ok\\": 1}' > report.json"]}
  - {id: check, run: [cat, tests/test_app.py]}
""")
    assert result.status == "completed", result.failed_steps
    assert list(result.steps) == ["look", "write", "gate_implement", "check"]
    gate = result["gate_implement"]
    assert gate.data["files"] == ["report.json", "tests/test_app.py"] or sorted(gate.data["files"]) == [
        "report.json", "tests/test_app.py"]
    assert gate.data["command"]["exit"] == 0
    assert result["check"].output.strip() == "assert True"


def test_a_gate_that_does_not_hold_fails_the_run_saying_what_is_missing(repo):
    """Missing files, a file that breaks its schema and a failing command are all named."""
    result = run(repo, """
name: gated
phases:
  - id: implement
    steps: [write]
    gate:
      files: ["tests/test_*.py", {path: report.json, schema: {type: object, required: [ok]}}]
  - id: verify
    steps: [check]
steps:
  - {id: write, run: [sh, -c, "echo '{\\"fine\\": 1}' > report.json"]}
  - {id: check, run: [echo, never]}
""")
    assert result.status == "failed" and result.failed_steps == ["gate_implement"]
    error = result["gate_implement"].error
    assert "no file matches tests/test_*.py" in error and "report.json: (top): 'ok' is a required property" in error
    assert result.steps["check"].status == "not_run"


@pytest.mark.parametrize("text, expected", [
    ("phases:\n  - {id: one, steps: [a, nope]}\n", "wf.yaml:3: phases[0].steps[1]: `nope` is not a step"),
    ("phases:\n  - {id: one, steps: [a]}\n  - {id: two, steps: [a, b]}\n",
     "phases[1].steps[0]: step `a` is already in phase `one`"),
    ("phases:\n  - {id: one, steps: [a]}\n", "steps `b` are in no phase"),
    ("phases:\n  - {id: one, steps: [b]}\n  - {id: two, steps: [a]}\n", "the phases' order contradicts"),
    ("phases:\n  - {id: one, steps: [a, b], gate: {}}\n", "a gate checks `files:`, runs `run:`, or both"),
    ("workspace: in-place\npattern: parallel\n", "wf.yaml:2: workspace: steps `a`, `b` may run at the same time"),
])
@pytest.mark.unit
def test_bad_phases_and_in_place_workspaces_are_refused_with_the_fix(tmp_path, text, expected):
    """Each mistake is located and says what to do."""
    path = tmp_path / "wf.yaml"
    path.write_text(f"name: bad\n{text}steps:\n  - {{id: a, run: [echo, a]}}\n"
                    "  - {id: b, run: [echo, b], depends_on: [a]}\n"
                    if "contradicts" in expected else f"name: bad\n{text}steps:\n  - {{id: a, run: [echo, a]}}\n"
                    "  - {id: b, run: [echo, b]}\n")
    with pytest.raises(SpecError) as raised:
        load_workflow(path)
    assert expected in str(raised.value)


def test_plan_follows_the_patches_a_hit_brings(repo, cli, tmp_path_factory):
    """`plan` keys a later step on the tree the earlier steps' cached patches make: after a run,
    both steps of a chain are hits, for either input the runs used."""
    env = {"PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path_factory.mktemp("results"))}
    (repo / "wf.yaml").write_text("""
name: chain
inputs:
  word: {default: one}
steps:
  - {id: write, run: [sh, -c, "echo {{ inputs.word }} > w.txt"], cache: true}
  - {id: tests, run: [cat, w.txt], cache: true}
""")
    for word in ("one", "two"):
        assert cli("run", "wf.yaml", "-i", f"word={word}", cwd=repo, env=env).returncode == 0
    for word in ("one", "two"):
        planned = cli("plan", "wf.yaml", "-i", f"word={word}", "--json", cwd=repo, env=env)
        assert planned.returncode == 0, planned.stderr
        assert [v["outcome"] for v in json.loads(planned.stdout)] == ["hit", "hit"], planned.stdout


@pytest.mark.unit
def test_a_miss_is_explained_by_the_earlier_step_whose_patch_differs():
    """The key part of the tree says which earlier step's patch a step saw differently."""
    from agentflow.flows.durability.cache import step_policy, explain_miss

    base = {"commit": "c" * 40, "start": ""}
    before = {**base, "patches": ["p1", "q1"], "from": ["write", "format"]}
    now = {**base, "patches": ["p1", "q2"], "from": ["write", "format"]}
    assert explain_miss(step_policy(), {"commit": before}, {"commit": now}) == ["saw a different patch from `format`"]
    assert explain_miss(step_policy(), {"commit": before}, {"commit": {**base, "patches": ["p1"], "from": ["write"]}}
                        ) == ["no longer sees the patch from `format`"]
    moved = {**now, "start": "s1"}
    assert explain_miss(step_policy(), {"commit": before}, {"commit": moved}) == [
        "the uncommitted changes the run started from differ"]

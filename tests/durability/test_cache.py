"""The step cache: hits on the same inputs and commit, misses on every change that matters."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agentflow import build_flow
from agentflow.flows.language.loader import load_workflow
from agentflow.flows.durability.repo import read_repo_state

WORKFLOW = """
name: cached
inputs:
  topic: {default: VAT}
agents:
  counter: {kind: python, callable: "probe:counted", ttl: 1h}
steps:
  - id: review
    agent: counter
    prompt: "Review {{ inputs.topic }}"
    files: ["src/*.py"]
    with: {log: "{{ run.origin }}/calls.log"}   # the user's tree: steps work in a worktree of the run's
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with one source file and the workflow, as the current directory."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vat.py").write_text("RATE = 15\n")
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    (tmp_path / ".gitignore").write_text("calls.log\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    # Its own commit: two repositories made alike in the same second would have the same one
    # (and share cache entries across tests).
    git(tmp_path, "commit", "-qm", f"init {tmp_path.name}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def calls(repo: Path) -> int:
    log = repo / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def run(repo: Path, cache: str = "use", text: str | None = None, **inputs) -> dict:
    if text is not None:
        (repo / "wf.yaml").write_text(text)
    return build_flow(load_workflow(repo / "wf.yaml"), cache=cache)(**inputs)


def test_hit_on_same_inputs_and_commit(repo):
    """The second run of the same step at the same commit does not call the agent."""
    first = run(repo)
    second = run(repo)
    assert calls(repo) == 1
    assert second["review"] == first["review"]


def test_miss_after_commit(repo):
    """A new commit is a new key."""
    run(repo)
    (repo / "README").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second")
    run(repo)
    assert calls(repo) == 2


def test_miss_after_dirty_edit_and_back(repo):
    """An uncommitted edit to a tracked file is never answered from the clean tree's entry;
    undoing it hits again."""
    run(repo)
    (repo / "README").write_text("tracked\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "readme")
    run(repo)
    assert calls(repo) == 2
    (repo / "README").write_text("edited, not committed\n")
    run(repo)
    assert calls(repo) == 3
    (repo / "README").write_text("tracked\n")
    run(repo)
    assert calls(repo) == 3


def test_an_untracked_file_nothing_declares_changes_no_key(repo):
    """A file nobody declared and no step wrote is not part of any step's tree: still a hit."""
    run(repo)
    (repo / "notes.txt").write_text("untracked\n")
    run(repo)
    assert calls(repo) == 1


def test_miss_after_declared_file_edit_outside_git(tmp_path, monkeypatch):
    """Outside git, the key says so and still follows the content of the step's files."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vat.py").write_text("RATE = 15\n")
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    monkeypatch.chdir(tmp_path)
    assert read_repo_state(".").commit is None
    assert "not a git repository" in read_repo_state(".").reason
    run(tmp_path)
    run(tmp_path)
    assert calls(tmp_path) == 1
    (tmp_path / "src" / "vat.py").write_text("RATE = 7.5\n")
    run(tmp_path)
    assert calls(tmp_path) == 2


def test_miss_after_prompt_input_or_agent_change(repo):
    """A different rendered prompt, or a changed agent configuration, is a new key."""
    run(repo)
    run(repo, topic="SD")
    assert calls(repo) == 2
    run(repo, text=WORKFLOW.replace("ttl: 1h", "ttl: 1h, description: stricter"), topic="SD")
    assert calls(repo) == 3


def test_miss_after_ttl(repo):
    """An entry older than the agent's TTL is not used; a zero TTL reuses nothing."""
    text = WORKFLOW.replace("ttl: 1h", "ttl: 1ms")
    run(repo, text=text)
    run(repo, text=text)
    assert calls(repo) == 2
    text = WORKFLOW.replace("ttl: 1h", "ttl: 0s")
    run(repo, text=text)
    run(repo, text=text)
    assert calls(repo) == 4


def test_no_cache_and_refresh(repo):
    """`off` neither reads nor writes; `refresh` recomputes and overwrites."""
    run(repo, cache="off")
    run(repo)
    assert calls(repo) == 2  # the `off` run wrote nothing
    run(repo, cache="refresh")
    assert calls(repo) == 3
    run(repo)
    assert calls(repo) == 3  # the refreshed entry is used


def test_run_and_call_steps_are_not_cached_by_default(repo):
    """Plain `run`/`call` steps may have side effects: they run every time unless asked."""
    text = """
name: plain
steps:
  - {id: a, call: "probe:counted", with: {log: "{{ run.origin }}/calls.log"}}
"""
    run(repo, text=text)
    run(repo, text=text)
    assert calls(repo) == 2
    run(repo, text=text.replace("with:", "cache: {ttl: 1h}, with:"))
    run(repo, text=text.replace("with:", "cache: {ttl: 1h}, with:"))
    assert calls(repo) == 3


def test_hit_across_processes_shows_cached(repo, cli, tmp_path_factory):
    """A second `agentflow run` process gets the hit, and says so in its table and JSON."""
    # outside the repository: results written inside it would make the tree dirty (a miss)
    storage = {"PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path_factory.mktemp("results"))}
    first = cli("run", "wf.yaml", "--json", cwd=repo, env=storage)
    second = cli("run", "wf.yaml", "--json", cwd=repo, env=storage)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert calls(repo) == 1
    assert json.loads(first.stdout)["steps"]["review"]["cached"] is False
    assert json.loads(second.stdout)["steps"]["review"]["cached"] is True
    assert "cached  review" in second.stderr


def test_plan_agrees_with_run_and_says_why(repo, cli, tmp_path_factory):
    """`plan` predicts each run's hit or miss, names the changed part, and calls no agent."""
    env = {"PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path_factory.mktemp("results"))}

    def plan() -> dict:
        done = cli("plan", "wf.yaml", "--json", cwd=repo, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)[0]

    first = plan()
    assert (first["outcome"], first["reason"]) == ("miss", "no cached result yet")
    assert calls(repo) == 0
    assert cli("run", "wf.yaml", cwd=repo, env=env).returncode == 0
    assert plan()["outcome"] == "hit"
    assert cli("run", "wf.yaml", cwd=repo, env=env).returncode == 0
    assert calls(repo) == 1
    (repo / "src" / "vat.py").write_text("RATE = 5\n")
    edited = plan()
    assert edited["outcome"] == "miss"
    assert edited["reason"] == "the uncommitted changes the run started from differ; files changed: src/vat.py"
    changed_input = cli("plan", "wf.yaml", "-i", "topic=SD", "--json", cwd=repo, env=env)
    assert "rendered prompt changed" in json.loads(changed_input.stdout)[0]["reason"]
    assert cli("run", "wf.yaml", cwd=repo, env=env).returncode == 0
    assert calls(repo) == 2


def test_cache_stats_and_clear(repo, cli, tmp_path_factory):
    """`cache stats` counts entries, hits and misses per agent; `cache clear --agent` removes them."""
    env = {"PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path_factory.mktemp("results"))}
    for _ in range(2):
        assert cli("run", "wf.yaml", cwd=repo, env=env).returncode == 0
    stats = cli("cache", "stats", cwd=repo, env=env)
    assert stats.returncode == 0
    row = next(line for line in stats.stdout.splitlines() if "counter" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")][1:] == ["1", "1", row.split("│")[4].strip(),
                                                                       "1", "1", "50%"]
    assert "removed 0" in cli("cache", "clear", "--agent", "someone-else", cwd=repo, env=env).stdout
    assert "removed 1" in cli("cache", "clear", "--agent", "counter", cwd=repo, env=env).stdout
    assert cli("run", "wf.yaml", cwd=repo, env=env).returncode == 0
    assert calls(repo) == 2
    bad = cli("cache", "clear", "--older-than", "soon", cwd=repo, env=env)
    assert bad.returncode == 2 and "--older-than" in bad.stderr

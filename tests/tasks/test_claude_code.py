"""The `claude-code` agent: the real bundled Claude Code CLI, through its SDK, answering from a
local stub of the Anthropic Messages API (tests/fixtures/model_stubs.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from claude_repo import stub_session
from model_stubs import last_user_text
from procs import gone
from waiting import until

from agentflow import run_workflow
from agentflow.errors import WorkflowFailed



@pytest.fixture
def claude_env(monkeypatch, tmp_path):
    """Claude Code pointed at a stub, in a repository of its own, with no personal settings."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    with stub_session(monkeypatch, tmp_path) as start:
        yield repo, start


def write(repo: Path, agents: str, steps: str) -> str:
    path = repo / "wf.yaml"
    path.write_text(f"name: claude\nagents:\n{agents}\n  stand-in: {{kind: python, callable: 'probe:echo'}}\n"
                    f"steps:\n{steps}")
    return str(path)


# No circuit breaker here: these tests fail the agent on purpose, and a circuit kept on the
# session's server would carry those failures from one test into the next.
REVIEWER = ("  reviewer: {kind: claude-code, system: 'You review invoices.', allowed_tools: [Read], fallback: stand-in, "
            "circuit_breaker: false}")


def test_a_plain_answer_in_the_earlier_engines_format(claude_env):
    repo, start = claude_env
    stub = start([{"text": "## Summary\nThe VAT rule holds.\n\nModified: src/vat.py\n\n## Metrics\n- findings: 2\n"}])
    result = run_workflow(write(repo, REVIEWER, "  - {id: review, agent: reviewer, prompt: 'Check the VAT rule'}\n"))
    review = result["review"]
    assert review.status == "success" and not review.degraded
    assert review.summary == "The VAT rule holds."
    assert [(a.path, a.action) for a in review.artifacts] == [("src/vat.py", "modified")]
    assert review.metrics["findings"] == 2 and review.metrics["num_turns"] == 1
    assert review.metrics["cost_usd"] > 0 and review.metrics["output_tokens"] > 0 and review.metrics["session_id"]
    (request,) = stub.model_requests
    assert "Check the VAT rule" in last_user_text(request["body"])
    assert "You review invoices." in json.dumps(request["body"]["system"])


def test_a_denied_tool_is_a_soft_failure_that_falls_back(claude_env):
    """Claude Code reports `success` with permission_denials: agentflow calls it a failure
    (not worth a retry) and the fallback answers."""
    repo, start = claude_env
    stub = start([{"tool": "Bash", "input": {"command": "touch made.txt"}}, {"text": "I could not."}])
    steps = "  - {id: review, agent: reviewer, prompt: 'Make a file', retries: 2}\n"
    result = run_workflow(write(repo, REVIEWER, steps))
    review = result["review"]
    assert review.degraded and review.fallback_used == "stand-in" and review.primary_agent == "reviewer"
    assert result.steps["review"].attempts == 1  # a denial is not retried
    assert not (repo / "made.txt").exists()
    assert len(stub.model_requests) == 2  # the tool call, then the answer after the denial


@pytest.mark.parametrize("status", [500, 529])
def test_an_api_error_surfaces_at_once_and_falls_back(claude_env, status):
    """The CLI's own retries are lowered: one retry (two requests), then the ladder acts."""
    repo, start = claude_env
    stub = start([{"status": status}])
    result = run_workflow(write(repo, REVIEWER, "  - {id: review, agent: reviewer, prompt: 'Check'}\n"))
    assert result["review"].fallback_used == "stand-in"
    assert len(stub.model_requests) == 2


def test_an_api_error_without_a_fallback_says_what_happened(claude_env):
    repo, start = claude_env
    start([{"status": 529}])
    agents = "  reviewer: {kind: claude-code, circuit_breaker: false}"
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(write(repo, agents, "  - {id: review, agent: reviewer, prompt: 'Check'}\n"))
    summary = failure.value.result.steps["review"].summary
    assert "agent `reviewer` (claude-code): API error 529" in summary


def test_structured_output_becomes_data(claude_env):
    repo, start = claude_env
    start([{"structured": {"verdict": "pass", "score": 7}}])
    agents = ("  reviewer: {kind: claude-code, output_schema: {type: object, properties: {verdict: {type: string}, "
              "score: {type: integer}}, required: [verdict, score]}, circuit_breaker: false}")
    steps = ("  - {id: review, agent: reviewer, prompt: 'Judge'}\n"
             "  - {id: gate, assert: \"steps.review.data.verdict == 'pass'\"}\n")
    result = run_workflow(write(repo, agents, steps))
    assert result["review"].data == {"verdict": "pass", "score": 7}
    assert result.steps["gate"].status == "success"


def test_a_subagent_from_the_repository_runs_as_the_session(claude_env):
    """`.claude/agents/NAME.md` is an agent by that name: its body is the system prompt, its
    tools the tools; editing it changes the step's key."""
    repo, start = claude_env
    stub = start([{"text": "## Summary\nNo business rule is broken."}])
    folder = repo / ".claude" / "agents"
    folder.mkdir(parents=True)
    (folder / "rule-checker.md").write_text("---\nname: rule-checker\ndescription: Checks business rules.\n"
                                            "tools: Read, Grep\n---\nYou check invoices against rule R-17.\n")
    path = repo / "wf.yaml"
    path.write_text("name: sub\nsteps:\n  - {id: check, agent: rule-checker, prompt: 'Check the change'}\n")
    result = run_workflow(str(path))
    assert result["check"].summary == "No business rule is broken."
    (request,) = stub.model_requests
    assert "You check invoices against rule R-17." in json.dumps(request["body"]["system"])
    tools = {tool["name"] for tool in request["body"].get("tools", [])}
    assert {"Read", "Grep"} <= tools and "Bash" not in tools and "Write" not in tools


def test_no_credentials_makes_the_agent_unavailable(claude_env, monkeypatch):
    repo, start = claude_env
    stub = start([{"text": "never asked"}])
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    result = run_workflow(write(repo, REVIEWER, "  - {id: review, agent: reviewer, prompt: 'Check', retries: 2}\n"))
    assert result["review"].fallback_used == "stand-in" and result.steps["review"].attempts == 1
    assert stub.model_requests == []


def _claude_processes(url: str) -> list[int]:
    """Processes whose environment points at this stub (the CLIs the SDK started)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"ANTHROPIC_BASE_URL={url}".encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def test_the_step_timeout_stops_a_hung_call_and_leaves_no_process(claude_env):
    repo, start = claude_env
    stub = start([{"hang": True}])
    agents = "  reviewer: {kind: claude-code, fallback: stand-in, circuit_breaker: false}"
    result = run_workflow(write(repo, agents, "  - {id: review, agent: reviewer, prompt: 'Check', timeout: 3s}\n"))
    assert result["review"].fallback_used == "stand-in"
    assert len(stub.model_requests) == 1
    until(lambda: all(gone(pid) for pid in _claude_processes(stub.url)), 30, "the Claude Code CLI to exit")


def test_a_killed_run_leaves_no_claude_code_process(claude_env, prefect_server):
    """SIGKILL of `agentflow run` while Claude Code works: the CLI sees its input close and
    exits; nothing is left running."""
    import signal
    import sys

    repo, start = claude_env
    stub = start([{"hang": True}])
    (repo / "wf.yaml").write_text("name: killed\nagents:\n  r: {kind: claude-code, circuit_breaker: false}\n"
                                  "steps:\n  - {id: a, agent: r, prompt: hi, timeout: 10m}\n")
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    run = subprocess.Popen([sys.executable, "-m", "agentflow", "run", "wf.yaml"], cwd=repo, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until(lambda: stub.model_requests, 120, "Claude Code to call the model")
        running = _claude_processes(stub.url)
        assert running
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        def left():
            return [(pid, Path(f"/proc/{pid}/cmdline").read_bytes()[:120]) for pid in running if not gone(pid)]

        until(lambda: not left(), 30, f"the Claude Code CLI to exit: {left()}")
    finally:
        run.kill()

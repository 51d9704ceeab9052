"""A step's `writes:` bounding a `claude-code` agent when it uses a file tool, not only on the patch
afterwards: the real bundled Claude Code CLI, in the run's worktree, answering from a local stub of
the Anthropic Messages API (tests/fixtures/model_stubs.py); a refused write never touches the tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from claude_repo import audited, claude_repo, git  # noqa: F401 (claude_repo: a fixture)
from model_stubs import last_user_text

from agentflow import run_workflow
from agentflow.errors import WorkflowFailed

# No circuit breaker: a circuit kept on the session's server would carry one test's failures
# into the next. Write and Edit allowed: in `dontAsk` mode (the default) they are refused.
WRITER = "  writer: {kind: claude-code, allowed_tools: [Read, Write, Edit], circuit_breaker: false}\n"
TIDIER = "  tidier: {kind: claude-code, allowed_tools: [Read, Write], circuit_breaker: false}\n"


def workflow(repo: Path, agents: str, steps: str) -> str:
    path = repo / "wf.yaml"
    path.write_text(f"name: bounded\nagents:\n{agents}steps:\n{steps}")
    return str(path)


def tree(repo: Path, branch: str) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", branch).split()


def tool_uses(cli, run_id: str) -> list[dict]:
    shown = cli("logs", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return [line for line in map(json.loads, shown.stdout.splitlines()) if line.get("tool")]


def test_a_write_outside_writes_is_refused_before_it_happens_and_the_fallback_answers(claude_repo, tmp_path, cli):
    """`writes: [notes/*]`: Write src/evil.py is refused by the hook (never run), the call fails
    naming the path, its in-bound write is discarded with it, and the fallback's work is delivered."""
    repo, start = claude_repo
    stub = start([{"tool": "Write", "input": {"file_path": "src/evil.py", "content": "import os\n"}},
                  {"tool": "Write", "input": {"file_path": "notes/ok.md", "content": "ok\n"}},
                  {"text": "## Summary\nWrote the notes."},
                  {"tool": "Write", "input": {"file_path": "notes/fallback.md", "content": "from the fallback\n"}},
                  {"text": "## Summary\nWrote the fallback notes."}])
    agents = WRITER.replace("circuit_breaker", "fallback: tidier, circuit_breaker") + TIDIER
    steps = "  - {id: write, agent: writer, prompt: 'Write the notes', writes: ['notes/*'], retries: 2}\n"
    result = run_workflow(workflow(repo, agents, steps))
    write = result["write"]
    assert write.degraded and write.fallback_used == "tidier" and write.primary_agent == "writer"
    assert result.steps["write"].attempts == 1  # a refused write is not retried
    told = last_user_text(stub.model_requests[1]["body"])  # what the Write of src/evil.py came back as
    assert "may only change files matching notes/*" in told and "src/evil.py is not one of them" in told
    assert "File created successfully" not in told  # the tool never ran
    assert [(f.path, f.action) for f in write.changes.files] == [("notes/fallback.md", "created")]
    assert "src/evil.py" not in tree(repo, result.work["branch"])
    assert "notes/ok.md" not in tree(repo, result.work["branch"])  # the failed call's work went with it
    assert not (repo / "src").exists()
    primary, fallback = audited(result.run_id, tmp_path / "audit.jsonl")
    assert (primary["agent"], primary["outcome"], primary["tools_denied"]) == ("writer", "failed: StepFailed",
                                                                               ["Write"])
    assert "outside its `writes:` (notes/*): Write src/evil.py, refused before anything was written" in primary["error"]
    assert (fallback["agent"], fallback["outcome"], fallback["tools_denied"]) == ("tidier", "success", [])
    uses = [(u["agent"], u["tool"], u["target"], u["outcome"], u["refused"]) for u in tool_uses(cli, result.run_id)]
    assert uses == [("writer", "Write", "src/evil.py", "denied", True), ("writer", "Write", "notes/ok.md", "ok", False),
                    ("tidier", "Write", "notes/fallback.md", "ok", False)]
    denied = next(u for u in tool_uses(cli, result.run_id) if u["refused"])
    assert denied["event"] == "agent writer: Write src/evil.py: denied (outside writes: notes/*)"


def test_a_write_outside_the_worktree_fails_the_step_without_a_fallback(claude_repo):
    """A Write by absolute path into the user's own tree matches no worktree path: refused, the
    step fails saying where it aimed, and the user's tree is untouched."""
    repo, start = claude_repo
    aimed = repo / "notes" / "stray.md"
    stub = start([{"tool": "Write", "input": {"file_path": str(aimed), "content": "stray\n"}},
                  {"text": "## Summary\nWrote it."}])
    steps = "  - {id: write, agent: writer, prompt: 'Write the notes', writes: ['notes/*']}\n"
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(workflow(repo, WRITER, steps))
    write = failure.value.result.steps["write"]
    assert write.status == "failed"
    assert f"outside its `writes:` (notes/*): Write {aimed.resolve()}, refused" in write.summary
    assert "agentflow refused this" in last_user_text(stub.model_requests[1]["body"])
    assert not aimed.exists() and not aimed.parent.exists()


def test_a_write_inside_writes_is_captured(claude_repo, cli):
    """The same agent writing where `writes:` allows succeeds: the file is the step's work, on the branch."""
    repo, start = claude_repo
    stub = start([{"tool": "Write", "input": {"file_path": "notes/ok.md", "content": "ok\n"}},
                  {"text": "## Summary\nWrote the notes."}])
    steps = "  - {id: write, agent: writer, prompt: 'Write the notes', writes: ['notes/*']}\n"
    result = run_workflow(workflow(repo, WRITER, steps))
    write = result["write"]
    assert write.status == "success" and not write.degraded
    assert [(f.path, f.action, f.added) for f in write.changes.files] == [("notes/ok.md", "created", 1)]
    assert "File created successfully" in last_user_text(stub.model_requests[1]["body"])
    assert git(repo, "show", f"{result.work['branch']}:notes/ok.md") == "ok\n"
    assert [(u["tool"], u["target"], u["outcome"]) for u in tool_uses(cli, result.run_id)] == [
        ("Write", "notes/ok.md", "ok")]


def test_without_writes_a_write_anywhere_is_captured(claude_repo):
    """No `writes:`: anywhere in the run's worktree; a Write to src/ is the step's work as before."""
    repo, start = claude_repo
    start([{"tool": "Write", "input": {"file_path": "src/evil.py", "content": "import os\n"}},
           {"text": "## Summary\nWrote it."}])
    result = run_workflow(workflow(repo, WRITER, "  - {id: write, agent: writer, prompt: 'Write it'}\n"))
    write = result["write"]
    assert write.status == "success" and not write.degraded
    assert [(f.path, f.action) for f in write.changes.files] == [("src/evil.py", "created")]
    assert git(repo, "show", f"{result.work['branch']}:src/evil.py") == "import os\n"


def test_without_writes_a_write_outside_the_runs_worktree_is_refused(claude_repo):
    """No `writes:` still means "inside the run's worktree": a Write by absolute path into the
    user's own tree (where no patch would see it) is refused, and the tree is untouched."""
    repo, start = claude_repo
    aimed = repo / "src" / "stray.py"
    start([{"tool": "Write", "input": {"file_path": str(aimed), "content": "stray\n"}},
           {"text": "## Summary\nWrote it."}])
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(workflow(repo, WRITER, "  - {id: write, agent: writer, prompt: 'Write it'}\n"))
    write = failure.value.result.steps["write"]
    assert write.status == "failed" and f"Write {aimed.resolve()}, refused" in write.summary
    assert not aimed.exists()


def test_writes_does_not_widen_what_the_agent_may_use(claude_repo, tmp_path):
    """`writes: ['*']` allows the path but not the tool: an Edit outside allowed_tools is still
    refused by Claude Code's own permission mode, and the step fails naming it."""
    repo, start = claude_repo
    stub = start([{"tool": "Edit", "input": {"file_path": "invoices/rules.txt", "old_string": "R-17",
                                             "new_string": "R-99"}},
                  {"text": "## Summary\nCould not edit."}])
    steps = "  - {id: edit, agent: tidier, prompt: 'Edit R-17', writes: ['*']}\n"
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(workflow(repo, TIDIER, steps))
    assert "a tool was denied (Edit)" in failure.value.result.steps["edit"].summary
    assert "Permission to use Edit has been denied" in last_user_text(stub.model_requests[1]["body"])
    (line,) = audited(failure.value.result.run_id, tmp_path / "audit.jsonl")
    assert line["tools_denied"] == ["Edit"]

"""A `claude-code` agent's work: the real bundled Claude Code CLI uses its tools in the run's
worktree, answering from a local stub of the Anthropic Messages API (tests/fixtures/model_stubs.py);
what it changed, which tools it could not use, and its tool uses in agentflow's logs."""

from __future__ import annotations

import json
from pathlib import Path

from claude_repo import RULES, audited, claude_repo, git  # noqa: F401 (claude_repo: a fixture)
from model_stubs import last_user_text

from agentflow import run_workflow

# No circuit breaker: a circuit kept on the session's server would carry one test's failures
# into the next. Write and Edit allowed: in `dontAsk` mode (the default) they are refused.
WRITER = ("  writer: {kind: claude-code, allowed_tools: [Read, Write, Edit], circuit_breaker: false}\n"
          "  stand-in: {kind: python, callable: 'probe:echo'}\n")


def workflow(repo: Path, agents: str, steps: str) -> str:
    path = repo / "wf.yaml"
    path.write_text(f"name: work\nagents:\n{agents}steps:\n{steps}")
    return str(path)


def test_a_written_file_is_the_steps_work_on_the_runs_branch(claude_repo, tmp_path):
    """The CLI's Write lands in the run's worktree: `created`, the artifact, on the branch, not in
    the user's tree; the audit line holds the patch's digest, the step's page in the UI its diff."""
    repo, start = claude_repo
    note = "# Notes\nR-17 holds.\n"
    stub = start([{"tool": "Write", "input": {"file_path": "notes/a.md", "content": note}},
                  {"text": "## Summary\nWrote the notes.\n\nCreated: other.md\n"}])
    result = run_workflow(workflow(repo, WRITER, "  - {id: write, agent: writer, prompt: 'Write the notes'}\n"))
    write = result["write"]
    assert write.status == "success" and not write.degraded
    assert [(f.path, f.action, f.added, f.deleted) for f in write.changes.files] == [("notes/a.md", "created", 2, 0)]
    assert [(a.path, a.action) for a in write.artifacts] == [("notes/a.md", "created")]
    assert write.changes.unbacked_claims == ["other.md"]  # claimed by the model, not written
    assert "File created successfully" in last_user_text(stub.model_requests[1]["body"])
    assert not (repo / "notes").exists()  # the run worked in a worktree, not in the user's tree
    assert git(repo, "show", f"{result.work['branch']}:notes/a.md") == note
    (line,) = audited(result.run_id, tmp_path / "audit.jsonl")
    assert (line["patch"], line["files_changed"]) == (write.changes.patch, 1)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        pages = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["work-write"])))
    page = next(p.data for p in pages if str(p.flow_run_id) == result.run_id)
    assert "## Changes (1 file +2 -0)" in page and "+R-17 holds." in page and "`other.md`" in page


def test_an_edit_of_a_tracked_file_is_captured_as_modified_with_line_counts(claude_repo):
    """The CLI's Edit of a committed file is `modified`, with the lines it added and deleted."""
    repo, start = claude_repo
    start([{"tool": "Edit", "input": {"file_path": "invoices/rules.txt", "old_string": "R-17: VAT is 15%\n",
                                      "new_string": "R-17: VAT is 15%,\n  rounded per line\n"}},
           {"text": "## Summary\nR-17 now says how to round."}])
    result = run_workflow(workflow(repo, WRITER, "  - {id: edit, agent: writer, prompt: 'Clarify R-17'}\n"))
    edit = result["edit"]
    assert [(f.path, f.action, f.added, f.deleted) for f in edit.changes.files] == [
        ("invoices/rules.txt", "modified", 2, 1)]
    assert (repo / "invoices" / "rules.txt").read_text() == RULES  # the user's own copy is untouched
    assert "rounded per line" in git(repo, "show", f"{result.work['branch']}:invoices/rules.txt")


def test_a_tool_the_subagent_does_not_have_fails_it_and_the_fallback_answers(claude_repo, tmp_path):
    """A subagent with `tools: Read, Grep, Glob` asking for Bash ends `success` in Claude Code:
    agentflow fails it (not retried), the fallback answers, the audit names Bash as denied."""
    repo, start = claude_repo
    folder = repo / ".claude" / "agents"
    folder.mkdir(parents=True)
    (folder / "looker.md").write_text("---\nname: looker\ndescription: Looks at invoices.\n"
                                      "tools: Read, Grep, Glob\n---\nYou look at invoices.\n")
    stub = start([{"tool": "Bash", "input": {"command": "touch made.txt"}}, {"text": "## Summary\nDone."}])
    agents = ("  looker: {kind: claude-code, subagent: looker, fallback: stand-in, circuit_breaker: false}\n"
              "  stand-in: {kind: python, callable: 'probe:echo'}\n")
    result = run_workflow(workflow(repo, agents, "  - {id: look, agent: looker, prompt: 'Count', retries: 2}\n"))
    look = result["look"]
    assert look.degraded and look.fallback_used == "stand-in" and look.primary_agent == "looker"
    assert result.steps["look"].attempts == 1  # a missing tool is not retried
    assert "No such tool available: Bash" in last_user_text(stub.model_requests[1]["body"])  # the CLI's own say
    primary, fallback = audited(result.run_id, tmp_path / "audit.jsonl")
    assert (primary["agent"], primary["outcome"], primary["tools_denied"]) == ("looker", "failed: StepFailed",
                                                                               ["Bash"])
    assert primary["tools_allowed"] == ["Glob", "Grep", "Read"]
    assert "asked for Bash, which it does not have (its tools: Read, Grep, Glob)" in primary["error"]
    assert (fallback["agent"], fallback["outcome"], fallback["in_place_of"]) == ("stand-in", "success", "looker")


def test_each_tool_use_is_a_line_of_the_runs_log(claude_repo, cli):
    """`agentflow logs RUN` shows the agent's tool use: the tool, its path, and that it was not refused."""
    repo, start = claude_repo
    start([{"tool": "Write", "input": {"file_path": "notes/b.md", "content": "b\n"}}, {"text": "Wrote it."}])
    result = run_workflow(workflow(repo, WRITER, "  - {id: write, agent: writer, prompt: 'Write b'}\n"))
    shown = cli("logs", result.run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    uses = [line for line in map(json.loads, shown.stdout.splitlines()) if line.get("tool")]
    assert [(u["tool"], u["target"], u["outcome"], u["refused"], u["step"], u["agent"]) for u in uses] == [
        ("Write", "notes/b.md", "ok", False, "write", "writer")]
    assert uses[0]["workflow"] == "work" and uses[0]["event"] == "agent writer: Write notes/b.md: ok"

"""The audit log (tasks/audit.py) and `agentflow audit`: one line per agent call, with a
digest of the request and never its secrets."""

from __future__ import annotations

import json

CANARY = "canary-9e8d7c-audit-secret"
WORKFLOW = """
name: audited
inputs:
  token: {secret: true}
  topic: {default: VAT}
agents:
  echoer: {kind: python, callable: "probe:echo"}
  reviewer: {kind: claude-code, allowed_tools: [Read, Grep], disallowed_tools: [Bash], fallback: echoer}
steps:
  - {id: ask, agent: echoer, prompt: "about {{ inputs.topic }} with {{ inputs.token }}"}
  - {id: review, agent: reviewer, prompt: "review {{ inputs.topic }}"}
  - {id: plain, run: [echo, not an agent]}
"""


def test_every_agent_call_is_audited_without_its_secrets(cli, tmp_path):
    audit = tmp_path / "audit.jsonl"
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    # No Claude credentials here: `reviewer` cannot serve, its fallback answers.
    env = {"AGENTFLOW_AUDIT_FILE": str(audit), "AGENTFLOW_SECRET_TOKEN": CANARY, "ANTHROPIC_API_KEY": "",
           "CLAUDE_CONFIG_DIR": str(tmp_path / "no-claude")}
    runs = []
    for topic in ("VAT", "VAT", "GST"):
        # --no-cache: a step answered from the cache calls no agent, and is not audited.
        done = cli("run", "wf.yaml", "-i", f"topic={topic}", "--json", "--no-cache", cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        runs.append(json.loads(done.stdout)["run_id"])
    assert CANARY not in audit.read_text()

    first = [json.loads(line) for line in cli("audit", "--run", runs[0][:8], "--json", env=env).stdout.splitlines()]
    assert [(c["step"], c["agent"], c["outcome"]) for c in first] == [
        ("ask", "echoer", "success"), ("review", "reviewer", "failed: AgentNotSetUp"),
        ("review (fallback echoer)", "echoer", "success")]
    ask, refused, answered = first
    assert {c["run_id"] for c in first} == {runs[0]} and {c["workflow"] for c in first} == {"audited"}
    assert (refused["kind"], refused["tools_allowed"], refused["tools_denied"]) == ("claude-code", ["Grep", "Read"],
                                                                                     ["Bash"])
    assert "no Claude credentials here" in refused["error"] and answered["in_place_of"] == "reviewer"
    assert all(isinstance(c["duration_s"], float) and c["request"].startswith("sha256:") for c in first)

    def digest(run: str) -> str:
        (call,) = [json.loads(line) for line in cli("audit", "--run", run, "--agent", "echoer", "--json",
                                                         env=env).stdout.splitlines() if '"ask"' in line]
        return call["request"]

    assert digest(runs[0]) == digest(runs[1]) != digest(runs[2])  # the same request, then another topic
    table = cli("audit", "--agent", "reviewer", env=env)
    assert table.returncode == 0 and table.stdout.count("AgentNotSetUp") == 3
    assert len(cli("audit", "--since", "1h", "--json", env=env).stdout.splitlines()) == 9


def test_audit_says_what_is_wrong(cli, tmp_path):
    env = {"AGENTFLOW_AUDIT_FILE": str(tmp_path / "none.jsonl")}
    missing = cli("audit", env=env)
    assert missing.returncode == 1 and "no audit log at" in missing.stderr
    since = cli("audit", "--since", "soon", env=env)
    assert since.returncode == 2 and "--since 'soon': a duration is" in since.stderr

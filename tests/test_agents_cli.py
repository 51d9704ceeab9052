"""`agentflow agents`: every agent, where it is defined, its chain, circuit and availability."""

from __future__ import annotations

import json
import socket


def test_agents_lists_kind_chain_circuit_and_why_each_is_or_is_not_available(cli, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    folder = tmp_path / ".claude" / "agents"
    folder.mkdir(parents=True)
    (folder / "checker.md").write_text("---\nname: checker\ndescription: Checks.\ntools: Read\n---\nCheck it.\n")
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "wf.yaml").write_text(f"""
name: listed
agents:
  hook: {{kind: http, url: "http://127.0.0.1:{closed_port}/x", fallback: local}}
  local: {{kind: shell, command: [sh, -c, cat], fallback: gone}}
  gone: {{kind: shell, command: [no-such-program-anywhere]}}
steps:
  - {{id: a, agent: hook}}
  - {{id: b, agent: checker}}
""")
    done = cli("agents", "--json", cwd=tmp_path, env={"HOME": str(tmp_path / "home"), "ANTHROPIC_API_KEY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["agent"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"hook", "local", "gone", "checker"}
    assert rows["hook"]["fallbacks"] == ["local", "gone"] and rows["hook"]["circuit"]["state"] == "closed"
    assert rows["hook"]["available"] is False and "cannot be reached" in rows["hook"]["why"]
    assert rows["local"]["available"] is True and rows["local"]["circuit"] is None  # no breaker on local kinds
    assert rows["gone"]["available"] is False and "not on PATH" in rows["gone"]["why"]
    checker = rows["checker"]
    assert checker["kind"] == "claude-code" and checker["defined_in"].endswith(".claude/agents/checker.md")
    assert checker["available"] is False and "no credentials" in checker["why"] and "bundled" in checker["why"]
    assert all(row["used_by"] == ["listed"] for row in rows.values())

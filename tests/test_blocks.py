"""`agent: block:NAME`: an agent kept as a Prefect block, its key in a credentials block."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from model_stubs import AnthropicStub

from agentflow import run_workflow
from agentflow.blocks import AgentConfig, AgentCredentials
from agentflow.errors import SpecError

CANARY = "sk-canary-block-4e1f77"


def _block_name(tmp_path) -> str:
    return f"reviewer-{tmp_path.name[-10:].lower().replace('_', '-')}"


def test_a_block_agent_runs_with_its_credentials_and_the_key_is_kept_out(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the key comes from the block only
    stub = AnthropicStub([{"text": "## Summary\nReviewed from a block."}]).start()
    try:
        AgentCredentials.register_type_and_schema()
        AgentConfig.register_type_and_schema()
        name = _block_name(tmp_path)
        AgentConfig(kind="llm", model="anthropic:claude-sonnet-4-6", base_url=stub.url, system="You review.",
                    credentials=AgentCredentials(api_key=CANARY, variable="ANTHROPIC_API_KEY")).save(name, overwrite=True)
        path = tmp_path / "wf.yaml"
        path.write_text(f"name: from-block\nsteps:\n  - {{id: review, agent: 'block:{name}', prompt: 'Check it'}}\n")
        result = run_workflow(str(path))
    finally:
        stub.stop()
    assert result["review"].summary == "Reviewed from a block."
    (request,) = stub.model_requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert "<redacted>" in (headers.get("x-api-key"), headers.get("authorization"))  # a key was sent
    assert "You review." in json.dumps(request["body"]["system"])
    assert CANARY not in result.model_dump_json()
    storage = Path(os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"])
    leaked = [str(p) for p in storage.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaked == []


def test_a_missing_block_is_named_with_the_fix(tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text("name: no-block\nsteps:\n  - {id: review, agent: 'block:no-such-agent-block', prompt: x}\n")
    with pytest.raises(SpecError) as failure:
        run_workflow(str(path))
    message = str(failure.value)
    assert "agent `block:no-such-agent-block`: no usable AgentConfig block `no-such-agent-block`" in message
    assert "prefect block register -m agentflow.blocks" in message


def test_the_cli_says_a_missing_block_is_invalid_input(cli, tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text("name: no-block\nsteps:\n  - {id: review, agent: 'block:absent-block', prompt: x}\n")
    done = cli("run", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no usable AgentConfig block `absent-block`" in done.stderr and "Traceback" not in done.stderr


def test_agents_lists_block_agents_with_their_credentials(cli, tmp_path):
    """`agentflow agents` shows a block agent as the server holds it, available with the key of
    its credentials block (none in the environment), and a missing block with the fix."""
    AgentCredentials.register_type_and_schema()
    AgentConfig.register_type_and_schema()
    name = _block_name(tmp_path)
    AgentConfig(kind="llm", model="openai-chat:gpt-4o-mini", fallback="local",
                credentials=AgentCredentials(api_key=CANARY, variable="OPENAI_API_KEY")).save(name, overwrite=True)
    path = tmp_path / "wf.yaml"
    path.write_text(f"name: listed-blocks\nsteps:\n  - {{id: a, agent: 'block:{name}', prompt: x}}\n"
                    "  - {id: b, agent: 'block:no-such-listed-block', prompt: y}\n")
    done = cli("agents", str(path), "--json", cwd=tmp_path, env={"OPENAI_API_KEY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["agent"]: row for row in json.loads(done.stdout)}
    found = rows[f"block:{name}"]
    assert (found["kind"], found["model"], found["fallbacks"]) == ("llm", "openai-chat:gpt-4o-mini", ["local"])
    assert found["available"] is True and found["why"] == "API key from a credentials block"
    assert found["defined_in"] == f"Prefect block {name}"
    missing = rows["block:no-such-listed-block"]
    assert missing["available"] is False and "no usable AgentConfig block `no-such-listed-block`" in missing["why"]
    assert "prefect block register -m agentflow.blocks" in missing["why"]
    assert CANARY not in done.stdout + done.stderr

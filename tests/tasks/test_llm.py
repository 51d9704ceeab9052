"""The `llm` agent: pydantic-ai against local stubs of the Anthropic and OpenAI APIs."""

from __future__ import annotations

import json

import pytest
from model_stubs import AnthropicStub, OpenAIStub, last_user_text

from agentflow import run_workflow


@pytest.fixture
def stubs(monkeypatch):
    started: list = []

    def start(kind, script):
        stub = (AnthropicStub if kind == "anthropic" else OpenAIStub)(script)
        stub.start()
        started.append(stub)
        return stub

    monkeypatch.setenv("ANTHROPIC_API_KEY", "dummy")
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")
    yield start
    for stub in started:
        stub.stop()


def write(tmp_path, agent: str, step_extra: str = "") -> str:
    agent = agent[:-1] + ", circuit_breaker: false}"  # failures on purpose: no circuit kept between tests
    path = tmp_path / "wf.yaml"
    path.write_text(f"""
name: llm
agents:
  model: {agent}
  stand-in: {{kind: python, callable: "probe:echo"}}
steps:
  - {{id: ask, agent: model, prompt: "Summarise the change"{step_extra}}}
""")
    return str(path)


def test_an_anthropic_model_answers_with_usage(stubs, tmp_path):
    stub = stubs("anthropic", [{"text": "## Summary\nOne rounding fix.\n\nModified: vat.py"}])
    agent = (f'{{kind: llm, model: "anthropic:claude-sonnet-4-6", base_url: "{stub.url}", '
             'system: "You summarise diffs.", max_tokens: 300}')
    ask = run_workflow(write(tmp_path, agent))["ask"]
    assert ask.summary == "One rounding fix." and ask.artifacts[0].path == "vat.py"
    assert ask.metrics["input_tokens"] > 0 and ask.metrics["output_tokens"] > 0 and ask.metrics["requests"] == 1
    (request,) = stub.model_requests
    assert request["body"]["model"] == "claude-sonnet-4-6" and request["body"]["max_tokens"] == 300
    assert "You summarise diffs." in json.dumps(request["body"]["system"])
    assert last_user_text(request["body"]) == "Summarise the change"


def test_an_openai_compatible_server_gives_structured_output(stubs, tmp_path):
    stub = stubs("openai", [{"structured": {"summary": "fine", "risk": 2}}])
    schema = "{type: object, properties: {summary: {type: string}, risk: {type: integer}}, required: [summary, risk]}"
    agent = f'{{kind: llm, model: "openai-chat:local-model", base_url: "{stub.url}/v1", output_schema: {schema}}}'
    ask = run_workflow(write(tmp_path, agent))["ask"]
    assert ask.data == {"summary": "fine", "risk": 2} and ask.summary == "fine"
    assert stub.model_requests[0]["body"]["model"] == "local-model"


def test_a_429_is_retried_by_the_step_not_the_vendor_client_then_falls_back(stubs, tmp_path):
    """The vendor client's own retries are off: each step attempt is one request."""
    stub = stubs("openai", [{"status": 429}])
    agent = f'{{kind: llm, model: "openai-chat:m", base_url: "{stub.url}/v1", fallback: stand-in}}'
    extra = ", retries: 1, retry_backoff: {base_seconds: 0, max_seconds: 0}"
    result = run_workflow(write(tmp_path, agent, extra))
    assert result["ask"].fallback_used == "stand-in"
    assert len(stub.model_requests) == 2 and result.steps["ask"].attempts == 2


def test_no_api_key_makes_the_agent_unavailable(stubs, tmp_path, monkeypatch):
    stub = stubs("anthropic", [{"text": "never"}])
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    agent = f'{{kind: llm, model: "anthropic:claude-sonnet-4-6", base_url: "{stub.url}", fallback: stand-in}}'
    result = run_workflow(write(tmp_path, agent, ", retries: 2"))
    assert result["ask"].fallback_used == "stand-in" and result.steps["ask"].attempts == 1
    assert stub.model_requests == []

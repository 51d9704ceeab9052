"""The registry of agent kinds (tasks/kinds.py): every kind a workflow may declare has one
record, and each record answers what the rest of agentflow asks of a kind."""

from __future__ import annotations

import http.server
import threading
import typing

import pytest

from agentflow.flows.engine import requests
from agentflow.flows.language import spec
from agentflow.flows.language.spec import AgentSpec
from agentflow.tasks import credentials
from agentflow.tasks.kinds import BACKENDS, KINDS
from agentflow.tasks.request import Kind

pytestmark = pytest.mark.unit


def test_every_kind_the_language_knows_is_registered_and_dispatched():
    assert set(KINDS) == set(spec.AGENT_KINDS), (
        "the language's AGENT_KINDS and tasks/kinds.py's KINDS differ: a kind is declared by its "
        "backend's module (an AgentKind) and listed in both")
    for kind in KINDS.values():
        assert kind.request_kind in typing.get_args(Kind), f"{kind.name}: add {kind.request_kind!r} to AgentRequest's Kind"
        assert BACKENDS[kind.request_kind] is kind.backend


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_kind_says_whether_it_can_serve_here_and_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no program at all
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY",
                 "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"):
        monkeypatch.delenv(name, raising=False)

    def ready(**fields):
        agent = AgentSpec(**fields)
        return KINDS[agent.kind].ready(agent, None)

    assert ready(kind="shell", command=["no-such-program", "x"]) == (False, "`no-such-program` is not on PATH")
    assert ready(kind="shell", command=["{{ inputs.tool }}"]) == (True, "its program is chosen at run time")
    assert ready(kind="python", callable="agentflow.tasks.builtin:no_such") == (
        False, "`agentflow.tasks.builtin:no_such` cannot be imported here")
    port = _free_port()
    ok, why = ready(kind="http", url=f"http://127.0.0.1:{port}/hook")
    assert not ok and why.startswith(f"127.0.0.1:{port} cannot be reached")
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert ready(kind="http", url=f"http://127.0.0.1:{server.server_port}/hook") == (
            True, f"127.0.0.1:{server.server_port} answers")
    finally:
        server.shutdown()
    assert ready(kind="llm", model="openai:gpt-5") == (False, "needs an API key: set OPENAI_API_KEY")
    assert KINDS["llm"].ready(AgentSpec(kind="llm", model="openai:gpt-5"), {"OPENAI_API_KEY": "sk-given-by-a-block"}) \
        == (True, "API key from a credentials block")
    ok, why = ready(kind="claude-code")
    assert not ok and "no credentials: set ANTHROPIC_API_KEY or run `claude login`" in why
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment")
    assert ready(kind="claude-code") == (True, why.split(";")[0] + "; credentials from $ANTHROPIC_API_KEY")


def test_the_reason_before_a_call_is_the_kinds_own(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert KINDS["llm"].not_set_up({"model": "openai:gpt-5"}, None) == "(openai:gpt-5) needs an API key: set OPENAI_API_KEY"
    assert KINDS["llm"].not_set_up({"model": "openai:gpt-5"}, {"OPENAI_API_KEY": "sk-given"}) is None
    assert KINDS["shell"].not_set_up({}, None) is None


def test_each_kind_names_the_variables_it_reads_a_credential_from():
    assert credentials.variables("http", {"headers": {"Authorization": "Bearer ${HOOK_TOKEN}",
                                                      "X-Team": "${TEAM}-${HOOK_TOKEN}", "Accept": "json"}}) \
        == ("HOOK_TOKEN", "TEAM")
    assert credentials.variables("llm", {"model": "anthropic:claude-sonnet-4-6"}) == ("ANTHROPIC_API_KEY",)
    assert credentials.variables("llm", {"model": "ollama:llama3"}) == ()
    assert "ANTHROPIC_API_KEY" in credentials.variables("claude-code", {})
    assert credentials.variables("shell", {}) == credentials.variables("python", {}) == ()


def test_each_kind_builds_its_own_request():
    common = {"prompt": "fix it", "params": {"path": "a.py"}, "files": [], "step": "fix", "workflow": "w",
              "label": "fix", "agent": "a"}
    shell = requests.agent_request(AgentSpec(kind="shell", command=["lint", "{{ with.path }}", "{{ prompt }}"]),
                                   None, {}, common)
    assert (shell.kind, shell.argv, shell.agent_config) == ("process", ["lint", "a.py", "fix it"], {})
    python = requests.agent_request(AgentSpec(kind="python", callable="agentflow.tasks.builtin:count_tests"), None, {}, common)
    assert (python.kind, python.callable) == ("python", "agentflow.tasks.builtin:count_tests")
    remote = requests.agent_request(AgentSpec(kind="http", url="http://127.0.0.1:9/hook"), None, {}, common)
    assert remote.kind == "http" and remote.agent_config["url"] == "http://127.0.0.1:9/hook"
    assert KINDS["http"].carries_config and not KINDS["shell"].carries_config

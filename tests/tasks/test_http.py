"""The `http` agent against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import pytest
from webservice import Service

from agentflow import run_workflow
from agentflow.errors import WorkflowFailed


@pytest.fixture
def service():
    made = []

    def make(*answers):
        made.append(Service(list(answers)))
        return made[-1]

    yield make
    for server in made:
        server.close()


def workflow(tmp_path, url: str, step_extra: str = "", headers: str = "{}") -> str:
    path = tmp_path / "wf.yaml"
    path.write_text(f"""
name: webhook
inputs:
  change: {{default: "VAT invoices"}}
agents:
  reviewer: {{kind: http, url: "{url}", headers: {headers}, fallback: local, circuit_breaker: false}}
  local: {{kind: python, callable: "probe:echo"}}
steps:
  - {{id: review, agent: reviewer, prompt: "Review {{{{ inputs.change }}}}", with: {{depth: 2}}{step_extra}}}
""")
    return str(path)


def test_json_answer_becomes_the_result_and_the_request_is_json(service, tmp_path, monkeypatch):
    server = service((200, "application/json", json.dumps({"summary": "looks right", "data": {"issues": 0},
                                                           "confidence": 0.9})))
    monkeypatch.setenv("REVIEW_TOKEN", "tok-123")
    result = run_workflow(workflow(tmp_path, server.url, headers='{Authorization: "Bearer ${REVIEW_TOKEN}"}'))
    review = result["review"]
    assert (review.summary, review.data, review.confidence) == ("looks right", {"issues": 0}, 0.9)
    assert review.metrics["http_status"] == 200 and not review.degraded
    (request,) = server.received
    assert request["body"] == {"workflow": "webhook", "step": "review", "prompt": "Review VAT invoices",
                               "with": {"depth": 2}, "item": None, "files": []}
    assert request["headers"]["Authorization"] == "Bearer tok-123"


def test_text_answer_is_read_in_the_earlier_engines_format(service, tmp_path):
    server = service((200, "text/plain", "## Summary\nTwo issues.\nModified: src/vat.py\n"))
    review = run_workflow(workflow(tmp_path, server.url))["review"]
    assert review.summary == "Two issues." and review.artifacts[0].path == "src/vat.py"


def test_4xx_is_not_retried_and_falls_back(service, tmp_path):
    server = service((422, "application/json", '{"error": "bad prompt"}'))
    result = run_workflow(workflow(tmp_path, server.url, ", retries: 3"))
    assert result["review"].fallback_used == "local" and len(server.received) == 1
    assert result.steps["review"].attempts == 1


def test_5xx_is_retried_then_falls_back(service, tmp_path):
    server = service((503, "text/plain", "busy"))
    steps = ", retries: 2, retry_backoff: {base_seconds: 0, max_seconds: 0}"
    result = run_workflow(workflow(tmp_path, server.url, steps))
    assert result["review"].fallback_used == "local" and len(server.received) == 3


def test_a_5xx_then_success_is_a_retry_not_a_fallback(service, tmp_path):
    server = service((500, "text/plain", "oops"), (200, "application/json", '{"summary": "fine"}'))
    steps = ", retries: 1, retry_backoff: {base_seconds: 0, max_seconds: 0}"
    review = run_workflow(workflow(tmp_path, server.url, steps))["review"]
    assert review.summary == "fine" and not review.degraded


def test_nothing_listening_makes_the_agent_unavailable(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_workflow(workflow(tmp_path, f"http://127.0.0.1:{port}/x", ", retries: 3"))
    assert result["review"].fallback_used == "local" and result.steps["review"].attempts == 1


def test_a_header_naming_an_unset_variable_says_which(service, tmp_path, monkeypatch):
    server = service((200, "application/json", '{"summary": "x"}'))
    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)
    path = workflow(tmp_path, server.url, headers='{X-Token: "${NOT_SET_TOKEN}"}')
    with open(path) as handle:
        text = handle.read().replace(", fallback: local", "")  # no fallback: the failure is the answer
    with open(path, "w") as handle:
        handle.write(text)
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(path)
    assert "needs the environment variable NOT_SET_TOKEN" in failure.value.result.steps["review"].summary
    assert server.received == []


HEADER_CANARY = "canary-http-4b9e21d7"


def test_a_token_the_service_echoes_is_written_nowhere(service, cli, tmp_path, prefect_server):
    """A header's ${VAR} is a credential: when the service says it back, in an answer and in an
    error, neither agentflow (result, log, audit, journal, records) nor the server (task runs'
    states and messages, logs, artifacts, events) keeps it."""
    from server_search import now, run_on_server

    server = service((200, "application/json", json.dumps({"summary": "you sent {echo}", "data": {"got": "{echo}"}})),
                     (401, "text/plain", "token {echo} is not valid"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "wf.yaml").write_text(f"""
name: echoing
agents:
  svc: {{kind: http, url: "{server.url}", headers: {{Authorization: "Bearer ${{SVC_TOKEN}}"}}, circuit_breaker: false}}
steps:
  - {{id: first, agent: svc, prompt: hello}}
  - {{id: second, agent: svc, prompt: again, depends_on: [first]}}
""")
    env = {"SVC_TOKEN": HEADER_CANARY, "AGENTFLOW_LOG_FILE": str(tmp_path / "logs" / "agentflow.jsonl"),
           "AGENTFLOW_AUDIT_FILE": str(tmp_path / "logs" / "audit.jsonl"),
           "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path / "results")}
    since = now()
    done = cli("run", "wf.yaml", "--json", cwd=project, env=env)
    assert done.returncode == 1, done.stdout + done.stderr  # the second call is refused
    assert [r["headers"]["Authorization"] for r in server.received] == [f"Bearer {HEADER_CANARY}"] * 2
    report = json.loads(done.stdout)
    assert report["steps"]["first"]["result"]["summary"] == "you sent Bearer [secret]"
    assert "token Bearer [secret] is not valid" in report["steps"]["second"]["result"]["summary"]
    assert HEADER_CANARY not in done.stdout + done.stderr
    written = [str(p) for p in tmp_path.rglob("*") if p.is_file() and HEADER_CANARY.encode() in p.read_bytes()]
    assert written == []
    assert (tmp_path / "logs" / "audit.jsonl").read_text().count('"agent": "svc"') == 2  # the audit was written
    held = run_on_server(prefect_server, report["run_id"], since, "prefect.flow-run.Failed")
    assert "[secret]" in held and HEADER_CANARY not in held

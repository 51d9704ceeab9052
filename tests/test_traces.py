"""OpenTelemetry traces (agentflow/tracing.py): with OTEL_EXPORTER_OTLP_ENDPOINT set, a run's span,
each step's span under it and each agent call's span under its step reach an OTLP collector;
without it, nothing is sent."""

from __future__ import annotations

import json
import uuid

import pytest
from otlp import Collector
from waiting import until

WORKFLOW = """
name: {name}
agents:
  down:
    kind: shell
    command: [sh, -c, "exit 3"]
    fallback: up
  up:
    kind: shell
    command: [sh, -c, 'printf "## Summary\\nup answered\\n\\n## Metrics\\n- tokens: 5\\n- cost_usd: 0.5\\n"']
steps:
  - {{id: plain, run: [echo, hi], cache: false}}
  - {{id: answer, agent: down, prompt: "hello", cache: false, retries: 0}}
"""


@pytest.fixture
def collector():
    running = Collector()
    yield running
    running.close()


def test_a_run_its_steps_and_agent_calls_are_spans_in_one_trace(cli, write, collector, tmp_path):
    """The run's span is the root; each step's task run a child of it; each agent call a child of
    its step's, with the agent's attributes (the failing primary's marked as an error)."""
    name = f"traced_{uuid.uuid4().hex[:8]}"
    path = write(WORKFLOW.format(name=name))
    done = cli("run", str(path), "--json", cwd=tmp_path,
               env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "agentflow-test"})
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]

    def complete():
        spans = collector.received()
        roots = [s for s in spans if s.attributes.get("prefect.run.id") == run_id]
        calls = [s for s in spans if s.attributes.get("agentflow.workflow") == name]
        return (roots, spans) if roots and len(calls) >= 2 else None

    (root,), spans = until(complete, 30, "the run's spans at the collector")
    assert root.parent_id == "" and root.attributes["prefect.run.type"] == "flow"
    in_trace = [s for s in spans if s.trace_id == root.trace_id]
    steps = {s.name: s for s in in_trace if s.attributes.get("prefect.run.type") == "task"}
    assert {"plain", "answer", "answer (fallback up)"} <= set(steps)
    assert all(s.parent_id == root.span_id for s in steps.values())
    calls = {s.attributes["agentflow.agent"]: s for s in in_trace if "agentflow.agent" in s.attributes}
    assert set(calls) == {"down", "up"}  # `plain` runs a command, not an agent: no call span
    assert calls["down"].parent_id == steps["answer"].span_id and calls["down"].status == 2
    up = calls["up"]
    assert up.parent_id == steps["answer (fallback up)"].span_id and up.name == "agent up"
    assert up.attributes["agentflow.in_place_of"] == "down" and up.attributes["agentflow.kind"] == "process"
    assert (up.attributes["agentflow.outcome"], up.attributes["agentflow.tokens"],
            up.attributes["agentflow.cost_usd"]) == ("success", 5, 0.5)


def test_traces_turned_off_send_nothing(cli, write, collector, tmp_path):
    """OTEL_SDK_DISABLED=true (OpenTelemetry's own switch) wins over an endpoint: no span is sent;
    the same run traced sends its spans to the same collector."""
    path = write(WORKFLOW.format(name=f"untraced_{uuid.uuid4().hex[:8]}"))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    off = cli("run", str(path), cwd=tmp_path, env={**env, "OTEL_SDK_DISABLED": "true"})
    assert off.returncode == 0, off.stderr
    assert collector.received() == []
    on = cli("run", str(path), cwd=tmp_path, env=env)
    assert on.returncode == 0, on.stderr
    until(collector.received, 30, "the traced run's spans")

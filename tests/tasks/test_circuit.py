"""The circuit breaker per agent, shared by separate processes through the Prefect server."""

from __future__ import annotations

import json

import pytest
from webservice import Service

from agentflow.tasks import circuit


def _workflow(tmp_path, agent: str, url: str, cooldown: str) -> str:
    path = tmp_path / f"wf-{cooldown}.yaml"
    path.write_text(f"""
name: breaker
agents:
  {agent}: {{kind: http, url: "{url}", fallback: local, circuit_breaker: {{failures: 2, cooldown: {cooldown}}}}}
  local: {{kind: python, callable: "probe:echo"}}
steps:
  - {{id: ask, agent: {agent}, prompt: hello}}
""")
    return str(path)


def test_the_circuit_opens_is_shared_across_processes_and_closes_after_a_good_probe(cli, tmp_path):
    agent = f"flaky-{tmp_path.name[-12:].lower().replace('_', '-')}"
    failing = Service([(500, "text/plain", "down")])
    healthy = Service([(200, "application/json", '{"summary": "back"}')])
    try:
        def run(url: str, cooldown: str) -> dict:
            done = cli("run", _workflow(tmp_path, agent, url, cooldown), "--json", cwd=tmp_path)
            assert done.returncode == 0, done.stdout + done.stderr
            return json.loads(done.stdout)["steps"]["ask"]["result"]

        # two runs, each its own process: two failures in a row open the circuit
        assert run(failing.url, "1h")["fallback_used"] == "local"
        assert circuit.read(agent).state == "closed" and circuit.read(agent).failures == 1
        assert run(failing.url, "1h")["fallback_used"] == "local"
        assert circuit.read(agent).state == "open" and len(failing.received) == 2

        # a third process finds it open: the agent is not called, the fallback answers at once
        assert run(failing.url, "1h")["fallback_used"] == "local"
        assert len(failing.received) == 2

        # after the cool-down (none here) one call probes; a failed probe opens it again
        assert run(failing.url, "0s")["fallback_used"] == "local"
        assert len(failing.received) == 3 and circuit.read(agent).state == "open"

        # a good probe closes it, and the agent answers itself again
        answer = run(healthy.url, "0s")
        assert answer["summary"] == "back" and not answer["degraded"]
        assert circuit.read(agent) == circuit.Circuit()
    finally:
        failing.close()
        healthy.close()


@pytest.mark.unit
def test_variable_names_are_valid_and_distinct():
    names = {circuit.variable_name(a) for a in ("Code.Reviewer", "code-reviewer", "code_reviewer")}
    assert len(names) == 3
    assert all(n.startswith("agentflow-circuit-") and n == n.lower() and "." not in n for n in names)

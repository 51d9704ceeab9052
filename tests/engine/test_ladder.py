"""The fallback ladder on real runs: primary, fallback, skip, fail; retries per rung."""

from __future__ import annotations

import json

import pytest

from agentflow import run_workflow
from agentflow.errors import AgentUnavailable, ConfigError, SpecError, StepFailed, WorkflowFailed
from agentflow.flows.engine import ladder
from agentflow.flows.language.loader import load_text
from agentflow.flows.language.spec import AgentSpec, DegradedMode
from waiting import until

AGENTS = """
agents:
  primary: {kind: shell, command: [sh, -c, 'echo "$0" >> {log}; exit 3', primary], fallback: secondary,
            fallback_prompt_suffix: " Focus on business logic only.", criticality: {criticality},
            skip_if_unavailable: {skip}}
  secondary: {kind: python, callable: "probe:echo"}
  broken: {kind: shell, command: [sh, -c, 'echo "$0" >> {log}; echo "it broke" >&2; exit 4', broken]}
  working: {kind: python, callable: "probe:echo"}
"""


def workflow(tmp_path, steps: str, criticality: str = "high", skip: str = "false") -> str:
    path = tmp_path / "wf.yaml"
    log = tmp_path / "calls.log"
    agents = AGENTS.replace("{log}", str(log)).replace("{criticality}", criticality).replace("{skip}", skip)
    path.write_text(f"name: ladder\npattern: dag\n{agents}steps:\n{steps}")
    return str(path)


def task_states(run_id: str) -> dict[str, tuple[str, str]]:
    """The run's task runs as the UI shows them: name -> (state name, state message)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {r.name: (r.state.name, r.state.message or "") for r in runs}


def final_state(run_id: str, task_run: str) -> tuple[str, str]:
    """A task run's final state: task runs reach the server as events, a moment after the run."""
    def final():
        state = task_states(run_id).get(task_run)
        return state if state and state[0] not in ("Pending", "Running") else None
    return until(final, 30, f"task run {task_run!r} recorded in a final state")


def calls(tmp_path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().split() if log.exists() else []


def test_the_primary_answers_when_it_can(tmp_path):
    result = run_workflow(workflow(tmp_path, "  - {id: a, agent: working, prompt: hello}\n"))
    assert result["a"].summary == "hello"
    assert not result["a"].degraded and result["a"].fallback_used is None


def test_a_failed_primary_falls_back_with_the_prompt_suffix(tmp_path):
    """The fallback's answer is the step's result, marked degraded, naming both agents."""
    result = run_workflow(workflow(tmp_path, "  - {id: a, agent: primary, prompt: Check the invoice.}\n"))
    step = result["a"]
    assert step.status == "success" and step.degraded is True
    assert (step.fallback_used, step.primary_agent) == ("secondary", "primary")
    assert step.data["prompt"] == "Check the invoice. Focus on business logic only."
    assert calls(tmp_path) == ["primary"]
    name, message = final_state(result.run_id, "a (fallback secondary)")
    assert name == "Completed" and message.startswith("degraded: agent secondary answered in place of primary")


def test_retries_apply_to_each_rung_before_the_next(tmp_path):
    steps = "  - {id: a, agent: primary, prompt: go, retries: 2, retry_backoff: {base_seconds: 0, max_seconds: 0}}\n"
    result = run_workflow(workflow(tmp_path, steps))
    assert result["a"].fallback_used == "secondary"
    assert calls(tmp_path) == ["primary"] * 3
    assert result.steps["a"].attempts == 3


def test_every_agent_failed_and_the_agent_may_be_skipped(tmp_path):
    """The step is skipped (naming the agent and why each failed); the run goes on, and a
    dependent sees the skip."""
    steps = ("  - {id: a, agent: primary, prompt: go, fallback: broken}\n"
             "  - {id: b, call: 'probe:echo', prompt: 'a was {{ steps.a.status }}', depends_on: [a]}\n")
    result = run_workflow(workflow(tmp_path, steps, criticality="medium", skip="true"))
    step = result["a"]
    assert step.status == "skipped" and step.skipped_agent == "primary" and step.degraded
    assert "all 2 agents failed" in step.summary and "`broken`:" in step.summary and "`primary`:" in step.summary
    assert result["b"].summary == "a was skipped"
    assert calls(tmp_path) == ["primary", "broken"]
    # Task runs reach the server as events, a moment after the run returns.
    name, message = final_state(result.run_id, "a (skipped)")
    assert name == "Skipped" and "all 2 agents failed" in message


def test_every_agent_failed_and_the_agent_is_critical(tmp_path):
    """A critical agent is never skipped: the run fails with one message naming every agent
    tried and why each failed."""
    steps = ("  - {id: a, agent: primary, prompt: go, fallback: broken}\n"
             "  - {id: b, call: 'probe:echo', prompt: after, depends_on: [a]}\n")
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(workflow(tmp_path, steps, criticality="critical", skip="true"))
    outcome = failure.value.result.steps
    summary = outcome["a"].summary
    assert outcome["a"].status == "failed" and outcome["b"].status == "not_run"
    assert "`primary`: step `a`: `sh` exited with code 3" in summary
    assert "`broken`: step `a`: `sh` exited with code 4: it broke" in summary
    assert "`primary` is critical" in summary


def test_an_unavailable_agent_is_not_retried_and_falls_back(tmp_path):
    """A program that is not installed: the agent is unavailable, not worth a retry."""
    path = tmp_path / "wf.yaml"
    path.write_text("""
name: unavailable
agents:
  missing: {kind: shell, command: [no-such-program-here], fallback: working}
  working: {kind: python, callable: "probe:echo"}
steps:
  - {id: a, agent: missing, prompt: hi, retries: 3, retry_backoff: {base_seconds: 5}}
""")
    result = run_workflow(str(path))
    assert result["a"].fallback_used == "working" and result.steps["a"].attempts == 1


@pytest.mark.unit
def test_chain_follows_fallbacks_without_loops_up_to_the_limit():
    agents = {name: AgentSpec(kind="python", callable="probe:echo", fallback=following)
              for name, following in [("a", "b"), ("b", "c"), ("c", "a"), ("d", None)]}
    assert ladder.chain("a", agents, None, limit=5) == ["b", "c"]
    assert ladder.chain("a", agents, None, limit=1) == ["b"]
    assert ladder.chain("a", agents, "d", limit=5) == ["d"]  # the step's own fallback first
    assert ladder.chain("d", agents, None, limit=5) == []


@pytest.mark.unit
def test_only_agent_failures_fall_back():
    assert ladder.falls_back(StepFailed("exit 1")) and ladder.falls_back(AgentUnavailable("no key"))
    assert not ladder.falls_back(ConfigError("cannot import")) and not ladder.falls_back(RuntimeError("bug"))


@pytest.mark.unit
def test_decide_keeps_moves_down_or_gives_up():
    """The ladder's decision alone: a fallback's answer is degraded, an agent failure moves to the
    next rung, another error stops there, and past the last rung the step is skipped or failed."""
    from agentflow.tasks.results import AgentResult

    mode = DegradedMode()
    primary = AgentSpec(kind="python", callable="probe:echo", skip_if_unavailable=True)
    rung = ladder.Rung(agent="second", spec=primary, digest="d", task=None, timeout=None, prompt_suffix="")
    ok, bad = AgentResult(summary="fine"), AgentResult(status="failed", summary="down")
    failure = StepFailed("down")
    assert ladder.decide("first", primary, (rung,), mode, 0, "first", [], ok, None) == ladder.Move("keep", ok)
    kept = ladder.decide("first", primary, (rung,), mode, 1, "second", [], ok, None).result
    assert kept.degraded and kept.fallback_used == "second" and kept.primary_agent == "first"
    tried = [("first", "down")]
    assert ladder.decide("first", primary, (rung,), mode, 0, "first", tried, bad, failure) == \
        ladder.Move("next", bad, "second")
    assert ladder.decide("first", primary, (rung,), mode, 0, "first", tried, bad, ConfigError("x")).kind == "keep"
    tried.append(("second", "down too"))
    skipped = ladder.decide("first", primary, (rung,), mode, 1, "second", tried, bad, failure)
    assert skipped.kind == "skip" and "all 2 agents failed" in skipped.result.summary
    critical = primary.model_copy(update={"criticality": "critical"})
    failed = ladder.decide("first", critical, (rung,), mode, 1, "second", tried, bad, failure)
    assert failed.kind == "keep" and failed.result.status == "failed" and "is critical" in failed.result.summary


@pytest.mark.unit
def test_a_critical_agent_is_skipped_only_when_the_workflow_allows_it():
    spec = AgentSpec(kind="python", callable="probe:echo", criticality="critical", skip_if_unavailable=True)
    tried = [("a", "down")]
    assert ladder.exhausted("a", spec, tried, DegradedMode()).status == "failed"
    lenient = DegradedMode(fail_workflow_if_critical_skipped=False)
    assert ladder.exhausted("a", spec, tried, lenient).status == "skipped"


@pytest.mark.unit
def test_degraded_mode_comes_from_the_agents_file(tmp_path):
    (tmp_path / "agents.yaml").write_text("agents:\n  w: {kind: python, callable: 'probe:echo'}\n"
                                          "degraded_mode_config: {max_fallback_retries: 1}\n")
    resolved = load_text("name: x\nagents: agents.yaml\nsteps:\n  - {id: a, agent: w}\n", base_dir=tmp_path)
    assert resolved.degraded.max_fallback_retries == 1


def test_a_degraded_and_a_skipped_step_are_prefect_events(tmp_path):
    """agentflow.step.degraded / agentflow.step.skipped, with the workflow, the run and the
    agents as related resources: what an automation can trigger on."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
    from waiting import until

    steps = ("  - {id: a, agent: primary, prompt: go}\n"
             "  - {id: b, agent: primary, prompt: again, fallback: broken}\n")
    result = run_workflow(workflow(tmp_path, steps, criticality="low", skip="true"))
    run = f"prefect.flow-run.{result.run_id}"

    def events():
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(prefix=["agentflow.step."]),
                                                  related=EventRelatedFilter(id=[run])), limit=50)
        found = {event.event: event for event in page.events}
        return found if len(found) == 2 else None

    found = until(events, 30, "the two step events to be recorded")
    degraded = found["agentflow.step.degraded"]
    assert degraded.resource.id == "agentflow.step.ladder.a"
    roles = {(r.id, r.role) for r in degraded.related}
    assert {("agentflow.agent.primary", "primary-agent"), ("agentflow.agent.secondary", "fallback-agent"),
            ("agentflow.workflow.ladder", "workflow"), (run, "flow-run")} <= roles
    skipped = found["agentflow.step.skipped"]
    assert skipped.resource.id == "agentflow.step.ladder.b" and "all 2 agents failed" in skipped.payload["summary"]


def test_the_earlier_engines_agent_fallbacks_json_is_read_as_it_is(tmp_path):
    """`fallbacks: agent-fallbacks.json` in an agents file applies the earlier engine's
    ladder settings and degraded_mode_config over the agents it defines."""
    (tmp_path / "agent-fallbacks.json").write_text(json.dumps({
        "agents": {"primary": {"fallback": "secondary", "fallback_prompt_suffix": " Focus.",
                               "skip_if_unavailable": False, "criticality": "critical"},
                   "secondary": {"fallback": None, "skip_if_unavailable": True, "criticality": "low"}},
        "degraded_mode_config": {"max_fallback_retries": 1, "warning_on_fallback": True,
                                 "fail_workflow_if_critical_skipped": True}}, indent=2))
    (tmp_path / "agents.yaml").write_text("fallbacks: agent-fallbacks.json\nagents:\n"
                                          "  primary: {kind: shell, command: [sh, -c, 'exit 3']}\n"
                                          "  secondary: {kind: python, callable: 'probe:echo'}\n")
    (tmp_path / "wf.yaml").write_text("name: seeded\nagents: agents.yaml\nsteps:\n  - {id: a, agent: primary, prompt: Go.}\n")
    resolved = load_text((tmp_path / "wf.yaml").read_text(), source=str(tmp_path / "wf.yaml"), base_dir=tmp_path)
    primary = resolved.agents["primary"]
    assert (primary.fallback, primary.fallback_prompt_suffix, primary.criticality) == ("secondary", " Focus.", "critical")
    assert resolved.agents["secondary"].skip_if_unavailable and resolved.degraded.max_fallback_retries == 1
    result = run_workflow(str(tmp_path / "wf.yaml"))
    assert result["a"].fallback_used == "secondary" and result["a"].data["prompt"] == "Go. Focus."


@pytest.mark.unit
def test_agent_fallbacks_json_naming_an_unknown_agent_is_an_error_at_its_line(tmp_path):
    (tmp_path / "agent-fallbacks.json").write_text('{\n  "agents": {\n    "context-gathering": {"fallback": "Explore"}\n  }\n}\n')
    (tmp_path / "agents.yaml").write_text("fallbacks: agent-fallbacks.json\nagents:\n"
                                          "  context-gathering: {kind: python, callable: 'probe:echo'}\n")
    text = "name: seeded\nagents: agents.yaml\nsteps:\n  - {id: a, agent: context-gathering}\n"
    with pytest.raises(SpecError) as failure:
        load_text(text, source="wf.yaml", base_dir=tmp_path)
    (problem,) = failure.value.problems
    assert problem.file.endswith("agent-fallbacks.json") and problem.line == 3
    assert "fallback agent `Explore` is not defined" in problem.what

"""Compensation (saga): when a step fails the workflow, what the steps before it did is undone.

Each completed step with `compensate:` (a command, a callable, or an agent with a prompt) is
undone in the reverse order the steps completed, a step that came from the cache or the
journal too (its effects exist). Every compensation is a task run of its own, `undo STEP`,
which sees the step's result as `result` (`{{ result.summary }}`, `{{ result.data.id }}`); a
compensation that fails is reported and the others still run.

Prefect's transactions run `on_rollback` hooks newest first, but not across submitted tasks
(../shared/PREFECT_NOTES.md): the order is agentflow's to keep, so the saga is a list.

It is journaled: the list of steps to undo (with their results) is written before the first
compensation, and each compensation that succeeds after it. A run that crashes while it
compensates is resumed into its compensation, not into its workflow: the failed steps are
not tried again, the compensations done are not done again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from agentflow.errors import TemplateError
from agentflow.events import StepEvent, emit
from agentflow.flows.durability import settling
from agentflow.flows.durability.journal import Done, Journal
from agentflow.flows.engine import outcomes, requests
from agentflow.flows.engine.compiled import CompiledWorkflow
from agentflow.flows.language import canonical, templates
from agentflow.tasks.agent_call import agent_call
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult

MARKER = "saga"  # the journal's label (and identity) of the list of steps to undo
_UNDO = agent_call.with_options(retries=0, cache_policy=NO_CACHE, persist_result=False)


@dataclass(frozen=True)
class Undo:
    step: str
    result: AgentResult  # what the step came to: the compensation sees it as `result`


def to_undo(compiled: CompiledWorkflow, completed: list[str], results: dict[str, AgentResult]) -> list[Undo]:
    """The completed steps that have a compensation, newest first."""
    return [Undo(step, results[step]) for step in reversed(completed)
            if compiled.plans[step].step.compensate is not None
            and results[step].status in ("success", "completed_with_errors")]


def begun(journal: Journal | None) -> tuple[list[str], list[Undo], dict[str, AgentResult]] | None:
    """A compensation this run began before it was resumed: its failed steps, what to undo, and
    what every step had come to (the run's table)."""
    marker = journal.lookup(MARKER, MARKER) if journal is not None else None
    if marker is None or not isinstance(marker.data, dict):
        return None
    undo = [Undo(str(step), AgentResult.model_validate(result)) for step, result in marker.data.get("undo", [])]
    results = {str(step): AgentResult.model_validate(r) for step, r in (marker.data.get("results") or {}).items()}
    return [str(s) for s in marker.data.get("failed", [])], undo, results


def compensate(compiled: CompiledWorkflow, undo: list[Undo], failed: list[str], results: dict[str, AgentResult],
               journal: Journal | None, context: dict[str, Any]) -> dict[str, AgentResult]:
    """Run each compensation, newest step first; what each came to, by step."""
    if not undo:
        return {}
    if journal is not None and journal.lookup(MARKER, MARKER) is None:
        plan_result = AgentResult(summary=f"undo {', '.join(u.step for u in undo)}", data={
            "failed": failed, "undo": [[u.step, u.result.model_dump(mode="json")] for u in undo],
            "results": {step: r.model_dump(mode="json") for step, r in results.items()}})
        journal.record(MARKER, Done(MARKER, MARKER, plan_result))
    done: dict[str, AgentResult] = {}
    for item in undo:
        request = _request(compiled, item, context)
        identity = canonical.digest(request.key_view())
        earlier = journal.lookup(request.label, identity) if journal is not None else None
        if earlier is not None:
            done[item.step] = earlier
            emit(StepEvent(kind="finished", step=item.step, label=request.label, status=earlier.status,
                           summary=earlier.summary, reused=True))
            continue
        emit(StepEvent(kind="started", step=item.step, label=request.label))
        if request.kind == "error":
            result = AgentResult(status="failed", summary=request.message, error=request.message)
        else:
            state = _UNDO(quote(request), return_state=True)
            settling.saw(state)
            result = outcomes.of_state(state)
        done[item.step] = result
        if journal is not None and result.status != "failed":  # a failed one is tried again on a resume
            journal.record(request.label, Done(item.step, identity, result))
        emit(StepEvent(kind="finished", step=item.step, label=request.label, status=result.status,
                       summary=result.summary))
    return done


def _request(compiled: CompiledWorkflow, item: Undo, context: dict[str, Any]) -> AgentRequest:
    plan = compiled.plans[item.step]
    spec = plan.step.compensate
    label = f"undo {item.step}"
    local = {**context, "result": item.result.context()}
    base = dict(workflow=compiled.spec.name, step=item.step, label=label)
    try:
        common = dict(prompt=templates.render(spec.prompt, local), files=[], params={}, timeout=plan.timeout, **base)
        if spec.run is not None:
            return AgentRequest(kind="process", argv=[templates.render(a, local) for a in spec.run], **common)
        if spec.call is not None:
            return AgentRequest(kind="python", callable=spec.call, **{
                **common, "params": {"step": item.step, "result": item.result.context()}})
        agent = compiled.workflow.agents[spec.agent or ""]
        subagent = compiled.workflow.subagents.get(agent.subagent) if agent.subagent else None
        return requests.agent_request(agent, subagent, local, {**common, "agent": spec.agent})
    except TemplateError as exc:
        return AgentRequest(kind="error", message=f"undo `{item.step}`: {exc}", **base)

"""Prefect events for every step outcome and every run outcome, so that an automation can act
on them (notify someone when a critical agent keeps falling back, when a run fails) and the
UI's event feed shows them beside the run.

    agentflow.step.completed  the step's agent answered
    agentflow.step.degraded   a fallback agent answered in place of the step's agent
    agentflow.step.skipped    not run (`when` was false), or every agent on its ladder failed
    agentflow.step.cached     answered from the step cache, no agent called
    agentflow.step.reused     done before the run was resumed (from its journal)
    agentflow.step.failed     it failed
    agentflow.run.completed / agentflow.run.failed

A step's resource is `agentflow.step.<workflow>.<step>`; related resources are the flow run,
the workflow and each agent (roles `agent`, `primary-agent`, `fallback-agent`). A run's
resource is `agentflow.run.<id>`. Events are sent in the background by Prefect's events
worker: a step does not wait for one, and one that cannot be sent never fails a run.
"""

from __future__ import annotations

import logging
from typing import Any

from agentflow.flows.engine.result import WorkflowResult
from agentflow.tasks.results import AgentResult

_log = logging.getLogger("agentflow")


def _related(workflow: str, run_id: str | None, agents: dict[str, str]) -> list[dict[str, str]]:
    related = [{"prefect.resource.id": f"agentflow.workflow.{workflow}", "prefect.resource.role": "workflow",
                "prefect.resource.name": workflow}]
    if run_id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"})
    for role, agent in agents.items():
        for one in filter(None, agent.split(", ")):
            related.append({"prefect.resource.id": f"agentflow.agent.{one}", "prefect.resource.role": role,
                            "prefect.resource.name": one})
    return related


def step_outcome(workflow: str, run_id: str | None, step: str, result: AgentResult, outcome: str,
                 agent: str | None = None, skip_reason: str | None = None, facts: dict[str, Any] | None = None) -> None:
    """`outcome`: completed | degraded | skipped | cached | reused | failed (engine/publish.py).
    `facts`: the figures the metrics exporter folds (flows/observe/fold.py): duration, attempts,
    cache hits and misses, tokens and cost."""
    if result.skipped_agent:
        agents = {"primary-agent": result.skipped_agent}
    elif result.degraded and result.fallback_used:
        agents = {"primary-agent": result.primary_agent or "", "fallback-agent": result.fallback_used}
    else:
        agents = {"agent": agent or ""}
    _emit(f"agentflow.step.{outcome}", {"prefect.resource.id": f"agentflow.step.{workflow}.{step}",
                                        "prefect.resource.name": step},
          _related(workflow, run_id, agents),
          {"summary": result.summary[:1000], "status": result.status, "workflow": workflow, "step": step,
           "agent": agent or "", "answered_by": result.fallback_used or agent or "",
           "skip_reason": (skip_reason or ("agents_failed" if result.skipped_agent else "answered"))
           if outcome == "skipped" else None,
           **(facts or {})})


def run_outcome(workflow: str, run_id: str, outcome: WorkflowResult) -> None:
    counts: dict[str, int] = {}
    for step in outcome.steps.values():
        counts[step.status] = counts.get(step.status, 0) + 1
    _emit(f"agentflow.run.{outcome.status}", {"prefect.resource.id": f"agentflow.run.{run_id}",
                                              "prefect.resource.name": workflow},
          _related(workflow, run_id, {}), {"steps": counts, "failed_steps": outcome.failed_steps,
                                           "spend": outcome.spend})


def _emit(name: str, resource: dict[str, str], related: list[dict[str, str]], payload: dict[str, Any]) -> None:
    from prefect.events import emit_event

    try:
        emit_event(event=name, resource=resource, related=related, payload=payload)
    except Exception as exc:  # noqa: BLE001 - an event that cannot be sent never fails the run
        _log.warning("agentflow: could not send the %s event: %s", name, exc)

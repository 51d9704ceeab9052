"""Prefect events for a step that ran degraded or was skipped, so that an automation can act
on it (notify someone when a critical agent keeps falling back) and the UI's event feed
shows it beside the run.

    agentflow.step.degraded  a fallback agent answered in place of the step's agent
    agentflow.step.skipped   every agent on the step's ladder failed and it was skipped

The resource is the step (`agentflow.step.<workflow>.<step>`); related resources are the
flow run, the workflow, and each agent (roles `primary-agent`, `fallback-agent`).
"""

from __future__ import annotations

import logging

from agentflow.tasks.results import AgentResult

_log = logging.getLogger("agentflow")


def step_outcome(workflow: str, run_id: str | None, step: str, result: AgentResult) -> None:
    if result.skipped_agent:
        name, agents = "agentflow.step.skipped", {"primary-agent": result.skipped_agent}
    elif result.degraded and result.fallback_used:
        name = "agentflow.step.degraded"
        agents = {"primary-agent": result.primary_agent or "", "fallback-agent": result.fallback_used}
    else:
        return
    from prefect.events import emit_event

    related = [{"prefect.resource.id": f"agentflow.workflow.{workflow}", "prefect.resource.role": "workflow",
                "prefect.resource.name": workflow}]
    if run_id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"})
    for role, agent in agents.items():
        for one in filter(None, agent.split(", ")):
            related.append({"prefect.resource.id": f"agentflow.agent.{one}", "prefect.resource.role": role,
                            "prefect.resource.name": one})
    try:
        emit_event(event=name, resource={"prefect.resource.id": f"agentflow.step.{workflow}.{step}",
                                         "prefect.resource.name": step},
                   related=related, payload={"summary": result.summary, "status": result.status})
    except Exception as exc:  # noqa: BLE001 - an event that cannot be sent never fails the run
        _log.warning("agentflow: could not send the %s event: %s", name, exc)

"""Decisions already made, each recorded by a task run of its own: a step skipped (and why), an
`assert:` that held or not, a step that could not be prepared, a person's approval.

Nothing is called: the engine decided before the task run (engine/requests.py, approvals.py).
A task run of its own is what makes the UI, `agentflow status` and the step events show the
decision like any step's outcome. Agent calls are tasks/agent_call.py's.
"""

from __future__ import annotations

from functools import lru_cache

from prefect import Task, task
from prefect.states import Completed, Failed, State

from agentflow.errors import AssertionFailed, ConfigError
from agentflow.tasks import audit
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult

DECISION_KINDS = ("skip", "error", "assert", "approval")
_MESSAGE_CHARS = 500  # a state message is shown on one line in the UI


@task(name="decision", task_run_name="{request.label}", persist_result=False)
def record_decision(request: AgentRequest) -> AgentResult | State:
    if request.kind == "skip":
        # A state of its own, so the UI and `agentflow status` say Skipped, and why.
        return Completed(name="Skipped", message=request.message[:_MESSAGE_CHARS],
                         data=AgentResult(status="skipped", summary=request.message))
    if request.kind == "error":
        raise ConfigError(request.message)
    if request.kind == "approval":
        return _approval(request)
    if request.kind == "assert":
        if not request.passed:
            raise AssertionFailed(f"step `{request.step}`: {request.message}")
        return AgentResult(summary=f"holds: {request.message}")
    raise ConfigError(f"step `{request.step}`: `{request.kind}` is a call, not a decision")


def _approval(request: AgentRequest) -> State:
    """An approval step's task run records the decision a person made (engine/approvals.py):
    Approved, Rejected or Failed in the UI, with who and why; and a line in the audit log."""
    decision = request.params
    audit.decision(request)
    data = AgentResult(status="success" if decision.get("approved") else "failed", summary=request.message,
                       data=decision)
    if decision.get("fail"):
        return Failed(message=request.message[:_MESSAGE_CHARS], data=data)
    name = "Approved" if decision.get("approved") else "Rejected"
    return Completed(name=name, message=request.message[:_MESSAGE_CHARS], data=data)


@lru_cache(maxsize=1024)
def for_step(name: str) -> Task:
    """The decision task named like the step's own task (`WORKFLOW.STEP`), made when a step
    first needs one: a copy per step at compile time cost 0.4 ms a step, for steps most of
    which decide nothing."""
    return record_decision.with_options(name=name)

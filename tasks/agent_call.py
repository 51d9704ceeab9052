"""The one Prefect task that calls an agent: every step run is a run of `agent_call`.

The compiler gives each step its own copy (`with_options`) carrying the step's retries,
backoff, timeout, cache policy and tags; the body only dispatches the request to its backend.
"""

from __future__ import annotations

import re
import time
from contextvars import ContextVar
from typing import Any

from prefect import get_run_logger, task
from prefect.states import Completed, State

from agentflow import prefect_compat
from agentflow import tracing
from agentflow.errors import NOT_RETRYABLE, AgentNotSetUp, StepFailed
from agentflow.events import StepEvent, emit
from agentflow.tasks import audit, circuit, limits, recording, workspace
from agentflow.tasks.kinds import BACKENDS
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, redacted, scrub

# The attempts each task run has made, by its name, for the flow run that sets it (the
# scheduler): Prefect copies the context into the worker threads that run the tasks.
ATTEMPTS: ContextVar[dict[str, int] | None] = ContextVar("agentflow_attempts", default=None)
# A task run is named after its step: `review`, `gateways[bKash]`, `profile#2`, `x (skipped)`.
_STEP_OF_LABEL = re.compile(r"[A-Za-z0-9_]*")
_MESSAGE_CHARS = 500  # a state message is shown on one line in the UI


def _retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry what a retry can fix, count it, and say so.

    Prefect calls it only when the task has retries left, so a True here is a retry.
    """
    failure = prefect_compat.state_data(state)
    if isinstance(failure, NOT_RETRYABLE) or getattr(failure, "retryable", True) is False:
        return False
    attempt = task_run.run_count + 1
    attempts = ATTEMPTS.get()
    if attempts is not None:
        attempts[task_run.name] = attempt
    step = _STEP_OF_LABEL.match(task_run.name).group(0)
    emit(StepEvent(kind="retrying", step=step, label=task_run.name, attempt=attempt, summary=state.message or ""))
    return True


@task(name="agent_call", task_run_name="{request.label}", retry_condition_fn=_retry_condition,
      persist_result=False)
def agent_call(request: AgentRequest) -> AgentResult | State:
    """Call the request's agent, command or function (a decision is tasks/decisions.py's)."""
    recorder = recording.RECORDING.get() if request.agent is not None else None
    try:
        result = _guarded(request)
        if request.redact:
            result = redacted(result, request.redact)
    except Exception as exc:
        if request.redact:
            # The message (a command's stderr, a function's error) may quote a secret it was given.
            exc.args = tuple(scrub(a, request.redact) if isinstance(a, str) else a for a in exc.args)
            if isinstance(getattr(exc, "output", None), str):
                exc.output = scrub(exc.output, request.redact)
        if recorder is not None:
            recorder.note(request, None, exc)
        raise
    if recorder is not None:
        recorder.note(request, result, None)
    return _marked(request, result)


def _guarded(request: AgentRequest) -> AgentResult:
    """The backend's call, holding a slot of the agent's concurrency limit if it has one; an
    agent's call is written to the audit log as it ends (tasks/audit.py)."""
    if request.agent is None:
        return workspace.captured(request.label, request.workspace, lambda: _limited(request), request.writes)
    started = time.time()
    with tracing.span(f"agent {request.agent}", {
            "agentflow.workflow": request.workflow, "agentflow.step": request.step, "agentflow.call": request.label,
            "agentflow.agent": request.agent, "agentflow.kind": request.kind, "agentflow.variant": request.variant,
            "agentflow.in_place_of": request.in_place_of}) as span:
        try:
            result = workspace.captured(request.label, request.workspace, lambda: _limited(request), request.writes)
        except BaseException as exc:
            audit.record(request, started, None, exc)
            raise
        audit.record(request, started, result, None)
        if span is not None:
            tokens, cost = result.metrics.get("tokens"), result.metrics.get("cost_usd")
            span.set_attributes({"agentflow.outcome": result.status, **({"agentflow.tokens": tokens}
                                 if isinstance(tokens, int) else {}),
                                 **({"agentflow.cost_usd": float(cost)} if isinstance(cost, (int, float)) else {})})
    return result


def _limited(request: AgentRequest) -> AgentResult:
    replayer = recording.REPLAYING.get()
    if replayer is not None:  # agents answered from a recording or a test; a test's command stand-ins
        if request.agent is not None:
            return recording.apply_answer(request, replayer.answer(request))
        stand_in = replayer.command(request)
        if stand_in is not None:
            return recording.apply_answer(request, stand_in)
    if request.limited and request.agent is not None:
        with limits.slot(request.agent):
            return _behind_breaker(request)
    return _behind_breaker(request)


def _marked(request: AgentRequest, result: AgentResult) -> AgentResult | State:
    """A fallback's answer as a Completed state that says it is degraded: the UI shows the
    task run's state message, and its log says it too."""
    if not request.in_place_of:
        return result
    message = f"degraded: agent {request.agent} answered in place of {request.in_place_of}, which could not serve"
    get_run_logger().warning(message)
    return Completed(message=message, data=result)


def _behind_breaker(request: AgentRequest) -> AgentResult:
    """The backend's call, behind the agent's circuit breaker if it has one."""
    backend = BACKENDS[request.kind]
    if request.circuit is None or request.agent is None:
        return backend.call(request)
    failures, cooldown = request.circuit
    state = circuit.before_call(request.agent, failures, cooldown)  # CircuitOpen: not called
    try:
        result = backend.call(request)
    except AgentNotSetUp:
        circuit.no_verdict(request.agent, state, cooldown)  # this machine lacks a key or the SDK
        raise
    except StepFailed:
        circuit.after_call(request.agent, state, ok=False, failures=failures)
        raise
    circuit.after_call(request.agent, state, ok=True, failures=failures)
    return result

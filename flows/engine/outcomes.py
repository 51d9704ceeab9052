"""What a step's task runs come to: results from Prefect states, gates, `for_each` totals,
and each step's outcome in the run's result."""

from __future__ import annotations

from typing import Any

from prefect.results import ResultRecord

from agentflow import prefect_compat
from agentflow.errors import AgentflowError, ExpressionError
from agentflow.events import StepEvent, emit
from agentflow.flows.engine import requests
from agentflow.flows.engine.jobs import StepRun
from agentflow.flows.engine.result import StepOutcome
from agentflow.flows.language.expressions import Expression
from agentflow.tasks.results import AgentResult


def apply_gates(step_id: str, gates: tuple[Expression, ...], result: AgentResult,
                context: dict[str, Any]) -> AgentResult:
    """The result, or a failure naming the first gate it does not pass."""
    for gate in gates:
        try:
            ok = bool(gate.evaluate(context))
        except ExpressionError as exc:
            return failed(f"step `{step_id}`: gate: {exc}", result)
        if not ok:
            return failed(f"step `{step_id}`: gate `{gate.text}` is not met", result)
    return result


def failed(message: str, base: AgentResult | None = None) -> AgentResult:
    base = base or AgentResult()
    return base.model_copy(update={"status": "failed", "summary": message[:500], "error": message})


def _state_value(state: Any) -> Any:
    """The state's result or exception. A state made in this process holds it in memory;
    `State.result()` would get it through an event-loop round trip that, with 50 steps
    finishing at once, cost a tenth of a second (benchmarks/ B2)."""
    data = prefect_compat.state_data(state)
    if isinstance(data, ResultRecord):
        return data.result
    if isinstance(data, (AgentResult, BaseException)):
        return data
    return state.result(raise_on_failure=False)


def error_of(state: Any) -> BaseException | None:
    """The exception a failed task run ended with, if it holds one."""
    if state.is_completed():
        return None
    value = _state_value(state)
    return value if isinstance(value, BaseException) else None


def of_state(state: Any) -> AgentResult:
    """A task run's final state as the step's result (a failure becomes a failed result)."""
    if state.is_completed():
        value = _state_value(state)
        return value if isinstance(value, AgentResult) else AgentResult(data=value)
    error = _state_value(state)
    if isinstance(error, BaseException):
        message = str(error) or type(error).__name__
        if not isinstance(error, AgentflowError):
            message = f"{type(error).__name__}: {message}"
    else:
        message = state.message or state.name
    first_line = message.strip().splitlines()[0] if message.strip() else state.name
    return AgentResult(status="failed", summary=first_line[:500], error=message,
                       output=getattr(error, "output", "") or "")


def aggregate(items: list[Any], item_results: dict[int, AgentResult]) -> AgentResult:
    """A `for_each` step's result from its items'."""
    results = [item_results[i] for i in range(len(items))]
    failed = [r for r in results if r.status == "failed"]
    skipped = [r for r in results if r.status == "skipped"]
    degraded = [r for r in results if r.degraded]
    ok = len(results) - len(failed) - len(skipped)
    status = "failed" if failed else "success"
    summary = f"{ok}/{len(results)} items succeeded"
    if skipped:
        summary += f", {len(skipped)} skipped"
    if degraded:
        summary += f" ({len(degraded)} degraded)"
    if failed:
        summary += f"; first failure: {failed[0].summary}"
    data = {"items": [{"item": item, **r.context()} for item, r in zip(items, results)]}
    output = "\n".join(f"{requests.item_label(item, i)}: {r.summary}" for i, (item, r) in enumerate(zip(items, results)))
    used = sorted({r.fallback_used for r in results if r.fallback_used})
    return AgentResult(status=status, summary=summary[:500], data=data, output=output,
                       metrics={"items": len(results), "failed": len(failed), "skipped": len(skipped),
                                "degraded": len(degraded)},
                       degraded=bool(degraded), fallback_used=", ".join(used) or None,
                       primary_agent=next((r.primary_agent for r in degraded if r.primary_agent), None))


def compensation(result: AgentResult) -> StepOutcome:
    """What an `undo STEP` came to, as the run's result lists it."""
    return StepOutcome(status=result.status if result.status != "completed_with_errors" else "success",
                       summary=result.summary, result=result)


def step_outcomes(order: list[str], results: dict[str, AgentResult], step_runs: dict[str, StepRun],
                  failed: list[str]) -> dict[str, StepOutcome]:
    """Every step's outcome in the run's result, in the definition's order; a step that never
    ran (the run stopped after `failed`) is `not_run`, and the live view is told so."""
    steps: dict[str, StepOutcome] = {}
    for step_id in order:
        result = results.get(step_id)
        if result is None:
            summary = f"not run: the run stopped after {', '.join(failed)} failed"
            emit(StepEvent(kind="step_finished", step=step_id, label=step_id, status="not_run", summary=summary))
            steps[step_id] = StepOutcome(status="not_run", summary=summary)
            continue
        run = step_runs.get(step_id)  # none for a step a resumed run's compensation found done
        steps[step_id] = StepOutcome(status=result.status, summary=result.summary, result=result,
                                     duration_s=run.duration if run else None, attempts=run.attempts if run else 1,
                                     cached=bool(run and run.cached), reused=bool(run and run.reused))
    return steps

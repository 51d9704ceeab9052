"""The fallback ladder: the agents a step may try, in order, and what the step comes to.

The earlier engine's degraded mode (agent-fallbacks.json): try the primary; when it cannot
serve, its fallback (with the primary's `fallback_prompt_suffix` added to the prompt), and
that one's fallback, up to `max_fallback_retries`; when every agent has failed, skip the
step if the primary may be skipped (`skip_if_unavailable`, never a critical agent while
`fail_workflow_if_critical_skipped`), else fail it naming every agent tried and why.

Only what means "this agent cannot serve now" moves down the ladder: an agent failure
(StepFailed: failed, timed out, unavailable, rate-limited, a soft failure). A definition
error or a bug in agentflow stops the step as before. Each rung is its own task run, with
the step's Prefect retries, before the next one is tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentflow.errors import StepFailed
from agentflow.flows.engine.variants import Variant
from agentflow.flows.language.spec import AgentSpec, DegradedMode
from agentflow.tasks.results import AgentResult


@dataclass(frozen=True)
class Rung:
    """One fallback: the agent, its configuration's digest, the task that calls it (its own
    tags and timeout), and the suffix added to the step's prompt for it."""

    agent: str
    spec: AgentSpec
    digest: str
    task: Any
    timeout: float | None
    prompt_suffix: str
    variants: tuple[Variant, ...] = ()  # its A/B configurations, if it has any (engine/variants.py)


def chain(primary: str, agents: dict[str, AgentSpec], step_fallback: str | None, limit: int) -> list[str]:
    """The fallbacks of `primary`, in order: the step's own `fallback` or the agent's, then
    each fallback's, at most `limit`, never an agent twice."""
    names = [primary]
    following = step_fallback or agents[primary].fallback
    while following and following not in names and following in agents and len(names) <= limit:
        names.append(following)
        following = agents[following].fallback
    return names[1:]


def falls_back(error: BaseException | None) -> bool:
    """Whether a failure means the agent cannot serve now (so the next agent may)."""
    return isinstance(error, StepFailed)


def degraded(result: AgentResult, primary: str, used: str, tried: list[tuple[str, str]] = ()) -> AgentResult:
    """A fallback's answer, marked as the step's degraded result; its `error` says why the
    agents before it failed (the answer is good, but the caller should know what it replaced)."""
    why = "; ".join(f"`{agent}`: {reason}" for agent, reason in tried) or None
    return result.model_copy(update={"degraded": True, "fallback_used": used, "primary_agent": primary,
                                     "error": result.error or why})


def exhausted(primary: str, spec: AgentSpec, tried: list[tuple[str, str]], mode: DegradedMode) -> AgentResult:
    """The step's result once every agent on its ladder has failed: skipped or failed."""
    reasons = "; ".join(f"`{agent}`: {why}" for agent, why in tried)
    agents = len(tried)
    what = f"all {agents} agents failed" if agents > 1 else f"agent `{primary}` failed"
    may_skip = spec.skip_if_unavailable and not (spec.criticality == "critical" and mode.fail_workflow_if_critical_skipped)
    if may_skip:
        message = f"skipped: {what} and `{primary}` may be skipped ({reasons})"
        return AgentResult(status="skipped", summary=message[:500], error=message, degraded=True,
                           skipped_agent=primary, primary_agent=primary)
    why_not = (f"`{primary}` is critical" if spec.skip_if_unavailable else f"`{primary}` may not be skipped")
    message = f"{what} ({reasons}); {why_not}"
    return AgentResult(status="failed", summary=message[:500], error=message, primary_agent=primary)


@dataclass(frozen=True)
class Move:
    """What a step does after one agent's answer: keep `result` (the step's, maybe degraded),
    try the agent `following` on the next rung, or record `result` as the step skipped."""

    kind: str  # "keep" | "next" | "skip"
    result: AgentResult
    following: str = ""


def decide(primary: str, spec: AgentSpec | None, rungs: tuple[Rung, ...], mode: DegradedMode, rung: int,
           used: str, tried: list[tuple[str, str]], result: AgentResult, error: BaseException | None) -> Move:
    """The ladder's decision for the answer of the agent `used` on `rung` (0: the primary),
    `tried` naming every agent that failed so far, this one included."""
    if result.status != "failed":
        return Move("keep", degraded(result, primary, used, tried) if rung else result)
    if not falls_back(error) or spec is None:
        return Move("keep", result)
    if rung < len(rungs):
        return Move("next", result, rungs[rung].agent)
    if not rungs and not spec.skip_if_unavailable:
        return Move("keep", result)  # no ladder: the agent's own failure, as it said it
    given_up = exhausted(primary, spec, tried, mode)
    return Move("skip" if given_up.status == "skipped" else "keep", given_up)

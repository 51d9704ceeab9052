"""What the repository's settings (agentflow.toml, AGENTFLOW_*) supply to a workflow that does
not say it itself: its agents file, workspace, delivery, work pool, budget, and its agents'
circuit breakers. What a workflow or an agent says always wins. Pure: the loader reads the
settings and hands them here.

A default equal to the built-in one changes nothing, so a workflow's version (and its steps'
cache keys) stay what they were until a setting differs.
"""

from __future__ import annotations

from typing import Any

from agentflow.config import Settings
from agentflow.flows.language.spec import BREAKER_BY_DEFAULT, AgentSpec, CircuitSpec, Workflow
from agentflow.flows.language.step_parts import Budget

_BUILT_IN = Settings()


def agents_reference(given: Any, settings: Settings) -> Any:
    """The workflow's `agents:`, or the settings' agents file (an absolute path) when it has none."""
    if given is None and settings.agents_file is not None:
        return str(settings.agents_file)
    return given


def workflow(spec: Workflow, settings: Settings) -> Workflow:
    said = spec.model_fields_set
    update: dict[str, Any] = {name: getattr(settings, name) for name in ("workspace", "deliver", "work_pool")
                              if name not in said and getattr(settings, name) != getattr(_BUILT_IN, name)}
    if "budget" not in said and (settings.budget_usd is not None or settings.budget_tokens is not None):
        update["budget"] = Budget(usd=settings.budget_usd, tokens=settings.budget_tokens)
    return spec.model_copy(update=update) if update else spec


def agents(found: dict[str, AgentSpec], settings: Settings) -> dict[str, AgentSpec]:
    if (settings.circuit_failures, settings.circuit_cooldown_s) == (_BUILT_IN.circuit_failures,
                                                                     _BUILT_IN.circuit_cooldown_s):
        return found
    return {name: _circuit(agent, settings) for name, agent in found.items()}


def _circuit(agent: AgentSpec, settings: Settings) -> AgentSpec:
    given = agent.circuit_breaker
    if given is False or (given is None and agent.kind not in BREAKER_BY_DEFAULT):
        return agent  # no breaker: the settings do not give it one
    said = given if isinstance(given, CircuitSpec) else CircuitSpec()
    breaker = CircuitSpec(
        failures=said.failures if "failures" in said.model_fields_set else settings.circuit_failures,
        cooldown=said.cooldown if "cooldown" in said.model_fields_set else settings.circuit_cooldown_s)
    return agent.model_copy(update={"circuit_breaker": breaker})

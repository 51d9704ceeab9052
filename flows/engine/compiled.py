"""What the compiler produces: a plan per step, fixed once, that the scheduler only reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import Task
from prefect.cache_policies import CachePolicy

from agentflow.flows.language.expressions import Expression
from agentflow.flows.language.spec import AgentSpec, ResolvedWorkflow, Step, Workflow

CACHE_MODES = ("use", "off", "refresh")


@dataclass(frozen=True)
class StepPlan:
    step: Step
    upstream: tuple[str, ...]
    task: Task
    agent: AgentSpec | None
    criticality: str
    timeout: float | None
    definition_digest: str  # the step as written (language.canonical)
    agent_digest: str | None  # its agent's configuration
    cache_policy: CachePolicy | None = None  # None: results are not cached
    cache_ttl: float | None = None
    when: Expression | None = None
    until: Expression | None = None
    gates: tuple[Expression, ...] = ()
    assertion: Expression | None = None
    for_each: Expression | None = None

    @property
    def cache(self) -> bool:
        return self.cache_policy is not None


@dataclass(frozen=True)
class CompiledWorkflow:
    workflow: ResolvedWorkflow
    plans: dict[str, StepPlan] = field(default_factory=dict)
    cache_mode: str = "use"

    @property
    def spec(self) -> Workflow:
        return self.workflow.spec

"""What the compiler produces: a plan per step, fixed once, that the scheduler only reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import Task
from prefect.cache_policies import CachePolicy

from agentflow.flows.language.expressions import Expression
from agentflow.flows.engine.ladder import Rung
from agentflow.flows.engine.variants import Variant
from agentflow.flows.language.spec import AgentSpec, Budget, DegradedMode, ResolvedWorkflow, Step, Subagent, Workflow

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
    fallbacks: tuple[Rung, ...] = ()  # the agents tried after `agent`, in order (engine/ladder.py)
    degraded: DegradedMode = field(default_factory=DegradedMode)
    subagent: Subagent | None = None  # the primary's Claude Code subagent, read from its file
    fallback_subagents: dict[str, Subagent] = field(default_factory=dict)  # by fallback agent
    budget: Budget | None = None  # the step's, or `defaults`' (engine/budget.py)
    variants: tuple[Variant, ...] = ()  # its agent's A/B configurations (engine/variants.py)
    approve_if: Expression | None = None  # confidence gates (engine/approvals.py): the step's or defaults'
    review_if: Expression | None = None
    # May run at the same time as another step (or its items beside each other): its calls
    # then work in worktrees of their own (engine/run_workspace.py), so each captures only its work.
    concurrent: bool = False

    @property
    def cache(self) -> bool:
        return self.cache_policy is not None


@dataclass(frozen=True)
class CompiledWorkflow:
    workflow: ResolvedWorkflow
    plans: dict[str, StepPlan] = field(default_factory=dict)
    cache_mode: str = "use"
    # block agents' keys, by agent: given to its calls like secrets, never part of a plan's key
    credentials: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    @property
    def spec(self) -> Workflow:
        return self.workflow.spec

    def agent_limits(self) -> dict[str, int]:
        """The `concurrency` of every agent a run may call (primaries and fallbacks)."""
        found: dict[str, int] = {}
        for plan in self.plans.values():
            if plan.step.agent and plan.agent is not None and plan.agent.concurrency:
                found[plan.step.agent] = plan.agent.concurrency
            for rung in plan.fallbacks:
                if rung.spec.concurrency:
                    found[rung.agent] = rung.spec.concurrency
        return found

"""Pure data models of a workflow definition and its agents (DESIGN.md §2, §3).

No Prefect import and no I/O here: a `Workflow` is built from YAML by `flows.loader`
and turned into a Prefect flow by `flows.compile`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from agentflow.flows.language.deployment import DEFAULT_WORK_POOL, Schedule, Trigger
from agentflow.flows.language.http_parts import Headers, HttpUrl
from agentflow.flows.language.durations import MAX_DURATION_S, Duration, parse_duration  # noqa: F401
# The spec's building blocks and a step's parts, named here too: `spec` is where users of the
# models import them from.
from agentflow.flows.language.spec_types import (  # noqa: F401
    BLOCK_PREFIX, INPUT_TYPES, RESERVED_INPUTS, AgentName, AgentRef, Callable_, Criticality, InputSpec, StepId,
    _Model)
from agentflow.flows.language.step_parts import (  # noqa: F401
    APPROVAL_FORM_FIELDS, Approval, Budget, CacheSpec, Compensate, FieldName, GateFile, Phase, PhaseGate, Repeat,
    RetryBackoff, TemplateSpec)

STEP_KINDS = ("agent", "run", "call", "workflow", "deployment", "approval", "assert", "template")
# A Prefect deployment: `NAME` or `FLOW/NAME`, neither part empty nor holding a template.
DeploymentName = Annotated[str, Field(pattern=r"^[^{}/\s][^{}/]*(/[^{}/\s][^{}/]*)?$", max_length=200)]
MAX_CONCURRENCY = 10_000  # calls of one agent at once: Prefect's server refuses limits beyond its integers
# The kinds of agent a workflow may declare, and the field each needs. What each kind is
# beyond its YAML (its backend, readiness, credentials) it declares itself: tasks/kinds.py,
# which a test keeps to the same names.
AGENT_KINDS = ("claude-code", "llm", "shell", "python", "http")
KIND_NEEDS = {"shell": "command", "python": "callable", "http": "url", "llm": "model"}
# Kinds this version can execute; the others are parsed and validated only.
RUNNABLE_AGENT_KINDS = AGENT_KINDS
RUNNABLE_STEP_KINDS = STEP_KINDS


# What a step's result shows to later steps as `steps.ID.<field>` (tasks.results.AgentResult).
RESULT_FIELDS = ("status", "summary", "output", "data", "artifacts", "metrics", "confidence", "error", "changes",
                 "degraded", "fallback_used", "primary_agent", "skipped_agent")


class StepDefaults(_Model):
    retries: int | None = Field(default=None, ge=0, le=50)
    retry_backoff: RetryBackoff | None = None
    timeout: Duration | None = None
    cache: Union[bool, CacheSpec, None] = None
    criticality: Criticality | None = None
    budget: Budget | None = None  # each step's, unless it sets its own
    approve_if: str | None = None  # confidence gates: each step's, unless it sets its own
    review_if: str | None = None


class Step(_Model):
    id: StepId
    # exactly one of these says what the step does
    agent: AgentRef | None = None
    run: list[str] | None = Field(default=None, min_length=1)
    call: Callable_ | None = None
    workflow: str | None = None
    # a run of this deployment (`NAME` or `FLOW/NAME`), on whatever worker picks it up
    deployment: DeploymentName | None = None
    approval: Union[Approval, str, None] = None
    assert_: str | None = Field(default=None, alias="assert")
    template: TemplateSpec | None = None  # a file rendered into the run's tree

    name: str = ""
    message: str = ""
    prompt: str = ""
    files: list[str] = Field(default_factory=list)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    depends_on: list[StepId] = Field(default_factory=list)
    when: str | None = None
    for_each: Union[list[Any], str, None] = None
    max_parallel: int | None = Field(default=None, ge=1, le=1000)
    repeat: Repeat | None = None
    retries: int | None = Field(default=None, ge=0, le=50)
    retry_backoff: RetryBackoff | None = None
    timeout: Duration | None = None
    cache: Union[bool, CacheSpec, None] = None
    fallback: AgentRef | None = None
    criticality: Criticality | None = None
    compensate: Compensate | None = None
    gate: Union[str, list[str], None] = None
    # Confidence gates: the step goes on without a person when `approve_if` holds of its result;
    # in the `review_if` band it waits for a quick approve/reject; below, for an approval.
    approve_if: str | None = None
    review_if: str | None = None
    budget: Budget | None = None
    # Where the step may change files (globs, `*` crossing directories: `tests/*`): a change
    # elsewhere fails it, checked on its captured patch, so for every kind of step.
    writes: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = None
    # Narrow its claude-code agent's tools for this step (never widen): the agent's list
    # intersected with `allowed_tools`; `disallowed_tools` added to the agent's.
    allowed_tools: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = None
    disallowed_tools: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = None

    @model_validator(mode="after")
    def _one_action(self) -> "Step":
        chosen = [k for k in STEP_KINDS if getattr(self, _attr(k)) is not None]
        if len(chosen) != 1:
            kinds = ", ".join(STEP_KINDS)
            got = ", ".join(chosen) if chosen else "none"
            raise ValueError(f"a step needs exactly one of {kinds} (got {got})")
        if self.for_each is not None and self.repeat is not None:
            raise ValueError("for_each and repeat cannot be combined on one step; split it in two")
        if self.review_if is not None and self.approve_if is None:
            raise ValueError("review_if is the band below approve_if: give approve_if too")
        if (self.approve_if or self.review_if) and self.approval is not None:
            raise ValueError("approve_if and review_if gate a step's result; an approval step has none to gate")
        if (self.allowed_tools is not None or self.disallowed_tools is not None) and self.agent is None:
            raise ValueError("allowed_tools and disallowed_tools narrow an agent's tools: the step has no `agent:`")
        if self.writes is not None and self.kind in ("approval", "assert", "deployment"):
            raise ValueError(f"writes bounds where a step changes files; a{'n' if self.kind[0] in 'aeiou' else ''} "
                             f"{self.kind} step changes none here")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, _attr(k)) is not None)


def _attr(kind: str) -> str:
    return "assert_" if kind == "assert" else kind


class Subagent(_Model):
    """A Claude Code subagent read from the repository's `.claude/agents/NAME.md` (its
    frontmatter and its body, the prompt): filled in by the loader, part of the agent's key."""

    name: str
    path: str
    description: str = ""
    tools: list[str] = Field(default_factory=list)
    model: str | None = None
    prompt: str = ""


# `model: provider:name` of an llm agent (tasks/backends/llm.py)
LLM_PROVIDERS = ("anthropic", "openai", "openai-chat", "ollama")


class CircuitSpec(_Model):
    """A circuit breaker (tasks/circuit.py): open after `failures` failed calls in a row,
    probe again after `cooldown`."""

    failures: int = Field(default=5, ge=1, le=1000)
    cooldown: Duration = 60.0


class VariantSpec(_Model):
    """One configuration of an agent in an A/B comparison: its name, its share of the calls
    (`weight`, relative to the others'), and what it changes of the agent's configuration.
    Only how the agent is called may change, not what kind of agent it is or how it fails."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=40)]
    weight: float = Field(default=1.0, gt=0, le=1_000_000)
    model: str | None = None
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    permission_mode: str | None = None
    output_schema: dict[str, Any] | None = None
    command: list[str] | None = None
    callable: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"name", "weight"}, exclude_none=True)


# Agents that call something remote get a circuit breaker unless they say otherwise.
BREAKER_BY_DEFAULT = ("claude-code", "llm", "http")


class AgentSpec(_Model):
    kind: Literal[AGENT_KINDS]
    description: str = ""
    # claude-code
    subagent: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)] | None = None
    allowed_tools: list[str] = Field(default_factory=list)
    disallowed_tools: list[str] = Field(default_factory=list)
    # A headless run cannot ask anyone: a tool not allowed is denied (and the step fails over).
    permission_mode: Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk"] = "dontAsk"
    max_turns: int | None = Field(default=None, ge=1, le=1000)
    max_budget_usd: float | None = Field(default=None, gt=0, le=10_000)
    # Which Claude Code settings a run reads: the repository's shared ones by default, never
    # the user's own (~/.claude), so that one person's settings do not change a run's answer.
    setting_sources: list[Literal["project", "local", "user"]] = Field(default_factory=lambda: ["project"])
    # claude-code and llm
    model: str | None = None
    system: str | None = None
    output_schema: dict[str, Any] | None = None
    # llm
    base_url: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    # shell
    command: list[str] | None = Field(default=None, min_length=1)
    # python
    callable: Callable_ | None = None
    # http: header values may name environment variables as ${NAME} (a token never sits here)
    url: HttpUrl | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: Headers = Field(default_factory=dict)
    # behaviour
    ttl: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=50)
    criticality: Criticality = "high"
    fallback: AgentName | None = None
    fallback_prompt_suffix: str = ""
    skip_if_unavailable: bool = False
    concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    circuit_breaker: Union[bool, CircuitSpec, None] = None  # None: on for claude-code, llm, http
    # A/B: each call uses one of these configurations, picked from the run and the step
    # (engine/variants.py); the variant is part of the call's cache key and of its metrics.
    variants: list[VariantSpec] | None = None

    @property
    def breaker(self) -> CircuitSpec | None:
        """The circuit breaker this agent has, if any."""
        if isinstance(self.circuit_breaker, CircuitSpec):
            return self.circuit_breaker
        if self.circuit_breaker is True or (self.circuit_breaker is None and self.kind in BREAKER_BY_DEFAULT):
            return CircuitSpec()
        return None

    @model_validator(mode="after")
    def _kind_fields(self) -> "AgentSpec":
        field = KIND_NEEDS.get(self.kind)
        if field and getattr(self, field) is None:
            raise ValueError(f"an agent of kind {self.kind} needs `{field}`")
        if self.subagent is not None and self.kind != "claude-code":
            raise ValueError("`subagent` is for agents of kind claude-code")
        if self.kind == "llm" and (self.model or "").partition(":")[0] not in LLM_PROVIDERS:
            raise ValueError(f"an llm model is written provider:name with a provider of {', '.join(LLM_PROVIDERS)}, "
                             f"e.g. anthropic:claude-sonnet-4-6 or openai-chat:llama3 (got `{self.model}`)")
        if self.variants is not None:
            self._check_variants(self.variants)
        return self

    def _check_variants(self, variants: list[VariantSpec]) -> None:
        if len(variants) < 2:
            raise ValueError("`variants` compares two or more configurations: add another, or remove `variants`")
        names = [v.name for v in variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"variant names must differ: {', '.join(twice)} is used twice")
        for variant in variants:
            try:
                self.with_variant(variant.name)
            except ValueError as exc:  # pydantic's ValidationError is one: say which variant
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'agent'}: {e['msg']}"
                                     for e in getattr(exc, "errors", lambda: [])()) or str(exc)
                raise ValueError(f"variant `{variant.name}` makes an agent that is not valid: {problems}") from None

    def with_variant(self, name: str) -> "AgentSpec":
        """This agent as variant `name` configures it (without `variants`); checked like any agent."""
        variant = next(v for v in self.variants or [] if v.name == name)
        data = {**self.model_dump(mode="json", exclude={"variants"}, exclude_unset=True), **variant.changes()}
        return AgentSpec.model_validate(data)


class DegradedMode(_Model):
    """How far a failing agent's step degrades (the earlier engine's degraded_mode_config)."""

    max_fallback_retries: int = Field(default=2, ge=0, le=10)  # fallbacks tried after the primary
    warning_on_fallback: bool = True
    fail_workflow_if_critical_skipped: bool = True


class FallbackEntry(_Model):
    """One agent of the earlier engine's agent-fallbacks.json: its ladder settings."""

    fallback: AgentName | None = None
    fallback_prompt_suffix: str = ""
    skip_if_unavailable: bool = False
    criticality: Criticality | None = None


class FallbacksFile(_Model):
    """The earlier engine's agent-fallbacks.json, read as it is (`fallbacks: FILE`)."""

    agents: dict[AgentName, FallbackEntry] = Field(default_factory=dict)
    degraded_mode: DegradedMode | None = Field(default=None, alias="degraded_mode_config")


class AgentsFile(_Model):
    agents: dict[AgentName, AgentSpec]
    degraded_mode: DegradedMode | None = Field(default=None, alias="degraded_mode_config")
    # the earlier engine's agent-fallbacks.json, applied over these agents
    fallbacks: str | None = None


class Workflow(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    description: str = ""
    version: str | None = None
    pattern: Literal["sequential", "parallel", "dag"] = "sequential"
    inputs: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], InputSpec] = Field(
        default_factory=dict
    )
    defaults: StepDefaults = Field(default_factory=StepDefaults)
    agents: Union[str, dict[AgentName, AgentSpec], list[str], None] = None
    degraded_mode: DegradedMode | None = Field(default=None, alias="degraded_mode_config")
    budget: Budget | None = None  # the whole run's
    fallbacks: str | None = None  # the earlier engine's agent-fallbacks.json, over the agents
    max_parallel: int = Field(default=8, ge=1, le=1000)
    # Where its steps work: a git worktree of the run's own (made from the commit it pins and
    # the uncommitted changes it started from), or the user's tree itself; and what becomes of
    # its work at the end: a branch `agentflow/<workflow>/<run>`, that branch also applied to
    # the user's tree, or nothing (`agentflow apply RUN` later).
    workspace: Literal["worktree", "in-place"] = "worktree"
    deliver: Literal["branch", "apply", "none"] = "branch"
    # Steps grouped in phases, each with its agents' tools and writable paths and a gate the
    # next phase waits for (language/phases.py: each gate becomes a step `gate_<phase>`).
    phases: list[Phase] = Field(default_factory=list)
    # how it is deployed (language/deployment.py): `agentflow deploy` writes them to prefect.yaml
    schedules: list[Schedule] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)
    work_pool: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)] = DEFAULT_WORK_POOL
    steps: list[Step] = Field(min_length=1)

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, inputs: dict[str, Any]) -> dict[str, Any]:
        for name in inputs:
            if name in RESERVED_INPUTS:
                raise ValueError(f"`{name}` cannot name an input (a Python keyword or a Prefect flow "
                                 f"argument); rename it, e.g. `{name}_`")
        return inputs


class ResolvedWorkflow(_Model):
    """A workflow with its agents loaded and its identity fixed: what the compiler takes."""

    spec: Workflow
    agents: dict[str, AgentSpec]
    source: str
    spec_hash: str
    # each step's upstream steps: depends_on, `{{ steps.X }}`/expression references, pattern
    dependencies: dict[str, tuple[str, ...]]
    degraded: DegradedMode = Field(default_factory=DegradedMode)
    # the Claude Code subagents its claude-code agents name, read from `.claude/agents/`
    subagents: dict[str, Subagent] = Field(default_factory=dict)
    # each `workflow:` step's workflow, loaded with it (language/children.py)
    children: dict[str, "ResolvedWorkflow"] = Field(default_factory=dict)

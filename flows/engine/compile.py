"""Spec → Prefect flow. Pure: no file, network or environment access.

Everything a run needs is fixed here once: each step's parsed expressions, its digests, its
cache policy and its own copy of the `agent_call` task carrying retries, backoff, timeout
and tags. The flow body (`engine.scheduler.execute`) only schedules. `run_workflow` is the
one entry point for running a workflow by its file (what deployments point at).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Annotated, Any

from prefect import Flow, Task, tags
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field, SecretStr

from agentflow import prefect_compat, startup
from agentflow.errors import InputError, WorkflowFailed
from agentflow.flows.durability.cache import KEY_PARTS, step_policy
from agentflow.flows.durability.crash import RUN_TAG
from agentflow.flows.durability.heartbeat import HEARTBEAT_S
from agentflow.flows.durability.locks import StepLocks
from agentflow.flows.durability.results import AgentResultSerializer, read_only_our_records
from agentflow.flows.engine import agent_blocks, children, ladder, prefect_logs
from agentflow.flows.engine.compiled import CACHE_MODES, CompiledWorkflow, StepPlan
from agentflow.flows.engine.result import WorkflowResult
from agentflow.flows.engine.scheduler import execute
from agentflow.flows.engine.secrets import with_secrets_from_env
from agentflow.flows.engine.stored_result import WorkflowResultSerializer
from agentflow.flows.engine.variants import Variant
from agentflow.flows.language import canonical, expressions, graph
from agentflow.flows.language.inputs import validate_inputs
from agentflow.flows.language.spec import AgentSpec, ResolvedWorkflow, Step, Workflow
from agentflow.tasks import workspace
from agentflow.tasks.agent_call import agent_call
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult

_PY_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict}
_DEFAULT_TTL_S = 24 * 3600.0


def compile_workflow(workflow: ResolvedWorkflow, cache: str = "use", refresh: frozenset[str] = frozenset(),
                     credentials: dict[str, dict[str, str]] | None = None) -> CompiledWorkflow:
    """`refresh`: steps to compute again even if cached (`agentflow rerun --from`);
    `credentials`: the keys of block agents (engine/agent_blocks.py), which loads them."""
    spec = workflow.spec
    deps = workflow.dependencies
    modes = {s.id: "refresh" if s.id in refresh and cache == "use" else cache for s in spec.steps}
    locks = StepLocks()  # one lock manager per workflow: its steps' keys never collide
    concurrent = graph.concurrent(spec.steps, deps, spec.max_parallel)
    plans = {step.id: _plan(workflow, step, deps[step.id], modes[step.id], locks, step.id in concurrent)
             for step in spec.steps}
    return CompiledWorkflow(workflow=workflow, plans=plans, cache_mode=cache, credentials=credentials or {})


def _cache_settings(spec: Workflow, step: Step, agent: AgentSpec | None) -> tuple[bool, float, tuple[str, ...]]:
    """Whether a step's results are cached, for how long, and on which parts of the key.

    `cache:` on the step, else in `defaults`; without either, agent steps are cached (they
    are the expensive calls) and `run`/`call` steps are not (they may have side effects,
    such as writing a report, that a cache hit would skip).
    """
    setting = step.cache if step.cache is not None else spec.defaults.cache
    if setting is None:
        enabled = step.agent is not None
        setting_ttl, parts = None, None
    elif isinstance(setting, bool):
        enabled, setting_ttl, parts = setting, None, None
    else:
        enabled, setting_ttl, parts = True, setting.ttl, setting.key
    if step.kind in ("assert", "approval"):
        enabled = False  # an assert is cheaper than a lookup; a person's decision is never replayed
    step_ttl = step.cache.ttl if step.cache is not None and not isinstance(step.cache, bool) else None
    ttl = _first(step_ttl, agent.ttl if agent else None, setting_ttl, _DEFAULT_TTL_S)
    if ttl <= 0:
        enabled = False  # a zero TTL reuses nothing (and Prefect reads timedelta(0) as "never expires")
    return enabled, ttl, tuple(parts) if parts else KEY_PARTS


def _plan(workflow: ResolvedWorkflow, step: Step, upstream: tuple[str, ...], cache_mode: str,
          locks: StepLocks, concurrent: bool = False) -> StepPlan:
    spec, agents = workflow.spec, workflow.agents
    agent = agents.get(step.agent) if step.agent else None
    defaults = spec.defaults
    agent_criticality = agent.criticality if agent and "criticality" in agent.model_fields_set else None
    criticality = _first(step.criticality, agent_criticality, defaults.criticality, "high")
    cached, ttl, parts = _cache_settings(spec, step, agent)
    cached = cached and cache_mode != "off"
    cache_options: dict[str, Any] = (
        dict(cache_policy=step_policy(parts).configure(isolation_level="SERIALIZABLE", lock_manager=locks),
             result_serializer=AgentResultSerializer(),
             cache_expiration=timedelta(seconds=ttl), persist_result=True,
             refresh_cache=cache_mode == "refresh")
        if cached else dict(cache_policy=NO_CACHE, persist_result=False))
    task, timeout = _task(spec, step, agent, cache_options)
    if step.workflow is not None or step.deployment is not None:  # a sub-workflow (engine/children.py)
        task = _child_task(task, workflow.children.get(step.id), step.deployment, cache_mode)
    fallbacks = []
    if step.agent is not None and agent is not None:
        previous = agent
        for name in ladder.chain(step.agent, agents, step.fallback, workflow.degraded.max_fallback_retries):
            rung_agent = agents[name]
            rung_task, rung_timeout = _task(spec, step, rung_agent, cache_options, name)
            fallbacks.append(ladder.Rung(agent=name, spec=rung_agent, digest=_agent_digest(workflow, rung_agent),
                                         task=rung_task, timeout=rung_timeout,
                                         prompt_suffix=previous.fallback_prompt_suffix,
                                         variants=_variants(workflow, rung_agent)))
            previous = rung_agent
    gates = [step.gate] if isinstance(step.gate, str) else list(step.gate or [])
    return StepPlan(
        step=step,
        upstream=upstream,
        task=task,
        agent=agent,
        criticality=criticality,
        timeout=timeout,
        definition_digest=canonical.digest(canonical.step_definition(step)),
        agent_digest=_agent_digest(workflow, agent) if agent else None,
        cache_policy=cache_options["cache_policy"] if cached else None,
        cache_ttl=ttl if cached else None,
        when=expressions.parse(step.when) if step.when else None,
        until=expressions.parse(step.repeat.until) if step.repeat else None,
        gates=tuple(expressions.parse(g) for g in gates),
        assertion=expressions.parse(step.assert_) if step.assert_ else None,
        for_each=expressions.parse(step.for_each) if isinstance(step.for_each, str) else None,
        fallbacks=tuple(fallbacks),
        degraded=workflow.degraded,
        subagent=workflow.subagents.get(agent.subagent) if agent and agent.subagent else None,
        budget=step.budget or spec.defaults.budget,
        variants=_variants(workflow, agent) if agent and step.agent else (),
        # `defaults`' gates are for agent steps: a command has no confidence to gate.
        approve_if=_expression(step.approve_if or (spec.defaults.approve_if if step.agent else None)),
        review_if=_expression(step.review_if or (spec.defaults.review_if if step.agent and not step.approve_if
                                                  else None)),
        fallback_subagents={r.agent: workflow.subagents[r.spec.subagent] for r in fallbacks
                            if r.spec.subagent and r.spec.subagent in workflow.subagents},
        concurrent=concurrent,
    )


def _agent_digest(workflow: ResolvedWorkflow, agent: AgentSpec) -> str:
    """The agent's configuration, with its subagent file's content: editing either is a miss."""
    definition = canonical.agent_definition(agent) or {}
    subagent = workflow.subagents.get(agent.subagent) if agent.subagent else None
    if subagent is not None:
        definition = {**definition, "subagent_definition": subagent.model_dump(mode="json", exclude={"path"})}
    return canonical.digest(definition)


def _expression(text: str | None) -> Any:
    return expressions.parse(text) if text else None


def _variants(workflow: ResolvedWorkflow, agent: AgentSpec) -> tuple[Variant, ...]:
    return tuple(Variant(v.name, v.weight, spec, _agent_digest(workflow, spec))
                 for v in agent.variants or [] for spec in [agent.with_variant(v.name)])


def _task(spec: Workflow, step: Step, agent: AgentSpec | None, cache_options: dict[str, Any],
          agent_name: str | None = None) -> tuple[Task, float | None]:
    """The step's copy of `agent_call` for one agent (the primary or a fallback): its retries,
    backoff, timeout and tags. Returns it with the step's timeout for that agent."""
    defaults = spec.defaults
    agent_name = agent_name or step.agent
    retries = _first(step.retries, agent.retries if agent else None, defaults.retries, 0)
    backoff = step.retry_backoff or defaults.retry_backoff
    # Every backend enforces the step's timeout itself (it kills the command or the CLI, drops
    # the connection, or stops waiting for a function). Prefect is not given it: in a worker
    # thread it cannot enforce one, and says so in a WARNING per task run.
    timeout = _first(step.timeout, agent.timeout if agent else None, defaults.timeout)
    delays: list[float] = []
    jitter = None
    if retries and backoff:
        delays = [min(backoff.base_seconds * 2**n, backoff.max_seconds) for n in range(retries)]
        jitter = backoff.jitter or None
    elif retries:
        delays = [min(1.0 * 2**n, 60.0) for n in range(retries)]
    # Only agent steps are tagged. For a tagged task run Prefect asks the server for tag
    # concurrency limits: one more API call per task run (1-2 ms on a quiet server, over
    # 10 ms on a busy one; benchmarks/ B1). That call is what makes `agent:NAME` limits hold
    # across workers, and is noise next to an agent call, but not next to a quick `run` or
    # `call` step. No per-step tag: each distinct tag set also starts its own client service
    # (~300 ms a step, measured); the step is in the task run's name.
    tags = {f"workflow:{spec.name}", f"agent:{agent_name}"} if agent_name else set()
    task = agent_call.with_options(
        **cache_options,
        name=f"{spec.name}.{step.id}",
        retries=retries,
        retry_delay_seconds=delays or 0,
        retry_jitter_factor=jitter,
        tags=tags,
    )
    return task, timeout


def _child_task(step_task: Task, child: ResolvedWorkflow | None, deployment: str | None, cache_mode: str) -> Task:
    """The step's task (its name, retries, cache settings) running a child workflow instead of
    an agent: the `workflow:` file's flow here, or a run of the deployment on a worker. The
    child's flow run is linked to the step's task run: the UI shows it under the parent."""
    child_flow = build_flow(child, cache=cache_mode) if child is not None else None

    def run_child(request: AgentRequest) -> AgentResult:
        if child_flow is None:
            return children.run_deployed(str(deployment), request)
        # The child works in this step's tree; what it changed is this step's work.
        attached = workspace.ATTACHED.set(request.workspace)
        try:
            return workspace.captured(request.label, request.workspace, lambda: children.run_local(child_flow, request),
                                      request.writes)
        finally:
            workspace.ATTACHED.reset(attached)

    return Task(
        fn=run_child, name=step_task.name, task_run_name="{request.label}", retries=step_task.retries,
        retry_delay_seconds=step_task.retry_delay_seconds, retry_jitter_factor=step_task.retry_jitter_factor,
        cache_policy=step_task.cache_policy, persist_result=step_task.persist_result,
        result_serializer=step_task.result_serializer, cache_expiration=step_task.cache_expiration,
        refresh_cache=step_task.refresh_cache, retry_condition_fn=step_task.retry_condition_fn)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def build_flow(workflow: ResolvedWorkflow, cache: str = "use", refresh: frozenset[str] = frozenset(),
               deployed: bool = False) -> Flow:
    """A Prefect flow named after the workflow, versioned by its hash, taking its inputs.

    `cache`: "use" cached step results, turn caching "off" (neither read nor write), or
    "refresh" (recompute every cached step and overwrite its entry); `refresh` names steps
    to recompute whatever `cache` says. `deployed`: the flow a deployment runs (on a worker,
    for a caller elsewhere): its secret inputs are not parameters (Prefect would store them)
    but come from the worker's environment, and its WorkflowResult is persisted, as JSON,
    for the caller to read (engine/stored_result.py).
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)} (got {cache!r})")
    workflow, credentials = agent_blocks.resolve(workflow)  # `block:NAME` agents, from the server
    compiled = compile_workflow(workflow, cache, refresh, credentials)
    spec = workflow.spec

    def run(**inputs: Any) -> WorkflowResult | State:
        startup.collect_now()  # paused while a deployed run's process built the flow (deployments/entry.py)
        checked = _CHECKED.get()
        if checked is not None and checked[0] is spec and not deployed:  # checked by WorkflowFlow.__call__, just now
            _CHECKED.set(None)
            values = dict(checked[1])
        else:  # a run a deployment started, or a resumed one: its parameters come from the server
            values = validate_inputs(spec, with_secrets_from_env(spec, inputs) if deployed else inputs)
        read_only_our_records()
        prefect_logs.install()
        outcome = execute(compiled, values)
        if outcome.status == "failed":
            # A failed step is an outcome the run reports, not an error in the engine: returned
            # as the flow's Failed state, Prefect logs it in one line, with no traceback (a
            # worker's log printed two for an ordinary rejection). Its data is the
            # WorkflowFailed that a Python caller gets raised (carrying the result), and that a
            # deployed run stores (engine/stored_result.py).
            return Failed(message=outcome.message, data=WorkflowFailed(outcome.message, outcome))
        return outcome

    run.__signature__ = _signature(spec, with_secrets=not deployed)  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = spec.name.replace("-", "_").replace(".", "_")
    run.__doc__ = spec.description
    return WorkflowFlow(
        spec,
        run,
        name=spec.name,
        version=workflow.spec_hash,
        description=spec.description or None,
        task_runner=ThreadPoolTaskRunner(max_workers=spec.max_parallel),
        validate_parameters=False,  # validate_inputs gives the clearer error, for every caller
        **(dict(persist_result=True, result_serializer=WorkflowResultSerializer()) if deployed
           else dict(persist_result=False)),
    )


class WorkflowFlow(Flow):
    """A Prefect flow that checks a workflow's inputs before a flow run is even created.

    Prefect binds arguments to the signature first and would report a missing input as a
    ParameterBindError; this gives the workflow's own message instead. The flow body checks
    again, for runs started by a deployment.
    """

    def __init__(self, spec: Workflow, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.workflow_spec = spec

    def parameters_of(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The flow run's parameters for these inputs: checked (InputError), defaults filled in,
        secrets wrapped so that Prefect stores and shows them masked."""
        return _masked(self.workflow_spec, validate_inputs(self.workflow_spec, inputs))

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any) -> Any:
        if args:
            raise InputError(f"workflow `{self.workflow_spec.name}` takes its inputs by name, "
                             f"e.g. flow({next(iter(self.workflow_spec.inputs), 'name')}=...)")
        values = validate_inputs(self.workflow_spec, kwargs)
        checked = _CHECKED.set((self.workflow_spec, values))  # the body takes them as they are
        try:
            with tags(RUN_TAG), own_heartbeat():  # the flow run's tag; the body takes it off its task runs
                return super().__call__(return_state=return_state, wait_for=wait_for,
                                        **_masked(self.workflow_spec, values))
        finally:
            _CHECKED.reset(checked)


# Inputs a WorkflowFlow call has checked, for its body: checked once, not again when the body
# starts (a deployed or resumed run's body, called by Prefect, checks what the server gave it).
_CHECKED: ContextVar[tuple[Workflow, dict[str, Any]] | None] = ContextVar("agentflow_checked_inputs", default=None)


def _masked(spec: Workflow, values: dict[str, Any]) -> dict[str, Any]:
    """Secrets wrapped, so that Prefect stores and shows them masked."""
    return {name: SecretStr(value) if spec.inputs[name].secret and isinstance(value, str) else value
            for name, value in values.items()}


# The settings last in use and their copy without Prefect's heartbeat: copying Prefect's
# settings (what `temporary_settings` does on every call) cost ~20 ms of each flow call.
_quiet: tuple[Any, Any] = (None, None)


@contextmanager
def own_heartbeat() -> Iterator[None]:
    """Runs started here send their heartbeats from agentflow (durability/heartbeat.py), not
    from Prefect's thread, which costs up to a second at the end of every run."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    settings = prefect_compat.current_settings()
    period = settings.flows.heartbeat_frequency
    if period is None:  # heartbeats are off: nothing to send
        yield
        return
    global _quiet
    cached = _quiet  # one read: another thread may replace it
    if cached[0] is not settings:
        cached = _quiet = (settings, settings.copy_with_update(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
    token = HEARTBEAT_S.set(period)
    try:
        with prefect_compat.settings_context(cached[1]):
            yield
    finally:
        HEARTBEAT_S.reset(token)


def _signature(spec: Workflow, with_secrets: bool = True) -> inspect.Signature:
    """The inputs as keyword parameters: what Prefect makes the parameter schema of, which the
    UI's Run form shows (the description and choices ride in each annotation's schema)."""
    parameters = []
    for name, input_spec in spec.inputs.items():
        if input_spec.secret and not with_secrets:
            continue
        default = inspect.Parameter.empty if input_spec.required else input_spec.default
        kind = SecretStr if input_spec.secret else _PY_TYPES[input_spec.type]
        extra = {k: v for k, v in (("description", input_spec.description), ("enum", input_spec.enum)) if v}
        annotation = Annotated[kind, Field(json_schema_extra=extra)] if extra else kind
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=annotation))
    return inspect.Signature(parameters)

"""From a step and the run so far to what it does now, the `AgentRequest` its task receives,
and the call's key.

Shared by the scheduler (engine/scheduler.py) and the dry run (engine/dry_run.py), so that
`plan` decides and keys exactly as `run` will.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentflow.errors import ExpressionError, TemplateError
from agentflow.flows.durability.cache import parts_of
from agentflow.flows.durability.repo import RepoState, hash_files
from agentflow.flows.engine import variants
from agentflow.flows.engine.compiled import StepPlan
from agentflow.flows.language import canonical, templates
from agentflow.flows.language.spec import AgentSpec
from agentflow.tasks.kinds import KINDS
from agentflow.tasks.request import AgentRequest, CallKey


@dataclass(frozen=True)
class Start:
    """What a step does once its upstream steps are done."""

    kind: Literal["skip", "assert", "items", "repeat", "call", "approval"]
    reason: str = ""  # skip: why; assert: the message
    passed: bool | None = None  # assert: whether it holds
    items: list[Any] | None = None  # items: the for_each list


def decide(plan: StepPlan, context: dict[str, Any]) -> Start:
    """Its `when`, then an assert, its `for_each` items, a `repeat`, or one call.
    Raises ExpressionError or TemplateError if a condition or the items cannot be computed."""
    step = plan.step
    if plan.when is not None and not plan.when.evaluate(context):
        return Start("skip", reason=f"skipped: `{step.when}` is false")
    if step.approval is not None:
        return Start("approval")
    if plan.assertion is not None:
        # The message says what is wrong: a step that holds says what held.
        holds = bool(plan.assertion.evaluate(context))
        failure = templates.render(step.message, context) if step.message and not holds else f"`{step.assert_}`"
        return Start("assert", reason=failure, passed=holds)
    if step.for_each is not None:
        if plan.for_each is not None:
            items = plan.for_each.evaluate(context)
            if not isinstance(items, list):
                raise ExpressionError(f"for_each `{step.for_each}` gave {type(items).__name__}, not a list")
        else:
            items = templates.render_value(step.for_each, context)
        return Start("items", items=items)
    if step.repeat is not None:
        return Start("repeat")
    return Start("call")


def call_label(step_id: str, item: Any = None, index: int | None = None, iteration: int | None = None) -> str:
    """What a step's call is named (its task run): `review`, `gateways[bKash]`, `profile#2`."""
    if index is not None:
        return f"{step_id}[{item_label(item, index)}]"
    if iteration is not None:
        return f"{step_id}#{iteration}"
    return step_id


def build(workflow: str, plan: StepPlan, context: dict[str, Any], item: Any = None,
          index: int | None = None, iteration: int | None = None, rung: int = 0,
          run_id: str | None = None) -> AgentRequest:
    """Render the step for this call; a template that fails gives a request of kind `error`.
    `rung`: 0 for the step's agent, n for its n-th fallback (engine/ladder.py); `run_id` picks
    the agent's variant, if it has variants (engine/variants.py)."""
    step = plan.step
    label = call_label(step.id, item, index, iteration)
    agent_name, agent, timeout, suffix, subagent = step.agent, plan.agent, plan.timeout, "", plan.subagent
    if rung:
        fallback = plan.fallbacks[rung - 1]
        agent_name, agent, timeout, suffix = fallback.agent, fallback.spec, fallback.timeout, fallback.prompt_suffix
        subagent = plan.fallback_subagents.get(fallback.agent)
        label = f"{label} (fallback {agent_name})"
    variant = variants.pick(_variants(plan, rung), run_id, step.id)
    if variant is not None:
        agent = variant.spec
    local = {**context, "item": item, "iteration": iteration}
    base = dict(workflow=workflow, step=step.id, label=label, agent=agent_name, item=item, iteration=iteration,
                variant=variant.name if variant else None)
    try:
        prompt = templates.render(step.prompt, local) + suffix
        params = templates.render_value(step.with_, local)
        files = [_inside(templates.render(f, local)) if templates.is_template(f) else f for f in step.files]
        breaker = agent.breaker if agent is not None and step.agent is not None else None
        circuit = (breaker.failures, breaker.cooldown) if breaker is not None else None
        limited = agent is not None and step.agent is not None and agent.concurrency is not None
        common = dict(prompt=prompt, files=files, params=params, timeout=timeout, circuit=circuit,
                      limited=limited, in_place_of=step.agent if rung else None,
                      writes=[templates.render(w, local) for w in step.writes] if step.writes is not None else None,
                      **base)
        if step.run is not None:
            return AgentRequest(kind="process", argv=[templates.render(a, local) for a in step.run], **common)
        if step.call is not None:
            return AgentRequest(kind="python", callable=step.call, **common)
        if step.template is not None:  # rendered here, written into the step's tree by tasks/rendered.py
            spec = step.template
            values = {**local, **templates.render_value(spec.vars, local)}
            dest = templates.render(spec.dest, values)
            text = templates.render(spec.inline or "", values)
            return AgentRequest(kind="python", callable="agentflow.tasks.rendered:write_rendered",
                                **{**common, "params": {"dest": dest, "content": text, "mode": spec.mode}})
        if step.workflow is not None or step.deployment is not None:  # `with:`: the child's inputs (engine/children.py)
            return AgentRequest(kind="workflow", **common)
        if agent is not None and agent.kind in KINDS:
            return agent_request(agent, subagent, local, common, step)
        kind = agent.kind if agent else step.kind
        raise TemplateError(f"steps of kind `{kind}` cannot run in this version")
    except TemplateError as exc:
        return AgentRequest(kind="error", message=f"step `{step.id}`: {exc}", **base)


def agent_request(agent: AgentSpec, subagent: Any, local: dict[str, Any], common: dict[str, Any],
                  step: Any = None) -> AgentRequest:
    """A call of `agent` with the request's fields in `common` (prompt, params, files, labels)
    and those its kind adds (tasks/kinds.py): a remote agent's configuration, a shell agent's
    command rendered, a python agent's callable. `step`: the step whose
    `allowed_tools`/`disallowed_tools` narrow the agent's."""
    kind = KINDS[agent.kind]
    agent_context = {**local, "prompt": common["prompt"], "with": common["params"], "files": common["files"],
                     "step": common["step"]}
    fields = kind.request_fields(agent, lambda text: templates.render(text, agent_context))
    if kind.carries_config:
        config = fields["agent_config"]
        if subagent is not None:
            config["subagent_definition"] = subagent.model_dump(mode="json")
        if step is not None:
            config.update(narrowed_tools(config, subagent, step.allowed_tools, step.disallowed_tools))
    return AgentRequest(kind=kind.request_kind, **fields, **common)


def narrowed_tools(config: dict[str, Any], subagent: Any, allowed: list[str] | None,
                   disallowed: list[str] | None) -> dict[str, list[str]]:
    """A step narrows its agent's tools, never widens them: the tools it allows that the agent
    (or its subagent file) allows too, and the agent's refusals plus its own."""
    narrowed: dict[str, list[str]] = {}
    if allowed is not None:
        own = list(config.get("allowed_tools") or (subagent.tools if subagent is not None else None) or [])
        narrowed["allowed_tools"] = [t for t in allowed if not own or t in own]
    if disallowed:
        narrowed["disallowed_tools"] = list(dict.fromkeys([*(config.get("disallowed_tools") or []), *disallowed]))
    return narrowed


def _inside(pattern: str) -> str:
    """A `files:` pattern made from values (inputs, results) stays inside the working tree."""
    if pattern.startswith(("/", "~")) or ".." in Path(pattern).parts:
        raise TemplateError(f"files: `{pattern[:100]}` points outside the working directory; "
                            "a pattern built from inputs must be relative, without `..`")
    return pattern


def call_key(workflow: str, plan: StepPlan, request: AgentRequest, rung: int = 0) -> CallKey:
    """The call's identity: the step's and agent's digests (fixed at compile) and the
    rendered request's, computed here once."""
    agent = plan.fallbacks[rung - 1].digest if rung else plan.agent_digest
    variant = next((v for v in _variants(plan, rung) if v.name == request.variant), None)
    if variant is not None:
        agent = variant.digest  # the configuration the call used: each variant caches its own answers
    return CallKey(workflow=workflow, step=plan.definition_digest, agent=agent,
                   request=canonical.digest(request.key_view()))


def with_cache_context(plan: StepPlan, request: AgentRequest, key: CallKey, repo: RepoState) -> AgentRequest:
    """The request carrying its key, with the repository state and the files' content filled
    in when the step's cache key uses them (durability/cache.py)."""
    parts = {part.name for part in parts_of(plan.cache_policy)} if plan.cache_policy is not None else set()
    key = key.model_copy(update={
        "repo": repo.key_part() if "commit" in parts else None,
        "files": hash_files(request.files) if "files" in parts else None})
    return request.model_copy(update={"key": key})


def _variants(plan: StepPlan, rung: int) -> tuple[variants.Variant, ...]:
    return plan.fallbacks[rung - 1].variants if rung else plan.variants


def step_variant(plan: StepPlan, run_id: str | None) -> str | None:
    """The variant of the step's own agent in this run (its metrics' label)."""
    variant = variants.pick(plan.variants, run_id, plan.step.id)
    return variant.name if variant else None


def item_label(item: Any, index: int) -> str:
    if isinstance(item, (str, int, float)) and not isinstance(item, bool):
        text = str(item)
        if 0 < len(text) <= 40 and "\n" not in text:
            return text
    return str(index)

"""From a step and the run so far to the `AgentRequest` its task receives, and its cache key.

Shared by the scheduler (flows/runtime.py) and the dry run (flows/plan.py), so that `plan`
computes exactly the keys that `run` will.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentflow.flows.language import templates
from agentflow.errors import TemplateError
from agentflow.flows.durability.cache import RepoState, hash_files, step_key
from agentflow.tasks.request import AgentRequest

if TYPE_CHECKING:
    from agentflow.flows.engine.compile import StepPlan


def build(workflow: str, plan: "StepPlan", context: dict[str, Any], item: Any = None,
          index: int | None = None, iteration: int | None = None) -> AgentRequest:
    """Render the step for this call; a template that fails gives a request of kind `error`."""
    step = plan.step
    label = step.id
    if index is not None:
        label = f"{step.id}[{item_label(item, index)}]"
    elif iteration is not None:
        label = f"{step.id}#{iteration}"
    local = {**context, "item": item, "iteration": iteration}
    base = dict(workflow=workflow, step=step.id, label=label, agent=step.agent, item=item, iteration=iteration)
    try:
        prompt = templates.render(step.prompt, local)
        params = templates.render_value(step.with_, local)
        files = [templates.render(f, local) for f in step.files]
        common = dict(prompt=prompt, files=files, params=params, timeout=plan.timeout, **base)
        if step.run is not None:
            return AgentRequest(kind="process", argv=[templates.render(a, local) for a in step.run], **common)
        if step.call is not None:
            return AgentRequest(kind="python", callable=step.call, **common)
        agent = plan.agent
        if agent is not None and agent.kind == "shell":
            agent_context = {**local, "prompt": prompt, "with": params, "files": files, "step": step.id}
            argv = [templates.render(arg, agent_context) for arg in agent.command or []]
            return AgentRequest(kind="process", argv=argv, **common)
        if agent is not None and agent.kind == "python":
            return AgentRequest(kind="python", callable=agent.callable, **common)
        kind = agent.kind if agent else step.kind
        raise TemplateError(f"steps of kind `{kind}` cannot run in this version")
    except TemplateError as exc:
        return AgentRequest(kind="error", message=f"step `{step.id}`: {exc}", **base)


def with_cache_key(workflow: str, plan: "StepPlan", request: AgentRequest,
                   repo: RepoState) -> tuple[AgentRequest, dict[str, Any]]:
    """Key the request on everything that can change its answer (tasks/cache.py)."""
    if not plan.cache or request.kind not in ("process", "python"):
        return request, {}
    key, components = step_key(
        workflow=workflow, step_definition=plan.definition, request=request.key_view(),
        agent=plan.agent.model_dump(mode="json") if plan.agent else None, repo=repo,
        files=hash_files(request.files) if "files" in plan.cache_parts else {}, parts=plan.cache_parts)
    return request.model_copy(update={"cache_key": key}), components


def item_label(item: Any, index: int) -> str:
    if isinstance(item, (str, int, float)) and not isinstance(item, bool):
        text = str(item)
        if 0 < len(text) <= 40 and "\n" not in text:
            return text
    return str(index)

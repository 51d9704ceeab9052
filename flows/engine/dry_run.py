"""`agentflow plan`: which steps would be answered from the cache now, and why not. No agent runs.

Keys are computed exactly as a run computes them (flows/requests.py) at the current commit.
A step whose upstream would hit is rendered with the cached upstream result; a step whose
upstream would run cannot be keyed before that run, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentflow.flows.language import graph
from agentflow.flows.engine import requests
from agentflow.flows.engine.compile import compile_workflow
from agentflow.errors import ExpressionError
from agentflow.flows.language.spec import ResolvedWorkflow
from agentflow.flows.durability import cache_index
from agentflow.flows.durability.cache import read_repo_state
from agentflow.tasks.results import AgentResult


@dataclass(frozen=True)
class Verdict:
    step: str
    outcome: str  # hit | miss | runs | skipped | unknown
    reason: str


def plan_workflow(workflow: ResolvedWorkflow, inputs: dict[str, Any]) -> list[Verdict]:
    from prefect.results import get_result_store

    compiled = compile_workflow(workflow, "use")
    store = get_result_store()
    repo = read_repo_state(".")
    name = workflow.spec.name
    views: dict[str, dict[str, Any]] = {}
    pending: set[str] = set()  # steps whose result is only known after they run
    verdicts: dict[str, Verdict] = {}
    order = [s for level in graph.levels(workflow.dependencies) for s in level]
    for step_id in order:
        plan = compiled.plans[step_id]
        context = {"inputs": inputs, "steps": views}
        waiting = [up for up in plan.upstream if up in pending]
        if waiting:
            verdicts[step_id] = Verdict(step_id, "unknown", f"keyed once {', '.join(waiting)} ran")
            pending.add(step_id)
            continue
        try:
            if plan.when is not None and not plan.when.evaluate(context):
                views[step_id] = AgentResult(status="skipped").context()
                verdicts[step_id] = Verdict(step_id, "skipped", f"`{plan.step.when}` is false")
                continue
        except ExpressionError as exc:
            verdicts[step_id] = Verdict(step_id, "runs", f"`when` cannot be evaluated yet: {exc}")
            pending.add(step_id)
            continue
        if not plan.cache:
            why = ("cache is off for this step" if plan.step.cache is False or workflow.spec.defaults.cache is False
                   else "not cached: run, call and assert steps run every time unless they set `cache:`")
            verdicts[step_id] = Verdict(step_id, "runs", why)
            pending.add(step_id)
            continue
        if plan.step.for_each is not None or plan.step.repeat is not None:
            verdicts[step_id] = Verdict(step_id, "unknown", "for_each and repeat steps are keyed per item or "
                                        "round at run time")
            pending.add(step_id)
            continue
        request = requests.build(name, plan, context)
        if request.kind == "error":
            verdicts[step_id] = Verdict(step_id, "runs", f"will fail: {request.message}")
            pending.add(step_id)
            continue
        keyed, components = requests.with_cache_key(name, plan, request, repo)
        key = keyed.cache_key or ""
        if store.exists(key):
            value = store.read(key).result
            views[step_id] = value.context() if isinstance(value, AgentResult) else AgentResult(data=value).context()
            verdicts[step_id] = Verdict(step_id, "hit", f"cached {key[10:22]}")
        else:
            verdicts[step_id] = Verdict(step_id, "miss", explain(name, step_id, key, components))
            pending.add(step_id)
    return [verdicts[s.id] for s in workflow.spec.steps]


def explain(workflow: str, step: str, key: str, components: dict[str, Any]) -> str:
    """Which part of the key differs from the step's last cached entry."""
    last = cache_index.latest(workflow, step)
    if last is None:
        return "no cached result yet"
    if last.key == key:
        return "its entry expired or was cleared"
    before = last.components
    reasons = []
    old_repo, new_repo = before.get("repo") or {}, components.get("repo") or {}
    if old_repo.get("commit") != new_repo.get("commit"):
        reasons.append(f"commit {_short(old_repo.get('commit'))} -> {_short(new_repo.get('commit'))}")
    elif old_repo.get("dirty") != new_repo.get("dirty"):
        reasons.append("uncommitted changes differ" if new_repo.get("dirty") else "the tree is clean now")
    old_files, new_files = before.get("files") or {}, components.get("files") or {}
    changed = sorted(f for f in set(old_files) | set(new_files) if old_files.get(f) != new_files.get(f))
    if changed:
        reasons.append("files changed: " + ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else ""))
    old_inputs, new_inputs = before.get("inputs") or {}, components.get("inputs") or {}
    fields = sorted(k for k in set(old_inputs) | set(new_inputs) if old_inputs.get(k) != new_inputs.get(k))
    if fields:
        reasons.append("rendered " + ", ".join(fields) + " changed")
    if before.get("agent") != components.get("agent"):
        reasons.append("the agent's configuration changed")
    if before.get("step") != components.get("step"):
        reasons.append("the step's definition changed")
    return "; ".join(reasons) or "the key differs from the last entry"


def _short(commit: Any) -> str:
    return str(commit)[:8] if commit else "none"

"""`agentflow plan`: which steps would be answered from the cache now, and why not. No agent runs.

Steps are decided, rendered and keyed exactly as a run does it (engine/requests.py, the
step's own cache policy) at the current commit; a miss is explained by the same policies,
part by part, against the step's last cached entry. A step whose upstream would hit is
rendered with the cached upstream result; a step whose upstream would run cannot be keyed
before that run, and says so.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from agentflow.errors import ExpressionError, TemplateError
from agentflow.flows.durability import cache_index, worktrees
from agentflow.flows.durability.cache import components, explain_miss, key_of
from agentflow.flows.durability.repo import read_repo_state
from agentflow.flows.durability.results import TrustedStorage
from agentflow.flows.engine import agent_blocks, requests
from agentflow.flows.engine.compile import compile_workflow
from agentflow.flows.engine.compiled import StepPlan
from agentflow.flows.engine.run_workspace import tree_key
from agentflow.git import git
from agentflow.flows.language import graph
from agentflow.flows.language.spec import ResolvedWorkflow
from agentflow.tasks.results import AgentResult


@dataclass(frozen=True)
class Verdict:
    step: str
    outcome: str  # hit | miss | runs | skipped | unknown
    reason: str


def plan_workflow(workflow: ResolvedWorkflow, inputs: dict[str, Any]) -> list[Verdict]:
    from prefect.results import get_result_store

    workflow, credentials = agent_blocks.resolve(workflow)
    compiled = compile_workflow(workflow, "use", credentials=credentials)
    store = get_result_store().model_copy(update={"result_storage": TrustedStorage()})
    repo = _tree(".")
    origin = os.getcwd()
    name = workflow.spec.name
    views: dict[str, dict[str, Any]] = {}
    pending: set[str] = set()  # steps whose result is only known after they run
    verdicts: dict[str, Verdict] = {}
    order = [s for level in graph.levels(workflow.dependencies) for s in level]
    for step_id in order:
        plan = compiled.plans[step_id]
        context = {"inputs": inputs, "steps": views, "run": {"origin": origin, "workspace": origin}}
        waiting = [up for up in plan.upstream if up in pending]
        if waiting and plan.cache_policy is None:  # never cached: it runs, whatever it is given
            unless = f" (unless `{plan.step.when}` is false then)" if plan.step.when else ""
            verdicts[step_id] = Verdict(step_id, "runs", _not_cached(plan, workflow) + unless)
            pending.add(step_id)
            continue
        if waiting:
            verdicts[step_id] = Verdict(step_id, "unknown", f"keyed once {', '.join(waiting)} ran")
            pending.add(step_id)
            continue
        try:
            start = requests.decide(plan, context)
        except (ExpressionError, TemplateError) as exc:
            verdicts[step_id] = Verdict(step_id, "runs", f"cannot be decided yet: {exc}")
            pending.add(step_id)
            continue
        if start.kind == "skip":
            views[step_id] = AgentResult(status="skipped").context()
            verdicts[step_id] = Verdict(step_id, "skipped", f"`{plan.step.when}` is false")
            continue
        if plan.cache_policy is None:
            verdicts[step_id] = Verdict(step_id, "runs", _not_cached(plan, workflow))
            pending.add(step_id)
            continue
        if start.kind in ("items", "repeat"):
            verdicts[step_id] = Verdict(step_id, "unknown", "for_each and repeat steps are keyed per item or "
                                        "round at run time")
            pending.add(step_id)
            continue
        if plan.variants:
            verdicts[step_id] = Verdict(step_id, "unknown", f"agent `{plan.step.agent}` has variants: the one a run "
                                        "uses, and so the cache key, is picked from the run's id")
            pending.add(step_id)
            continue
        request = requests.build(name, plan, context)
        if request.kind == "error":
            verdicts[step_id] = Verdict(step_id, "runs", f"will fail: {request.message}")
            pending.add(step_id)
            continue
        keyed = requests.with_cache_context(plan, request, requests.call_key(name, plan, request), repo)
        key = key_of(plan.cache_policy, keyed) or ""
        if store.exists(key):
            value = store.read(key).result
            views[step_id] = value.context() if isinstance(value, AgentResult) else AgentResult(data=value).context()
            verdicts[step_id] = Verdict(step_id, "hit", f"cached {key[:12]}")
            if isinstance(repo, _Lineage) and isinstance(value, AgentResult) and value.changes and value.changes.patch:
                repo.patches.append(value.changes.patch)  # a hit brings its work: later steps see it
                repo.by_step.setdefault(value.changes.patch, step_id)
        else:
            verdicts[step_id] = Verdict(step_id, "miss", explain(name, plan, key, components(plan.cache_policy, keyed)))
            pending.add(step_id)
    return [verdicts[s.id] for s in workflow.spec.steps]


def _not_cached(plan: Any, workflow: Any) -> str:
    if plan.step.cache is False or workflow.spec.defaults.cache is False:
        return "cache is off for this step"
    return f"not cached: {plan.step.kind} steps run every time unless they set `cache:`"


@dataclass
class _Lineage:
    """The tree a step would see, named as a run names it (engine/run_workspace.py)."""

    commit: str
    start: str
    patches: list[str]
    by_step: dict[str, str]

    def key_part(self) -> dict[str, Any]:
        return tree_key(self.commit, self.start, self.patches, self.by_step)


def _tree(directory: str) -> Any:
    """The tree a run started here would work from; outside git, the repository state (no commit, and why)."""
    state = read_repo_state(directory)
    if state.commit is None:
        return state
    top = git(directory, "rev-parse", "--show-toplevel").stdout.decode().strip()
    start = worktrees.starting_patch(top)
    return _Lineage(state.commit, hashlib.sha256(start).hexdigest() if start else "", [], {})


def explain(workflow: str, plan: StepPlan, key: str, now: dict[str, Any]) -> str:
    """Which parts of the key differ from the step's last cached entry, as its policies say."""
    last = cache_index.latest(workflow, plan.step.id)
    if last is None:
        return "no cached result yet"
    if last.key == key:
        return "its entry expired or was cleared"
    return "; ".join(explain_miss(plan.cache_policy, last.components, now)) or "the key differs from the last entry"

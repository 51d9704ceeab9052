"""What each step does next: the step half of the flow body (engine/scheduler.py runs the calls).

A step starts once its upstream steps are done (`_activate_ready`): it is skipped, asserted,
asked (an approval), fanned out over its items, repeated, or called once; each call is
rendered, keyed and queued (`_enqueue`), or answered from the run's journal. As calls end
(`_settle`), a step's items are gathered, its `repeat.until` decides another round, and the
step completes (`_complete`): gates, a confidence band, the live view and the run's log;
a failed step that matters stops the run from starting anything new.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agentflow.errors import ExpressionError, TemplateError
from agentflow.events import StepEvent, emit
from agentflow.flows.durability import cache_index
from agentflow.flows.durability.cache import components, key_of
from agentflow.flows.durability.journal import Journal
from agentflow.flows.durability.repo import RepoState, read_repo_state
from agentflow.flows.engine import approval_form, approval_gates, approvals, outcomes, requests
from agentflow.flows.engine.budget import Budgets
from agentflow.flows.engine.compiled import CompiledWorkflow, StepPlan
from agentflow.flows.engine.jobs import Job, StepFinished, StepRun
from agentflow.flows.engine.publish import Publisher
from agentflow.flows.engine.run_workspace import RunWorkspace
from agentflow.flows.language.inputs import secret_env
from agentflow.flows.language.spec import Workflow
from agentflow.tasks.decisions import DECISION_KINDS
from agentflow.tasks.kinds import REQUEST_KINDS
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult

STOPPING_CRITICALITIES = ("critical", "high")


def to_the_live_view(done: StepFinished) -> None:
    """A sink: the step's end as an event for the live view and `--json` (agentflow/events.py)."""
    emit(StepEvent(kind="step_finished", step=done.step, label=done.step, status=done.result.status,
                   summary=done.result.summary, duration_s=done.duration, cached=done.cached, reused=done.reused,
                   degraded=done.result.degraded))


class StepLogic:
    """The steps' state and decisions; the scheduler (a subclass) owns the loop and the calls."""

    compiled: CompiledWorkflow
    inputs: dict[str, Any]
    masked_inputs: dict[str, Any]
    secrets: dict[str, str]
    credentials: dict[str, dict[str, str]]  # agent -> its credentials, by variable
    waiting: list[str]
    step_runs: dict[str, StepRun]  # every step started, by id: everything about it
    results: dict[str, AgentResult]
    step_views: dict[str, dict[str, Any]]
    queue: deque[Job]
    failed: list[str]
    _repo: RepoState | None
    key_parts: dict[str, dict[str, Any]]
    journal: Journal | None
    run_id: str | None
    reused: deque[tuple[Job, AgentResult]]
    budgets: Budgets
    publisher: Publisher | None
    sinks: list[Callable[[StepFinished], None]]  # each gets every step's end
    approvals: deque[str]
    completed: list[str]
    workspace: RunWorkspace | None
    run_view: dict[str, str]
    spec: Workflow

    def spec_order(self) -> list[str]:
        return [s.id for s in self.spec.steps]

    def _activate_ready(self) -> None:
        if self.failed:
            return
        for step_id in list(self.waiting):
            plan = self.compiled.plans[step_id]
            if all(up in self.results for up in plan.upstream):
                self.waiting.remove(step_id)
                self._start_step(step_id)

    def _context(self, **extra: Any) -> dict[str, Any]:
        # `steps` is built once per completed step, not per read: templates and expressions
        # only read it, and rebuilding it for every step made a long run quadratic.
        return {"inputs": self.inputs, "steps": self.step_views, "run": self.run_view, **extra}

    def _start_step(self, step_id: str) -> None:
        plan = self.compiled.plans[step_id]
        step_run = StepRun(plan=plan, started=time.monotonic())
        self.step_runs[step_id] = step_run
        context = self._context()
        rejected = [up for up in plan.upstream if self.step_runs[up].rejected]
        if rejected:
            step_run.rejected = True
            why = f"skipped: `{rejected[0]}` was rejected"
            step_run.skipped_by = "rejected"
            self._enqueue(step_id, self._special(plan, "skip", why, f"{step_id} (skipped)"))
            return
        try:
            start = requests.decide(plan, context)
        except (ExpressionError, TemplateError) as exc:
            self._enqueue(step_id, self._special(plan, "error", f"step `{step_id}`: {exc}", step_id))
            return
        if start.kind == "skip":
            step_run.skipped_by = "condition"
            self._enqueue(step_id, self._special(plan, "skip", start.reason, f"{step_id} (skipped)"))
        elif start.kind == "approval":
            self.approvals.append(step_id)
        elif start.kind == "assert":
            request = self._special(plan, "assert", start.reason, step_id)
            self._enqueue(step_id, request.model_copy(update={"passed": start.passed}))
        elif start.kind == "items":
            step_run.items = items = start.items or []
            if not items:
                self._complete(step_id, AgentResult(summary="no items", data={"items": []}))
            for index, item in enumerate(items):
                self._call(step_id, plan, context, item=item, index=index)
        elif start.kind == "repeat":
            step_run.iteration = 1
            self._call(step_id, plan, context, iteration=1)
        else:
            self._call(step_id, plan, context)

    def _ask(self, step_id: str) -> None:
        """An approval step, or a step whose result a confidence gate holds back: the decision
        from the journal (a resumed run), else from a person (the run pauses:
        engine/approvals.py); recorded by a task run of its own."""
        plan = self.compiled.plans[step_id]
        gated = self.step_runs[step_id].held  # (the held result, review | approval, why)
        approval = approval_gates.gate_approval(step_id, gated[1], gated[2]) if gated else approval_form.spec_of(plan)
        label = f"{step_id} ({gated[1]})" if gated else step_id
        request = self._special(plan, "approval", approval.message, label)
        if self.journal is not None:
            done = self.journal.lookup(label, requests.call_key(self.spec.name, plan, request).identity)
            if done is not None:
                self.reused.append((Job(step=step_id, request=request), done))
                return
        context = self._context()
        if gated:
            context = {**context, "steps": {**self.step_views, step_id: gated[0].context()}}
        decision = approvals.ask(step_id, approval, context, self.run_id, f"{gated[1]}: {gated[2]}" if gated else "")
        outcome = approval_form.result(step_id, approval, decision)
        if gated and outcome.status == "success":  # approved: the agent's answer, with who approved it
            outcome = gated[0].model_copy(update={"metrics": {**gated[0].metrics, "approval": outcome.summary}})
        if outcome.status == "skipped":
            self.step_runs[step_id].rejected = True
        # Keyed as asked (`masked`): a resumed run finds the decision by the request it makes.
        self._enqueue(step_id, request.model_copy(update={"params": decision, "message": outcome.summary}),
                      masked=request, outcome=outcome)

    def _enqueue(self, step_id: str, request: AgentRequest, index: int | None = None,
                 masked: AgentRequest | None = None, rung: int = 0, tried: tuple[tuple[str, str], ...] = (),
                 outcome: AgentResult | None = None) -> None:
        plan = self.compiled.plans[step_id]
        job = Job(step=step_id, request=request, index=index, rung=rung, tried=tried, outcome=outcome,
                  tree=self.workspace.tree if self.workspace is not None else "")
        callable_ = request.kind in REQUEST_KINDS or request.kind in ("approval", "workflow")
        if callable_ and (self.journal is not None or plan.cache):
            job.key = requests.call_key(self.spec.name, plan, masked or request, rung)
        if self.journal is not None and job.key is not None:
            done = self.journal.lookup(request.label, job.key.identity)
            if done is not None:
                self.reused.append((job, done))
                return
        if plan.cache_policy is not None and job.key is not None and request.kind not in DECISION_KINDS:
            if self._repo is None:
                self._repo = read_repo_state(".")  # outside a flow run (no journal): read here, once
            # The tree the call will see: the run's, made of its commit and patches so far.
            tree = self.workspace if self.workspace is not None else self._repo
            job.request = requests.with_cache_context(plan, request, job.key, tree)
            job.cache_key = key_of(plan.cache_policy, job.request)
            if job.cache_key:
                shown = masked.model_copy(update={"key": job.request.key}) if masked is not None else job.request
                self.key_parts[job.cache_key] = components(plan.cache_policy, shown)
        self.queue.append(job)

    def _special(self, plan: StepPlan, kind: str, message: str, label: str) -> AgentRequest:
        return AgentRequest(workflow=self.spec.name, step=plan.step.id, label=label, kind=kind,
                            agent=plan.step.agent, message=message)

    def _call(self, step_id: str, plan: StepPlan, context: dict[str, Any], item: Any = None,
              index: int | None = None, iteration: int | None = None, rung: int = 0,
              tried: tuple[tuple[str, str], ...] = ()) -> None:
        """Render the step's call (to its agent, or to the fallback `rung`) and queue it. With
        secret inputs it is rendered twice: with the values for the agent (which removes them
        from what it returns), and with each secret's name in its place for the call's
        identity and cache key."""
        request = requests.build(self.spec.name, plan, context, item=item, index=index, iteration=iteration, rung=rung,
                                 run_id=self.run_id)
        keys = self.credentials.get(request.agent or "")
        if keys:  # its credentials: like a secret, to the agent only, removed from its result
            request = request.model_copy(update={"secrets": {**request.secrets, **keys}})
        masked = None
        if self.secrets:
            masked = requests.build(self.spec.name, plan, {**context, "inputs": self.masked_inputs}, item=item,
                                    index=index, iteration=iteration, rung=rung, run_id=self.run_id)
            secrets = {**request.secrets, **{secret_env(k): v for k, v in self.secrets.items()}}
            request = request.model_copy(update={"secrets": secrets})
        self._enqueue(step_id, request, index, masked, rung, tried)

    def _skip_reason(self, step_id: str, plan: StepPlan, result: AgentResult) -> str | None:
        """Why a skipped step was skipped (the metrics' `reason`): its `when` was false
        (condition), an approval it needs was rejected, or it is (rejected), no agent could
        answer (agents_failed), or its agent or function answered that it skipped (answered)."""
        if result.status != "skipped":
            return None
        if self.step_runs[step_id].skipped_by is not None:
            return self.step_runs[step_id].skipped_by
        if result.skipped_agent:
            return "agents_failed"
        return "rejected" if plan.step.approval is not None else "answered"

    def _settle(self, job: Job, result: AgentResult, duration: float | None, cached: bool, reused: bool) -> None:
        step_run = self.step_runs[job.step]
        step_run.cached |= cached
        step_run.reused |= reused
        emit(StepEvent(kind="finished", step=job.step, label=job.request.label, status=result.status,
                       summary=result.summary, duration_s=duration, cached=cached, reused=reused,
                       degraded=result.degraded, agent=result.fallback_used or result.skipped_agent))
        plan = step_run.plan
        if job.index is not None:
            step_run.item_results[job.index] = result
            if len(step_run.item_results) == len(step_run.items or []):
                self._complete(job.step, outcomes.aggregate(step_run.items or [], step_run.item_results))
            return
        if plan.step.repeat is not None and result.status not in ("failed", "skipped"):
            self._after_iteration(job, step_run, result)
            return
        self._complete(job.step, result)

    def _index(self, job: Job, hit: bool) -> None:
        plan = self.compiled.plans[job.step]
        key = job.cache_key or ""
        step_run = self.step_runs[job.step]
        step_run.cache_hits += hit
        step_run.cache_misses += not hit
        cache_index.record_call(self.spec.name, job.step, plan.step.agent, key, self.key_parts.get(key, {}),
                                plan.cache_ttl or 0, hit)

    def _after_iteration(self, job: Job, step_run: StepRun, result: AgentResult) -> None:
        plan = step_run.plan
        context = self._context(result=result.context(), iteration=step_run.iteration)
        try:
            met = bool(plan.until.evaluate(context)) if plan.until else True
        except ExpressionError as exc:
            self._complete(job.step, outcomes.failed(f"step `{job.step}`: repeat.until: {exc}"))
            return
        if met or step_run.iteration >= plan.step.repeat.max:
            metrics = {**result.metrics, "iterations": step_run.iteration, "until_met": met}
            self._complete(job.step, result.model_copy(update={"metrics": metrics}))
            return
        step_run.iteration += 1
        self._call(job.step, plan, self._context(), iteration=step_run.iteration)

    def _complete(self, step_id: str, result: AgentResult) -> None:
        plan = self.compiled.plans[step_id]
        step_run = self.step_runs[step_id]
        if result.status in ("success", "completed_with_errors") and plan.gates:
            result = outcomes.apply_gates(step_id, plan.gates, result, self._context(result=result.context()))
        if plan.approve_if is not None and step_run.held is None and result.status in ("success",
                                                                                       "completed_with_errors"):
            asked = approval_gates.band(plan, self._context(result=result.context()))
            if asked is not None:  # held back until a person decides (`_ask`)
                step_run.held = (result, *asked)
                self.approvals.append(step_id)
                return
        self.results[step_id] = step_run.result = result
        self.completed.append(step_id)
        self.step_views[step_id] = result.context()
        step_run.duration = time.monotonic() - step_run.started
        finished = StepFinished(
            step=step_id, result=result, duration=step_run.duration, attempts=step_run.attempts,
            cached=step_run.cached, reused=step_run.reused, agent=plan.step.agent, task_run_id=step_run.task_run_id,
            cache_calls=(step_run.cache_hits, step_run.cache_misses), variant=requests.step_variant(plan, self.run_id),
            skip_reason=self._skip_reason(step_id, plan, result),
            spend=self.budgets.by_step[step_id].view() if step_id in self.budgets.by_step else None)
        for sink in self.sinks:
            sink(finished)
        if result.status == "failed" and (plan.criticality in STOPPING_CRITICALITIES or self.budgets.exhausted):
            self.failed.append(step_id)
            # Start nothing new: drop what is queued; what runs finishes.
            for job in list(self.queue):
                self.queue.remove(job)
                if job.step not in self.waiting and job.step not in self.results:
                    self.waiting.append(job.step)
            self.waiting = list(dict.fromkeys(self.waiting))

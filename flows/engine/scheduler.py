"""The flow body: schedule a compiled workflow's steps as Prefect task runs.

A step starts as soon as every step it depends on has finished, so independent steps run
at the same time (up to the workflow's `max_parallel`, and a step's own `max_parallel` for
its `for_each` items). Conditions are evaluated and templates rendered here, before a task
is submitted, so a task's input is exactly what its agent sees. It is passed `quote`d: it
holds no futures, and Prefect's search for them cost 0.1-0.3 ms a step. A step that fails
and is critical or high stops the run from starting anything new; running steps finish.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any

from prefect.utilities.annotations import quote

from agentflow.errors import ExpressionError, TemplateError, WorkflowFailed
from agentflow.events import StepEvent, emit
from agentflow.flows.durability import cache_index
from agentflow.flows.durability.cache import components, key_of
from agentflow.flows.durability.journal import Done, Journal
from agentflow.flows.durability.repo import RepoState, read_repo_state
from agentflow.flows.engine import approvals, deliver, ladder, outcomes, requests, saga
from agentflow.flows.engine.budget import Budgets
from agentflow.flows.engine.compiled import CompiledWorkflow, StepPlan
from agentflow.flows.engine.jobs import Job, StepRun
from agentflow.flows.engine.publish import Publisher
from agentflow.flows.engine.result import WorkflowResult
from agentflow.flows.engine.run_scope import run_scope
from agentflow.flows.engine.run_workspace import WRITING_KINDS, RunWorkspace, entered
from agentflow.flows.language.inputs import secret_env, secret_marker
from agentflow.tasks.request import AGENT_KINDS, AgentRequest
from agentflow.tasks.results import AgentResult
from agentflow.tasks.workspace import PatchConflict

_log = logging.getLogger("agentflow")
_STOPPING_CRITICALITIES = ("critical", "high")
_SIGNAL_CHECK_S = 0.25


def execute(compiled: CompiledWorkflow, inputs: dict[str, Any]) -> WorkflowResult:
    """Run every step; return the WorkflowResult, or raise WorkflowFailed carrying it."""
    return _Scheduler(compiled, inputs).run()


class _Scheduler:
    def __init__(self, compiled: CompiledWorkflow, inputs: dict[str, Any]):
        self.compiled = compiled
        self.spec = compiled.spec
        self.inputs = inputs
        secret = [name for name, spec in compiled.spec.inputs.items() if spec.secret and inputs.get(name)]
        self.secrets = {name: str(inputs[name]) for name in secret}
        # Inputs as written down anywhere (run record, cache key, index): secrets by name only.
        self.masked_inputs = {**inputs, **{name: secret_marker(name) for name in secret}}
        self.waiting: list[str] = [s.id for s in self.spec.steps]
        self.active: dict[str, StepRun] = {}
        self.results: dict[str, AgentResult] = {}
        self.step_views: dict[str, dict[str, Any]] = {}
        self.queue: deque[Job] = deque()
        self.running: dict[Any, tuple[Job, Any]] = {}
        self.failed: list[str] = []
        self._repo: RepoState | None = None
        self.cached: set[str] = set()  # steps answered (at least in part) from the cache
        self.key_parts: dict[str, dict[str, Any]] = {}  # cache key -> what it was made of
        self.journal: Journal | None = None
        self.run_id: str | None = None
        self.reused: deque[tuple[Job, AgentResult]] = deque()  # calls this run had done before
        self.reused_steps: set[str] = set()
        self.durations: dict[str, float | None] = {}
        self.attempts: dict[str, int] = {}  # by task run name, filled by the task's retry condition
        self.step_attempts: dict[str, int] = {}  # the most tries any of a step's task runs took
        self.cache_calls: dict[str, tuple[int, int]] = {}  # a step's calls that hit the cache, that missed it
        self.budgets = Budgets(compiled.spec.budget)  # what the agents spent (engine/budget.py)
        self.publisher: Publisher | None = None  # the run's log lines, artifacts, events (engine/publish.py)
        self.task_runs: dict[str, Any] = {}  # step -> its task run's id (not for fan-out steps)
        self.approvals: deque[str] = deque()  # approval steps ready: asked when nothing else can run
        self.rejected: set[str] = set()  # rejected with `on_reject: skip`, and the steps skipped for it
        self.gated: dict[str, tuple[AgentResult, str, str]] = {}  # results a confidence gate holds back
        self.completed: list[str] = []  # steps in the order they completed (a saga undoes them backwards)
        self.to_undo: list[saga.Undo] | None = None  # set when a resumed run was compensating
        self.workspace: RunWorkspace | None = None  # the run's tree (engine/run_workspace.py)
        self.work: dict[str, Any] | None = None  # what became of its work (engine/deliver.py)
        # `run` in templates: where the run was started (`origin`, the user's tree) and where
        # its steps work (`workspace`): a report meant for the user is written under `origin`.
        self.run_view: dict[str, str] = {"origin": os.getcwd(), "workspace": os.getcwd()}

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> WorkflowResult:
        with run_scope(self.compiled, self.masked_inputs, self.attempts, tuple(self.secrets.values())) as run:
            self.run_id, self.journal, self.publisher = run.run_id, run.journal, run.publisher
            self._repo, self.workspace = run.repo, run.workspace
            if self.workspace is not None and not self.workspace.attached:
                self.run_view = {**self.run_view, "workspace": self.workspace.ws.workdir}
            begun = saga.begun(self.journal)
            if begun is None:
                with entered(self.workspace):
                    self._loop()
            else:  # a run that crashed while it compensated: its compensation goes on, not its steps
                self.failed, self.to_undo, results = begun
                self.results.update(results)
                self.step_views.update({step: result.context() for step, result in results.items()})
            return self._outcome()  # in the run's scope: its last log line still reaches the UI

    def _loop(self) -> None:
        while True:
            self._activate_ready()
            if self.reused:
                job, result = self.reused.popleft()
                result = self._take_work(job, result, fresh=False)  # its work, brought back
                self.budgets.add(job.step, result)  # spent by the run before it was resumed
                self._settle(job, result, duration=None, cached=False, reused=True)
                continue
            if not self.queue and not self.running:
                if not self.approvals:
                    break
                self._ask(self.approvals.popleft())  # the run pauses until a person answers
                continue
            if not self.running and len(self.queue) == 1 and self.queue[0].request.kind != "process":
                # Only one thing can happen now (a sequential chain): run it in the flow's own
                # thread, which costs less than a submit and a wait. Not a command: Ctrl-C is
                # raised in this thread, and if it lands while Popen is starting the command,
                # the command outlives the run; in a worker it always gets registered, then
                # killed (seen under load, a test in tests/test_cli.py).
                job = self.queue.popleft()
                self._mark_started(job)
                state = self.compiled.plans[job.step].task(quote(job.request), return_state=True)
                self._finish(job, state)
                continue
            self._launch()
            done: set = set()
            while not done:
                # Wake now and then: the OS may deliver Ctrl-C or SIGTERM to any thread, and
                # Python runs the handler only when the main thread runs, not while it sleeps
                # in a lock (seen under load: the signal was ignored until a step ended).
                done, _ = wait(list(self.running), timeout=_SIGNAL_CHECK_S, return_when=FIRST_COMPLETED)
            for wrapped in done:
                job, future = self.running.pop(wrapped)
                self.active[job.step].running -= 1
                future.wait()  # already done: this only records the final state on the future
                self._finish(job, future.state)

    def _outcome(self) -> WorkflowResult:
        undone = {}
        if self.failed:  # undo what the completed steps did, newest first (engine/saga.py)
            undo = self.to_undo if self.to_undo is not None else saga.to_undo(self.compiled, self.completed,
                                                                              self.results)
            undone = saga.compensate(self.compiled, undo, self.failed, self.results, self.journal, self._context())
        if self.workspace is not None:
            try:
                self.work = deliver.finish(self.workspace, self.spec.name, self.spec.deliver, not self.failed)
            except BaseException:
                deliver.remove(self.workspace)
                raise
        steps = outcomes.step_outcomes(self.spec_order(), self.results, self.durations, self.step_attempts,
                                       self.cached, self.reused_steps, self.failed)
        outcome = WorkflowResult(workflow=self.spec.name, version=self.compiled.workflow.spec_hash,
                                 run_id=self.run_id, status="failed" if self.failed else "completed",
                                 steps=steps, failed_steps=list(self.failed), spend=self.budgets.spent.view(),
                                 compensations={step: outcomes.compensation(r) for step, r in undone.items()},
                                 work=self.work)
        try:
            if self.publisher is not None:
                self.publisher.close(outcome, self.workspace.ws.workdir if self.workspace is not None else None)
        finally:
            if self.workspace is not None:
                deliver.remove(self.workspace)
        if self.failed:
            names = ", ".join(self.failed)
            why = self.budgets.why_stopped()
            raise WorkflowFailed(f"workflow `{self.spec.name}` failed: step(s) {names} failed{why}", outcome)
        return outcome

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

    def _launch(self) -> None:
        limit = self.spec.max_parallel
        for job in list(self.queue):
            if len(self.running) >= limit:
                return
            step_run = self.active[job.step]
            step_limit = step_run.plan.step.max_parallel
            if step_limit and step_run.running >= step_limit:
                continue
            self.queue.remove(job)
            self._mark_started(job)
            step_run.running += 1
            future = self.compiled.plans[job.step].task.submit(quote(job.request))
            self.running[future.wrapped_future] = (job, future)

    def _mark_started(self, job: Job) -> None:
        """A job is about to run: the budgets are checked now, when what ran before it has
        reported its spend (engine/budget.py)."""
        plan = self.compiled.plans[job.step]
        refusal = self.budgets.refusal(job.step, plan.budget)
        if refusal is not None:
            job.request = self._special(plan, "error", refusal, job.request.label)
        else:
            job.request = self.budgets.passed_down(job.step, plan.budget, job.request)
        if self.workspace is not None and job.request.kind in WRITING_KINDS and plan.step.deployment is None:
            # Where it works: the run's tree, or a worktree of its own if it may run beside
            # others (a function runs in this process, in the run's tree, whatever it is).
            if not (plan.concurrent and job.request.kind == "python"):  # not isolated, so not captured
                job.workspace = self.workspace.for_call(plan.concurrent, job.tree)
                job.request = job.request.model_copy(update={"workspace": job.workspace})
        job.started = time.monotonic()
        emit(StepEvent(kind="started", step=job.step, label=job.request.label, cache_key=job.cache_key))
        if self.publisher is not None and job.request.kind != "skip":
            self.publisher.started(job.request.label, job.request.agent or None,
                                   self.step_attempts.get(job.step, 1))

    # ---- starting a step ------------------------------------------------------------------
    def _context(self, **extra: Any) -> dict[str, Any]:
        # `steps` is built once per completed step, not per read: templates and expressions
        # only read it, and rebuilding it for every step made a long run quadratic.
        return {"inputs": self.inputs, "steps": self.step_views, "run": self.run_view, **extra}

    def _start_step(self, step_id: str) -> None:
        plan = self.compiled.plans[step_id]
        step_run = StepRun(plan=plan, started=time.monotonic())
        self.active[step_id] = step_run
        context = self._context()
        rejected = [up for up in plan.upstream if up in self.rejected]
        if rejected:
            self.rejected.add(step_id)
            why = f"skipped: `{rejected[0]}` was rejected"
            self._enqueue(step_id, self._special(plan, "skip", why, f"{step_id} (skipped)"))
            return
        try:
            start = requests.decide(plan, context)
        except (ExpressionError, TemplateError) as exc:
            self._enqueue(step_id, self._special(plan, "error", f"step `{step_id}`: {exc}", step_id))
            return
        if start.kind == "skip":
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
        gated = self.gated.get(step_id)  # (the held result, review | approval, why)
        approval = approvals.gate_approval(step_id, gated[1], gated[2]) if gated else approvals.spec_of(plan)
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
        outcome = approvals.result(step_id, approval, decision)
        if gated and outcome.status == "success":  # approved: the agent's answer, with who approved it
            outcome = gated[0].model_copy(update={"metrics": {**gated[0].metrics, "approval": outcome.summary}})
        if outcome.status == "skipped":
            self.rejected.add(step_id)
        # Keyed as asked (`masked`): a resumed run finds the decision by the request it makes.
        self._enqueue(step_id, request.model_copy(update={"params": decision, "message": outcome.summary}),
                      masked=request, outcome=outcome)

    def _enqueue(self, step_id: str, request: AgentRequest, index: int | None = None,
                 masked: AgentRequest | None = None, rung: int = 0, tried: tuple[tuple[str, str], ...] = (),
                 outcome: AgentResult | None = None) -> None:
        plan = self.compiled.plans[step_id]
        job = Job(step=step_id, request=request, index=index, rung=rung, tried=tried, outcome=outcome,
                  tree=self.workspace.tree if self.workspace is not None else "")
        callable_ = request.kind in AGENT_KINDS or request.kind in ("approval", "workflow")
        if callable_ and (self.journal is not None or plan.cache):
            job.key = requests.call_key(self.spec.name, plan, masked or request, rung)
        if self.journal is not None and job.key is not None:
            done = self.journal.lookup(request.label, job.key.identity)
            if done is not None:
                self.reused.append((job, done))
                return
        if plan.cache_policy is not None and job.key is not None:
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
        keys = self.compiled.credentials.get(request.agent or "")
        if keys:  # an agent block's key: like a secret, to the agent only, removed from its result
            request = request.model_copy(update={"secrets": {**request.secrets, **keys}})
        masked = None
        if self.secrets:
            masked = requests.build(self.spec.name, plan, {**context, "inputs": self.masked_inputs}, item=item,
                                    index=index, iteration=iteration, rung=rung, run_id=self.run_id)
            secrets = {**request.secrets, **{secret_env(k): v for k, v in self.secrets.items()}}
            request = request.model_copy(update={"secrets": secrets})
        self._enqueue(step_id, request, index, masked, rung, tried)

    def _finish(self, job: Job, state: Any) -> None:
        result = job.outcome or outcomes.of_state(state)
        if job.index is None and state.state_details is not None:
            self.task_runs[job.step] = state.state_details.task_run_id
        duration = time.monotonic() - job.started
        cached = state.name == "Cached"
        result = self._take_work(job, result, fresh=not cached)
        tries = self.attempts.get(job.request.label, 1)
        self.step_attempts[job.step] = max(self.step_attempts.get(job.step, 1), tries)
        if not cached:  # a cache hit spends nothing
            self.budgets.add(job.step, result)
        if job.request.agent is not None and job.request.kind in AGENT_KINDS:
            result = self._on_the_ladder(job, state, result, duration)
            if result is None:
                return  # the next agent was queued
        given_up = result.status == "skipped" and job.tried  # every agent failed: nothing to keep
        if result.status != "failed" and not given_up:
            if self.journal is not None and job.key is not None:
                self.journal.record(job.request.label, Done(job.step, job.key.identity, result))
            if job.cache_key:
                self._index(job, cached)
        self._settle(job, result, duration, cached, reused=False)

    def _take_work(self, job: Job, result: AgentResult, fresh: bool) -> AgentResult:
        """The call's work joins the run's tree (engine/run_workspace.py): computed there, or
        brought from its own worktree, the cache or the journal. A failed call's is dropped;
        work that does not apply fails the call, naming the files."""
        if self.workspace is None:
            return result
        if result.status in ("failed", "skipped"):
            self.workspace.discard(job.workspace)
            return result
        try:
            self.workspace.took(job.request.label, result.summary, result.changes, job.workspace, fresh)
        except PatchConflict as exc:
            return outcomes.failed(f"step `{job.step}`: {exc}")
        return result

    def _on_the_ladder(self, job: Job, state: Any, result: AgentResult, duration: float) -> AgentResult | None:
        """The step's result after this agent's answer (engine/ladder.py decides); None when
        the next agent, or the step's skip, was queued instead."""
        plan = self.compiled.plans[job.step]
        tried = (*job.tried, (job.request.agent or "", result.summary)) if result.status == "failed" else job.tried
        move = ladder.decide(plan.step.agent or "", plan.agent, plan.fallbacks, plan.degraded, job.rung,
                             job.request.agent or "", list(tried), result, outcomes.error_of(state))
        if move.kind == "keep":
            return move.result
        emit(StepEvent(kind="finished", step=job.step, label=job.request.label, status="failed",
                       summary=result.summary, duration_s=duration))
        if move.kind == "next":
            emit(StepEvent(kind="fallback", step=job.step, label=job.request.label, agent=move.following,
                           summary=f"{job.request.agent} failed; trying {move.following}"))
            if plan.degraded.warning_on_fallback:
                _log.warning("agentflow: step %s: agent %s failed (%s); falling back to %s", job.step,
                             job.request.agent, result.summary, move.following)
            self._call(job.step, plan, self._context(), item=job.request.item, index=job.index,
                       iteration=job.request.iteration, rung=job.rung + 1, tried=tried)
            return None
        # Skipped: recorded by a task run of its own, so the UI says Skipped and why.
        request = job.request
        label = requests.call_label(job.step, request.item, job.index, request.iteration) + " (skipped)"
        self.queue.append(Job(step=job.step, request=self._special(plan, "skip", move.result.summary, label),
                              index=job.index, tried=tried, outcome=move.result))
        return None

    def _settle(self, job: Job, result: AgentResult, duration: float | None, cached: bool, reused: bool) -> None:
        if cached:
            self.cached.add(job.step)
        if reused:
            self.reused_steps.add(job.step)
        emit(StepEvent(kind="finished", step=job.step, label=job.request.label, status=result.status,
                       summary=result.summary, duration_s=duration, cached=cached, reused=reused,
                       degraded=result.degraded, agent=result.fallback_used or result.skipped_agent))
        step_run = self.active[job.step]
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
        hits, misses = self.cache_calls.get(job.step, (0, 0))
        self.cache_calls[job.step] = (hits + hit, misses + (not hit))
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
        if result.status in ("success", "completed_with_errors") and plan.gates:
            result = outcomes.apply_gates(step_id, plan.gates, result, self._context(result=result.context()))
        if plan.approve_if is not None and step_id not in self.gated and result.status in ("success",
                                                                                          "completed_with_errors"):
            asked = approvals.band(plan, self._context(result=result.context()))
            if asked is not None:  # held back until a person decides (`_ask`)
                self.gated[step_id] = (result, *asked)
                self.approvals.append(step_id)
                return
        self.results[step_id] = result
        self.completed.append(step_id)
        self.step_views[step_id] = result.context()
        step_run = self.active[step_id]
        self.durations[step_id] = duration = time.monotonic() - step_run.started
        if self.publisher is not None:
            self.publisher.step_done(step_id, result, duration, self.step_attempts.get(step_id, 1),
                                     cached=step_id in self.cached, reused=step_id in self.reused_steps,
                                     task_run_id=self.task_runs.get(step_id), agent=plan.step.agent,
                                     cache_calls=self.cache_calls.get(step_id, (0, 0)),
                                     variant=requests.step_variant(plan, self.run_id),
                                     spend=self.budgets.by_step[step_id].view() if step_id in self.budgets.by_step else None)
        emit(StepEvent(kind="step_finished", step=step_id, label=step_id, status=result.status,
                       summary=result.summary, duration_s=duration, cached=step_id in self.cached,
                       reused=step_id in self.reused_steps, degraded=result.degraded))
        if result.status == "failed" and (plan.criticality in _STOPPING_CRITICALITIES or self.budgets.exhausted):
            self.failed.append(step_id)
            # Start nothing new: drop what is queued; what runs finishes.
            for job in list(self.queue):
                self.queue.remove(job)
                if job.step not in self.waiting and job.step not in self.results:
                    self.waiting.append(job.step)
            self.waiting = list(dict.fromkeys(self.waiting))


"""The flow body: schedule a compiled workflow's steps as Prefect task runs.

A step starts as soon as every step it depends on has finished, so independent steps run
at the same time (up to the workflow's `max_parallel`, and a step's own `max_parallel` for
its `for_each` items). Conditions are evaluated and templates rendered here, before a task
is submitted, so a task's input is exactly what its agent sees. It is passed `quote`d: it
holds no futures, and Prefect's search for them cost 0.1-0.3 ms a step. A step that fails
and is critical or high stops the run from starting anything new; running steps finish.

This module runs the calls (the loop, launching task runs, what each one's state comes to:
the fallback ladder, the work it brings to the run's tree, the run's outcome); what each
step does next is engine/steps.py.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any

from prefect.exceptions import Pause
from prefect.utilities.annotations import quote

from agentflow.events import StepEvent, emit
from agentflow.flows.durability import patches, settling
from agentflow.flows.durability.journal import Done, Journal
from agentflow.flows.durability.store import StoreUnavailable
from agentflow.flows.durability.repo import RepoState
from agentflow.flows.engine import deliver, ladder, outcomes, requests, saga
from agentflow.flows.engine.budget import Budgets
from agentflow.flows.engine.compiled import CompiledWorkflow
from agentflow.flows.engine.jobs import Job, StepFinished, StepRun
from agentflow.flows.engine.publish import Publisher
from agentflow.flows.engine.result import WorkflowResult
from agentflow.flows.engine.run_scope import run_scope
from agentflow.flows.engine.run_workspace import WRITING_KINDS, RunWorkspace, entered
from agentflow.flows.engine.steps import StepLogic, to_the_live_view
from agentflow.flows.language.inputs import secret_marker
from agentflow.tasks import credentials, decisions
from agentflow.tasks.decisions import DECISION_KINDS
from agentflow.tasks.kinds import REQUEST_KINDS
from agentflow.tasks.results import AgentResult
from agentflow.tasks.workspace import PatchConflict

_log = logging.getLogger("agentflow")
_SIGNAL_CHECK_S = 0.25


def execute(compiled: CompiledWorkflow, inputs: dict[str, Any]) -> WorkflowResult:
    """Run every step; the WorkflowResult, failed or not (the flow body turns a failed one
    into the flow run's Failed state)."""
    return _Scheduler(compiled, inputs).run()


class _Scheduler(StepLogic):
    def __init__(self, compiled: CompiledWorkflow, inputs: dict[str, Any]):
        self.compiled = compiled
        self.spec = compiled.spec
        self.inputs = inputs
        secret = [name for name, spec in compiled.spec.inputs.items() if spec.secret and inputs.get(name)]
        self.secrets = {name: str(inputs[name]) for name in secret}
        # What each agent is given from the environment or a credentials block: to the agent
        # only, and masked like a secret input wherever the run writes (tasks/credentials.py).
        self.credentials = {name: {**credentials.from_environment(
                                       agent.kind, {"headers": agent.headers, "model": agent.model}),
                                   **compiled.credentials.get(name, {})}
                            for name, agent in compiled.workflow.agents.items()}
        # Inputs as written down anywhere (run record, cache key, index): secrets by name only.
        self.masked_inputs = {**inputs, **{name: secret_marker(name) for name in secret}}
        self.waiting: list[str] = [s.id for s in self.spec.steps]
        self.step_runs: dict[str, StepRun] = {}
        self.results: dict[str, AgentResult] = {}
        self.step_views: dict[str, dict[str, Any]] = {}
        self.queue: deque[Job] = deque()
        self.running: dict[Any, tuple[Job, Any]] = {}
        self.failed: list[str] = []
        self._repo: RepoState | None = None
        self.key_parts: dict[str, dict[str, Any]] = {}  # cache key -> what it was made of
        self.journal: Journal | None = None
        self.run_id: str | None = None
        self.reused: deque[tuple[Job, AgentResult]] = deque()  # calls this run had done before
        self.attempts: dict[str, int] = {}  # by task run name, filled by the task's retry condition
        self.budgets = Budgets(compiled.spec.budget)  # what the agents spent (engine/budget.py)
        self.publisher: Publisher | None = None  # the run's log lines, artifacts, events (engine/publish.py)
        self.sinks: list[Callable[[StepFinished], None]] = [to_the_live_view]
        self.approvals: deque[str] = deque()  # approval steps ready: asked when nothing else can run
        self.completed: list[str] = []  # steps in the order they completed (a saga undoes them backwards)
        self.to_undo: list[saga.Undo] | None = None  # set when a resumed run was compensating
        self.workspace: RunWorkspace | None = None  # the run's tree (engine/run_workspace.py)
        self.work: dict[str, Any] | None = None  # what became of its work (engine/deliver.py)
        # `run` in templates: where the run was started (`origin`, the user's tree) and where
        # its steps work (`workspace`): a report meant for the user is written under `origin`.
        self.run_view: dict[str, str] = {"origin": os.getcwd(), "workspace": os.getcwd()}

    def run(self) -> WorkflowResult:
        with run_scope(self.compiled, self.masked_inputs, self.attempts, self._masked_values()) as run:
            self.run_id, self.journal, self.publisher = run.run_id, run.journal, run.publisher
            if self.publisher is not None:  # the run's log line, outcome event, metrics and page: before the live view's
                self.sinks.insert(0, self.publisher.step_done)
            self._repo, self.workspace = run.repo, run.workspace
            if self.workspace is not None and not self.workspace.attached:
                self.run_view = {**self.run_view, "workspace": self.workspace.ws.workdir}
            begun = saga.begun(self.journal)
            if begun is None:
                try:
                    with entered(self.workspace):
                        self._loop()
                except Pause:  # suspended for a person: this process ends; the run goes on from
                    # its journal on whichever worker takes it, which makes its tree again
                    if self.workspace is not None:
                        deliver.remove(self.workspace)
                    raise
            else:  # a run that crashed while it compensated: its compensation goes on, not its steps
                self.failed, self.to_undo, results = begun
                self.results.update(results)
                self.step_views.update({step: result.context() for step, result in results.items()})
            return self._outcome()  # in the run's scope: its last log line still reaches the UI

    def _masked_values(self) -> tuple[str, ...]:
        """Every value the run's log lines mask: its secret inputs and its agents' credentials."""
        values = [*self.secrets.values(), *(v for found in self.credentials.values() for v in found.values())]
        return tuple(dict.fromkeys(values))

    def _loop(self) -> None:
        while True:
            self._activate_ready()
            if self.reused:
                job, result = self.reused.popleft()
                try:
                    result = self._take_work(job, result, fresh=False)  # its work, brought back
                except PatchConflict as exc:  # the run's tree cannot be made again as it was
                    result = outcomes.failed(f"step `{job.step}`: {exc}")
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
                state = self._task(job)(quote(job.request), return_state=True)
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
                self.step_runs[job.step].running -= 1
                future.wait()  # already done: this only records the final state on the future
                self._finish(job, future.state)

    def _outcome(self) -> WorkflowResult:
        undone = {}
        if self.failed:  # undo what the completed steps did, newest first (engine/saga.py)
            undo = self.to_undo if self.to_undo is not None else saga.to_undo(self.compiled, self.completed,
                                                                              self.results)
            with entered(self.workspace):  # where the steps worked: never the user's own tree when the run has one
                undone = saga.compensate(self.compiled, undo, self.failed, self.results, self.journal,
                                         self._context())
        if self.workspace is not None:
            try:
                self.work = deliver.finish(self.workspace, self.spec.name, self.spec.deliver, not self.failed)
            except BaseException:
                deliver.remove(self.workspace)
                raise
        steps = outcomes.step_outcomes(self.spec_order(), self.results, self.step_runs, self.failed)
        message = ""
        if self.failed:
            message = (f"workflow `{self.spec.name}` failed: step(s) {', '.join(self.failed)} failed"
                       f"{self.budgets.why_stopped()}")
        outcome = WorkflowResult(workflow=self.spec.name, version=self.compiled.workflow.spec_hash,
                                 run_id=self.run_id, status="failed" if self.failed else "completed", message=message,
                                 steps=steps, failed_steps=list(self.failed), spend=self.budgets.spent.view(),
                                 compensations={step: outcomes.compensation(r) for step, r in undone.items()},
                                 work=self.work)
        try:
            if self.publisher is not None:
                self.publisher.close(outcome, self.workspace.ws.workdir if self.workspace is not None else None,
                                     settling.ended())
        finally:
            if self.workspace is not None:
                deliver.remove(self.workspace)
        return outcome

    def _launch(self) -> None:
        limit = self.spec.max_parallel
        for job in list(self.queue):
            if len(self.running) >= limit:
                return
            step_run = self.step_runs[job.step]
            step_limit = step_run.plan.step.max_parallel
            if step_limit and step_run.running >= step_limit:
                continue
            self.queue.remove(job)
            self._mark_started(job)
            step_run.running += 1
            future = self._task(job).submit(quote(job.request))
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
            self.publisher.started(job.request.label, job.request.agent or None, self.step_runs[job.step].attempts)

    def _task(self, job: Job) -> Any:
        plan = self.compiled.plans[job.step]
        if job.request.kind in DECISION_KINDS:  # decided already: recorded, nothing called
            return decisions.for_step(plan.task.name)
        task = plan.task
        return task.with_options(refresh_cache=True) if job.refresh else task

    def _finish(self, job: Job, state: Any) -> None:
        settling.saw(state)
        result = job.outcome or outcomes.of_state(state)
        step_run = self.step_runs[job.step]
        if job.index is None and state.state_details is not None:
            step_run.task_run_id = state.state_details.task_run_id
        duration = time.monotonic() - job.started
        cached = state.name == "Cached"
        try:
            result = self._take_work(job, result, fresh=not cached)
        except PatchConflict as exc:
            if not cached or job.refresh:
                result = outcomes.failed(f"step `{job.step}`: {exc}")
            else:  # the cached work no longer applies here: a miss, and the step runs again
                self._again(job, exc)
                return
        tries = self.attempts.get(job.request.label, 1)
        step_run.attempts = max(step_run.attempts, tries)
        if not cached:  # a cache hit spends nothing
            self.budgets.add(job.step, result)
        if job.request.agent is not None and job.request.kind in REQUEST_KINDS:
            result = self._on_the_ladder(job, state, result, duration)
            if result is None:
                return  # the next agent was queued
        given_up = result.status == "skipped" and job.tried  # every agent failed: nothing to keep
        if result.status != "failed" and not given_up:
            try:
                self._keep(job, result, cached)
            except StoreUnavailable as exc:  # not durable, so not done: a resume runs it again
                result = outcomes.failed(f"step `{job.step}`: its result could not be kept: {exc}")
        self._settle(job, result, duration, cached, reused=False)

    def _keep(self, job: Job, result: AgentResult, cached: bool) -> None:
        """Make a completed call durable: its patch in the shared store (another machine may
        replay it), then its journal entry, then its cache index entry."""
        if result.changes is not None and not result.changes.empty:
            patches.share(result.changes.patch)
        if self.journal is not None and job.key is not None:
            self.journal.record(job.request.label, Done(job.step, job.key.identity, result))
        if job.cache_key:
            self._index(job, cached)

    def _take_work(self, job: Job, result: AgentResult, fresh: bool) -> AgentResult:
        """The call's work joins the run's tree (engine/run_workspace.py): computed there, or
        brought from its own worktree, the cache or the journal. A failed call's is dropped;
        PatchConflict, naming the files, if the work does not apply."""
        if self.workspace is None:
            return result
        if result.status in ("failed", "skipped"):
            self.workspace.discard(job.workspace)
            return result
        self.workspace.took(job.request.label, result.summary, result.changes, job.workspace, fresh)
        return result

    def _again(self, job: Job, why: PatchConflict) -> None:
        """A cache hit whose patch does not apply to the run's tree: the call runs again, its
        entry refreshed, from the tree as it is now."""
        _log.warning("agentflow: step %s: its cached work does not apply here (%s); it runs again", job.step, why)
        emit(StepEvent(kind="activity", step=job.step, label=job.request.label,
                       summary=f"cache hit not used: {why}; running it again"))
        job.refresh, job.workspace = True, None
        job.tree = self.workspace.tree if self.workspace is not None else job.tree
        self.queue.appendleft(job)

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

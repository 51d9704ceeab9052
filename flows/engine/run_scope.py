"""What surrounds a flow run's steps: its record and journal, the guard over its commands,
signal handling, the attempt counter, and what it publishes (engine/publish.py).

The scheduler runs its loop inside `RunScope`; outside a flow run (no FlowRunContext) there
is no record, journal or publisher, and steps still run.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator

from agentflow import prefect_compat
from agentflow import log
from agentflow.events import StepEvent, emit
from agentflow.flows.durability import records, settling
from agentflow.flows.durability.crash import CHILD_TAG, RUN_TAG
from agentflow.flows.durability.guard import RunGuard
from agentflow.flows.durability.heartbeat import HEARTBEAT_S, Heartbeat
from agentflow.flows.durability.journal import Journal
from agentflow.flows.durability.repo import RepoState, read_repo_state
from agentflow.flows.engine.compiled import CompiledWorkflow
from agentflow.flows.engine.publish import Publisher
from agentflow.flows.engine.run_workspace import RunWorkspace, open_for_run
from agentflow.flows.language import canonical
from agentflow.tasks import limits
from agentflow.tasks.agent_call import ATTEMPTS
from agentflow.tasks.backends.process import allow_commands, hand_back, kill_on_sigterm, kill_running

_log = logging.getLogger("agentflow")


@dataclass
class Run:
    """The flow run the steps belong to (all None outside a flow run)."""

    run_id: str | None = None
    journal: Journal | None = None
    repo: RepoState | None = None  # read once per run: every step sees the same commit
    publisher: Publisher | None = None
    workspace: RunWorkspace | None = None  # where its steps work (engine/run_workspace.py)


@contextmanager
def run_scope(compiled: CompiledWorkflow, masked_inputs: dict[str, Any], attempts: dict[str, int],
              secrets: tuple[str, ...] = ()) -> Iterator[Run]:
    """Open the run (record, journal, guard, publisher, its log context) around the steps, and
    close it; on an interruption, stop the running commands at once. `secrets`: the values
    masked in its log lines."""
    # The flow run was created tagged `agentflow` (and a child run with its parent's call:
    # engine/children.py); its task runs are not: any task tag costs an API call per task
    # run (engine/compile.py).
    with prefect_compat.only_tags(lambda tag: tag != RUN_TAG and not tag.startswith(CHILD_TAG)):
        run = _open(compiled, masked_inputs)
        heartbeat = _heartbeat()
        guard = RunGuard(records.run_dir(run.run_id) / "procs") if run.run_id is not None else None
        if guard is not None:
            guard.start()
        parents = allow_commands(guard)
        restore = kill_on_sigterm()
        counting = ATTEMPTS.set(attempts)
        logging = (log.run_context(run.run_id, compiled.spec.name, run.publisher.ui_line, secrets)
                   if run.publisher is not None and run.run_id is not None else nullcontext())
        try:
            with logging, settling.tracking(_labels()):
                yield run
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM, cancellation) while steps run: stop their commands
            # now. They run in sessions of their own, and Prefect joins its worker threads
            # before it lets the interruption through, which would otherwise wait for them.
            kill_running()  # also a command run in this thread, which may be between two lines
            raise
        finally:
            ATTEMPTS.reset(counting)
            restore()
            if run.journal is not None:
                run.journal.close()
            if guard is not None:
                guard.stop()
            hand_back(parents)  # a child run's parent goes on tracking its own commands
            if heartbeat is not None:
                heartbeat.stop()


def _labels() -> dict[str, Any] | None:
    """The flow run's labels as it started: what an earlier attempt said (durability/settling.py)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return dict(context.flow_run.labels or {}) if context is not None and context.flow_run is not None else None


def _heartbeat() -> Heartbeat | None:
    """This run's heartbeats, when agentflow turned Prefect's off for it (engine/compile.py),
    or a deployed run's when its worker has them off (Prefect's default: a worker started
    without PREFECT_FLOWS_HEARTBEAT_FREQUENCY would leave a run whose machine died Running
    for good; with them, the crash automation marks it Crashed)."""
    from prefect.context import FlowRunContext
    from prefect.settings import get_current_settings

    from agentflow import _prefect_env

    period = HEARTBEAT_S.get()
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    if period is None and context.flow_run.deployment_id and get_current_settings().flows.heartbeat_frequency is None:
        period = int(_prefect_env.RELIABLE["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    if period is None:
        return None
    heartbeat = Heartbeat(context.flow_run, context.flow.name if context.flow else "", period)
    heartbeat.start()
    return heartbeat


def _open(compiled: CompiledWorkflow, masked_inputs: dict[str, Any]) -> Run:
    """This flow run's journal and record: created on the first attempt, a new attempt noted
    on a resume (whose completed calls the journal then holds)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return Run()
    run_id = str(context.flow_run.id)
    repo = read_repo_state(".")
    workflow, spec = compiled.workflow, compiled.spec

    def new_record() -> records.RunRecord:
        source = workflow.source if workflow.source.startswith("<") else os.path.abspath(workflow.source)
        return records.RunRecord(
            run_id=run_id, workflow=spec.name, source=source, cwd=os.getcwd(), spec_hash=workflow.spec_hash,
            definition=canonical.workflow_definition(workflow.spec, workflow.agents), inputs=masked_inputs,
            repo=repo.key_part(), cache=compiled.cache_mode, created=time.time(),
            **records.project_relative(source, os.getcwd()))

    limits.ensure(compiled.agent_limits())
    publisher = Publisher(spec.name, run_id, len(spec.steps))
    if context.flow_run.run_count > 1 and records.read_record(run_id) is None:
        said = (f"this run ran before (attempt {context.flow_run.run_count}), yet the storage this process uses has "
                f"no record of it ({records.where(records.run_key(run_id, 'run.json'))}): its steps run again; "
                "workers that should share a run's journal share a result storage (`agentflow storage set`)")
        _log.warning("agentflow: %s", said)
        emit(StepEvent(kind="workspace", step="", label=run_id, status="warning", summary=said))
    record = records.begin_attempt(run_id, new_record)
    emit(StepEvent(kind="run_started", step="", label=run_id, attempt=len(record.attempts)))
    workspace, why = open_for_run(run_id, spec.workspace, os.getcwd())
    if workspace is None:
        said = (f"{why}: the steps work in place; their changes are neither isolated from other runs nor "
                "captured as their work")
        _log.warning("agentflow: %s", said)
        emit(StepEvent(kind="workspace", step="", label=run_id, status="warning", summary=said))
    elif not workspace.attached:
        where = ("in your tree (workspace: in-place)" if workspace.base.mode == "in-place" else
                 f"in {workspace.ws.workdir}, a worktree at {workspace.base.commit[:10]}"
                 + (" with your uncommitted changes" if workspace.base.start else ""))
        emit(StepEvent(kind="workspace", step="", label=run_id, summary=f"steps work {where}"))
    return Run(run_id=run_id, journal=Journal(run_id), repo=repo, publisher=publisher, workspace=workspace)

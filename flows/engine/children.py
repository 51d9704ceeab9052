"""Sub-workflow steps: the step's task runs a child workflow, whose `WorkflowResult` is the
step's result (`steps.ID.data.steps.X.summary`).

`workflow: FILE` runs the child's flow here, as a flow run under the step's task run;
`deployment: NAME` starts a run of that deployment, which whatever worker is free picks up,
linked to the step's task run in the UI, and waits for it (up to the step's `timeout`).

A child run belongs to its parent run and step call. Started again (the parent resumed after
a crash, or run again by its worker after an approval), the step finds its child instead of
starting another: a finished one gives its result, an unfinished one is resumed, and its own
journal answers the steps it had completed. A local child is found by a tag made of its parent
run and call; a deployment's run by an idempotency key made of the same, which the server
holds to: however often the step starts it, there is one run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agentflow import prefect_compat
from agentflow.errors import ConfigError, InputError, WorkflowFailed
from agentflow.flows.durability import crash
from agentflow.flows.engine import deployment_runs
from agentflow.flows.engine.result import WorkflowResult
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult

_POLL_S = 1.0  # how often a `deployment:` step asks whether its child run has ended


def run_local(child: Any, request: AgentRequest) -> AgentResult:
    """Run the child workflow's flow (`child`, built by the compiler) as this task run's
    subflow; resume it if this call started it before."""
    from prefect import tags
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.states import Scheduled

    try:
        values = child.parameters_of(dict(request.params))  # engine/compile.py's WorkflowFlow
    except InputError as exc:  # `with:` values the child's inputs refuse: not retried
        raise ConfigError(f"step `{request.step}`: {exc}") from None
    tag = _child_tag(_task_run(), request)
    with get_client(sync_client=True) as client:
        earlier = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])), limit=1)
        if earlier:
            flow_run = earlier[0]
            # Its process was the parent's: found dead, it is Crashed and the commands it left are killed.
            crash.check(str(flow_run.id), flow_run.state.name if flow_run.state is not None else "")
            crash.crash_orphaned_tasks(str(flow_run.id))
            client.set_flow_run_state(flow_run.id, Scheduled(message="resumed with its parent run"), force=True)
            flow_run = client.read_flow_run(flow_run.id)
    try:
        if earlier:
            outcome = prefect_compat.run_flow_again(child, flow_run, values, return_type="result")
        else:  # a subflow as Prefect makes one (linked to the step's task run), tagged to be found again
            with tags(tag):
                outcome = child(**request.params)
    except WorkflowFailed as exc:
        return _failed(exc)
    return _done(outcome)


def run_deployed(name: str, request: AgentRequest) -> AgentResult:
    """Start (or find) this call's run of the deployment `name` and wait for it: a run that
    crashed, failed or was cancelled is given back to its work pool first, to be finished."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        try:
            deployment = deployment_runs.find(client, name)
            deployment_runs.check_inputs(deployment, dict(request.params))
        except (deployment_runs.DeploymentNotFound, InputError) as exc:
            raise ConfigError(f"step `{request.step}`: {exc}") from None
        # Prefect's own: it links the run under the step's task run (timeout 0: not waited here).
        run = run_deployment(deployment.id, parameters=dict(request.params), timeout=0, as_subflow=True,
                             idempotency_key=_child_tag(_task_run(), request))
        state = run.state.type.value if run.state is not None else ""
        if state in deployment_runs.FINAL and state != "COMPLETED":
            deployment_runs.hand_back(str(run.id))  # started by an earlier try of this call: finished now
        try:
            outcome = deployment_runs.wait_for_run(client, run.id, request.timeout, _POLL_S)
        except WorkflowFailed as exc:
            return _failed(exc)
        except (deployment_runs.DeploymentRunFailed, deployment_runs.DeploymentRunTimeout) as exc:
            return AgentResult(status="failed", summary=str(exc)[:500], error=str(exc),
                               metrics={"run_id": str(run.id)})
    return _done(outcome)


def _task_run() -> Any:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return context.task_run if context is not None else None


def _child_tag(task_run: Any, request: AgentRequest) -> str:
    """The same for every try of one call in one parent run (its task runs differ)."""
    parent = str(task_run.flow_run_id) if task_run is not None else "none"
    return crash.CHILD_TAG + hashlib.sha256(f"{parent}\0{request.label}".encode()).hexdigest()[:20]


def _done(outcome: WorkflowResult) -> AgentResult:
    done = sum(1 for o in outcome.steps.values() if o.status == "success")
    return AgentResult(summary=f"workflow {outcome.workflow}: {outcome.status} ({done}/{len(outcome.steps)} "
                               f"steps done)", data=outcome.model_dump(mode="json"),
                       metrics={"run_id": outcome.run_id, **outcome.spend})


def _failed(exc: WorkflowFailed) -> AgentResult:
    data = exc.result.model_dump(mode="json") if exc.result is not None else None
    metrics = {"run_id": exc.result.run_id} if exc.result is not None else {}
    return AgentResult(status="failed", summary=str(exc)[:500], data=data, error=str(exc), metrics=metrics)

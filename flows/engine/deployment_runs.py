"""Runs of deployments, started and awaited from anywhere a client reaches the server: the
Python client (deployments/client.py), `agentflow run --deployment`, and a `deployment:`
step, whose child run a worker picks up (engine/children.py).

The result is read from the run's persisted result, and only if agentflow's serializer wrote
it (engine/stored_result.py): a record that names another serializer is never decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
import uuid
from typing import Any

from agentflow.errors import AgentflowError, InputError, WorkflowFailed
from agentflow.flows.engine.result import WorkflowResult

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class DeploymentNotFound(AgentflowError, LookupError):
    """No deployment has that name on the server."""


class DeploymentRunFailed(AgentflowError):
    """The run ended crashed or cancelled (a failed workflow raises WorkflowFailed instead)."""


class DeploymentRunTimeout(AgentflowError, TimeoutError):
    """The run did not end within the time given; it goes on (its id is in the message)."""


def full_name(name: str) -> str:
    """`finance-feature` is the deployment `finance-feature/finance-feature` prefect.yaml makes."""
    return name if "/" in name else f"{name}/{name}"


def find(client: Any, name: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(full_name(name))
    except ObjectNotFound:
        raise DeploymentNotFound(f"no deployment `{full_name(name)}` on the Prefect server at "
                                 f"{client.api_url}; `agentflow deploy --apply` deploys the project's workflows") from None


def check_inputs(deployment: Any, inputs: dict[str, Any]) -> None:
    """InputError naming every input that does not fit the deployment's schema."""
    import jsonschema

    schema = deployment.parameter_openapi_schema or {}
    known = set((schema.get("properties") or {}))
    problems = [f"`{key}` is not an input of {deployment.name} (its inputs: {', '.join(sorted(known)) or 'none'})"
                for key in sorted(set(inputs) - known)]
    validator = jsonschema.Draft202012Validator({k: v for k, v in schema.items() if k != "definitions"})
    for error in sorted(validator.iter_errors(inputs), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path)
        problems.append(f"input `{where}`: {error.message}" if where else error.message)
    if problems:
        raise InputError(f"deployment {deployment.name}: " + "; ".join(problems))


def hand_back(run_id: str) -> None:
    """Give a deployed run that crashed, failed or was cancelled back to its work pool: the
    first worker free finishes it, taking the calls it completed from its journal (in the
    shared result storage: durability/storage.py), so none of them runs again. The same flow
    run goes on (the UI shows one run whose history holds the crash and the resume)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from agentflow.flows.durability import crash

    crash.crash_orphaned_tasks(run_id)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(run_id), Scheduled(message="resumed by agentflow: a worker finishes it"),
                                  force=True)


def wait_for_run(client: Any, run_id: uuid.UUID | str, timeout: float | None, poll_interval: float,
                 on_change: Callable[[str, str], None] | None = None) -> WorkflowResult:
    """The run's result once it ends; `on_change(state type, pause key)` is told each new
    state on the way (picked up by a worker, waiting at an approval...)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = None
    while True:
        run = client.read_flow_run(uuid.UUID(str(run_id)))
        if run.state is not None and run.state.type.value in FINAL:
            return _outcome(run)
        now = (run.state.type.value, str(run.state.state_details.pause_key or "")) if run.state is not None else None
        if now is not None and now != seen and on_change is not None:
            on_change(*now)
        seen = now
        if deadline is not None and time.monotonic() > deadline:
            raise DeploymentRunTimeout(f"run {run.id} of {run.name} did not end within {timeout:g}s "
                                       f"(it is {run.state.name if run.state else 'not started'}; it goes on)")
        time.sleep(poll_interval)


def _outcome(run: Any) -> WorkflowResult:
    from agentflow.flows.engine.stored_result import read_run_result

    state = run.state
    kind = state.type.value
    if kind in ("CRASHED", "CANCELLED"):
        raise DeploymentRunFailed(f"run {run.id} {state.name.lower()}: {state.message or 'no message'}; "
                                  f"`agentflow resume {run.id}` finishes it")
    value = read_run_result(state)
    if isinstance(value, WorkflowFailed):
        raise value
    if isinstance(value, WorkflowResult):
        return value
    raise DeploymentRunFailed(f"run {run.id} ended {state.name}: {state.message or value!r}")

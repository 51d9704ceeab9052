"""Start a deployed workflow from Python and get its `WorkflowResult` (DESIGN §5).

    from agentflow.deployments import run_workflow_deployment
    result = run_workflow_deployment("finance-feature", inputs={"feature": "VAT"}, timeout=600)

The inputs are checked against the deployment's parameter schema (the workflow's inputs)
before a run is created; an `idempotency_key` makes a retried call return the run the first
call started. Waiting polls the run every `poll_interval` seconds (Prefect's own default is
5 s). The result is read from the run's persisted result, and only if agentflow's serializer
wrote it (durability/results.py): a record that names another serializer is never decoded.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from agentflow.errors import AgentflowError, InputError, WorkflowFailed
from agentflow.flows.engine.result import WorkflowResult

_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class DeploymentNotFound(AgentflowError, LookupError):
    """No deployment has that name on the server."""


class DeploymentRunFailed(AgentflowError):
    """The run ended crashed or cancelled (a failed workflow raises WorkflowFailed instead)."""


class DeploymentRunTimeout(AgentflowError, TimeoutError):
    """The run did not end within the time given; it goes on (its id is in the message)."""


def full_name(name: str) -> str:
    """`finance-feature` is the deployment `finance-feature/finance-feature` prefect.yaml makes."""
    return name if "/" in name else f"{name}/{name}"


def run_workflow_deployment(name: str, inputs: dict[str, Any] | None = None, *, wait: bool = True,
                            timeout: float | None = None, poll_interval: float = 0.5,
                            idempotency_key: str | None = None, from_text: bool = False) -> WorkflowResult | str:
    """Start a run of the deployment `name` (a workflow's name, or `flow/deployment`).

    With `wait` (the default): the run's WorkflowResult; WorkflowFailed (carrying it) if the
    workflow failed; DeploymentRunFailed if it crashed or was cancelled; DeploymentRunTimeout
    after `timeout` seconds. Without: the new run's id. DeploymentNotFound and InputError are
    raised before any run is created."""
    from prefect.client.orchestration import get_client

    inputs = dict(inputs or {})
    with get_client(sync_client=True) as client:
        deployment = _deployment(client, name)
        if from_text:
            inputs = from_strings(deployment, inputs)
        check_inputs(deployment, inputs)
        run = client.create_flow_run_from_deployment(deployment.id, parameters=inputs,
                                                     idempotency_key=idempotency_key)
        if not wait:
            return str(run.id)
        return wait_for_run(client, run.id, timeout, poll_interval)


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


def _deployment(client: Any, name: str) -> Any:
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


def from_strings(deployment: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Inputs given as text (`agentflow run --deployment -i key=value`) in the types the
    deployment's schema says: a number, a boolean, a JSON array or object."""
    from agentflow.flows.language.inputs import parse_text

    properties = (deployment.parameter_openapi_schema or {}).get("properties") or {}
    values: dict[str, Any] = {}
    for key, value in given.items():
        kind = (properties.get(key) or {}).get("type")
        if not isinstance(value, str) or kind in (None, "string"):
            values[key] = value
            continue
        try:
            values[key] = parse_text(key, kind, value)
        except InputError as exc:
            raise InputError(f"deployment {deployment.name}: {exc}") from None
    return values


def wait_for_run(client: Any, run_id: uuid.UUID | str, timeout: float | None, poll_interval: float) -> WorkflowResult:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = client.read_flow_run(uuid.UUID(str(run_id)))
        if run.state is not None and run.state.type.value in _FINAL:
            return _outcome(run)
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

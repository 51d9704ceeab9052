"""Start a deployed workflow from Python and get its `WorkflowResult` (DESIGN §5).

    from agentflow.deployments import run_workflow_deployment
    result = run_workflow_deployment("finance-feature", inputs={"feature": "VAT"}, timeout=600)

The inputs are checked against the deployment's parameter schema (the workflow's inputs)
before a run is created; an `idempotency_key` makes a retried call return the run the first
call started. Waiting polls the run every `poll_interval` seconds (Prefect's own default is
5 s). The result is read from the run's persisted result, and only if agentflow's serializer
wrote it (engine/stored_result.py): a record that names another serializer is never decoded.
"""

from __future__ import annotations

from typing import Any

from agentflow.errors import InputError
from agentflow.flows.engine.deployment_runs import (  # noqa: F401 - the client's API, defined with the engine's steps
    DeploymentNotFound, DeploymentRunFailed, DeploymentRunTimeout, check_inputs, find, full_name, hand_back,
    wait_for_run)
from agentflow.flows.engine.result import WorkflowResult


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
        deployment = find(client, name)
        if from_text:
            inputs = from_strings(deployment, inputs)
        check_inputs(deployment, inputs)
        run = client.create_flow_run_from_deployment(deployment.id, parameters=inputs,
                                                     idempotency_key=idempotency_key)
        if not wait:
            return str(run.id)
        return wait_for_run(client, run.id, timeout, poll_interval)


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

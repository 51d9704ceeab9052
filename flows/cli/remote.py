"""`agentflow run --deployment NAME`: start a deployed workflow on a worker and wait for it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

from agentflow.errors import InputError, WorkflowFailed
from agentflow.flows.cli._app import EXIT_FAILED, EXIT_INTERNAL, EXIT_INVALID, _parse_inputs, err, out


def run_deployment(name: str, pairs: list[str], inputs_file: Optional[Path], as_json: bool,
                   timeout: Optional[float]) -> int:
    """The exit code: 0 completed, 1 failed, 2 unknown deployment or bad inputs, 3 crashed,
    cancelled or not finished in time."""
    from agentflow.deployments import client as deployments

    console = err if as_json else out
    given = _parse_inputs(pairs, inputs_file)
    started = time.monotonic()
    try:
        run_id = deployments.run_workflow_deployment(name, given, wait=False, from_text=True)
    except (deployments.DeploymentNotFound, InputError) as exc:
        err.print(str(exc), markup=False)
        return EXIT_INVALID
    console.print(f"run {run_id} of deployment {deployments.full_name(name)}: created, for a worker of its pool to "
                  "pick up", markup=False)
    return _wait(run_id, as_json, timeout, started)


def resume_deployed(run_id: str, state: str, as_json: bool, timeout: Optional[float], recorded: bool = True) -> int:
    """`agentflow resume` of a deployed run: back to its work pool, and wait for a worker to
    finish it. The exit code as `run --deployment`'s."""
    from agentflow.deployments import client as deployments

    started = time.monotonic()
    deployments.hand_back(run_id)
    console = err if as_json else out
    reuse = ("its completed steps are not run again" if recorded else "no record of its completed steps was "
             "found in this machine's storage: a worker whose storage holds its journal reuses them, any other "
             "runs them again")
    console.print(f"resuming run {run_id} ({state}) on a worker: {reuse}", markup=False)
    return _wait(run_id, as_json, timeout, started)


def _wait(run_id: str, as_json: bool, timeout: Optional[float], started: float) -> int:
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from agentflow.deployments import client as deployments
    from agentflow.flows.cli import progress
    from agentflow.flows.engine.approval_form import PAUSE_PREFIX

    console = err if as_json else out
    ui = get_current_settings().ui_url
    if ui:
        console.print(f"   ui  {ui}/runs/flow-run/{run_id}", markup=False)
    def said(kind: str, pause_key: str) -> None:
        if kind == "RUNNING":
            console.print("a worker runs it", markup=False)
        elif kind == "PAUSED" and pause_key.startswith(PAUSE_PREFIX):
            console.print(f"waiting for a person at an approval step: the UI's run page, or "
                          f"`agentflow approve {str(run_id)[:8]}` (or --reject)", markup=False)

    try:
        with get_client(sync_client=True) as client:
            result = deployments.wait_for_run(client, run_id, timeout, poll_interval=0.5, on_change=said)
        ok, state = True, "Completed"
    except WorkflowFailed as exc:
        result, ok, state = exc.result, False, "Failed"
    except (deployments.DeploymentRunFailed, deployments.DeploymentRunTimeout) as exc:
        err.print(str(exc), markup=False)
        return EXIT_INTERNAL
    if result is not None:
        console.print(progress.table(result))
    verdict = "[green]completed[/]" if ok else "[red]failed[/]"
    console.print(f"run {run_id} {verdict} in {time.monotonic() - started:.1f}s")
    if as_json and result is not None:
        sys.stdout.write(json.dumps(progress.as_json(result, state), indent=2, default=str) + "\n")
    return 0 if ok else EXIT_FAILED

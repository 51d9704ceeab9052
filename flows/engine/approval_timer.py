"""A suspended approval's `timeout`, kept by the Prefect server: a durable timer.

A deployed run suspended at an approval step has no process while it waits, so nothing of
it can notice that the time is up. Before it suspends, it notes its deadline on the server
(a flow-run input) and installs an automation of its own: once the run has been Suspended
for `timeout` seconds without changing state, the server sets it Scheduled, and a worker
runs it again. The approval step then finds no answer and its deadline passed, and its
`default` decides, as for a run that waits in place. (Prefect's proactive triggers keep at
least 10 s: a shorter timeout waits in place.)
"""

from __future__ import annotations

import json
import time
from typing import Any

from agentflow import log

_NAME = "agentflow: approval timeout of run "  # + the run's id: one at a time per run
_DEADLINE = "agentflow-deadline-"  # + the ask's pause key: the flow-run input holding its deadline
# The states a run leaves Suspended for: any of them before the deadline stops the timer.
_LEFT = ("Scheduled", "Pending", "Running", "Completed", "Failed", "Cancelled", "Cancelling", "Crashed")


MIN_S = 10  # the shortest wait a Prefect proactive trigger keeps: a shorter timeout waits in place


def arm(run_id: Any, key: str, timeout_s: float, step: str) -> bool:
    """Note the ask's deadline and install the run's timer (before suspending); False if the
    timeout is too short for one, or the server would not take it: the run then waits in place."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    if timeout_s < MIN_S:
        return False
    within = round(timeout_s)
    automation = AutomationCore.model_validate({
        "name": f"{_NAME}{run_id}",
        "description": f"Installed by agentflow: wakes run {run_id} when its approval step `{step}` has no "
                       f"answer after {within}s; the step's default decides.",
        "enabled": True,
        "trigger": {
            "type": "event", "posture": "Proactive",
            "match": {"prefect.resource.id": f"prefect.flow-run.{run_id}"},
            "after": ["prefect.flow-run.Suspended"],
            "expect": [f"prefect.flow-run.{state}" for state in _LEFT],
            "for_each": ["prefect.resource.id"], "threshold": 1, "within": within,
        },
        "actions": [{"type": "change-flow-run-state", "state": "SCHEDULED",
                     "message": f"approval `{step}`: no answer within {within}s; the run goes on with its default"}],
    })
    try:
        with get_client(sync_client=True) as client:
            client.create_flow_run_input(run_id, key=_DEADLINE + key, value=json.dumps(time.time() + timeout_s))
            client.create_automation(automation)
            sweep(client)
    except Exception as exc:  # noqa: BLE001 - no timer: the run waits in place, its process keeping the time
        log.logger(component="engine").warning(f"step {step}: the server would not keep the approval's timeout "
                                               f"({exc}); the run waits in place", step=step)
        return False
    return True


def expired(client: Any, run_id: Any, prefix: str) -> bool:
    """Whether an ask whose pause key starts with `prefix` noted a deadline that has passed."""
    noted = client.filter_flow_run_input(run_id, _DEADLINE + prefix, 100, set())
    return any(float(json.loads(found.value)) <= time.time() for found in noted)


def disarm(client: Any, run_id: Any) -> None:
    """Remove the run's timer (the run is running again: answered, or woken by it)."""
    for automation in client.read_automations_by_name(f"{_NAME}{run_id}"):
        client.delete_automation(automation.id)


def sweep(client: Any) -> int:
    """Remove the timers of runs that ended while suspended (cancelled, say): they would never
    fire, nor be removed by their run. How many were removed."""
    import uuid

    from prefect.exceptions import ObjectNotFound

    removed = 0
    for automation in client.read_automations():
        if not automation.name.startswith(_NAME):
            continue
        try:
            state = client.read_flow_run(uuid.UUID(automation.name[len(_NAME):])).state
        except (ObjectNotFound, ValueError):
            state = None
        if state is None or state.is_final():
            client.delete_automation(automation.id)
            removed += 1
    return removed


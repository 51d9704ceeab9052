"""Crash detection: a run whose process died must not stay "Running" forever.

Prefect alone leaves a flow run killed with SIGKILL (and its running task run) Running for
good (PREFECT_NOTES.md). agentflow finds such runs in two ways:

- On this machine, at once: every run notes the process running it (pid, host, process start
  time) in its record (durability/records.py). `agentflow runs`, `status` and `resume` check the
  runs the server calls Running or Pending; if that process is gone, they mark the flow run
  and its unfinished task runs Crashed and kill the commands it left behind.
- On a started `prefect server`, for runs on any machine, within about two heartbeat periods:
  an automation that agentflow installs (`ensure_crash_automation`) marks a flow run Crashed
  when its heartbeats stop without a final state. Flow runs send a heartbeat every
  `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds (agentflow's default: 30, Prefect's minimum).
"""

from __future__ import annotations

import uuid
from typing import Any

from agentflow import prefect_compat
from agentflow.flows.durability import records
from agentflow.flows.durability.processes import kill_orphans

# States with a process behind them. A run paused in place (an approval step: it waits in its
# own process) is one: killed while it waits, it is Crashed and `agentflow resume` asks again.
# A suspended run (a deployed run at an approval step) has none: a worker runs it once answered.
ACTIVE = ("Running", "Pending", "Paused")
_AUTOMATION_NAME = "agentflow: mark runs Crashed when their heartbeats stop"
RUN_TAG = "agentflow"  # on every agentflow flow run (not its task runs): what the automation watches
CHILD_TAG = "agentflow-child-"  # + a digest of its parent run and call: how a resumed step finds its child run


def check(run_id: str, state: str) -> str:
    """The run's state after looking at its process: `Crashed` if it was active and its
    process on this machine is gone (then marked so on the server), else unchanged.

    A run the server's automation marked Crashed is finished off here too: its task runs
    still Running become Crashed, and the commands it left on this machine are killed."""
    if state == "Crashed":
        _tidy_crashed(run_id)
        return state
    if state not in ACTIVE:
        return state
    record = records.read_record(run_id)
    if record is None or not record.attempts:
        return state
    attempt = record.attempts[-1]
    if attempt.alive() is not False:
        return state
    killed = kill_orphans(records.run_dir(run_id) / "procs")
    left = f"; {len(killed)} command(s) it left running were killed" if killed else ""
    _mark_crashed(run_id, f"the agentflow process running it (pid {attempt.pid} on {attempt.host}) "
                         f"died{left}; `agentflow resume {run_id[:8]}` finishes the run")
    _handled(records.run_dir(run_id) / "crash-handled")
    return "Crashed"


def _tidy_crashed(run_id: str) -> None:
    directory = records.run_dir(run_id)
    marker = directory / "crash-handled"
    if marker.exists():
        return
    record = records.read_record(run_id)
    if record is None:
        return  # not run from this machine: its commands are not here; `resume` tidies its task runs
    if record.attempts and record.attempts[-1].alive():
        return  # Crashed by the server, yet its process still runs here: leave it be
    kill_orphans(directory / "procs")
    crash_orphaned_tasks(run_id)
    _handled(marker)  # once per crash: `runs` should not ask the server again each time


def _handled(marker) -> None:
    """Note on this machine that a crash was handled (the run may have run on another)."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def _mark_crashed(run_id: str, message: str) -> None:
    """The flow run, and each of its task runs not yet final, to Crashed."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    crash_orphaned_tasks(run_id)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(run_id), Crashed(message=message), force=True)


def crash_orphaned_tasks(run_id: str) -> int:
    """Task runs a crashed attempt left Running or Pending, to Crashed (before a resume)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterId, TaskRunFilter,
                                                TaskRunFilterState, TaskRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        unfinished = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(run_id)])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(
                type=TaskRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))))
        for task_run in unfinished:
            client.set_task_run_state(task_run.id, Crashed(message="its flow run's process died"), force=True)
    return len(unfinished)


_installed: set[str] = set()  # API URLs this process has ensured the automation on


def ensure_crash_automation() -> bool:
    """Install the crash automation on the current API's server if it is not there yet.

    Only for a started server (PREFECT_API_URL set): an embedded server lives and dies with
    the process that runs the flow, so local detection covers it. Returns whether it is
    installed; a server without automations (or unreachable) is not an error here: the run
    itself will say if the server cannot be reached.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    url = settings.api.url
    if not url:
        return False
    if url in _installed:
        return True
    # Two heartbeats may be missed before a run is called Crashed. A process with a longer
    # heartbeat period widens the window of an automation installed with a shorter one.
    within = max(60, 2 * (settings.flows.heartbeat_frequency or 180))
    try:
        with get_client(sync_client=True) as client:
            existing = client.read_automations_by_name(_AUTOMATION_NAME)
            if existing and existing[0].trigger.within.total_seconds() < within:
                client.delete_automation(existing[0].id)
                existing = []
            if not existing:
                client.create_automation(AutomationCore.model_validate(_crash_automation(within)))
    except Exception as exc:  # noqa: BLE001 - crash detection must never stop a run from starting
        import logging

        logging.getLogger("agentflow").warning("agentflow: could not install the crash automation: %s", exc)
        return False
    _installed.add(url)
    return True


def _crash_automation(within_s: int) -> dict[str, Any]:
    """The automation, as the server's API takes it: an agentflow flow run that started
    running or sent a heartbeat and then, for `within_s` seconds, sent no heartbeat and reached
    no state in which it stops beating (final, paused, waiting to run), is Crashed.

    Only runs tagged `agentflow`: other flows on the server may beat less often (Prefect's
    default is every 180 s) and must not be declared dead. `Running` starts the clock too:
    the server records it itself, whereas a process killed within its first second may never
    have sent its first heartbeat.
    """
    final = ["Completed", "Failed", "Cancelled", "Crashed", "Paused", "Suspended", "Scheduled",
             "AwaitingRetry"]
    return {
        "name": _AUTOMATION_NAME,
        "description": "Installed by agentflow: a run whose process was killed (no heartbeat) "
                       "becomes Crashed, so that `agentflow resume` can finish it.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{RUN_TAG}"},
            "after": [prefect_compat.HEARTBEAT_EVENT, "prefect.flow-run.Running"],
            "expect": [prefect_compat.HEARTBEAT_EVENT, *[f"prefect.flow-run.{s}" for s in final]],
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": within_s,
        },
        "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
                     "message": "no heartbeat for {within}s: its process died; `agentflow resume` "
                                "finishes the run".replace("{within}", str(within_s))}],
    }

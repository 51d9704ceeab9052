"""Runs and their steps as the Prefect server records them (`agentflow runs`, `agentflow status`),
read through its REST API (durability/rest.py): no Prefect import for a read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agentflow.errors import AgentflowError
from agentflow.flows.durability import settling
from agentflow.flows.durability.rest import Reader

_SEARCH_LIMIT = 200  # recent runs searched for an id prefix


class RunNotFound(AgentflowError, LookupError):
    """No run, or more than one, matches the id (prefix) given."""


@dataclass(frozen=True)
class RunRow:
    id: str
    workflow: str
    version: str | None
    state: str
    started: datetime | None
    duration_s: float | None
    deployment_id: str | None = None  # a deployed run: a worker runs it (and resumes it)
    awaiting: bool = False  # paused or suspended at an approval step (engine/approvals.py)
    name: str = ""  # the flow run's name on the server (`crimson-otter`), accepted wherever an id is
    expected: datetime | None = None  # when it was (or is) to start
    resumed: bool = False  # run more than once (resumed, or run again by a worker): duration_s is the last time
    ended: datetime | None = None  # when it ended (None while it has not)
    task_runs_ended: int | None = None  # how many task runs its process ended (durability/settling.py)

    def label(self, state: str | None = None) -> str:
        """How `state` (default: the row's) is shown: a run waiting at an approval step says
        that it waits for a person, so that `agentflow runs` shows which runs do."""
        state = state or self.state
        return "Awaiting approval" if self.awaiting and state in ("Paused", "Suspended") else state


@dataclass(frozen=True)
class Steps:
    """A run's steps as the server shows them, and whether it shows every one its process ended."""

    rows: list[StepRow]
    recorded: int | None = None  # task runs the server shows ended (counted when the run said how many)
    expected: int | None = None  # task runs the run's process ended, as it said

    @property
    def complete(self) -> bool:
        return self.expected is None or self.recorded is None or self.recorded >= self.expected


@dataclass(frozen=True)
class StepRow:
    name: str
    state: str
    started: datetime | None
    duration_s: float | None
    tries: int
    earlier: tuple[str, ...] = ()  # the states of earlier task runs of the same name (a resumed run)


def list_runs(limit: int = 20, workflow: str | None = None, scheduled: bool = False) -> list[RunRow]:
    """The latest runs that have started or were due (newest first); with `scheduled`, the
    runs scheduled for later instead (soonest first). A deployment's schedule creates its
    future runs in advance: listed with the others, they would hide every real run."""
    now = datetime.now(timezone.utc).isoformat()
    body: dict[str, Any] = {
        "flow_runs": {"expected_start_time": {"after_": now} if scheduled else {"before_": now}},
        "sort": "EXPECTED_START_TIME_ASC" if scheduled else "EXPECTED_START_TIME_DESC", "limit": limit}
    if workflow:
        body["flows"] = {"name": {"any_": [workflow]}}
    with Reader() as api:
        runs = api.post("flow_runs/filter", body)
        names = _flow_names(api, {r["flow_id"] for r in runs})
        return [_row(run, names, api) for run in runs]


def short_ids(ids: list[str], least: int = 8) -> dict[str, str]:
    """Each id's shortest prefix (of at least `least` characters) that no other id shares:
    runs created together (a deployment's schedule) share their first characters."""
    shown = {}
    for run_id in ids:
        size = least
        while size < len(run_id) and any(other != run_id and other.startswith(run_id[:size]) for other in ids):
            size += 1
        shown[run_id] = run_id[:size]
    return shown


def find_run(run_id: str) -> RunRow:
    """A run by its full id, a unique prefix of it, or its name (`crimson-otter`)."""
    text = run_id.strip().lower()
    with Reader() as api:
        try:
            whole = uuid.UUID(text)
        except ValueError:
            whole = None  # not a whole UUID: look for a prefix among recent runs
        if whole is not None:
            run = api.get(f"flow_runs/{whole}")
            if run is None:
                raise RunNotFound(f"no run has id {run_id}; `agentflow runs` lists recent runs")
            return _row(run, _flow_names(api, {run["flow_id"]}), api)

        matches = api.post("flow_runs/filter", {"flow_runs": {"name": {"any_": [run_id.strip()]}},
                                                "limit": _SEARCH_LIMIT})
        if not matches:
            runs = api.post("flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC", "limit": _SEARCH_LIMIT})
            matches = [r for r in runs if r["id"].startswith(text)]
        names = _flow_names(api, {r["flow_id"] for r in matches})
        if len(matches) == 1:
            return _row(matches[0], names, api)
    if not matches:
        raise RunNotFound(f"no run is named {run_id!r} or has an id starting with it among the last "
                          f"{_SEARCH_LIMIT} runs; `agentflow runs` lists recent runs")
    shown = short_ids([r["id"] for r in matches], least=len(text) + 1)
    ids = ", ".join(f"{shown[r['id']]} ({r['name']})" for r in matches[:5])
    raise RunNotFound(f"{run_id!r} matches {len(matches)} runs: {ids}{', ...' if len(matches) > 5 else ''}; "
                      "give one of these")


def run_steps(run: RunRow) -> Steps:
    """The run's steps, one row per task-run name; for a run that just ended, once the server
    has recorded every task run its process ended (waited for a few seconds at most:
    durability/settling.py)."""
    run_id = run.id
    ran = {"flow_runs": {"id": {"any_": [run_id]}}}
    with Reader() as api:
        recorded = None
        if run.task_runs_ended is not None and run.ended is not None:  # said at its end: a run going on says nothing
            ended = {**ran, "task_runs": {"state": {"type": {"any_": list(settling.FINAL_TYPES)}}}}
            ago = (datetime.now(timezone.utc) - run.ended).total_seconds()
            recorded = settling.wait_for_records(lambda: api.post("task_runs/count", ended), run.task_runs_ended, ago)
        tasks = api.post("task_runs/filter", {**ran, "sort": "EXPECTED_START_TIME_ASC", "limit": 200})
    # A resumed run ran a step again in a new task run of the same name (the one its dead
    # process left may still say Running): one row per name, the latest, and what came before.
    latest: dict[str, Any] = {}
    earlier: dict[str, list[str]] = {}
    for t in tasks:
        if t["name"] in latest:
            earlier.setdefault(t["name"], []).append(_state_name(latest[t["name"]]))
        latest[t["name"]] = t
    # A crashed step ended when its crash was noticed, a minute or more after its process died:
    # no time is shown rather than that one.
    rows = [StepRow(name=name, state=_state_name(t), started=_when(t.get("start_time")),
                    duration_s=None if _state_name(t) == "Crashed" else _duration(t),
                    tries=max(t.get("run_count") or 0, 1), earlier=tuple(earlier.get(name, ())))
            for name, t in latest.items()]
    return Steps(rows, recorded, run.task_runs_ended)


def _state_name(run: dict) -> str:
    return (run.get("state") or {}).get("name") or "?"


def _flow_names(api: Reader, ids: set) -> dict:
    if not ids:
        return {}
    flows = api.post("flows/filter", {"flows": {"id": {"any_": sorted(ids)}}, "limit": 200})
    return {f["id"]: f["name"] for f in flows}


def _row(run: dict, names: dict, api: Reader) -> RunRow:
    resumed = (run.get("run_count") or 0) > 1
    return RunRow(id=run["id"], workflow=names.get(run["flow_id"], "?"), version=run.get("flow_version"),
                  state=_state_name(run), started=_when(run.get("start_time")),
                  duration_s=_last_duration(run, api) if resumed else _duration(run),
                  deployment_id=run.get("deployment_id"), awaiting=_awaiting(run), name=run.get("name") or "",
                  expected=_when(run.get("expected_start_time")), resumed=resumed, ended=_when(run.get("end_time")),
                  task_runs_ended=settling.said(run.get("labels")))


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _awaiting(run: dict) -> bool:
    """Paused (or suspended) by an approval step: its pause key says so (engine/approvals.py)."""
    state = run.get("state") or {}
    details = state.get("state_details") or {}
    return state.get("type") == "PAUSED" and str(details.get("pause_key") or "").startswith("approval-")


def _last_duration(run: dict, api: Reader) -> float | None:
    """A run that ran more than once: the time of its last run, from its last Running state to
    its end. From its first start it would count the time it lay crashed until resumed (or
    waited, suspended, for a person), which no one spent waiting on it."""
    ended = _when(run.get("end_time"))
    states = api.get(f"flow_run_states/?flow_run_id={run['id']}") or []
    starts = [_when(s.get("timestamp")) for s in states if s.get("type") == "RUNNING"]
    if not ended or not starts:
        return None
    return (ended - max(start for start in starts if start)).total_seconds()


def _duration(run: dict) -> float | None:
    """The time from start to end, as the user waited (Prefect's `total_run_time` counts only
    the time spent Running: 0.2 s for a run that took 6 s); None while it runs."""
    started, ended = _when(run.get("start_time")), _when(run.get("end_time"))
    if started and ended:
        return (ended - started).total_seconds()
    return run.get("total_run_time") or None

"""Runs and their steps as the Prefect server records them (`agentflow runs`, `agentflow status`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agentflow.errors import AgentflowError

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

    def label(self, state: str | None = None) -> str:
        """How `state` (default: the row's) is shown: a run waiting at an approval step says
        that it waits for a person, so that `agentflow runs` shows which runs do."""
        state = state or self.state
        return "Awaiting approval" if self.awaiting and state in ("Paused", "Suspended") else state


@dataclass(frozen=True)
class StepRow:
    name: str
    state: str
    started: datetime | None
    duration_s: float | None
    tries: int
    earlier: tuple[str, ...] = ()  # the states of earlier task runs of the same name (a resumed run)


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def list_runs(limit: int = 20, workflow: str | None = None, scheduled: bool = False) -> list[RunRow]:
    """The latest runs that have started or were due (newest first); with `scheduled`, the
    runs scheduled for later instead (soonest first). A deployment's schedule creates its
    future runs in advance: listed with the others, they would hide every real run."""
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter,
                                                FlowRunFilterExpectedStartTime)
    from prefect.client.schemas.sorting import FlowRunSort

    now = datetime.now(timezone.utc)
    when = FlowRunFilterExpectedStartTime(after_=now) if scheduled else FlowRunFilterExpectedStartTime(before_=now)
    with _client() as client:
        flow_filter = FlowFilter(name=FlowFilterName(any_=[workflow])) if workflow else None
        runs = client.read_flow_runs(flow_filter=flow_filter, flow_run_filter=FlowRunFilter(expected_start_time=when),
                                     sort=FlowRunSort.EXPECTED_START_TIME_ASC if scheduled
                                     else FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit)
        names = _flow_names(client, {r.flow_id for r in runs})
    return [_row(run, names) for run in runs]


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
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import ObjectNotFound

    text = run_id.strip().lower()
    with _client() as client:
        try:
            whole = uuid.UUID(text)
        except ValueError:
            whole = None  # not a whole UUID: look for a prefix among recent runs
        if whole is not None:
            try:
                run = client.read_flow_run(whole)
            except ObjectNotFound:
                raise RunNotFound(f"no run has id {run_id}; `agentflow runs` lists recent runs") from None
            return _row(run, _flow_names(client, {run.flow_id}))

        matches = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_id.strip()])),
                                        limit=_SEARCH_LIMIT)
        if not matches:
            runs = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=_SEARCH_LIMIT)
            matches = [r for r in runs if str(r.id).startswith(text)]
        names = _flow_names(client, {r.flow_id for r in matches})
    if not matches:
        raise RunNotFound(f"no run is named {run_id!r} or has an id starting with it among the last "
                          f"{_SEARCH_LIMIT} runs; `agentflow runs` lists recent runs")
    if len(matches) > 1:
        shown = short_ids([str(r.id) for r in matches], least=len(text) + 1)
        ids = ", ".join(f"{shown[str(r.id)]} ({r.name})" for r in matches[:5])
        raise RunNotFound(f"{run_id!r} matches {len(matches)} runs: {ids}{', ...' if len(matches) > 5 else ''}; "
                          "give one of these")
    return _row(matches[0], names)


def run_steps(run_id: str) -> list[StepRow]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with _client() as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(run_id)])),
                                      sort=TaskRunSort.EXPECTED_START_TIME_ASC)
    # A resumed run ran a step again in a new task run of the same name (the one its dead
    # process left may still say Running): one row per name, the latest, and what came before.
    latest: dict[str, Any] = {}
    earlier: dict[str, list[str]] = {}
    for t in tasks:
        if t.name in latest:
            earlier.setdefault(t.name, []).append(_state_name(latest[t.name]))
        latest[t.name] = t
    return [StepRow(name=name, state=_state_name(t), started=t.start_time, duration_s=_duration(t),
                    tries=max(t.run_count, 1), earlier=tuple(earlier.get(name, ()))) for name, t in latest.items()]


def _state_name(run: Any) -> str:
    return run.state.name if run.state else "?"


def _flow_names(client: Any, ids: set) -> dict:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId

    if not ids:
        return {}
    flows = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=list(ids))))
    return {f.id: f.name for f in flows}


def _row(run: Any, names: dict) -> RunRow:
    return RunRow(id=str(run.id), workflow=names.get(run.flow_id, "?"), version=run.flow_version,
                  state=run.state.name if run.state is not None else "?", started=run.start_time,
                  duration_s=_duration(run), deployment_id=str(run.deployment_id) if run.deployment_id else None,
                  awaiting=_awaiting(run), name=run.name or "", expected=run.expected_start_time)


def _awaiting(run: Any) -> bool:
    """Paused (or suspended) by an approval step: its pause key says so (engine/approvals.py)."""
    details = run.state.state_details if run.state is not None else None
    return bool(run.state is not None and run.state.is_paused() and details is not None
                and str(details.pause_key or "").startswith("approval-"))


def _duration(run: Any) -> float | None:
    """The time from start to end, as the user waited (Prefect's `total_run_time` counts only
    the time spent Running: 0.2 s for a run that took 6 s); None while it runs."""
    if run.start_time and run.end_time:
        return (run.end_time - run.start_time).total_seconds()
    if run.total_run_time and run.total_run_time.total_seconds():
        return run.total_run_time.total_seconds()
    return None

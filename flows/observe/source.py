"""Reading the Prefect server for the metrics: its events since a cursor, and what is true now.

Events are read in the order they occurred, 50 a page (the server's most), from the latest
one already folded (the ids at that very time are remembered, not counted twice), up to
`settle` seconds ago: an event is stamped when it occurs, by its sender's clock, and reaches
the server's database a little later (the sender's events worker, the server's batching), so
the reader counts an event once it is `settle` old. An event that reaches the server later
than that (or from a clock more than that behind) is not counted. Each event is read once:
a burst of events costs one read of it, and a read cut short by its time budget goes on
from where it stopped.

What is true now (runs in flight, circuit states) is read whole at each refresh: it is small.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from agentflow.flows.observe.fold import RUN_EVENTS, RUN_TAG_RESOURCE, STEP_EVENTS

SETTLE_S = 20.0
IN_FLIGHT = ("PENDING", "RUNNING", "PAUSED", "CANCELLING")
_PAGE = 50
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


@dataclass
class Cursor:
    """Where reading one stream of events goes on from: the latest time folded, and the ids of
    the events folded at that time (a read from it, inclusive, meets them again)."""

    latest: datetime = _EPOCH
    seen: dict[str, datetime] = field(default_factory=dict)

    def since(self) -> datetime:
        return self.latest

    def take(self, event_id: str, occurred: datetime) -> bool:
        """True the first time an event is offered; records it."""
        if event_id in self.seen:
            return False
        self.seen[event_id] = occurred
        if occurred > self.latest:
            self.latest = occurred
        return True

    def prune(self) -> None:
        self.seen = {i: t for i, t in self.seen.items() if t >= self.latest}

    def dump(self) -> dict[str, Any]:
        return {"latest": self.latest.isoformat(), "seen": {i: t.isoformat() for i, t in self.seen.items()}}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Cursor:
        try:
            return cls(datetime.fromisoformat(data["latest"]),
                       {str(i): datetime.fromisoformat(t) for i, t in data.get("seen", {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls()


# The two streams the metrics fold: agentflow's step events, and Prefect's state events of
# agentflow's flow runs (the tag keeps other flows' events out of the read).
STREAMS = {"steps": (STEP_EVENTS, None), "runs": (RUN_EVENTS, RUN_TAG_RESOURCE)}


def events(client: Any, stream: str, since: datetime, until: datetime | None = None,
           deadline: float | None = None) -> Iterator[dict[str, Any]]:
    """The stream's events from `since` (to `until`), oldest first, as JSON dicts; stops
    early at `deadline` (time.monotonic), so that a long catch-up goes on at the next read."""
    from prefect.events.filters import (EventFilter, EventNameFilter, EventOccurredFilter, EventOrder,
                                        EventRelatedFilter)

    prefix, related = STREAMS[stream]
    occurred = EventOccurredFilter(since=since, until=until) if until else EventOccurredFilter(since=since)
    page = client.read_events(EventFilter(occurred=occurred, event=EventNameFilter(prefix=[prefix]),
                                          related=EventRelatedFilter(id=[related]) if related else None,
                                          order=EventOrder.ASC), limit=_PAGE)
    while True:
        for event in page.events:
            yield event.model_dump(mode="json")
        if not page.next_page or (deadline is not None and time.monotonic() > deadline):
            return
        page = client.read_events_page(page.next_page)


def in_flight(client: Any) -> dict[tuple[str, str], int]:
    """agentflow's flow runs pending, running, paused or cancelling now, by (workflow, state)."""
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterId, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateType, FlowRunFilterTags)
    from prefect.client.schemas.objects import StateType

    runs, offset = [], 0
    wanted = FlowRunFilter(tags=FlowRunFilterTags(all_=["agentflow"]),
                           state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in IN_FLIGHT])))
    while True:
        page = client.read_flow_runs(flow_run_filter=wanted, limit=200, offset=offset)
        runs += page
        if len(page) < 200:
            break
        offset += 200
    names: dict[Any, str] = {}
    if runs:
        ids = list({run.flow_id for run in runs})
        names = {flow.id: flow.name for flow in client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids)))}
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        key = (names.get(run.flow_id, ""), run.state_type.value.lower() if run.state_type else "")
        counts[key] = counts.get(key, 0) + 1
    return counts


def circuits(client: Any) -> dict[str, str]:
    """Each agent's circuit state (closed, open, half_open), from its Prefect Variable (tasks/circuit.py)."""
    found: dict[str, str] = {}
    offset = 0
    while True:
        response = client.request("POST", "/variables/filter", json={
            "variables": {"name": {"like_": "agentflow-circuit-%"}}, "limit": 200, "offset": offset})
        page = response.json()
        for variable in page:
            value = variable.get("value") if isinstance(variable.get("value"), dict) else {}
            name = str(variable.get("name", ""))
            agent = str(value.get("agent") or name.removeprefix("agentflow-circuit-").rsplit("-", 1)[0])
            found[agent] = str(value.get("state") or "closed")
        if len(page) < 200:
            return found
        offset += 200

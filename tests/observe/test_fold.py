"""The metrics' fold and cursor (flows/observe/fold.py, source.py), pure: what an event adds, what
a saved state gives back, and where reading goes on from."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agentflow.flows.observe.fold import Totals
from agentflow.flows.observe.source import Cursor

pytestmark = pytest.mark.unit  # pure functions: no Prefect server


def step_event(outcome: str, **payload) -> dict:
    return {"event": f"agentflow.step.{outcome}", "resource": {"prefect.resource.name": "s"},
            "payload": {"workflow": "w", "step": "s", "agent": "a", **payload}}


def test_a_step_event_adds_its_figures_and_starts_every_outcome_at_zero():
    """One degraded step: its outcome, a retry, a fallback, spend by the agent that answered; the
    other outcomes served at 0 from then on."""
    totals = Totals()
    assert totals.fold(step_event("degraded", answered_by="b", attempts=2, duration_s=1.5, tokens=7, cost_usd=0.5,
                                  cache_misses=1))
    assert totals.value("agentflow_step_runs", outcome="degraded") == 1
    assert totals.counters["agentflow_step_runs"][("w", "s", "a", "", "failed")] == 0
    assert totals.value("agentflow_step_retries") == 1 and totals.value("agentflow_cache_misses") == 1
    assert totals.value("agentflow_fallbacks", fallback="b") == 1
    assert totals.value("agentflow_agent_tokens", agent="b") == 7 and totals.value("agentflow_agent_cost_usd") == 0.5
    assert totals.histograms[("w", "s", "a", "")].count == 1
    assert not totals.fold({"event": "prefect.flow-run.Completed", "related": []})  # not an agentflow run


def test_a_saved_state_loads_back_and_an_older_layout_keeps_its_counts():
    """Totals saved and loaded are equal; a row saved before a label was added to its metric keeps
    its count under "" for that label; a row that does not fit is dropped, not misread."""
    totals = Totals()
    totals.fold(step_event("completed", tokens=3, duration_s=0.2))
    assert Totals.load(totals.dump()).counters == totals.counters
    older = {"counters": {"agentflow_agent_tokens": [["a", "", 40.0], ["w", "a", "", "extra", 1.0]]}}
    loaded = Totals.load(older)
    assert loaded.counters["agentflow_agent_tokens"] == {("", "a", ""): 40.0}


def test_reading_goes_on_from_the_latest_event_and_meets_each_event_once():
    """The cursor reads from its latest event, not a window before it (a burst is read once), and
    the events at that very time are not counted twice."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cursor = Cursor()
    assert all(cursor.take(f"e{i}", t0 + timedelta(microseconds=i)) for i in range(6000))
    cursor.prune()
    assert cursor.since() == t0 + timedelta(microseconds=5999) and set(cursor.seen) == {"e5999"}
    assert not cursor.take("e5999", t0 + timedelta(microseconds=5999))  # read again from `since`: once
    assert cursor.take("e6000", t0 + timedelta(microseconds=5999))  # another event at the same time
    assert Cursor.load(cursor.dump()) == cursor

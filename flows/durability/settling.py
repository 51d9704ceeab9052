"""How many task runs a flow run ended, said on the flow run, so that a reader can wait for the
server to show them all.

Prefect's server records task runs from the events their process sends, a batch at a time
(every second on the servers agentflow starts, every 5 s by Prefect's default), while it
records a flow run's state when the state is set. So for a moment after a run ends the server
may show a step as still running, or not at all: seen, `agentflow status` right after
`agentflow run` on a loaded machine had no row for the run's last step.

The run's process counts each task run whose final state it gets (`saw`, inside `tracking`)
and, at its end, puts the count on the flow run as the label `agentflow.task-runs-ended`
(engine/publish.py), added to what an earlier attempt of the same run said (a resume).
`agentflow status` waits, for a few seconds at most, until the server shows that many task
runs ended (`wait_for_records`). A count rather than the ids: it fits in a label, and the
server can count without listing. An attempt that crashed said nothing: a resumed run's count
leaves its task runs out, so the wait may end a little early, never late.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

LABEL = "agentflow.task-runs-ended"
FINAL_TYPES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")  # Prefect's final state types
WAIT_S = 10.0  # Prefect's default recorder flushes every 5 s: twice that, then what there is
RECENT_S = 60.0  # a run that ended longer ago than this lost its records: no wait for them
_POLL_S = 0.2

_ENDED: ContextVar[_Tally | None] = ContextVar("agentflow_task_runs_ended", default=None)


class _Tally:
    def __init__(self, earlier: int):
        self.earlier = earlier
        self.ids: set[str] = set()


@contextmanager
def tracking(labels: Mapping[str, Any] | None) -> Iterator[None]:
    """Count the task runs that end in here; `labels`: the flow run's as it started."""
    token = _ENDED.set(_Tally(said(labels) or 0))
    try:
        yield
    finally:
        _ENDED.reset(token)


def saw(state: Any) -> None:
    """A task run's state as its caller got it: counted if final."""
    tally = _ENDED.get()
    details = getattr(state, "state_details", None)
    if tally is not None and details is not None and details.task_run_id is not None and state.is_final():
        tally.ids.add(str(details.task_run_id))


def ended() -> int | None:
    """How many task runs the run has ended, this attempt and the earlier ones that said so."""
    tally = _ENDED.get()
    return None if tally is None else tally.earlier + len(tally.ids)


def said(labels: Mapping[str, Any] | None) -> int | None:
    """The count a flow run's labels carry, if any."""
    value = (labels or {}).get(LABEL)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def wait_for_records(count: Callable[[], int], expected: int, ended_ago_s: float) -> int:
    """Wait until `count()` (the task runs the server shows ended) reaches `expected`, for
    WAIT_S at most, and only for a run that ended in the last RECENT_S; the last count."""
    shown = count()
    if ended_ago_s > RECENT_S:
        return shown
    deadline = time.monotonic() + WAIT_S
    while shown < expected and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        shown = count()
    return shown

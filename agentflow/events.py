"""Step events for whoever watches a run in this process (the CLI's progress view).

Events come from outside the task bodies: the flow's scheduler (a step started, finished,
failed or was skipped), Prefect's `retry_condition_fn` (a retry) and the cache locks (a
wait). They feed the live view only: what a run comes to is the flow's return value
(`WorkflowResult`), never rebuilt from events.

Prefect state hooks were the first choice, but each hook call writes two log lines to the
API, which tripled the per-step cost of a no-op step (benchmarks/ B1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

# started / retrying / finished: one task run (a step, one of its items or iterations);
# step_finished: the step as a whole (status `not_run` if never started);
# run_started: the flow run began (label: its id; attempt: 2 and more on a resume);
# waiting: a started call waits for another run making the same call (same cache key);
# fallback: the agent of `label` could not serve, `agent` is tried next;
# activity: what a long-running agent is doing (its text, each tool it uses), as it happens;
# approval: an approval step waits for a person (label: the step; summary: how to answer);
# workspace: where the run's steps work (summary), or why they work in place, unprotected (status "warning").
EventKind = Literal["run_started", "started", "waiting", "retrying", "finished", "step_finished", "fallback",
                    "activity", "approval", "workspace"]


@dataclass(frozen=True)
class StepEvent:
    kind: EventKind
    step: str
    label: str
    attempt: int = 1
    status: str = ""  # success | failed | skipped | completed_with_errors | not_run
    summary: str = ""
    duration_s: float | None = None
    cached: bool = False  # answered from the step cache, without calling the agent
    reused: bool = False  # done by this run before it was resumed: taken from its journal
    cache_key: str | None = None  # on `started` (of a cached step) and `waiting`
    degraded: bool = False  # answered by a fallback agent, or skipped after every agent failed
    agent: str | None = None  # fallback: the agent tried next; finished: the fallback used or skipped


Listener = Callable[[StepEvent], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def emit(event: StepEvent) -> None:
    if not _listeners:  # nobody watching (a deployment's run, the Python API): nothing to do
        return
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)

"""Step events for whoever watches a run in this process (the CLI's progress view).

Events come from outside the task bodies: the flow's scheduler (a step started, finished,
failed or was skipped, with its result) and Prefect's `retry_condition_fn` (a retry).
Prefect state hooks were the first choice, but each hook call writes two log lines to the
API, which tripled the per-step cost of a no-op step (benchmarks/ B1).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

# started / retrying / finished: one task run (a step, one of its items or iterations);
# step_finished: the step as a whole, with its final result (status `not_run` if never started);
# run_started: the flow run began (label: its id; attempt: 2 and more on a resume);
# waiting: a started call waits for another run making the same call (same cache key).
EventKind = Literal["run_started", "started", "waiting", "retrying", "finished", "step_finished"]


@dataclass(frozen=True)
class StepEvent:
    kind: EventKind
    step: str
    label: str
    attempt: int = 1
    status: str = ""  # success | failed | skipped | completed_with_errors | not_run
    summary: str = ""
    duration_s: float | None = None
    result: Any = None  # the AgentResult, on `finished`
    cached: bool = False  # answered from the step cache, without calling the agent
    reused: bool = False  # done by this run before it was resumed: taken from its journal
    cache_key: str | None = None  # on `started` (of a cached step) and `waiting`


# A task run is named after its step: `review`, `gateways[bKash]`, `profile#2`, `x (skipped)`.
_STEP_OF_LABEL = re.compile(r"[A-Za-z0-9_]*")
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
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)


def retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry what a retry can fix, and say so to the listeners.

    Prefect calls it only when the task has retries left, so a True here is a retry.
    """
    from agentflow.errors import NOT_RETRYABLE

    if isinstance(state.data, NOT_RETRYABLE):
        return False
    if _listeners:
        step = _STEP_OF_LABEL.match(task_run.name).group(0)
        emit(StepEvent(kind="retrying", step=step, label=task_run.name, attempt=task_run.run_count + 1,
                       summary=state.message or ""))
    return True

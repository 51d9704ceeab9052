"""Step events for whoever watches a run in this process (the CLI's progress view).

Events come from outside the task bodies: Prefect's `on_running` state hook (a step starts,
or starts again after a failure: a retry) and the flow's scheduler (a step finished,
failed or was skipped, with its result).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

# started / retrying / finished: one task run (a step, one of its items or iterations);
# step_finished: the step as a whole, with its final result (status `not_run` if never started).
EventKind = Literal["started", "retrying", "finished", "step_finished"]


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


def on_running(task: Any, task_run: Any, state: Any) -> None:
    """Prefect `on_running` hook: a first start, or a retry when the run count is above 1."""
    if not _listeners:
        return
    step = next((t[5:] for t in task_run.tags if t.startswith("step:")), task_run.name)
    attempt = max(task_run.run_count, 1)
    emit(StepEvent(kind="retrying" if attempt > 1 else "started", step=step, label=task_run.name,
                   attempt=attempt))

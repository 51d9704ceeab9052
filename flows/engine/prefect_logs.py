"""Prefect's engine logs, without a traceback for a failure agentflow already describes.

A failed step raises StepFailed from its task (so that Prefect retries it and marks the task
run Failed), and Prefect logs every exception a task or flow ends with at ERROR, with its
traceback: for a command that exited 1 or a rejected approval, a page of engine frames in the
worker's log and the run's log in the UI, under a message that already says what happened.
These are outcomes, not errors in code: their records keep their message and level and lose
the traceback. A `call:` function that raised is a bug in code: its step's record shows that
function's own traceback (the StepFailed's cause) instead of the engine's. Any other exception
(a bug in agentflow, in Prefect) keeps its traceback.

A step's task run that ended well is not logged twice in the run's log in the UI: Prefect's
`Finished in state Completed()` line stays on the console and leaves the UI to the step's
own line (engine/publish.py: its outcome, time and summary). Each line is a row the server
writes; with ours and Prefect's, a quick step cost the server 1.6x a hand-written task
(benchmarks/ SC).

The filters are standard `logging` on the loggers Prefect's engines log through, and on
Prefect's handler that sends them to the API (agentflow/prefect_compat.py); `install()` is
idempotent.
"""

from __future__ import annotations

import logging

from agentflow import prefect_compat
from agentflow.errors import AgentflowError, StepFailed, WorkflowFailed

_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.engine")
_DESCRIBED = (StepFailed, WorkflowFailed)


class _DescribedFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, _DESCRIBED):
            cause = error.__cause__
            foreign = cause is not None and not isinstance(cause, AgentflowError)
            record.exc_info = (type(cause), cause, cause.__traceback__) if foreign else None
            record.exc_text = None
        return True


class _EndsTheStepDescribes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(record, "flow_run_id", None) in _DESCRIBING and prefect_compat.is_task_run_end_line(record))


_FILTER = _DescribedFailures()
_ENDS = _EndsTheStepDescribes()
_DESCRIBING: set[str] = set()  # flow runs whose steps' ends their publisher logs (engine/publish.py)


def install() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in prefect_compat.api_log_handlers():
        if _ENDS not in handler.filters:
            handler.addFilter(_ENDS)


def describing(run_id: str, on: bool) -> None:
    """The run's steps' ends are (no longer) logged by its publisher."""
    if on:
        _DESCRIBING.add(run_id)
    else:
        _DESCRIBING.discard(run_id)

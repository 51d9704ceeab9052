"""Prefect's engine logs, without a traceback for a failure agentflow already describes.

A failed step raises StepFailed from its task (so that Prefect retries it and marks the task
run Failed), and Prefect logs every exception a task or flow ends with at ERROR, with its
traceback: for a command that exited 1 or a rejected approval, a page of engine frames in the
worker's log and the run's log in the UI, under a message that already says what happened.
These are outcomes, not errors in code: their records keep their message and level and lose
the traceback. A `call:` function that raised is a bug in code: its step's record shows that
function's own traceback (the StepFailed's cause) instead of the engine's. Any other exception
(a bug in agentflow, in Prefect) keeps its traceback.

The filter is standard `logging` on the loggers Prefect's engines log through (named in
Prefect's logging configuration); `install()` is idempotent.
"""

from __future__ import annotations

import logging

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


_FILTER = _DescribedFailures()


def install() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

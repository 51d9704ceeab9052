"""A run's log as the Prefect server keeps it: for `agentflow logs RUN` when this machine's log
file has none of its lines (a worker elsewhere ran it).

agentflow's lines of a run reach the run's log on the server too (agentflow/log.py routes them
through the run's publisher), with Prefect's own lines beside them; each is given the shape
of a line of agentflow's log (timestamp, level, event, run_id, workflow, step), so that the
same filters and the same rendering apply.
"""

from __future__ import annotations

import re
from typing import Any

from agentflow.flows.durability.history import find_run

_STEP_LINE = re.compile(r"^step (\S+?): ")
_PAGE = 200


def read(run_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The run's full id and its lines on the server, oldest first. Raises RunNotFound."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    run = find_run(run_id)
    lines: list[dict[str, Any]] = []
    with get_client(sync_client=True) as client:
        steps = {task.id: task.name for task in client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id])))}
        offset = 0
        while True:
            page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                                    sort=LogSort.TIMESTAMP_ASC, limit=_PAGE, offset=offset)
            lines += [_line(entry, run.id, run.workflow, steps) for entry in page]
            if len(page) < _PAGE:
                return run.id, lines
            offset += _PAGE


def _line(entry: Any, run_id: str, workflow: str, steps: dict[Any, str]) -> dict[str, Any]:
    import logging

    message = str(entry.message)
    named = _STEP_LINE.match(message)
    step = steps.get(entry.task_run_id) if entry.task_run_id else (named.group(1) if named else None)
    when = entry.timestamp
    return {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": logging.getLevelName(entry.level).lower(), "event": message, "run_id": run_id,
            "workflow": workflow, "step": step, "component": "server", "logger": entry.name}

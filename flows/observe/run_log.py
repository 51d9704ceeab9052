"""A run's log as the Prefect server keeps it: for `agentflow logs RUN` when this machine's log
file has none of its lines (a worker elsewhere ran it).

agentflow's lines of a run reach the run's log on the server too (agentflow/log.py routes them
through the run's publisher), with Prefect's own lines beside them; each is given the shape
of a line of agentflow's log (timestamp, level, event, run_id, workflow, step), so that the
same filters and the same rendering apply. Read through the REST API (durability/rest.py).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from agentflow.flows.durability.history import find_run
from agentflow.flows.durability.rest import Reader

_STEP_LINE = re.compile(r"^step (\S+?): ")
_PAGE = 200


def read(run_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The run's full id and its lines on the server, oldest first. Raises RunNotFound."""
    run = find_run(run_id)
    lines: list[dict[str, Any]] = []
    with Reader() as api:
        steps = {task["id"]: task["name"] for task in api.post(
            "task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [run.id]}}, "limit": 200})}
        offset = 0
        while True:
            page = api.post("logs/filter", {"logs": {"flow_run_id": {"any_": [run.id]}}, "sort": "TIMESTAMP_ASC",
                                            "limit": _PAGE, "offset": offset})
            lines += [_line(entry, run.id, run.workflow, steps) for entry in page]
            if len(page) < _PAGE:
                return run.id, lines
            offset += _PAGE


def _line(entry: dict[str, Any], run_id: str, workflow: str, steps: dict[str, str]) -> dict[str, Any]:
    message = str(entry.get("message", ""))
    named = _STEP_LINE.match(message)
    task_run = entry.get("task_run_id")
    step = steps.get(task_run) if task_run else (named.group(1) if named else None)
    when = datetime.fromisoformat(entry["timestamp"]).astimezone(timezone.utc)
    return {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": logging.getLevelName(entry.get("level", 20)).lower(), "event": message, "run_id": run_id,
            "workflow": workflow, "step": step, "component": "server", "logger": entry.get("name")}

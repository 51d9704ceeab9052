"""A flow run's heartbeats, sent by agentflow instead of Prefect's heartbeat thread.

Crash detection (durability/crash.py) needs them: a run whose heartbeats stop without a final
state is marked Crashed. Prefect's thread sleeps in one-second steps, and a flow run joins it
at its end: up to a second of fixed cost per run (../shared/PREFECT_NOTES.md). This one waits
on an event, so it stops at once. `WorkflowFlow` turns Prefect's off for the runs it starts
and hands the period here (HEARTBEAT_S); a run started otherwise (a deployment's, on a
worker) keeps Prefect's.
"""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from typing import Any

from agentflow import prefect_compat

_log = logging.getLogger("agentflow")

# The heartbeat period (seconds) of a run whose Prefect heartbeat agentflow turned off.
HEARTBEAT_S: ContextVar[int | None] = ContextVar("agentflow_heartbeat_s", default=None)


class Heartbeat:
    """`prefect.flow-run.heartbeat` events for one flow run, every `period` seconds."""

    def __init__(self, flow_run: Any, flow_name: str, period: float):
        self.period = period
        self._stop = threading.Event()
        self._resource, self._related = prefect_compat.heartbeat_resources(flow_run, flow_name)
        self._thread = threading.Thread(target=self._beat, name="agentflow-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _beat(self) -> None:
        from prefect.events import emit_event

        while True:
            try:
                emit_event(event=prefect_compat.HEARTBEAT_EVENT, resource=self._resource, related=self._related)
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat is not a failed run
                _log.debug("agentflow: heartbeat not sent: %s", exc)
            if self._stop.wait(self.period):
                return

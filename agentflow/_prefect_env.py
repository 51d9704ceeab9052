"""Prefect settings agentflow needs, applied before Prefect is first imported.

Only defaults: a value the user set in the environment wins. Without the recorder settings
the embedded server is stopped at exit with a backlog and loses task runs
(../shared/PREFECT_NOTES.md: 18-21 of 50 recorded); analytics off avoids a telemetry error
on machines without internet.
"""

from __future__ import annotations

import os

RELIABLE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    # A heartbeat every 30 s (Prefect's minimum; its default is 180): the crash automation
    # agentflow installs on a started server (flows/durability/crash.py) then finds a killed run in ~1 min.
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
}

# For the CLI: agentflow prints its own progress; Prefect's console output (banner, run
# logs, task tracebacks) would bury it. Logs still go to the API, so the UI shows them.
QUIET = {
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_SERVER_LOGGING_LEVEL": "ERROR",
}


def apply(settings: dict[str, str]) -> None:
    for key, value in settings.items():
        os.environ.setdefault(key, value)

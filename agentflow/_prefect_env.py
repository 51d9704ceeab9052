"""Prefect settings agentflow needs, applied before Prefect is first imported.

Only defaults: a value the user set in the environment wins. Without the recorder settings
the embedded server is stopped at exit with a backlog and loses task runs
(../shared/PREFECT_NOTES.md: 18-21 of 50 recorded); analytics off avoids a telemetry error
on machines without internet.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path

RELIABLE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    # A heartbeat every 30 s (Prefect's minimum; its default is 180): the crash automation
    # agentflow installs on a started server (flows/durability/crash.py) then finds a killed run in ~1 min.
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
    # The embedded server's first start on a new Prefect home runs the database migrations:
    # 16-22 s on a 2-core machine, over Prefect's 20 s default (then every command failed).
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # Prefect's client-side usage data: off, and with it the notice it prints in a terminal
    # ("Prefect collects anonymous usage data...") among agentflow's own output.
    "DO_NOT_TRACK": "1",
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
    # A server protected with PREFECT_SERVER_API_AUTH_STRING (basic auth) is answered with
    # the same string by this machine's commands, workers and client, unless told otherwise.
    if os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        os.environ.setdefault("PREFECT_API_AUTH_STRING", os.environ["PREFECT_SERVER_API_AUTH_STRING"])


# ---- the local server `agentflow server start` keeps (flows/durability/local_server.py) -----
# Its record, read here before Prefect is imported, so that a command can point Prefect at it.
SERVER_RECORD = "agentflow-server.json"


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def configured_api_url() -> str | None:
    """The API URL the user configured: the environment, else the active Prefect profile (not
    the local server's URL that `agentflow server start` wrote there: that one is used only
    while the server runs, through `use_local_server`)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    value = profile_setting("PREFECT_API_URL")
    if not value or value == _recorded().get("api_url"):
        return None
    return value


def setting(name: str) -> str | None:
    """A Prefect setting as Prefect would read it: the environment (set empty: unset), else
    the active profile."""
    if name in os.environ:
        return os.environ[name] or None
    return profile_setting(name)


def profile_setting(name: str) -> str | None:
    """A setting of the active Prefect profile (profiles.toml), read without importing Prefect."""
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or prefect_home() / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    value = (profiles.get("profiles", {}).get(active) or {}).get(name)
    return str(value) if value else None


def _recorded() -> dict:
    """The local server's record, running or not."""
    try:
        record = json.loads((prefect_home() / SERVER_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def local_server() -> dict | None:
    """The record of the local server if it is running (its process lives and its port
    answers), else None. Cheap: a file, a signal 0 and a TCP connect."""
    try:
        record = json.loads((prefect_home() / SERVER_RECORD).read_text(encoding="utf-8"))
        pid, host, port = int(record["pid"]), str(record["host"]), int(record["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    try:
        with socket.create_connection(("127.0.0.1" if host in ("0.0.0.0", "::") else host, port), timeout=0.5):
            return record
    except OSError:
        return None


def use_local_server() -> str | None:
    """Point Prefect at the local server when it runs and the user configured no other API:
    its URL, or None (the embedded server, as before)."""
    if configured_api_url():
        return None
    record = local_server()
    if record is None:
        if _recorded().get("profile") and "PREFECT_API_URL" not in os.environ:
            # The profile still names the local server, which is gone (a reboot): Prefect
            # would try it; an empty value lets the embedded server start instead.
            os.environ["PREFECT_API_URL"] = ""
        return None
    os.environ["PREFECT_API_URL"] = record["api_url"]
    return record["api_url"]

"""The local Prefect server `agentflow server start` keeps running in the background.

A `prefect server start` process of its own (its session, its log file), on 127.0.0.1 unless
told otherwise, with agentflow's settings (no telemetry, the task-run recorder batching that
keeps every task run: ../shared/PREFECT_NOTES.md) and the UI pointed at its own API. Its
database is Prefect's default one under the Prefect home, the one the embedded server uses, so
runs made before it started are in its UI too.

Its record (`PREFECT_HOME/agentflow-server.json`) is what later commands read, before Prefect
is imported, to use it (agentflow/_prefect_env.py: `use_local_server`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from agentflow import _prefect_env
from agentflow.errors import AgentflowError
from agentflow.flows.durability import profile
from agentflow.flows.durability.processes import process_start
from agentflow.flows.durability.storage import atomic_write

_STOP_WAIT_S = 20.0  # a server stops in 1-3 s on SIGTERM; after this it is killed
_POLL_S = 0.2


class ServerError(AgentflowError):
    """The local server could not be started (its port is taken, it exited while starting)."""


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    url: str | None = None  # the UI; the API is at url + "/api"
    pid: int | None = None
    started: float | None = None
    log: str | None = None
    database: str | None = None
    healthy: bool = False
    profile: str | None = None  # the Prefect profile whose PREFECT_API_URL agentflow set to it
    host: str | None = None  # the address it listens on


    def view(self) -> dict:
        return {"running": self.running, "url": self.url, "api_url": f"{self.url}/api" if self.url else None,
                "pid": self.pid, "started": self.started, "log": self.log, "database": self.database,
                "healthy": self.healthy}


def _record_path() -> Path:
    return _prefect_env.prefect_home() / _prefect_env.SERVER_RECORD


def _database() -> str:
    configured = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL") or os.environ.get(
        "PREFECT_SERVER_DATABASE_CONNECTION_URL")
    if configured:
        return configured.split("@")[-1] if "@" in configured else configured  # never a password
    return str(_prefect_env.prefect_home() / "prefect.db")


def status() -> ServerStatus:
    record = _prefect_env.local_server()
    if record is None:
        return ServerStatus(running=False, database=_database())
    return ServerStatus(running=True, url=record["url"], pid=record["pid"], started=record.get("started"),
                        log=record.get("log"), database=record.get("database"), healthy=_healthy(record["api_url"]),
                        profile=record.get("profile"), host=record.get("host"))


def start(host: str = "127.0.0.1", port: int = 4200, timeout: float = 120.0) -> tuple[ServerStatus, bool]:
    """Start the server, or find it running; (its status, whether this call started it).
    Returns once its API answers; ServerError if it cannot start."""
    current = status()
    if current.running:
        return _pointed(current), False
    _port_free(host, port)
    home = _prefect_env.prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown_host}:{port}"
    log = home / "agentflow-server.log"
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update({**_prefect_env.RELIABLE, **{k: v for k, v in os.environ.items() if k in _prefect_env.RELIABLE}})
    env["PREFECT_UI_API_URL"] = f"{url}/api"  # else the UI asks port 4200 whatever its own port
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with open(log, "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host,
                                    "--port", str(port), "--no-background"],
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env,
                                   cwd=home, start_new_session=True)
    record = {"pid": process.pid, "proc_start": process_start(process.pid), "host": host, "port": port,
              "url": url, "api_url": f"{url}/api", "started": time.time(), "log": str(log),
              "database": _database()}
    atomic_write(_record_path(), json.dumps(record, indent=2))
    deadline = time.monotonic() + timeout
    while not _healthy(record["api_url"]):
        if process.poll() is not None:
            _record_path().unlink(missing_ok=True)
            raise ServerError(f"the Prefect server exited while starting (code {process.returncode}); "
                              f"its log: {log}\n{_tail(log)}")
        if time.monotonic() > deadline:
            _stop_process(process.pid)
            _record_path().unlink(missing_ok=True)
            raise ServerError(f"the Prefect server did not answer within {timeout:g}s and was stopped; "
                              f"its log: {log}\n{_tail(log)}")
        time.sleep(_POLL_S)
    return _pointed(status()), True


def _pointed(current: ServerStatus) -> ServerStatus:
    """The server, with Prefect's active profile pointing at it where no API was configured
    (durability/profile.py), noted in its record so that `stop` undoes only that."""
    if current.profile is not None or current.url is None:
        return current
    name = profile.point_at(f"{current.url}/api")
    if name is None:
        return current
    record = json.loads(_record_path().read_text(encoding="utf-8"))
    atomic_write(_record_path(), json.dumps({**record, "profile": name}, indent=2))
    return replace(current, profile=name)


def stop() -> ServerStatus | None:
    """Stop the server if it runs; its status before it was stopped, or None if none ran."""
    current = status()
    path = _record_path()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    if record.get("profile") and record.get("api_url"):  # set by `start`: undone, dead server or not
        profile.unpoint(record["profile"], record["api_url"])
    if not current.running or current.pid is None:
        path.unlink(missing_ok=True)  # a stale record of a server that died
        return None
    if record.get("proc_start") not in (None, process_start(current.pid)):
        path.unlink(missing_ok=True)  # its pid is another process's now
        return None
    _stop_process(current.pid)
    path.unlink(missing_ok=True)
    return current


def _stop_process(pid: int) -> None:
    """SIGTERM to its process group (the server and what it started), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, _STOP_WAIT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                finished, _ = os.waitpid(pid, os.WNOHANG)  # our child when this process started it
            except ChildProcessError:
                finished = 0 if process_start(pid) is not None else pid
            if finished == pid:
                return
            time.sleep(_POLL_S)


def _port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServerError(f"cannot start the Prefect server on {host}:{port}: {exc.strerror or exc}; "
                              "another program uses the port: choose one with --port") from None


def _healthy(api_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

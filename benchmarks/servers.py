"""The Prefect servers the benchmarks start: on 127.0.0.1, a free port, a home of their own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Background services of the server that B1/B2 do not use. With them on, the same flow
# took 11 to 46 ms a step from one run to the next (the event persister and triggers
# writing to SQLite on the other core); off, 10.8 to 15.9. The task-run recorder stays on.
QUIET_SERVER = {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in (
    "SCHEDULER", "LATE_RUNS", "FOREMAN", "PAUSE_EXPIRATIONS", "CANCELLATION_CLEANUP", "TRIGGERS",
    "REPOSSESSOR", "EVENT_PERSISTER")}


def start_server(home: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           **(extra_env or {})}
    env.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    while time.monotonic() - started < 120:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url, time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the Prefect server did not become healthy within 120 s")

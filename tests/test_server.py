"""`agentflow server start|stop|status`: a local Prefect server that later commands use.

Real processes: the CLI in subprocesses with a Prefect home of their own and no
PREFECT_API_URL, and the `prefect server` it starts, torn down by the pid in its record.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from procs import kill_recorded_server
from postgres import free_port

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def home(tmp_path):
    """A Prefect home of its own; whatever server it records is killed at the end."""
    path = tmp_path / "prefect-home"
    yield path
    kill_recorded_server(path)


@pytest.fixture
def python(home, tmp_path):
    """`python ARGS` in a Prefect home of its own, with no PREFECT_API_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_RESULTS_LOCAL_STORAGE_PATH")}
    env.update(PREFECT_HOME=str(home), PYTHONPATH=str(FIXTURES))

    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=timeout)

    return run


@pytest.fixture
def agentflow(python):
    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return python("-m", "agentflow", *args, timeout=timeout)

    return run


def test_start_use_and_stop_the_local_server(agentflow, python, home, tmp_path):
    (tmp_path / "wf.yaml").write_text("name: served\nsteps:\n  - {id: hello, run: [echo, hi]}\n")
    port = free_port()

    before = agentflow("server", "status")
    assert before.returncode == 1 and "not running" in before.stdout

    started = agentflow("server", "start", "--port", str(port))
    assert started.returncode == 0, started.stdout + started.stderr
    url = f"http://127.0.0.1:{port}"
    assert f"Prefect server started at {url}" in started.stdout
    assert str(home / "prefect.db") in started.stdout

    state = json.loads(agentflow("server", "status", "--json").stdout)
    assert state["running"] is True and state["healthy"] is True and state["api_url"] == f"{url}/api"
    # The UI asks its own API, not port 4200's (PREFECT_UI_API_URL).
    assert httpx.get(f"{url}/ui-settings", timeout=10).json()["api_url"] == f"{url}/api"

    again = agentflow("server", "start", "--port", str(port))
    assert again.returncode == 0 and "already running" in again.stdout
    elsewhere = agentflow("server", "start", "--port", str(port + 1))
    assert elsewhere.returncode == 1 and f"--port {port + 1} was not used: a server already runs at {url}" in (
        elsewhere.stderr)

    # Prefect's own tools use it too, as `prefect config set PREFECT_API_URL=...` would make them.
    assert f"Prefect's profile `ephemeral` says PREFECT_API_URL={url}/api" in started.stdout
    assert prefect_api_url(python) == f"{url}/api"

    done = agentflow("run", "wf.yaml", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert f"ui  {url}/runs/flow-run/{run_id}" in done.stderr
    assert "embedded server" not in done.stderr
    # The run is the local server's: it answers for it.
    assert httpx.get(f"{url}/api/flow_runs/{run_id}", timeout=10).json()["id"] == run_id
    listed = agentflow("runs")
    assert listed.returncode == 0 and run_id[:8] in listed.stdout
    # Reads go through the REST API: neither command imports Prefect (over a second of its own).
    for command in (["runs"], ["status", run_id[:8]]):
        read = python("-X", "importtime", "-m", "agentflow", *command)
        assert read.returncode == 0, read.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in read.stderr.splitlines() if line.startswith("import time")}
        assert "agentflow.flows.durability.history" in imported and "prefect" not in imported, command

    stopped = agentflow("server", "stop")
    assert stopped.returncode == 0 and f"stopped the Prefect server at {url}" in stopped.stdout
    assert "Prefect's profile `ephemeral` no longer names it" in stopped.stdout
    assert prefect_api_url(python) == "None"
    assert agentflow("server", "status").returncode == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/health", timeout=5)
    assert agentflow("server", "stop").stdout.strip() == "no local Prefect server is running"


def prefect_api_url(python) -> str:
    """The API URL a plain Python process using Prefect finds, in the same environment."""
    done = python("-c", "from prefect.settings import get_current_settings; print(get_current_settings().api.url)")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_profile_left_naming_a_dead_server_is_not_used(agentflow, home):
    """The server died without `server stop` (a reboot): the profile still names it, and
    agentflow's commands use the embedded server instead of failing to connect."""
    started = agentflow("server", "start", "--port", str(free_port()))
    assert started.returncode == 0, started.stdout + started.stderr
    kill_recorded_server(home)
    listed = agentflow("runs")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "cannot reach" not in listed.stderr


def test_a_taken_port_is_named_with_the_fix(agentflow):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = agentflow("server", "start", "--port", str(port))
    assert done.returncode == 3
    assert f"cannot start the Prefect server on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_embedded_server_suggests_the_local_one_once(agentflow):
    first = agentflow("runs")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "`agentflow server start` keeps one running" in first.stderr
    second = agentflow("runs")
    assert second.returncode == 0 and "agentflow server start" not in second.stderr

"""Crash detection on a started `prefect server`: the automation agentflow installs marks a
run whose process was killed Crashed, without anyone running `agentflow runs` (the local
check), within about two heartbeat periods (heartbeat every 30 s, automation after 60 s)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from background import STEP, Killed
from procs import gone
from waiting import until

pytestmark = pytest.mark.xdist_group("test_crash_server")  # one worker runs the module: it shares a module fixture

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEADLINE_S = 240  # 60 s of silence, plus the trigger's evaluation period, plus a loaded machine


@pytest.fixture(scope="module")
def started_server(tmp_path_factory):
    """A real `prefect server start`, with its default services (triggers, actions)."""
    home = tmp_path_factory.mktemp("server-home")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    try:
        until(lambda: _healthy(url), 120, "the server to become healthy")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_killed_run_is_crashed_by_the_installed_automation(started_server, tmp_path):
    env = {**os.environ, "PREFECT_API_URL": started_server, "PYTHONPATH": str(FIXTURES)}
    argv = [*STEP, "out.txt", "s1", "calls.txt", "hold-s1", "announce"]
    (tmp_path / "wf.yaml").write_text(f"name: server-crash\nsteps:\n  - {{id: s1, run: {argv!r}}}\n".replace("'", '"'))
    (tmp_path / "hold-s1").touch()
    run = Killed(env, tmp_path, tmp_path / "wf.yaml", holders=1)

    automations = httpx.post(f"{started_server}/automations/filter", json={}, timeout=10).json()
    [automation] = [a for a in automations if a["name"].startswith("agentflow:")]
    assert automation["trigger"]["posture"] == "Proactive"
    assert automation["actions"][0]["state"] == "CRASHED"

    run_id = run.kill()
    killed_at = time.monotonic()
    # The automation watches runs tagged `agentflow` only (other flows may beat less often).
    assert "agentflow" in httpx.get(f"{started_server}/flow_runs/{run_id}", timeout=10).json()["tags"]
    state = lambda: httpx.get(f"{started_server}/flow_runs/{run_id}", timeout=10).json()["state"]["name"]  # noqa: E731
    assert state() == "Running"  # what Prefect alone would show forever
    until(lambda: state() == "Crashed", DEADLINE_S, "the automation to mark the run Crashed")
    detected_s = time.monotonic() - killed_at
    print(f"crash detected {detected_s:.0f}s after the kill")

    # The automation changes the flow run only; agentflow finishes the job when it looks:
    # the step's task run leaves Running and the command left behind is killed.
    status = subprocess.run([sys.executable, "-m", "agentflow", "status", run_id], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "Crashed" in status.stdout.splitlines()[0], status.stdout + status.stderr
    assert gone(run.held["s1"])
    task_runs = httpx.post(f"{started_server}/task_runs/filter", timeout=10,
                           json={"flow_runs": {"id": {"any_": [run_id]}}}).json()
    assert "Running" not in [t["state_name"] for t in task_runs]

    (tmp_path / "hold-s1").unlink()
    resumed = subprocess.run([sys.executable, "-m", "agentflow", "resume", run_id], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "out.txt").read_text().splitlines() == ["s1"]

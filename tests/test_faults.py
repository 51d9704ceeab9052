"""Kills: what a killed run leaves behind is gone at once, not when someone next looks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from background import STEP, Killed
from procs import gone
from waiting import until

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _held_step(name: str) -> str:
    return json.dumps([*STEP, "out.txt", name, "calls.txt", f"hold-{name}", "announce"])


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(stat.parent.name), cmdline))
    return found


def test_a_killed_runs_command_dies_with_it(prefect_server, tmp_path):
    """SIGKILL of `agentflow run` during a step: its command (and the command's own
    children) are killed by the run's watchdog, without anyone running `agentflow runs`."""
    (tmp_path / "wf.yaml").write_text(f"name: orphan\nsteps:\n  - {{id: s1, run: {_held_step('s1')}}}\n")
    (tmp_path / "hold-s1").touch()
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES)}
    run = Killed(env, tmp_path, tmp_path / "wf.yaml", holders=1)
    command = run.held["s1"]
    assert not gone(command)
    run.kill()
    until(lambda: gone(command), 30, "the watchdog to kill the orphaned command")


def test_the_embedded_server_dies_with_a_killed_cli(tmp_path):
    """No PREFECT_API_URL: the CLI starts a temporary server; SIGKILL of the CLI stops it too."""
    (tmp_path / "wf.yaml").write_text(f"name: embedded\nsteps:\n  - {{id: s1, run: {_held_step('s1')}}}\n")
    (tmp_path / "hold-s1").touch()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(FIXTURES),
               PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"))
    run = Killed(env, tmp_path, tmp_path / "wf.yaml", holders=1)
    servers = [pid for pid, cmdline in _children(run.process.pid) if "uvicorn" in cmdline or "server" in cmdline]
    assert servers, _children(run.process.pid)
    command = run.held["s1"]
    run.kill()
    until(lambda: all(gone(pid) for pid in [*servers, command]), 30, "the server and the command to stop")

"""A run says how many task runs it ended, and `agentflow status` waits (bounded) until the server,
which records task runs from events a batch at a time, shows them all (durability/settling.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect.states import Completed, Failed, Pending, Running

from agentflow.flows.durability import settling
from postgres import free_port
from procs import kill_recorded_server

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _ended_state(kind):
    state = kind()
    state.state_details.task_run_id = uuid.uuid4()
    return state


@pytest.mark.unit
def test_final_task_run_states_are_counted_once_on_top_of_what_an_earlier_attempt_said():
    assert settling.ended() is None  # outside a run: nothing counted, nothing said
    done, failed = _ended_state(Completed), _ended_state(Failed)
    with settling.tracking({settling.LABEL: 3, "prefect.flow.id": "x"}):
        for state in (done, done, failed, _ended_state(Running), _ended_state(Pending), Completed()):
            settling.saw(state)  # the same task run twice, two not final, one of no task run
        assert settling.ended() == 3 + 2
    with settling.tracking(None):
        assert settling.ended() == 0
    assert settling.said({settling.LABEL: "7"}) == 7 and settling.said({settling.LABEL: "many"}) is None


@pytest.mark.unit
def test_the_wait_ends_when_the_count_arrives_and_only_for_a_run_that_just_ended():
    counts = iter([1, 2, 4, 5, 9])
    calls = []

    def count():
        calls.append(1)
        return next(counts)

    assert settling.wait_for_records(count, 4, ended_ago_s=0.5) == 4 and len(calls) == 3
    calls.clear()
    assert settling.wait_for_records(lambda: calls.append(1) or 2, 4, ended_ago_s=settling.RECENT_S + 1) == 2
    assert len(calls) == 1  # ended long ago: what the server has is all it will have


WORKFLOW = """
name: settling
steps:
  - {id: first, run: [echo, one]}
  - {id: second, run: [echo, two], depends_on: [first]}
"""

MORE = """
name: more-events
steps:
""" + "".join(f"  - {{id: s{i}, run: [echo, '{i}']}}\n" for i in range(6))


def test_status_says_so_when_the_server_has_not_recorded_a_runs_task_runs(tmp_path):
    """On a server whose recorder holds events back (it writes them when 8 have come, or every
    10 minutes), `status` right after a run waits, then shows what there is and says that the
    rest is not recorded yet; once it is, `status` shows every step and says nothing."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(FIXTURES),
               PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL="600",
               PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE="8")
    cli = [sys.executable, "-m", "agentflow"]

    def agentflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    (tmp_path / "more.yaml").write_text(MORE)
    started = agentflow("server", "start", "--port", str(free_port()))
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        run = agentflow("run", "wf.yaml", "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        run_id = json.loads(run.stdout)["run_id"]
        held = agentflow("status", run_id)  # 6 events held: fewer than 8
        assert held.returncode == 0, held.stdout + held.stderr  # the run completed: that is what it says
        assert "Completed" in held.stdout.splitlines()[0]
        assert ("warning: the server shows 0 of the 2 task runs this run ended" in held.stderr
                and f"`agentflow status {run_id[:8]}` again" in held.stderr), held.stderr
        assert "first" not in held.stdout

        more = agentflow("run", "more.yaml")  # its events push the recorder past 8: it writes, oldest first
        assert more.returncode == 0, more.stdout + more.stderr
        settled = agentflow("status", run_id)
        assert settled.returncode == 0 and settled.stderr == "", settled.stderr
        rows = [line for line in settled.stdout.splitlines() if "Completed" in line]
        assert [row.split()[1] for row in rows[1:]] == ["first", "second"], settled.stdout
    finally:
        agentflow("server", "stop")
        kill_recorded_server(tmp_path / "home")

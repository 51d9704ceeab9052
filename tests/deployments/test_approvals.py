"""A deployed run waiting for a person: its worker given back, a timeout by the server's clock."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from waiting import until


pytestmark = [pytest.mark.xdist_group("deployments"), pytest.mark.deployment]  # on one worker: they share its workers


def test_a_deployed_run_waiting_for_approval_gives_its_worker_back(deployed):
    """At an approval step a deployed run is suspended: its process ends (the worker's slot is
    free). Answered with `agentflow approve`, a worker runs it again from the top; the journal
    answers `build`, the answer kept on the server answers the approval, and `ship` runs."""
    from prefect.client.orchestration import get_client

    from agentflow.deployments.client import wait_for_run
    from agentflow.flows.durability import records

    marks = deployed.root / "signoff-marks"
    marks.mkdir()
    # Started and waited for by `agentflow run --deployment`, which says what the run waits for.
    waiting = subprocess.Popen([sys.executable, "-m", "agentflow", "run", "--deployment", "signoff", "-i",
                                f"marks={marks}"], cwd=deployed.root, env={**deployed.env, "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    created = waiting.stdout.readline()
    assert "of deployment signoff/signoff: created, for a worker of its pool to pick up" in created, created
    run_id = created.split()[1]

    def state() -> str:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(uuid.UUID(run_id)).state.name

    until(lambda: state() == "Suspended", 240, "the run to be suspended at its approval step")
    first = records.read_record(run_id).attempts[0].pid
    until(lambda: not Path(f"/proc/{first}").exists(), 60, "the suspended run's process to end")
    # Nor its tree: its work is in the journal, and whichever worker runs it on makes it again.
    assert [tree for name in deployed.workers
            for tree in (deployed.root / name / "home" / "agentflow-worktrees").glob(f"{run_id}*")] == []
    runs = subprocess.run([sys.executable, "-m", "agentflow", "runs", "-w", "signoff"], cwd=deployed.root,
                          env=deployed.env, capture_output=True, text=True, timeout=120)
    assert "Awaiting" in next(line for line in runs.stdout.splitlines() if run_id[:8] in line), runs.stdout
    resumed = subprocess.run([sys.executable, "-m", "agentflow", "resume", run_id[:8]], cwd=deployed.root,
                             env=deployed.env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 2 and "is Awaiting approval, with no process" in resumed.stderr, resumed.stderr

    approve = [sys.executable, "-m", "agentflow", "approve", run_id[:8], "release_gate", "-m", "looks right",
               "-f", "channel=stable"]
    answered = subprocess.run(approve, cwd=deployed.root, env=deployed.env, capture_output=True, text=True,
                              timeout=120)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    said, errors = waiting.communicate(timeout=240)
    assert waiting.returncode == 0, said + errors
    assert "a worker runs it" in said
    assert f"waiting for a person at an approval step: the UI's run page, or `agentflow approve {run_id[:8]}`" in said
    with get_client(sync_client=True) as client:
        result = wait_for_run(client, run_id, 240, 0.5)
    assert result["ship"].summary == "shipped to stable"
    decision = result["release_gate"].data
    assert decision["approved"] is True and decision["comment"] == "looks right" and "@" in decision["decided_by"]
    assert (marks / "build.txt").read_text() == "ran\n"  # not run again
    assert result.steps["build"].reused is True
    assert len(records.read_record(run_id).attempts) == 2  # suspended, then run again by a worker


def test_a_suspended_approval_times_out_by_the_servers_clock(deployed):
    """A deployed run suspended at an approval with `timeout` keeps no process: an automation
    of its own (installed as it suspends) wakes it after the timeout, a worker runs it on, and
    the step's default decides; the automation is removed once the run goes on."""
    from prefect.client.orchestration import get_client

    from agentflow.deployments import run_workflow_deployment
    from agentflow.deployments.client import wait_for_run
    from agentflow.flows.durability import records

    run_id = run_workflow_deployment("signoff-timed", wait=False)
    timer = f"agentflow: approval timeout of run {run_id}"
    with get_client(sync_client=True) as client:
        until(lambda: client.read_flow_run(uuid.UUID(run_id)).state.name in ("Suspended", "Scheduled", "Completed"),
              240, "the run to be suspended at its approval step")
        result = wait_for_run(client, run_id, 240, 0.5)
        states = [(s.name, s.message or "") for s in client.read_flow_run_states(uuid.UUID(run_id))]
        assert client.read_automations_by_name(timer) == []  # removed once the run went on
    gate = result["release_gate"].data
    assert gate["timed_out"] is True and gate["approved"] is True and gate["decided_by"] == "timeout (approve)"
    assert result["ship"].summary == "shipped: timeout (approve)"
    assert "Suspended" in [name for name, _ in states]
    assert any(name == "Scheduled" and "no answer within 10s" in message for name, message in states), states
    assert len(records.read_record(run_id).attempts) == 2  # its first process ended as it was suspended

"""Two workers: one cache between them, and a run whose worker died finished by the other.
(The last module of the package, by name: its last test leaves one worker.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from deployed_project import BUCKET, bucket
from waiting import until


pytestmark = [pytest.mark.xdist_group("deployments"), pytest.mark.deployment]  # on one worker: they share its workers


def test_two_workers_share_one_cache(deployed):
    """Workers with Prefect homes of their own share the step cache through the server's
    default result storage: the costly step runs once whichever worker takes each run."""
    from agentflow.deployments import run_workflow_deployment

    marks = deployed.root / "cached-marks"
    marks.mkdir()
    results = [run_workflow_deployment("cached", {"marks": str(marks)}, timeout=240) for _ in range(3)]
    assert [r.steps["costly"].cached for r in results] == [False, True, True]
    assert [r["costly"].summary for r in results] == ["costly-value"] * 3
    assert (marks / "costly.txt").read_text() == "called\n"
    assert any("costly-value" in text for text in bucket(deployed.s3, "results/").values())
    for name in deployed.workers:  # no result of it in either worker's own home
        home = deployed.root / name / "home"
        # (A run's tree there holds the project's files, cached.yaml among them, which spells the
        # value: a run killed by an earlier test keeps its tree until `agentflow work gc`.)
        holding = [str(p) for p in home.rglob("*") if p.is_file() and p.suffix != ".log"
                   and "agentflow-worktrees" not in p.relative_to(home).parts
                   and p.stat().st_size < 1_000_000 and "costly-value" in p.read_text(errors="replace")]
        assert holding == []



def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _kill_tree(root: int) -> None:
    """SIGKILL a process and all its descendants (a worker starts each flow run in a session
    of its own, so its process group is not enough)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = _parent(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _worker_of(pid: int, workers: dict[str, subprocess.Popen]) -> str:
    """The worker whose process started `pid` (a flow run's process is its worker's child)."""
    by_pid = {worker.pid: name for name, worker in workers.items()}
    while pid > 1 and pid not in by_pid:
        pid = _parent(pid)
    return by_pid[pid]


def test_a_run_whose_worker_died_is_finished_by_the_other_worker(deployed):
    """The worker running a deployed run is killed mid-step; `agentflow resume` hands the run
    back to the pool and the other worker finishes it from the journal in shared storage:
    the step that had completed does not run again. (Last in this module: one worker is left.)"""
    from agentflow.deployments import run_workflow_deployment
    from agentflow.flows.durability import records, storage

    marks = deployed.root / "handoff-marks"
    marks.mkdir()
    run_id = run_workflow_deployment("handoff", {"marks": str(marks)}, wait=False)
    until(lambda: (marks / "waiting").exists(), 240, "the second step to start")
    # The run sends heartbeats (its worker has Prefect's off), which the crash automation
    # `agentflow deploy --apply` installed watches: a run whose machine died becomes Crashed.
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    def heartbeats():
        with get_client(sync_client=True) as client:
            return client.read_events(EventFilter(event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                                                  resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"])),
                                      limit=5).events

    until(heartbeats, 60, "a heartbeat of the deployed run")
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name("agentflow: mark runs Crashed when their heartbeats stop")
    assert storage.shared().where.startswith(f"s3://{BUCKET}/results")  # the server's default, here too
    record = records.read_record(run_id)
    assert record is not None and len(record.attempts) == 1, "the run's record is in the shared storage"
    dead = _worker_of(record.attempts[0].pid, deployed.workers)
    _kill_tree(deployed.workers[dead].pid)  # as if its machine died: the worker, its flow run, the step
    deployed.workers[dead].wait(timeout=30)
    (marks / "go").touch()

    # From a machine whose storage is not the workers': refused, and nothing claims reuse.
    from prefect.filesystems import LocalFileSystem

    LocalFileSystem(basepath=str(deployed.root / "elsewhere")).save("agentflow-test-elsewhere", overwrite=True)
    elsewhere = {**deployed.env, "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "local-file-system/agentflow-test-elsewhere"}
    refused = subprocess.run([sys.executable, "-m", "agentflow", "resume", run_id[:8]], cwd=deployed.root,
                             env=elsewhere, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "no agentflow record" in refused.stderr and "the storage this machine uses" in refused.stderr
    assert str(deployed.root / "elsewhere") in refused.stderr  # where it looked
    assert "not run again" not in refused.stdout + refused.stderr

    resumed = subprocess.run([sys.executable, "-m", "agentflow", "resume", run_id[:8], "--json", "--timeout", "240"],
                             cwd=deployed.root, env=deployed.env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "on a worker: its completed steps are not run again" in resumed.stderr
    document = json.loads(resumed.stdout)
    assert document["steps"]["first"]["reused"] is True and document["steps"]["second"]["summary"] == "second-done"
    assert (marks / "first.txt").read_text() == "ran\n"
    attempts = records.read_record(run_id).attempts
    assert len(attempts) == 2 and attempts[1].pid != attempts[0].pid
    (alive,) = set(deployed.workers) - {dead}
    assert run_id in (deployed.root / f"{alive}.log").read_text()  # the one worker left finished it

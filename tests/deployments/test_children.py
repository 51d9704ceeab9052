"""Deployment steps: children run on workers, and a parent killed while one runs waits for it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from deployed_project import runs_of
from waiting import until


pytestmark = [pytest.mark.xdist_group("deployments"), pytest.mark.deployment]  # on one worker: they share its workers


def test_deployment_steps_run_children_on_workers(deployed):
    """A `deployment:` step starts a run of that deployment, which a worker picks up, linked
    under the step's task run, and its WorkflowResult is the step's result (per item with
    `for_each`); a failing child
    fails its step, naming the child's step; an unknown deployment is said."""
    from prefect.client.orchestration import get_client

    from agentflow.deployments import run_workflow_deployment

    result = run_workflow_deployment("composer", timeout=300)
    assert result["after"].summary == "child said hello Dee x2 token-[secret]"
    items = result["many"].data["items"]  # fanned out: a child run per item, on whichever worker is free
    assert [i["data"]["steps"]["hello"]["summary"] for i in items] == ["hello Eve x1 token-[secret]",
                                                                       "hello Fay x1 token-[secret]"]
    assert len({i["metrics"]["run_id"] for i in items}) == 2
    greeting = result["greeting"]
    assert greeting.data["workflow"] == "greet" and greeting.summary == "workflow greet: completed (1/1 steps done)"
    broken = result.steps["broken_child"]
    assert broken.status == "failed" and "step(s) fails failed" in broken.summary
    missing = result.steps["missing"]
    assert missing.status == "failed" and "no deployment `nope/nope`" in missing.summary
    with get_client(sync_client=True) as client:  # the child run is under the parent's run in the UI
        child = client.read_flow_run(uuid.UUID(greeting.metrics["run_id"]))
        assert str(client.read_task_run(child.parent_task_run_id).flow_run_id) == result.run_id


def test_a_parent_killed_while_its_deployed_child_runs_waits_for_that_child(deployed, tmp_path):
    """kill -9 of a local parent while its `deployment:` child runs on a worker; resumed, the
    parent finds the same child run (the server holds one run per parent call) and takes its
    result: the child ran once."""
    marks = deployed.root / "slow-marks"
    marks.mkdir()
    (tmp_path / "wf.yaml").write_text(f"name: waiter\nsteps:\n  - {{id: wait_child, deployment: slow-child, "
                                      f"with: {{marks: '{marks}'}}}}\n")
    parent = subprocess.Popen([sys.executable, "-m", "agentflow", "run", "wf.yaml"], cwd=tmp_path, env=deployed.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_id = next(line.split()[1] for line in parent.stdout if line.startswith("run "))
    until(lambda: (marks / "waiting").exists(), 240, "the child's step to start on a worker")
    parent.kill()
    parent.wait(timeout=30)
    parent.stdout.close()
    (marks / "go").touch()

    resumed = subprocess.run([sys.executable, "-m", "agentflow", "resume", run_id, "--json"], cwd=tmp_path,
                             env=deployed.env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    step = json.loads(resumed.stdout)["steps"]["wait_child"]["result"]
    assert step["data"]["steps"]["slow"]["summary"] == "slow-done"
    assert (marks / "slow.txt").read_text() == "ran\n"
    assert [str(r.id) for r in runs_of("slow-child")] == [step["metrics"]["run_id"]]

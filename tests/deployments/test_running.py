"""A deployed workflow run as a caller meets it: the Python API, the CLI, schedules, events."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from deployed_project import AUTH, REPO, runs_of
from waiting import until

from agentflow.deployments.entry import workflow_files

pytestmark = [pytest.mark.xdist_group("deployments"), pytest.mark.deployment]  # on one worker: they share its workers


def test_a_deployed_workflow_runs_on_a_worker_and_returns_its_result(deployed):
    from agentflow.deployments import run_workflow_deployment

    project_dir = deployed.project_dir
    result = run_workflow_deployment("greet", {"who": "Ada", "times": 2}, timeout=240)
    assert result.status == "completed" and result.workflow == "greet"
    # In a worktree of the project (the pull step's), delivered as a branch there, with the
    # secret from the worker's environment, which the result does not repeat.
    branch = result.work["branch"]
    shown = subprocess.run(["git", "show", f"{branch}:greeted.txt"], cwd=project_dir, capture_output=True, text=True)
    assert shown.stdout == "hello Ada x2 token-s3cr3t-from-the-worker\n", shown.stderr
    assert not (project_dir / "greeted.txt").exists()
    assert result["hello"].summary == "hello Ada x2 token-[secret]"
    again = run_workflow_deployment("greet", {"who": "Bob"}, wait=False, idempotency_key="greet-bob")
    assert run_workflow_deployment("greet", {"who": "Bob"}, wait=False, idempotency_key="greet-bob") == again


def test_every_shipped_workflow_runs_deployed_with_its_defaults(deployed):
    """Each workflow in workflows/, deployed as prefect.yaml says, completes on a worker (the
    claude-code agents answer through their offline fallbacks: no API key here)."""
    from prefect.client.orchestration import get_client

    from agentflow.deployments import run_workflow_deployment
    from agentflow.deployments.client import wait_for_run

    # Two need what is not here: fix-type-errors mypy and a real fixer, code-migration a person
    # (its run would wait for an approval, holding a worker) and a real migrator. Offline their
    # stand-ins say so and the run fails; their offline tests cover them (workflows/*.test.yaml).
    shipped = sorted(set(workflow_files(REPO / "workflows")) - {"fix-type-errors", "code-migration"})
    assert len(shipped) >= 6
    started = {name: run_workflow_deployment(name, wait=False) for name in shipped}  # both workers at once
    with get_client(sync_client=True) as client:
        for name, run_id in started.items():
            result = wait_for_run(client, run_id, 300, 0.5)
            assert result.status == "completed" and result.workflow == name, (name, result.failed_steps)
    report = deployed.project_dir / ".agentflow" / "reports" / "repo-health.md"
    assert report.read_text().startswith("# Repository health\n\n- History: 1 commits by 1 authors")


def test_bad_inputs_and_unknown_deployments_are_refused_before_a_run(deployed):
    from agentflow.deployments import DeploymentNotFound, run_workflow_deployment
    from agentflow.errors import InputError

    before = len(runs_of("greet"))
    with pytest.raises(InputError, match=r"input `times`: 'two' is not of type 'integer'"):
        run_workflow_deployment("greet", {"who": "Ada", "times": "two"})
    with pytest.raises(InputError, match=r"`workflow` is not an input of greet"):
        run_workflow_deployment("greet", {"who": "Ada", "workflow": "/etc/other.yaml"})
    with pytest.raises(InputError, match="'who' is a required property"):
        run_workflow_deployment("greet", {})
    with pytest.raises(DeploymentNotFound, match="no deployment `nope/nope`"):
        run_workflow_deployment("nope")
    assert len(runs_of("greet")) == before


def test_a_failed_deployed_run_raises_with_its_result(deployed):
    from agentflow.deployments import run_workflow_deployment
    from agentflow.errors import WorkflowFailed

    with pytest.raises(WorkflowFailed) as failure:
        run_workflow_deployment("broken", timeout=240)
    steps = failure.value.result.steps
    assert steps["fails"].status == "failed" and "exited with code 3" in steps["fails"].summary
    assert steps["after"].status == "not_run"
    # A failed step is the run's outcome, not an engine error: one line in the logs, no traceback.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    run_id = failure.value.result.run_id

    def final_logs():
        with get_client(sync_client=True) as client:
            logs = [log.message for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)])))]
        return logs if any(line.startswith("Finished in state Failed('workflow") for line in logs) else None

    logs = until(final_logs, 60, "the run's last log line to reach the server (logs are sent in batches)")
    assert not [line for line in logs if "Traceback" in line or "Encountered exception" in line]
    for worker in deployed.workers:
        assert f"flow run '{run_id}' exited with unexpected exception" not in (deployed.root / f"{worker}.log").read_text()


def test_the_cli_runs_a_deployment(deployed):
    project_dir, env = deployed.project_dir, deployed.env
    done = subprocess.run([sys.executable, "-m", "agentflow", "run", "--deployment", "greet", "-i", "who=Cy",
                           "-i", "times=3", "--json"], cwd=project_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["state"] == "Completed" and document["steps"]["hello"]["summary"] == "hello Cy x3 token-[secret]"
    bad = subprocess.run([sys.executable, "-m", "agentflow", "run", "--deployment", "greet", "-i", "times=x"],
                         cwd=project_dir, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "deployment greet: input `times` must be integer (got 'x')" in bad.stderr


def test_schedules_make_scheduled_runs(deployed):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("scheduled/scheduled")
        schedules = client.read_deployment_schedules(deployment.id)
    assert sorted((s.active, type(s.schedule).__name__) for s in schedules) == [(False, "IntervalSchedule"),
                                                                                (True, "CronSchedule")]
    scheduled = until(lambda: [r for r in runs_of("scheduled") if r.state and r.state.name == "Scheduled"], 120,
                      "the scheduler to create the cron schedule's runs")
    assert all(r.expected_start_time.hour == 6 for r in scheduled)


def test_an_event_starts_a_run_with_inputs_from_it(deployed):
    project_dir, env = deployed.project_dir, deployed.env
    # Emitted by another process, as a monitor would (this process's events worker is bound
    # to the session's server).
    emitted = subprocess.run([sys.executable, "-m", "prefect", "event", "emit", "agentflow.test.pushed",
                              "--resource-id", "repo.agentflow-test.main", "--payload", '{"branch": "feature/vat"}'],
                             env={**env, "PREFECT_API_AUTH_STRING": AUTH}, capture_output=True, text=True,
                             timeout=120)
    assert emitted.returncode == 0, emitted.stdout + emitted.stderr
    # Its work is delivered as a branch of the worker's project (its steps work in a worktree).
    def branches() -> list[str]:
        return subprocess.run(["git", "branch", "--list", "agentflow/triggered/*", "--format=%(refname:short)"],
                              cwd=project_dir, capture_output=True, text=True).stdout.split()

    (branch,) = until(branches, 180, "the triggered run to build")
    built = subprocess.run(["git", "show", f"{branch}:built.txt"], cwd=project_dir, capture_output=True, text=True)
    assert built.stdout == "built feature/vat\n", built.stderr
    runs = runs_of("triggered")
    assert [r.parameters for r in runs] == [{"branch": "feature/vat"}]

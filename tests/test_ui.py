"""The Prefect UI as a person sees it, in headless Chromium: a run's page (its steps, its
artifacts) and a deployment's Run form (the workflow's inputs by name and description).

Real parts: `agentflow server start` (a Prefect server with the UI, on a home of its own), a
run made with `agentflow run`, a deployment made with `agentflow deploy --apply`, Debian's
Chromium. The screenshots are kept as CI output (tests/fixtures/browser.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from procs import kill_recorded_server
from browser import after_click, page
from postgres import free_port
from waiting import until

pytestmark = [pytest.mark.xdist_group("test_ui"), pytest.mark.ui]  # one worker runs the module: it shares a module fixture

FIXTURES = Path(__file__).resolve().parent / "fixtures"

WORKFLOW = """
name: ui-tour
description: A workflow to look at in the UI.
inputs:
  who: {type: string, description: "Whom the report is about."}
  depth: {type: integer, default: 3, description: "How many levels to look into."}
steps:
  - id: gather_facts
    run: [sh, -c, 'echo "facts about $0"', "{{ inputs.who }}"]
  - id: write_report
    depends_on: [gather_facts]
    run: [sh, -c, 'printf "# Report on %s\\n\\nAll good.\\n" "$0" > ui-report.md; echo "Created: ui-report.md"',
          "{{ inputs.who }}"]
"""


APPROVAL = """
name: ui-approval
steps:
  - {id: plan, run: [echo, "## Summary\\nplan: ship v2"]}
  - id: review_gate
    approval:
      message: "Ship **{{ steps.plan.summary }}**?"
      show: [plan]
      fields:
        risk: {type: string, default: low, enum: [low, high], description: "How risky"}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`agentflow server start` on a home of its own; a project with one workflow, deployed."""
    root = tmp_path_factory.mktemp("ui")
    project = root / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "ui-tour.yaml").write_text(WORKFLOW)
    (project / "workflows" / "ui-approval.yaml").write_text(APPROVAL)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_RESULTS_LOCAL_STORAGE_PATH")}
    env.update(PREFECT_HOME=str(root / "home"), PYTHONPATH=str(FIXTURES))

    def agentflow(*args: str, background: bool = False):
        if background:  # a run that waits (for a person): its live view on stderr, line by line
            return subprocess.Popen([sys.executable, "-m", "agentflow", *args], cwd=project,
                                    env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        return subprocess.run([sys.executable, "-m", "agentflow", *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=300)

    agentflow.project, agentflow.env = project, env
    port = free_port()
    started = agentflow("server", "start", "--port", str(port))
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"http://127.0.0.1:{port}", agentflow
    finally:
        agentflow("server", "stop")
        kill_recorded_server(root / "home")


def test_a_runs_page_shows_its_steps_logs_and_artifacts(served):
    url, agentflow = served
    done = agentflow("run", "workflows/ui-tour.yaml", "-i", "who=Ada", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert f"ui  {url}/runs/flow-run/{run_id}" in done.stderr

    # Each waits until the page shows every text (and fails naming those that never did).
    page(f"{url}/runs/flow-run/{run_id}", "ui-run-logs.png", (
        "ui-tour", "2 Task runs", "step gather_facts: completed", "facts about Ada", "step write_report: completed",
        "completed (2 steps)"))
    page(f"{url}/artifacts", "ui-artifacts.png", (
        "ui-tour-steps", "ui-tour: every step", "ui-tour-progress", "ui-tour: steps ended", "ui-tour-write-report",
        "write_report: ", "ui-tour-report-ui-report", "ui-report.md"))
    (artifact,) = httpx.post(f"{url}/api/artifacts/filter", json={"artifacts": {"key": {"any_": [
        "ui-tour-report-ui-report"]}}}, timeout=30).json()
    page(f"{url}/artifacts/artifact/{artifact['id']}", "ui-report-artifact.png", ("Report on Ada", "All good."))


def test_a_deployments_run_form_asks_for_the_workflows_inputs(served):
    url, agentflow = served
    deployed = agentflow("deploy", "--apply")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: f"{url}/api"}), get_client(sync_client=True) as client:
        deployment = until(lambda: client.read_deployment_by_name("ui-tour/ui-tour"), 60, "the deployment")
    page(f"{url}/deployments/deployment/{deployment.id}/run", "ui-deployment-run-form.png",
         ("who", "Whom the report is about.", "depth", "How many levels to look into."))


def test_an_approval_steps_form_in_the_ui(served):
    """The run page's Resume opens the approval's form: its message, the shown step's result, and
    its fields by name and description; answered there (as its Submit sends), the run goes on."""
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, agentflow = served
    waiting = agentflow("run", "workflows/ui-approval.yaml", "--json", background=True)
    run_id = None
    for line in waiting.stderr:
        if line.startswith("run "):
            run_id = line.split()[1]
        if line.strip().startswith("ask"):
            break
    assert run_id, "the run never started"
    try:
        form = after_click(f"{url}/runs/flow-run/{run_id}", "Resume", ("Approval: review_gate", "How risky"),
                           "ui-approval-form.png")
        for text in ("Ship plan: ship v2?", "plan: success", "Approve", "Comment", "Risk", "How risky"):
            assert text in form, f"{text!r} not in the approval form: {form[-3000:]}"
        assert "Decided By" not in form  # who decides is not a field anyone types
        with temporary_settings({PREFECT_API_URL: f"{url}/api"}):
            resume_flow_run(run_id, run_input={"approve": True, "comment": "seen in the UI", "risk": "high"})
        stdout, _ = waiting.communicate(timeout=120)
        decision = json.loads(stdout)["steps"]["review_gate"]["result"]["data"]
        assert decision["fields"] == {"risk": "high"} and decision["comment"] == "seen in the UI"
        assert decision["decided_by"] == "the Prefect UI"
    finally:
        waiting.kill()


def test_readmes_deployment_commands_work_as_written_with_no_variable_set(served):
    """After `agentflow server start`, with no PREFECT_API_URL anywhere in the environment:
    `agentflow deploy --apply`, Prefect's own `prefect worker start --pool agentflow`, then
    `agentflow run --deployment`, and a plain Python process's `run_workflow_deployment`, all
    find that server (the profile `server start` set), as README's deployment section says."""
    url, agentflow = served
    assert "PREFECT_API_URL" not in agentflow.env
    deployed = agentflow("deploy", "--apply")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    log = open(agentflow.project.parent / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "agentflow"],
                              cwd=agentflow.project, env=agentflow.env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        done = agentflow("run", "--deployment", "ui-tour", "-i", "who=Grace", "--timeout", "240")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "for a worker of its pool to pick up" in done.stdout and "gather_facts" in done.stdout
        assert " completed in " in done.stdout.splitlines()[-1]
        python = ("from agentflow.deployments import run_workflow_deployment; "
                  "print(run_workflow_deployment('ui-tour', {'who': 'Alan'}, timeout=240).steps['gather_facts'].summary)")
        called = subprocess.run([sys.executable, "-c", python], cwd=agentflow.project, env=agentflow.env,
                                capture_output=True, text=True, timeout=300)
        assert called.returncode == 0, called.stderr
        assert called.stdout.strip() == "facts about Alan"
        run_id = done.stdout.split()[1]
        assert f"run {run_id}: completed" in (agentflow.project.parent / "worker.log").read_text()  # that worker ran it
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

"""Deployments as a Prefect user meets them: prefect.yaml, `prefect deploy`, workers, the client.

Real parts: a `prefect server start` on the machine's PostgreSQL (started by `agentflow
server start`: the embedded test server runs no scheduler), `agentflow deploy --apply` (which
runs `prefect deploy --all`), two `prefect worker start` processes in working directories of
their own sharing one result storage, and `run_workflow_deployment` / `agentflow run
--deployment`. The workers share nothing but the server and a bucket on an S3-compatible
server (moto's server mode): the server's default result storage is a remote-file-system
block on it, and the cache's locks are Redis leases (`agentflow storage set --block --locks`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from postgres import free_port
from waiting import until

from agentflow.deployments import project
from agentflow.deployments.entry import workflow_files
from agentflow.flows.language.loader import load_workflow

pytestmark = pytest.mark.xdist_group("test_deployments")  # one worker runs the module: it shares a module fixture

REPO = Path(__file__).resolve().parent.parent
POOL = "agentflow"  # the shipped workflows' pool (on this module's own server and database)
AUTH = "agentflow:deploy-test-secret"  # PREFECT_SERVER_API_AUTH_STRING of the server these tests start

WORKFLOWS = {
    "greet.yaml": f"""
name: greet
description: Say hello.
work_pool: {POOL}
inputs:
  who: {{type: string, description: "Whom to greet."}}
  times: {{type: integer, default: 1, description: "How often."}}
  token: {{type: string, secret: true}}
steps:
  - id: hello
    run: [sh, -c, 'echo "hello $0 x$1 token-$AGENTFLOW_SECRET_TOKEN" | tee -a greeted.txt', "{{{{ inputs.who }}}}",
          "{{{{ inputs.times }}}}"]
""",
    "broken.yaml": f"""
name: broken
work_pool: {POOL}
steps:
  - {{id: fails, run: [sh, -c, "echo no >&2; exit 3"]}}
  - {{id: after, run: [echo, never], depends_on: [fails]}}
""",
    "scheduled.yaml": f"""
name: scheduled
work_pool: {POOL}
schedules:
  - {{interval: 1h, timezone: Europe/Berlin, active: false}}
  - {{cron: "0 6 * * 1-5", timezone: UTC}}
steps:
  - {{id: tick, run: [echo, tick]}}
""",
    "triggered.yaml": f"""
name: triggered
work_pool: {POOL}
inputs:
  branch: {{type: string}}
triggers:
  - event: agentflow.test.pushed
    match: {{prefect.resource.id: "repo.agentflow-test.*"}}
    inputs: {{branch: "{{{{ event.payload.branch }}}}"}}
steps:
  - {{id: build, run: [sh, -c, 'echo "built $0" >> built.txt', "{{{{ inputs.branch }}}}"]}}
""",
    "cached.yaml": f"""
name: cached
work_pool: {POOL}
inputs:
  marks: {{type: string}}
steps:
  - {{id: costly, cache: true, run: [sh, -c, 'echo called >> "$0/costly.txt"; echo costly-value', "{{{{ inputs.marks }}}}"]}}
""",
    # A person signs off between `build` and `ship`: the run is suspended meanwhile.
    "signoff.yaml": f"""
name: signoff
work_pool: {POOL}
inputs:
  marks: {{type: string}}
steps:
  - {{id: build, run: [sh, -c, 'echo ran >> "$0/build.txt"; echo built', "{{{{ inputs.marks }}}}"]}}
  - id: release_gate
    depends_on: [build]
    approval:
      message: "Ship what `build` made?"
      show: [build]
      fields: {{channel: {{type: string, enum: [stable, beta], default: beta}}}}
  - id: ship
    depends_on: [release_gate]
    run: [sh, -c, 'echo "shipped to $0"', "{{{{ steps.release_gate.data.fields.channel }}}}"]
""",
    # No one answers: the server's clock wakes the suspended run, and the default decides.
    "signoff-timed.yaml": f"""
name: signoff-timed
work_pool: {POOL}
steps:
  - id: release_gate
    approval: {{message: "Ship?", timeout: 10s, default: approve}}
  - {{id: ship, depends_on: [release_gate], run: [echo, "shipped: {{{{ steps.release_gate.data.decided_by }}}}"]}}
""",
    # Sub-workflows on workers: a child that completes, one that fails, one not deployed.
    "composer.yaml": f"""
name: composer
work_pool: {POOL}
inputs:
  who: {{type: string, default: Dee}}
steps:
  - {{id: greeting, deployment: greet, with: {{who: "{{{{ inputs.who }}}}", times: 2}}}}
  - {{id: many, for_each: [Eve, Fay], deployment: greet, with: {{who: "{{{{ item }}}}"}}}}
  - {{id: broken_child, deployment: broken, criticality: low}}
  - {{id: missing, deployment: nope, criticality: low}}
  - {{id: after, depends_on: [greeting], run: [echo, "child said {{{{ steps.greeting.data.steps.hello.summary }}}}"]}}
""",
    "slow-child.yaml": f"""
name: slow-child
work_pool: {POOL}
inputs:
  marks: {{type: string}}
steps:
  - id: slow
    run: [sh, -c, 'while [ ! -e "$0/go" ]; do touch "$0/waiting"; sleep 0.2; done; echo ran >> "$0/slow.txt"; echo slow-done',
          "{{{{ inputs.marks }}}}"]
""",
    # `second` waits for a `go` file the first time (its worker is killed meanwhile), and
    # finishes at once when the run is resumed on the other worker.
    "handoff.yaml": f"""
name: handoff
work_pool: {POOL}
inputs:
  marks: {{type: string}}
steps:
  - {{id: first, run: [sh, -c, 'echo ran >> "$0/first.txt"; echo first-done', "{{{{ inputs.marks }}}}"]}}
  - id: second
    depends_on: [first]
    run: [sh, -c, 'while [ ! -e "$0/go" ]; do touch "$0/waiting"; sleep 0.2; done; echo second-done',
          "{{{{ inputs.marks }}}}"]
""",
}


def test_prefect_yaml_is_written_from_the_shipped_workflows():
    """prefect.yaml at the root is what `agentflow deploy` writes now: else it is stale."""
    loaded = [load_workflow(path) for path in workflow_files(REPO / "workflows").values()]
    assert (REPO / "prefect.yaml").read_text() == project.render(loaded), \
        "prefect.yaml is stale: run `agentflow deploy` and commit it"


def test_the_entry_flow_takes_the_workflow_inputs_and_no_secret(tmp_path, monkeypatch):
    """What `prefect deploy` reads for the UI's Run form: each input by name, type, default
    and description; a secret is not a parameter (Prefect would store it)."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "greet.yaml").write_text(WORKFLOWS["greet.yaml"])
    monkeypatch.setenv("AGENTFLOW_WORKFLOWS", str(tmp_path / "workflows"))
    flow = load_flow_from_entrypoint("agentflow.deployments.entry.greet")
    assert flow.name == "greet"
    schema = parameter_schema(flow.fn).model_dump()
    assert set(schema["properties"]) == {"who", "times"} and schema["required"] == ["who"]
    assert schema["properties"]["times"] == {"default": 1, "description": "How often.", "position": 1,
                                             "title": "times", "type": "integer"}
    with pytest.raises(Exception, match="'other' not found") as missing:
        load_flow_from_entrypoint("agentflow.deployments.entry.other")
    assert "no workflow named 'other'" in str(missing.value.__cause__)  # in the traceback Prefect logs


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    """`agentflow server start` on a PostgreSQL database of its own (created and dropped here),
    its scheduler looking every 5 s, protected with an auth string (basic auth) that every
    command, worker and client here answers with; this process's client pointed at it."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from postgres import temporary_database

    home = tmp_path_factory.mktemp("server-home")
    port = free_port()
    with temporary_database("agentflow_deployments") as database_url:
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(PREFECT_HOME=str(home), PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url,
                   PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5", PREFECT_SERVER_API_AUTH_STRING=AUTH)
        agentflow = [sys.executable, "-m", "agentflow", "server"]
        started = subprocess.run([*agentflow, "start", "--port", str(port)], env=env, capture_output=True,
                                 text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        url = f"http://127.0.0.1:{port}/api"
        assert httpx.post(f"{url}/flows/filter", json={}, timeout=10).status_code == 401  # no auth: refused
        try:
            with temporary_settings({PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: AUTH}):
                yield url
        finally:
            subprocess.run([*agentflow, "stop"], env=env, capture_output=True, timeout=120)


@dataclass
class Deployed:
    project_dir: Path
    env: dict[str, str]
    root: Path  # the workers' directories (w1, w2) are in it
    workers: dict[str, subprocess.Popen]
    s3: str  # the S3 server's endpoint; the results are in BUCKET


BUCKET = "agentflow-deployed"


@pytest.fixture(scope="module")
def s3():
    from s3 import s3_bucket

    with s3_bucket(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def deployed(postgres_server, s3, tmp_path_factory):
    """A project with six workflows, deployed with `agentflow deploy --apply`, and two workers
    in working directories and Prefect homes of their own, sharing one result storage: a
    bucket, through a remote-file-system block set as the server's default (`agentflow
    storage set`)."""
    from s3 import remote_block

    import shutil

    root = tmp_path_factory.mktemp("deployed")
    project_dir = root / "project"
    # The shipped workflows and their subagents, in a small repository with a finance module,
    # beside this module's own workflows.
    shutil.copytree(REPO / "workflows", project_dir / "workflows")
    shutil.copytree(REPO / ".claude", project_dir / ".claude")
    for name, text in WORKFLOWS.items():
        (project_dir / "workflows" / name).write_text(text)
    finance = project_dir / "services" / "finance"
    finance.mkdir(parents=True)
    (finance / "vat.ts").write_text("export const VAT_RATE = 15; // VAT 15% standard\n")
    (finance / "invoice.py").write_text("def invoice():\n    return 1\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", f"project {root.name}"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=project_dir, check=True,
                       capture_output=True)
    env = {**os.environ, "PREFECT_API_URL": postgres_server, "PREFECT_WORKER_QUERY_SECONDS": "1",
           "AGENTFLOW_SECRET_TOKEN": "s3cr3t-from-the-worker", "PREFECT_SERVER_API_AUTH_STRING": AUTH}
    done = subprocess.run([sys.executable, "-m", "agentflow", "deploy", "--apply"], cwd=project_dir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"created work pool {POOL} (process)" in done.stdout
    # One result storage for both workers, set on the server as its default: a bucket.
    slug = remote_block("agentflow-test-shared", f"s3://{BUCKET}/results", s3)
    shared = subprocess.run([sys.executable, "-m", "agentflow", "storage", "set", "--block", slug, "--locks",
                             "redis://127.0.0.1:6379/0"], env=env, capture_output=True, text=True, timeout=120)
    assert shared.returncode == 0, shared.stdout + shared.stderr
    shown = subprocess.run([sys.executable, "-m", "agentflow", "storage", "show", "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
    where = json.loads(shown.stdout)
    assert (where["shared"], where["directory"], where["source"]) == (
        f"s3://{BUCKET}/results ({slug})", None, "the server's default result storage")
    assert where["locks"].startswith("Redis leases at redis://127.0.0.1:6379/0")
    workers = {}
    for name in ("w1", "w2"):
        directory = root / name
        (directory / "home").mkdir(parents=True)
        log = open(root / f"{name}.log", "w")
        # A Prefect worker answers a protected server with the client's setting (agentflow's
        # commands derive it from the server's, here in `env`).
        workers[name] = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", f"{name}-{os.getpid()}"],
            cwd=directory, env={**env, "PREFECT_API_AUTH_STRING": AUTH, "PREFECT_HOME": str(directory / "home")},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield Deployed(project_dir, env, root, workers, s3)
    for worker in workers.values():
        try:
            os.killpg(worker.pid, signal.SIGKILL)  # a worker ignores one SIGTERM for ~20 s
        except ProcessLookupError:
            pass
        worker.wait(timeout=30)


def _bucket(endpoint: str, prefix: str) -> dict[str, str]:
    """The bucket's objects directly under `prefix` (the step results), read with boto3."""
    import boto3

    from s3 import KEY, keys

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY["key"],
                          aws_secret_access_key=KEY["secret"], region_name="us-east-1")
    return {key: client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode(errors="replace")
            for key in keys(endpoint, BUCKET, prefix) if "/" not in key[len(prefix):]}


def _runs_of(deployment_name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(
            any_=[deployment_name])))


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

    before = len(_runs_of("greet"))
    with pytest.raises(InputError, match=r"input `times`: 'two' is not of type 'integer'"):
        run_workflow_deployment("greet", {"who": "Ada", "times": "two"})
    with pytest.raises(InputError, match=r"`workflow` is not an input of greet"):
        run_workflow_deployment("greet", {"who": "Ada", "workflow": "/etc/other.yaml"})
    with pytest.raises(InputError, match="'who' is a required property"):
        run_workflow_deployment("greet", {})
    with pytest.raises(DeploymentNotFound, match="no deployment `nope/nope`"):
        run_workflow_deployment("nope")
    assert len(_runs_of("greet")) == before


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
    scheduled = until(lambda: [r for r in _runs_of("scheduled") if r.state and r.state.name == "Scheduled"], 120,
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
    runs = _runs_of("triggered")
    assert [r.parameters for r in runs] == [{"branch": "feature/vat"}]


def test_deploy_writes_checks_and_says_what_is_wrong(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")  # no server recorded, no profile

    def agentflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agentflow", "deploy", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    empty = agentflow()
    assert empty.returncode == 2 and "no workflows in workflows/" in empty.stderr
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "greet.yaml").write_text(WORKFLOWS["greet.yaml"])
    stale = agentflow("--check")
    assert stale.returncode == 1 and "prefect.yaml is stale: run `agentflow deploy`" in stale.stderr
    written = agentflow()
    assert written.returncode == 0 and "prefect.yaml: 1 deployments (greet)" in written.stdout
    assert "entrypoint: agentflow.deployments.entry.greet" in (tmp_path / "prefect.yaml").read_text()
    assert agentflow("--check").returncode == 0
    no_server = agentflow("--apply")
    assert no_server.returncode == 2 and "needs a Prefect server that stays up" in no_server.stderr
    (tmp_path / "workflows" / "bad.yaml").write_text("name: bad\nschedules:\n  - {cron: nope}\nsteps:\n"
                                                     "  - {id: a, run: [echo]}\n")
    bad = agentflow()
    assert bad.returncode == 2 and "bad.yaml:3:" in bad.stderr and "is not a cron expression" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_storage_set_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_RESULTS_LOCAL_STORAGE_PATH")}
    env["PREFECT_HOME"] = str(tmp_path / "home")  # no server recorded, no profile

    def agentflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agentflow", "storage", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    assert agentflow("set").returncode == 2 and "give the storage: --path DIR or --block TYPE/NAME" in \
        agentflow("set").stderr
    no_server = agentflow("set", "--path", str(tmp_path / "shared"))
    assert no_server.returncode == 2 and "a Prefect server that stays up" in no_server.stderr
    shown = agentflow("show")  # the embedded server's: Prefect's local storage path, no server started
    assert shown.returncode == 0 and shown.stdout.startswith(str(tmp_path / "home" / "storage"))


def test_the_example_automation_is_one_prefect_accepts():
    """monitoring/automations/notify-on-degraded.yaml, its block id filled in, is a valid
    automation that triggers on agentflow's degraded and skipped step events."""
    import uuid

    import yaml
    from prefect.events.schemas.automations import AutomationCore

    text = (REPO / "monitoring" / "automations" / "notify-on-degraded.yaml").read_text()
    automation = AutomationCore.model_validate(yaml.safe_load(text.replace("BLOCK_DOCUMENT_ID", str(uuid.uuid4()))))
    assert automation.trigger.expect == {"agentflow.step.degraded", "agentflow.step.skipped"}
    assert automation.actions[0].type == "send-notification"


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
    assert any("costly-value" in text for text in _bucket(deployed.s3, "results/").values())
    for name in deployed.workers:  # nothing of it in either worker's own home
        home = deployed.root / name / "home"
        assert not any("costly-value" in p.read_text(errors="replace") for p in home.rglob("*")
                       if p.is_file() and p.suffix != ".log" and p.stat().st_size < 1_000_000)


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
    assert [str(r.id) for r in _runs_of("slow-child")] == [step["metrics"]["run_id"]]


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

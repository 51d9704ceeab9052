"""The deployment tests' one server, bucket and two workers: set up once for the whole package
(every module of it runs on one test worker: xdist_group "deployments"), so that splitting
the tests by concern costs no second server. tests/fixtures/deployed_project.py says what
the parts are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
from deployed_project import AUTH, BUCKET, POOL, REPO, WORKFLOWS, Deployed
from postgres import free_port


@pytest.fixture(scope="package")
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



@pytest.fixture(scope="package")
def s3():
    from s3 import s3_bucket

    with s3_bucket(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="package")
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


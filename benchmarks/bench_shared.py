"""B9: a run resumed on another machine through an S3 bucket, vs on the same machine with
local storage; and what one journal entry costs on each. `benchmarks/run.py` runs it.

Two "machines" are two Prefect homes and two clones of one repository; the bucket is on a
real S3-compatible server (moto's server mode, started here; from the test extra). A run of
12 steps of 1 s is killed with SIGKILL as its second step starts, and resumed: with local
storage from the same clone, with the bucket from the other clone. The remaining work is the
same 11 s either way; the difference is what sharing the run through the bucket costs.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

STEPS = 12
KEY = {"key": "agentflow-bench", "secret": "agentflow-bench-secret"}


def available() -> str:
    """Why B9 cannot run here ("" if it can)."""
    for module, extra in (("moto", "agentflow[test]"), ("s3fs", "agentflow[shared]"), ("boto3", "agentflow[test]")):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install '{extra}')"
    return ""


def b9(api_url: str, journal_rounds: int = 200) -> dict:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _until_listening(port)
        bucket = "agentflow-bench"
        _client(endpoint).create_bucket(Bucket=bucket)
        slug = _block(api_url, endpoint, f"s3://{bucket}/b9-{uuid.uuid4().hex[:8]}")
        with tempfile.TemporaryDirectory(prefix="agentflow-b9-") as directory:
            root = Path(directory)
            a, b = _clones(root)
            base = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONUNBUFFERED": "1"}
            local_env = {**base, "PREFECT_HOME": str(root / "home-a"),
                         "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "home-a" / "storage")}
            local_env.pop("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK", None)
            env_a = {**local_env, "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": slug}
            env_b = {**base, "PREFECT_HOME": str(root / "home-b"), "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": slug,
                     "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "home-b" / "storage")}
            same = _kill_and_resume(root / "log-local.txt", a, local_env, a, local_env)
            other = _kill_and_resume(root / "log-s3.txt", a, env_a, b, env_b)
        journal_local = _journal_cost(api_url, None, journal_rounds)
        journal_s3 = _journal_cost(api_url, slug, journal_rounds)
    finally:
        server.kill()
        server.wait()
    return {"same": same, "other": other, "journal_local_ms": journal_local, "journal_s3_ms": journal_s3}


def describe(r: dict) -> list[tuple[str, str, str]]:
    same, other = r["same"], r["other"]
    return [
        (f"B9 resume, {STEPS - 1} x 1 s left: same machine, local storage / other machine, S3, s",
         f"{same['run_s']:.2f} / {other['run_s']:.2f}",
         f"overhead {other['run_s'] - same['run_s']:+.2f} s (the resumed run); whole `agentflow resume` "
         f"{same['wall_s']:.1f} / {other['wall_s']:.1f} s; steps redone {same['redone']} / {other['redone']} "
         "(target 0)"),
        ("B9 journal entry, ms: local (memory-mapped file) / S3 (one object)",
         f"{r['journal_local_ms']:.3f} / {r['journal_s3_ms']:.1f}",
         "median of one completed call kept; S3 is moto on 127.0.0.1 (a real bucket adds its round trip)"),
    ]


def _kill_and_resume(log: Path, start_in: Path, start_env: dict, resume_in: Path, resume_env: dict) -> dict:
    steps = "\n".join(f'  - {{id: s{i}, run: [sh, -c, "echo start s{i} >> {log}; sleep 1; echo end s{i} >> {log}"]}}'
                      for i in range(1, STEPS + 1))
    name = f"b9-{log.stem}"
    for clone in {start_in, resume_in}:
        (clone / "wf.yaml").write_text(f"name: {name}\nsteps:\n{steps}\n")
    cli = [sys.executable, "-m", "agentflow"]
    process = subprocess.Popen([*cli, "run", "wf.yaml"], cwd=start_in, env=start_env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    run_id = None
    for line in process.stdout:
        if line.startswith("run "):
            run_id = line.split()[1]
        if line.strip() == "start  s2":
            break
    while "start s2" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.01)  # the step's command has been submitted; wait until it has really begun
    process.send_signal(signal.SIGKILL)
    process.wait()
    ended_before = set(re.findall(r"end (s\d+)", log.read_text()))
    mark = len(log.read_text().splitlines())
    started = time.perf_counter()
    resumed = subprocess.run([*cli, "resume", run_id], cwd=resume_in, env=resume_env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if resumed.returncode != 0:
        raise RuntimeError(f"B9: the resume failed: {resumed.stdout[-2000:]}{resumed.stderr[-2000:]}")
    after = log.read_text().splitlines()[mark:]
    redone = {line.split()[1] for line in after if line.startswith("start")} & ended_before
    return {"run_s": float(re.search(r"completed in ([0-9.]+)s", resumed.stdout).group(1)), "wall_s": wall,
            "redone": len(redone)}


def _journal_cost(api_url: str, block: str | None, rounds: int) -> float:
    """The median time of `Journal.record` for one completed call, with the storage configured."""
    from prefect.settings import (PREFECT_API_URL, PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK,
                                  PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings)

    from agentflow.flows.durability.journal import Done, Journal
    from agentflow.tasks.results import AgentResult

    result = AgentResult(status="success", summary="done", data={"lines": list(range(20))})
    with tempfile.TemporaryDirectory(prefix="agentflow-b9-journal-") as directory, temporary_settings(
            {PREFECT_API_URL: api_url, PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: block,
             PREFECT_RESULTS_LOCAL_STORAGE_PATH: directory}):
        journal = Journal(str(uuid.uuid4()))
        times = []
        for i in range(rounds):
            started = time.perf_counter()
            journal.record(f"s{i}", Done(f"s{i}", "identity", result))
            times.append(time.perf_counter() - started)
        journal.close()
    return statistics.median(times) * 1000


def _clones(root: Path) -> tuple[Path, Path]:
    origin = root / "origin"
    origin.mkdir()
    (origin / "README.md").write_text("b9\n")
    (origin / ".gitignore").write_text("wf.yaml\n")  # each clone writes its own copy
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "b9"]):
        subprocess.run([*git, *args], cwd=origin, check=True, capture_output=True)
    clones = []
    for name in ("a", "b"):
        clone = root / f"machine-{name}"
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True, capture_output=True)
        clones.append(clone)
    return clones[0], clones[1]


def _block(api_url: str, endpoint: str, basepath: str) -> str:
    from prefect.filesystems import RemoteFileSystem
    from prefect.settings import PREFECT_API_URL, temporary_settings

    settings = {**KEY, "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    name = basepath.rsplit("/", 1)[1]
    with temporary_settings({PREFECT_API_URL: api_url}):
        RemoteFileSystem(basepath=basepath, settings=settings).save(name, overwrite=True)
    return f"remote-file-system/{name}"


def _client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY["key"],
                        aws_secret_access_key=KEY["secret"], region_name="us-east-1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until_listening(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("B9: the S3 server (moto) did not listen within 60 s")

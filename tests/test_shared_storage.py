"""Two machines sharing one Prefect server and one S3 bucket, and nothing else.

Each "machine" is a Prefect home and a clone of the project of its own; the only storage
they share is a bucket on a real S3-compatible server (moto's server mode, on 127.0.0.1),
named by a `remote-file-system` block (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK). Steps are
real commands (tests/fixtures/step.py) that note each call in a log outside both clones.
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

import pytest

from background import STEP, Killed
from s3 import Relay, keys, remote_block, s3_bucket, s3_bucket_block
from waiting import until

pytestmark = pytest.mark.xdist_group("test_shared_storage")  # one worker runs the module: it shares a module fixture

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BUCKET = "agentflow-shared"
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def s3():
    with s3_bucket(BUCKET) as endpoint:
        yield endpoint


@dataclass
class Machine:
    name: str
    clone: Path
    env: dict

    def agentflow(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agentflow", *args], cwd=self.clone, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _step(log: Path, name: str, hold: Path | None = None, machine: Machine | None = None) -> str:
    """A step that appends its name to out.txt in the run's tree (its work) and to `log`; told to
    hold, it announces itself on the FIFO `announce` of `machine`'s clone (tests/fixtures/background.py)."""
    argv = [*STEP, "out.txt", name, str(log)]
    if hold is not None:
        argv += [str(hold), str(machine.clone / "announce")]
    return json.dumps(argv)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def machines(s3, prefect_server, tmp_path):
    """Machines A and B: clones of one project, homes of their own, one bucket prefix."""
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    slug = remote_block(prefix, f"s3://{BUCKET}/{prefix}", s3)
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / ".gitignore").write_text("announce\n")
    (origin / "README.md").write_text("a project\n")
    _git(origin, "init", "-q")
    _git(origin, "add", ".")
    _git(origin, "commit", "-qm", "first")
    found = {}
    for name in ("a", "b"):
        clone = tmp_path / f"machine-{name}" / "project"
        clone.parent.mkdir()
        _git(tmp_path, "clone", "-q", str(origin), str(clone))
        home = tmp_path / f"machine-{name}" / "home"
        env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES),
               "PREFECT_HOME": str(home), "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "storage"),
               "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": slug, "PYTHONUNBUFFERED": "1"}
        found[name] = Machine(name, clone, env)
    found["origin"] = origin
    found["prefix"] = prefix
    return found


def _commit_workflow(machine: Machine, text: str, name: str = "wf.yaml") -> None:
    (machine.clone / "workflows").mkdir(exist_ok=True)
    (machine.clone / "workflows" / name).write_text(text)
    _git(machine.clone, "add", ".")
    _git(machine.clone, "commit", "-qm", f"add {name}")


def _on_both(a: Machine, b: Machine, text: str) -> None:
    """wf.yaml committed on A, and B at the same commit (pulled from A)."""
    _commit_workflow(a, text)
    _git(b.clone, "pull", "-q", str(a.clone), "HEAD")


def test_the_cache_its_stats_and_clear_are_shared_through_the_bucket(machines, s3, tmp_path):
    """A cached step computed on A is a hit on B; `cache stats` counts both machines;
    `cache clear` on B removes the entry from the bucket, so A computes it again."""
    a, b = machines["a"], machines["b"]
    log = tmp_path / "calls.txt"
    text = f"name: shared-cache\nsteps:\n  - {{id: s1, cache: true, run: {_step(log, 's1')}}}\n"
    _on_both(a, b, text)
    first = a.agentflow("run", "workflows/wf.yaml")
    assert first.returncode == 0, first.stdout + first.stderr
    planned = b.agentflow("plan", "workflows/wf.yaml")
    assert planned.returncode == 0 and "cached" in planned.stdout, planned.stdout + planned.stderr
    second = b.agentflow("run", "workflows/wf.yaml")
    assert second.returncode == 0 and "cached  s1" in second.stdout, second.stdout + second.stderr
    assert _lines(log) == ["s1"]

    stats = b.agentflow("cache", "stats")
    assert stats.returncode == 0, stats.stderr
    row = next(line for line in stats.stdout.splitlines() if "(s1)" in line)
    agent, entries, live, size, hits, misses, rate = [cell.strip() for cell in row.split("│")[1:-1]]
    assert (entries, live, hits, misses) == ("1", "1", "1", "1"), stats.stdout  # A's miss, B's hit
    assert size != "0.0 KiB"
    assert f"s3://{BUCKET}/{machines['prefix']}" in stats.stdout

    stored = keys(s3, BUCKET, machines["prefix"] + "/")
    entries = [k for k in stored if "/agentflow-index/entries/" in k]
    assert len(entries) == 1
    record_key = machines["prefix"] + "/" + entries[0].rsplit("/", 1)[1].removesuffix(".json")
    assert record_key in stored
    cleared = b.agentflow("cache", "clear")
    assert cleared.returncode == 0 and "removed 1 cached step result(s)" in cleared.stdout, cleared.stdout
    left = keys(s3, BUCKET, machines["prefix"] + "/")
    assert record_key not in left and not [k for k in left if "/agentflow-index/entries/" in k]
    third = a.agentflow("run", "workflows/wf.yaml")
    assert third.returncode == 0 and "cached  s1" not in third.stdout, third.stdout
    assert _lines(log) == ["s1", "s1"]


def test_an_s3bucket_block_is_a_shared_storage_too(machines, s3, tmp_path):
    """prefect-aws's S3Bucket block as the storage: a step cached on A is a hit on B, the run's
    journal is in its folder, and `cache clear` removes the entry through the block."""
    a, b = machines["a"], machines["b"]
    folder = f"{machines['prefix']}-s3bucket"
    slug = s3_bucket_block(folder, BUCKET, folder, s3)
    for machine in (a, b):
        machine.env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] = slug
    log = tmp_path / "calls.txt"
    _on_both(a, b, f"name: s3bucket\nsteps:\n  - {{id: s1, cache: true, run: {_step(log, 's1')}}}\n")
    first = a.agentflow("run", "workflows/wf.yaml")
    assert first.returncode == 0, first.stdout + first.stderr
    second = b.agentflow("run", "workflows/wf.yaml")
    assert second.returncode == 0 and "cached  s1" in second.stdout, second.stdout + second.stderr
    assert _lines(log) == ["s1"]
    stored = keys(s3, BUCKET, folder + "/")
    assert [k for k in stored if k.startswith(f"{folder}/agentflow-runs/") and "/steps/" in k]
    cleared = b.agentflow("cache", "clear")
    assert cleared.returncode == 0 and "removed 1 cached step result(s)" in cleared.stdout, cleared.stdout + cleared.stderr
    assert not [k for k in keys(s3, BUCKET, folder + "/") if "/agentflow-index/entries/" in k]


def test_a_run_killed_on_one_machine_is_resumed_on_the_other(machines, tmp_path):
    """A run killed on A during step 2 of 3 is resumed from B's own checkout: refused (naming
    the commit) until B has A's commit, then s1 is reused, s2 and s3 run, and the work of all
    three is on the run's branch in B's repository."""
    a, b = machines["a"], machines["b"]
    log = tmp_path / "calls.txt"
    hold = tmp_path / "hold-s2"
    steps = "\n".join(f"  - {{id: s{n}, run: {_step(log, f's{n}', hold if n == 2 else None, a)}}}" for n in (1, 2, 3))
    _commit_workflow(a, f"name: handoff\nsteps:\n{steps}\n")  # committed on A only
    hold.touch()
    run = Killed(a.env, a.clone, a.clone / "workflows" / "wf.yaml", holders=1)
    run_id = run.kill()
    hold.unlink()
    assert _lines(log) == ["s1", "s2"]
    gone = a.clone.rename(a.clone.parent / "unreachable")  # machine A is lost (its git remains a remote)
    status = b.agentflow("status", run_id)
    assert "Crashed" in status.stdout.splitlines()[0], status.stdout + status.stderr  # A's process is gone

    elsewhere = {**b.env, "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": ""}  # B without the bucket
    elsewhere.pop("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK")
    lost = subprocess.run([sys.executable, "-m", "agentflow", "resume", run_id], cwd=b.clone, env=elsewhere,
                          capture_output=True, text=True, timeout=240)
    assert lost.returncode == 2, lost.stdout + lost.stderr
    assert "has no agentflow record in the storage this machine uses" in lost.stderr
    assert str(Path(b.env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"]) / "agentflow-runs" / run_id) in lost.stderr
    assert "not run again" not in lost.stderr + lost.stdout and "Traceback" not in lost.stderr

    behind = b.agentflow("resume", run_id)
    assert behind.returncode == 2, behind.stdout + behind.stderr
    assert "workflows/wf.yaml" in behind.stderr and "checkout of that repository at commit" in behind.stderr
    _git(b.clone, "pull", "-q", str(gone), "HEAD")

    resumed = b.agentflow("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 step call(s) done before" in resumed.stderr
    document = json.loads(resumed.stdout)
    assert [document["steps"][s]["reused"] for s in ("s1", "s2", "s3")] == [True, False, False]
    assert _lines(log) == ["s1", "s2", "s2", "s3"]
    assert "branch" in document["work"], (document["work"], resumed.stderr)
    branch = document["work"]["branch"]
    assert _git(b.clone, "show", f"{branch}:out.txt").splitlines() == ["s1", "s2", "s3"]
    assert str(Path(b.env["PREFECT_HOME"]) / "agentflow-worktrees") in resumed.stderr  # B's own worktree
    assert str(gone) not in resumed.stderr
    rerun = b.agentflow("rerun", run_id, "--from", "s3", "--json")  # a new run from A's, on B
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _lines(log) == ["s1", "s2", "s2", "s3", "s3"]
    assert _git(b.clone, "show", f"{json.loads(rerun.stdout)['work']['branch']}:out.txt").splitlines() == ["s1", "s2", "s3"]


def test_one_call_at_a_time_across_machines_with_redis_leases(machines, tmp_path):
    """With `storage set --locks redis://...`, the same cached step started on A and on B at
    once is called once: B waits for A's lease, then takes A's result."""
    a, b = machines["a"], machines["b"]
    shown = a.agentflow("storage", "show")
    assert "per machine, so two machines may run the same cached call at once" in shown.stdout, shown.stdout
    assert "storage set --locks" in shown.stdout
    setting = a.agentflow("storage", "set", "--locks", REDIS)
    assert setting.returncode == 0, setting.stdout + setting.stderr
    assert f"Redis leases at {REDIS}" in b.agentflow("storage", "show").stdout  # B reads it from the bucket
    log = tmp_path / "calls.txt"
    hold = tmp_path / "hold-s1"
    text = f"name: locked-{machines['prefix']}\nsteps:\n  - {{id: s1, cache: true, run: {_step(log, 's1', hold, a)}}}\n"
    _on_both(a, b, text)
    hold.touch()
    os.mkfifo(str(hold) + ".go")
    first = Killed(a.env, a.clone, a.clone / "workflows" / "wf.yaml", holders=1)  # holds the lease, in its agent
    second = subprocess.Popen([sys.executable, "-m", "agentflow", "run", "workflows/wf.yaml"], cwd=b.clone, env=b.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = []
    for line in second.stdout:
        started.append(line)
        if "wait  s1" in line:
            break
    with open(str(hold) + ".go", "w") as go:
        go.write("go\n")
    first_out, _ = first.process.communicate(timeout=120)
    second_out, _ = second.communicate(timeout=120)
    assert first.process.returncode == 0, first_out
    assert second.returncode == 0, "".join(started) + second_out
    assert _lines(log) == ["s1"]
    assert "cached  s1" in second_out


def test_a_lease_whose_holder_died_expires():
    """A process holding a Redis lease is killed: the key is free again once the lease runs out
    (nobody renews it), and a live holder's lease outlasts its first period."""
    from agentflow.flows.durability.leases import RedisLeases

    key = f"test-{uuid.uuid4().hex}"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, signal
from agentflow.flows.durability.leases import RedisLeases
leases = RedisLeases({REDIS!r}, lease_s=1.5)
assert leases.try_acquire({key!r}, "h")
print("held", flush=True)
signal.pause()
"""], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    leases = RedisLeases(REDIS, lease_s=1.5)
    assert leases.is_locked(key) and not leases.try_acquire(key, "other")
    until(lambda: leases.client.pttl(f"agentflow:lock:{key}") > 1000, 5, "the holder to renew its lease")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    until(lambda: not leases.is_locked(key), 10, "the dead holder's lease to expire")
    assert leases.try_acquire(key, "other")
    leases.release(key, "other")
    assert not leases.is_locked(key)


def test_storage_that_becomes_unreachable_fails_the_step_and_the_run_resumes(machines, s3, prefect_server, tmp_path):
    """The bucket becomes unreachable while step 2 runs: the step fails saying it could not
    keep its result in the shared storage; once the storage is back, resume reuses step 1."""
    a = machines["a"]
    relay = Relay(int(s3.rsplit(":", 1)[1]))
    try:
        slug = remote_block(f"{machines['prefix']}-relay", f"s3://{BUCKET}/{machines['prefix']}-relay",
                            f"http://127.0.0.1:{relay.port}", fail_fast=True)
        env = {**a.env, "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": slug}
        log = tmp_path / "calls.txt"
        hold = tmp_path / "hold-s2"
        steps = "\n".join(f"  - {{id: s{n}, run: {_step(log, f's{n}', hold if n == 2 else None, a)}}}" for n in (1, 2, 3))
        (a.clone / "wf.yaml").write_text(f"name: cut\nsteps:\n{steps}\n")
        _git(a.clone, "add", "wf.yaml")
        _git(a.clone, "commit", "-qm", "wf")
        hold.touch()
        os.mkfifo(str(hold) + ".go")
        run = Killed(env, a.clone, a.clone / "wf.yaml", holders=1)
        relay.cut()
        with open(str(hold) + ".go", "w") as go:
            go.write("go\n")
        out, _ = run.process.communicate(timeout=240)
        assert run.process.returncode == 1, out
        assert "failed  s2" in out and "its result could not be kept: could not write agentflow-" in out, out
        assert "Traceback" not in out
        relay.restore()
        hold.unlink()
        resumed = subprocess.run([sys.executable, "-m", "agentflow", "resume", run.run_id, "--json"], cwd=a.clone,
                                 env=env, capture_output=True, text=True, timeout=240)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        document = json.loads(resumed.stdout)
        assert [document["steps"][s]["reused"] for s in ("s1", "s2", "s3")] == [True, False, False]
        assert _lines(log) == ["s1", "s2", "s2", "s3"]
    finally:
        relay.close()

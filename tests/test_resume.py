"""Crash and resume, as a user meets them: a real `agentflow run` killed with SIGKILL.

Steps are real commands (tests/fixtures/step.py) that note each call in a log and append
their name to an output file; a step told to hold announces its pid on a FIFO and waits to
be killed, which is how the test knows where the run is without sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentflow.flows.durability.locks import StepLocks
from background import STEP, Killed
from procs import gone
from waiting import until

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _step(name: str, hold: bool = False, at_start: bool = False) -> str:
    argv = [*STEP, "out.txt", name, "calls.txt"]
    if hold:
        argv += [f"hold-{name}", "announce"] + (["--at-start"] if at_start else [])
    return json.dumps(argv)


def _five(hold_at_start: bool = False) -> str:
    steps = "\n".join(f"  - {{id: s{n}, run: {_step(f's{n}', hold=n == 3, at_start=hold_at_start)}}}"
                      for n in range(1, 6))
    return f"name: five\nworkspace: in-place   # its steps' files are the test's probes, in the test's directory\nsteps:\n{steps}\n"


FAN_OUT = f"""
name: fan
steps:
  - {{id: before, run: {_step('before')}}}
  - id: items
    for_each: [a, b, c, d]
    max_parallel: 2
    run: {json.dumps([*STEP, "out.txt", "{{ item }}", "calls.txt", "hold-{{ item }}", "announce"])}
  - {{id: after, run: {_step('after')}}}
"""


@pytest.fixture
def cli_env(prefect_server):
    return {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES)}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=cwd,
                   check=True, capture_output=True)


def _watchdogs_of(pid: int) -> list[int]:
    """The watchdog processes (durability/watchdog.py) that the process `pid` started."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if parent == pid and b"agentflow.flows.durability.watchdog" in command:
            found.append(int(entry.name))
    return found


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _uninterrupted(cli, tmp_path: Path, text: str) -> dict:
    """The same workflow run without a crash: its steps' results, from `run --json`."""
    directory = tmp_path / "uninterrupted"
    directory.mkdir()
    (directory / "wf.yaml").write_text(text)
    done = cli("run", "wf.yaml", "--json", cwd=directory)
    assert done.returncode == 0, done.stderr
    return _results(done.stdout)


def _results(stdout: str) -> dict:
    """Each step's status, summary and data, without timings (which differ run to run)."""
    steps = json.loads(stdout)["steps"]
    return {step: (row["status"], row["result"]["summary"], _timeless(row["result"]["data"]))
            for step, row in steps.items()}


def _timeless(value):
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k != "metrics"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


@pytest.mark.parametrize("at_start", [False, True], ids=["during-step-3", "step-boundary"])
def test_kill_9_then_resume_runs_each_step_once(cli, cli_env, tmp_path, at_start):
    """kill -9 during step 3 of 5 (or as it starts, before it has done anything): the run shows
    Crashed, its orphaned command is killed, resume runs 3-5 once and reuses 1-2."""
    text = _five(hold_at_start=at_start)
    (tmp_path / "wf.yaml").write_text(text)
    (tmp_path / ".gitignore").write_text("*.txt\nhold-*\nannounce\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    (tmp_path / "hold-s3").touch()
    run = Killed(cli_env, tmp_path, tmp_path / "wf.yaml", holders=1)
    orphan = run.held["s3"]

    refused = cli("resume", run.run_id, cwd=tmp_path)
    assert refused.returncode == 2 and "still Running (pid" in refused.stderr, refused.stderr
    # The run's watchdog would kill the held step as soon as the run dies (tests/test_faults.py);
    # killed with it here (a machine's OOM killer, `kill -9 -1`), what finds the crash must.
    watchdogs = _watchdogs_of(run.process.pid)
    assert len(watchdogs) == 1, watchdogs
    os.kill(watchdogs[0], signal.SIGKILL)
    run_id = run.kill()
    assert not gone(orphan), "the held step should have outlived the killed run (own session)"
    assert _lines(tmp_path / "out.txt") == ["s1", "s2"]
    (tmp_path / "hold-s3").unlink()
    (tmp_path / "notes.md").write_text("the commit moves on before the resume\n")
    _git(tmp_path, "add", "notes.md")
    _git(tmp_path, "commit", "-qm", "second")

    listed = cli("runs", "-n", "50", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if run_id[:8] in line)
    assert "Crashed" in row
    assert gone(orphan), "the crashed run's command should be killed when the crash is found"

    started = time.monotonic()
    resumed = cli("resume", run_id[:8], "--json", cwd=tmp_path)
    resume_took = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert f"run {run_id} (attempt 2)" in resumed.stderr
    assert "the commit moved" in resumed.stderr  # and s1, s2 are still not run again:
    assert _lines(tmp_path / "out.txt") == ["s1", "s2", "s3", "s4", "s5"]
    expected_calls = ["s1", "s2", "s3", "s4", "s5"] if at_start else ["s1", "s2", "s3", "s3", "s4", "s5"]
    assert _lines(tmp_path / "calls.txt") == expected_calls
    document = json.loads(resumed.stdout)
    assert [document["steps"][s]["reused"] for s in ("s1", "s2", "s3", "s4", "s5")] == [True, True, False, False,
                                                                                          False]
    assert _results(resumed.stdout) == _uninterrupted(cli, tmp_path, text)

    status = cli("status", run_id, cwd=tmp_path)
    assert status.returncode == 0 and "Completed" in status.stdout.splitlines()[0], status.stdout
    # Its time is its last run's: not the time it lay crashed (nor its first, killed run).
    took = float(status.stdout.splitlines()[0].split(" in ")[1].split("s (its last run, resumed)")[0])
    assert took <= resume_took, (took, resume_took)
    # s3 ran in two task runs (the killed one, the resumed one): one row, its history beside it
    assert len([line for line in status.stdout.splitlines() if line.startswith("│ s3 ")]) == 1, status.stdout
    again = cli("resume", run_id, cwd=tmp_path)
    assert again.returncode == 0 and "already completed" in again.stdout


def test_kill_9_during_fan_out_then_resume(cli, cli_env, tmp_path):
    """Killed with items a, b done and c, d running: resume runs c and d only, then `after`."""
    (tmp_path / "wf.yaml").write_text(FAN_OUT)
    (tmp_path / "hold-c").touch()
    (tmp_path / "hold-d").touch()
    run = Killed(cli_env, tmp_path, tmp_path / "wf.yaml", holders=2)
    assert set(run.held) == {"c", "d"}
    run_id = run.kill()
    (tmp_path / "hold-c").unlink()
    (tmp_path / "hold-d").unlink()

    resumed = cli("resume", run_id, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert all(gone(pid) for pid in run.held.values())
    calls = _lines(tmp_path / "calls.txt")
    assert sorted(calls) == sorted(["before", "a", "b", "c", "d", "c", "d", "after"])
    # Not the order of the items' lines: with two slots, c may start (and write) before b's
    # process has written its line, though b was started first.
    assert calls[0] == "before" and calls[-1] == "after"
    assert sorted(_lines(tmp_path / "out.txt")) == ["a", "after", "b", "before", "c", "d"]
    assert _results(resumed.stdout) == _uninterrupted(cli, tmp_path, FAN_OUT)


def test_resume_refuses_a_changed_definition_unless_forced(cli, cli_env, tmp_path):
    """The run pins its definition: resume names what changed and exits 2; --force goes on,
    running the changed step (and keeping the unchanged ones done)."""
    text = _five()
    (tmp_path / "wf.yaml").write_text(text)
    (tmp_path / "hold-s3").touch()
    run = Killed(cli_env, tmp_path, tmp_path / "wf.yaml", holders=1)
    run_id = run.kill()
    (tmp_path / "hold-s3").unlink()
    changed = text.replace('"s4", "calls.txt"', '"s4-new", "calls.txt"').replace("name: five", "name: five\n"
                                                                                  "max_parallel: 4")
    (tmp_path / "wf.yaml").write_text(changed)

    refused = cli("resume", run_id, cwd=tmp_path)
    assert refused.returncode == 2
    assert "step `s4` changed: run" in refused.stderr
    assert "`max_parallel` changed" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert _lines(tmp_path / "calls.txt") == ["s1", "s2", "s3"]

    forced = cli("resume", run_id, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert _lines(tmp_path / "out.txt") == ["s1", "s2", "s3", "s4-new", "s5"]


def test_resume_finishes_a_failed_run(cli, tmp_path):
    """A failed run: resume runs the failed step and what follows, not what succeeded."""
    (tmp_path / "wf.yaml").write_text(f"""
name: fails-once
steps:
  - {{id: first, run: {_step('first')}}}
  - {{id: flaky, run: [sh, -c, "test -e fixed && echo fixed >> out.txt"]}}
  - {{id: last, run: {_step('last')}}}
""")
    failed = cli("run", "wf.yaml", cwd=tmp_path)
    assert failed.returncode == 1
    run_id = failed.stdout.split("run ", 1)[1].split()[0]
    (tmp_path / "fixed").touch()
    resumed = cli("resume", run_id[:10], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _lines(tmp_path / "calls.txt") == ["first", "last"]
    assert _lines(tmp_path / "out.txt") == ["first", "fixed", "last"]


def test_rerun_from_a_step_runs_it_and_downstream_only(cli, tmp_path, prefect_server):
    """`rerun --from s3`: a new run in which s3-s5 run again and s1-s2 are reused."""
    (tmp_path / "wf.yaml").write_text(_five())
    first = cli("run", "wf.yaml", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    # Tagged for the crash automation (flows/crash.py); its task runs are not (a task tag
    # costs an API call per task run).
    assert "agentflow" in httpx.get(f"{prefect_server}/flow_runs/{run_id}", timeout=10).json()["tags"]
    task_runs = until(lambda: [t for t in httpx.post(f"{prefect_server}/task_runs/filter", timeout=10, json={
        "flow_runs": {"id": {"any_": [run_id]}}}).json() if t["state_name"] == "Completed"] or None, 60,
        "the server to record the task runs")
    assert len(task_runs) >= 1 and all(t["tags"] == [] for t in task_runs)
    again = cli("rerun", run_id[:8], "--from", "s3", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    document = json.loads(again.stdout)
    assert document["run_id"] != run_id
    assert [document["steps"][s]["reused"] for s in ("s1", "s2", "s3", "s4", "s5")] == [True, True, False, False,
                                                                                          False]
    assert _lines(tmp_path / "calls.txt") == ["s1", "s2", "s3", "s4", "s5", "s3", "s4", "s5"]

    unknown = cli("rerun", run_id, "--from", "s9", cwd=tmp_path)
    assert unknown.returncode == 2 and "has no step `s9`" in unknown.stderr and "s1, s2" in unknown.stderr


def test_resume_of_unknown_runs_or_lost_definitions_says_why(cli, tmp_path):
    """An id no run has, or a run whose workflow file is gone: exit 2 saying so; no traceback."""
    done = cli("resume", "00000000-0000-0000-0000-000000000000", cwd=tmp_path)
    assert done.returncode == 2
    assert "no run has id" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "wf.yaml").write_text("name: lost\nsteps:\n  - {id: bad, run: [sh, -c, 'exit 1']}\n")
    failed = cli("run", "wf.yaml", "--json", cwd=tmp_path)
    assert failed.returncode == 1
    (tmp_path / "wf.yaml").unlink()
    lost = cli("resume", json.loads(failed.stdout)["run_id"], cwd=tmp_path)
    assert lost.returncode == 2 and "no longer exists" in lost.stderr and "Traceback" not in lost.stderr


def test_two_runs_on_the_same_key_call_the_agent_once(cli_env, tmp_path):
    """Two runs reach the same cached step at once: the second waits for the first's lock
    (SERIALIZABLE isolation), then takes its record; the agent is called once."""
    (tmp_path / "wf.yaml").write_text(f"""
name: same-key
steps:
  - {{id: s1, cache: true, run: {_step('s1', hold=True)}}}
""")
    (tmp_path / "hold-s1").touch()
    os.mkfifo(tmp_path / "hold-s1.go")
    first = Killed(cli_env, tmp_path, tmp_path / "wf.yaml", holders=1)  # holds the lock, in its agent
    second = subprocess.Popen([sys.executable, "-m", "agentflow", "run", "wf.yaml"], cwd=tmp_path,
                              env={**cli_env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    started = []
    for line in second.stdout:  # the second run's s1 finds the first's lock and waits
        started.append(line)
        if "wait  s1" in line:
            break
    with open(tmp_path / "hold-s1.go", "w") as go:
        go.write("go\n")
    first_out, _ = first.process.communicate(timeout=120)
    second_out, _ = second.communicate(timeout=120)
    assert first.process.returncode == 0, first_out
    assert second.returncode == 0, "".join(started) + second_out
    assert _lines(tmp_path / "calls.txt") == ["s1"]
    assert "cached  s1" in second_out


def test_a_killed_run_does_not_keep_its_lock(cli, cli_env, tmp_path):
    """A run killed with SIGKILL while it holds a step's lock: the next run on that key is not
    blocked (Prefect's file locks never expire; agentflow's are flocks, freed by the kernel
    when their holder dies)."""
    (tmp_path / "wf.yaml").write_text(f"""
name: stale-lock
steps:
  - {{id: s1, cache: true, run: {_step('s1', hold=True)}}}
""")
    (tmp_path / "hold-s1").touch()
    locks = StepLocks(Path(os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"]) / "agentflow-locks")
    before = {p.stem for p in locks.directory.glob("*.lock")}
    run = Killed(cli_env, tmp_path, tmp_path / "wf.yaml", holders=1)
    try:
        (key,) = {p.stem for p in locks.directory.glob("*.lock")} - before
        assert locks.is_locked(key), "the running step holds its key's lock"
        run.kill()
        assert not locks.is_locked(key)
        (tmp_path / "hold-s1").unlink()
        done = cli("run", "wf.yaml", cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "wait" not in done.stdout
        assert _lines(tmp_path / "calls.txt") == ["s1", "s1"]
    finally:
        if not gone(run.held["s1"]):  # the run's watchdog has normally killed it already
            os.kill(run.held["s1"], signal.SIGKILL)

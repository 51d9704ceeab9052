"""The `agentflow` command as a user runs it: real subprocesses against a real server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from expect import expectations
from waiting import until
from procs import gone

REPO = Path(__file__).resolve().parent.parent
BAD = REPO / "tests" / "bad"


def test_validate_reports_every_bad_file_and_exits_1(cli):
    """`validate` over all bad files: exit 1, one line per problem, never a traceback."""
    files = sorted(str(p) for p in BAD.glob("[0-9]*.yaml"))
    done = cli("validate", *files)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    for path in files:  # each file's problems, located in it or in the file it names (its agents file)
        named = {file for file, _, _ in expectations(Path(path)) if file} or {Path(path).name}
        assert any(name in done.stdout for name in named), path
    assert f"{len(files)} of {len(files)} file(s) have problems" in done.stderr


def test_validate_ok_exits_0(cli):
    """`validate` of the shipped workflows (and their test files, and the agents file) passes."""
    files = [str(p) for p in sorted((REPO / "workflows").glob("*.yaml"))]
    done = cli("validate", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": ok (") == len(files)
    assert "ladder-demo.test.yaml: ok (tests of ladder-demo.yaml, 4 cases)" in done.stdout


def test_run_success_json_and_exit_0(cli, write, tmp_path):
    """`run --json` prints the run's steps on stdout and exits 0."""
    path = write("""
name: cli-ok
inputs:
  who: {default: world}
  times: {type: integer, default: 1}
steps:
  - {id: hello, run: [echo, "hello {{ inputs.who }} x{{ inputs.times }}"]}
  - {id: skip, when: "inputs.times > 5", run: [echo, never]}
""")
    done = cli("run", str(path), "-i", "who=agentflow", "-i", "times=2", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["state"] == "Completed"
    assert document["steps"]["hello"]["result"]["summary"] == "hello agentflow x2"
    assert document["steps"]["skip"]["status"] == "skipped"
    assert "skipped" in done.stderr and "hello agentflow x2" in done.stderr


def test_run_failure_exits_1_with_table(cli, write, tmp_path):
    """A failed step: exit 1, the table names it and its error, no traceback."""
    path = write("""
name: cli-fail
steps:
  - {id: boom, run: [sh, -c, "echo 'no route to gateway' >&2; exit 7"]}
  - {id: after, run: [echo, after]}
""")
    done = cli("run", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert "no route to gateway" in done.stdout
    assert "not run" in done.stdout
    assert "failed steps: boom" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_run_invalid_definition_exits_2(cli):
    """A bad definition: every problem on stderr, exit 2, nothing run."""
    done = cli("run", str(BAD / "15-depends-on-unknown.yaml"))
    assert done.returncode == 2
    assert "depends on unknown step `biuld`; did you mean `build`?" in done.stderr
    assert "nothing was run" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["-i", "count=three"], "input `count` must be integer (got 'three')"),
    (["-i", "cuont=3"], "unknown input `cuont`; did you mean `count`?"),
    ([], "missing input `count`"),
    (["-i", "novalue"], "write inputs as key=value"),
])
def test_run_bad_inputs_exit_2(cli, write, tmp_path, args, message):
    """Wrong, unknown, missing or malformed inputs: a clear message and exit 2."""
    path = write("name: typed\ninputs:\n  count: {type: integer}\nsteps:\n  - {id: a, run: [echo, hi]}\n")
    done = cli("run", str(path), *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_schema_is_json_schema_and_matches_shipped_copy(cli):
    """`schema` prints the language's JSON Schema; workflows/ ships the same for editors."""
    done = cli("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["title"] == "agentflow workflow"
    assert {"name", "steps", "pattern", "inputs", "defaults"} <= set(schema["properties"])
    shipped = json.loads((REPO / "workflows" / "workflow.schema.json").read_text())
    assert shipped == schema, "run: agentflow schema > workflows/workflow.schema.json"


def test_graph_text_and_mermaid(cli):
    """`graph` shows levels and dependencies, and a mermaid flowchart."""
    text = cli("graph", "workflows/repo-health.yaml")
    assert text.returncode == 0
    assert "level 1 (in parallel)" in text.stdout
    assert "marker_lines  [run git when]  after markers" in text.stdout
    mermaid = cli("graph", "workflows/repo-health.yaml", "--mermaid")
    assert mermaid.stdout.startswith("flowchart TD")
    assert "markers --> marker_lines" in mermaid.stdout


def test_fifty_steps_all_recorded(cli, write, tmp_path, prefect_server):
    """A 50-step run has all 50 task runs recorded by the server."""
    steps = "\n".join(f"  - {{id: s{i}, call: 'probe:echo', prompt: '{i}'}}" for i in range(50))
    path = write(f"name: fifty\npattern: parallel\nmax_parallel: 10\nsteps:\n{steps}\n")
    done = cli("run", str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    # The server records task runs from their events, a moment after the run has ended.
    until(lambda: _count_task_runs(prefect_server, run_id) == 50, 60, "the server to record the 50 task runs")


def _count_task_runs(api_url: str, run_id: str) -> int:
    import httpx

    response = httpx.post(f"{api_url}/task_runs/count", json={"flow_runs": {"id": {"any_": [run_id]}}},
                          timeout=30)
    response.raise_for_status()
    return int(response.json())


def test_main_job_on_embedded_server_is_quiet_and_complete(tmp_path):
    """README's main job on a fresh embedded server: exit 0, only agentflow's output, all steps recorded."""
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "agentflow", "run", "workflows/repo-health.yaml",
                           "-i", f"report={tmp_path / 'report.md'}", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for noise in ("Traceback", "ERROR", "Error flushing", "telemetry", "Starting temporary server"):
        assert noise not in done.stderr, done.stderr
    document = json.loads(done.stdout)
    assert "# Repository health" in (tmp_path / "report.md").read_text()
    with sqlite3.connect(home / "prefect.db") as db:
        (count,) = db.execute("select count(*) from task_run where flow_run_id = ?",
                              (document["run_id"].replace("-", ""),)).fetchone() or (0,)
        if count == 0:  # ids may be stored with dashes, depending on the dialect's UUID type
            (count,) = db.execute("select count(*) from task_run where flow_run_id = ?",
                                  (document["run_id"],)).fetchone()
    assert count == len(document["steps"]) == 8


def test_progress_shows_retries_and_skips_and_ui_names(cli, write, tmp_path, prefect_server):
    """The live view shows retries and skips; the server has the skipped step as a completed task run."""
    counter = tmp_path / "count"
    path = write(f"""
name: cli-progress
steps:
  - id: flaky
    call: "probe:flaky"
    with: {{path: "{counter}", fail_times: 2}}
    retries: 2
    retry_backoff: {{base_seconds: 0, max_seconds: 0, jitter: 0}}
  - id: optional
    when: "steps.flaky.data.calls > 5"
    run: [echo, never]
""")
    done = cli("run", str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "retry  flaky (attempt 2)" in done.stderr
    assert "retry  flaky (attempt 3)" in done.stderr
    assert "skipped  optional" in done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    import httpx

    def recorded():  # task runs reach the server as events, a moment after the run
        runs = httpx.post(f"{prefect_server}/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}},
                          timeout=30).json()
        named = {r["name"]: r for r in runs}
        final = all((named.get(n) or {}).get("state", {}).get("type") == "COMPLETED"
                    for n in ("optional (skipped)", "flaky"))
        return named if final else None

    by_name = until(recorded, 60, "the run's task runs recorded in their final states")
    assert by_name["optional (skipped)"]["state"]["name"] == "Skipped"
    assert by_name["flaky"]["run_count"] == 3
    assert by_name["flaky"]["state"]["type"] == "COMPLETED"


def test_runs_and_status(cli, write, tmp_path):
    """`runs` lists a finished run; `status PREFIX` shows its steps; an unknown id exits 2."""
    path = write("""
name: cli-status
steps:
  - {id: first, run: [sh, -c, "sleep 1.2; echo one"]}
  - {id: second, when: "steps.first.status == 'failed'", run: [echo, two]}
""")
    done = cli("run", str(path), "--json", cwd=tmp_path)
    run_id = json.loads(done.stdout)["run_id"]
    listing = cli("runs", "--workflow", "cli-status")
    assert listing.returncode == 0 and run_id[:8] in listing.stdout and "Completed" in listing.stdout
    row = next(line for line in listing.stdout.splitlines() if run_id[:8] in line)
    took = float(next(cell for cell in row.split("│") if cell.strip().endswith("s") and cell.strip()[:-1]
                      .replace(".", "").isdigit()).strip()[:-1])
    assert took >= 1.2  # the time the user waited, not Prefect's time in Running (0.2 s)
    # With PREFECT_API_URL set, reads go through the REST API: Prefect is not even imported.
    # (Filtered to this test's runs: a run another test killed on the shared server is marked
    # Crashed by whichever `runs` sees it first, and marking it writes through Prefect.)
    for command in (["runs", "--workflow", "cli-status"], ["status", run_id[:8]]):
        read = cli("-X", "importtime", *command, python_flags=True)
        assert read.returncode == 0, read.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in read.stderr.splitlines() if line.startswith("import time")}
        assert "agentflow.flows.durability.history" in imported and "prefect" not in imported, command
    status = cli("status", run_id[:10])
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"run {run_id} (") and "cli-status (version" in status.stdout
    assert "first" in status.stdout
    skipped = next(line for line in status.stdout.splitlines() if "second (skipped)" in line)
    assert "Skipped" in skipped  # not Completed
    missing = cli("status", "ffffffff-0000")
    assert missing.returncode == 2 and "or has an id starting with it" in missing.stderr
    failed = write("name: cli-status-fail\nsteps:\n  - {id: bad, run: [sh, -c, 'exit 1']}\n", "fail.yaml")
    failed_id = json.loads(cli("run", str(failed), "--json", cwd=tmp_path).stdout)["run_id"]
    assert cli("status", failed_id).returncode == 1


def test_a_run_says_what_it_runs_before_prefect_is_even_imported(cli, write, tmp_path):
    """The run's first line comes once its file and inputs are checked: before the second
    importing Prefect takes (and before any embedded server would start)."""
    path = write("name: first-line\nsteps:\n  - {id: only, run: [echo, hi]}\n")
    done = cli("-X", "importtime", "run", str(path), "--json", python_flags=True, cwd=tmp_path,
               env={"PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("first-line (1 step, sequential) version "))
    prefect = next(i for i, line in enumerate(lines)
                   if line.startswith("import time") and line.rsplit("|", 1)[-1].strip() == "prefect")
    assert header < prefect


def test_runs_made_together_are_told_apart_and_future_ones_listed_apart(cli):
    """`runs` shows each run by a prefix no other shares (unit-tested with time-ordered ids in
    tests/durability/test_history.py); its name names it as well. Runs scheduled for later are
    listed with --scheduled, not among the others; a prefix that matches several is refused."""
    from datetime import datetime, timedelta, timezone

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Scheduled

    @flow(name="made-together")
    def made_together() -> None:
        pass

    later = datetime.now(timezone.utc) + timedelta(hours=1)
    # Named apart: Prefect's generated names repeat among the shared server's hundreds of runs
    # (seen: two `rousing-sturgeon`s), and a name two runs share is refused, rightly.
    together = uuid.uuid4().hex[:8]
    with get_client(sync_client=True) as client:
        past = [client.create_flow_run(made_together, name=f"together-{together}-{n}", state=Completed())
                for n in range(17)]
        future = [client.create_flow_run(made_together, state=Scheduled(scheduled_time=later)) for _ in range(3)]
    listing = cli("runs", "-w", "made-together", "-n", "30")
    assert listing.returncode == 0, listing.stderr
    shown = [line.split("│")[1].strip() for line in listing.stdout.splitlines() if "made-tog" in line]
    assert len(set(shown)) == 17 and all(len(prefix) >= 8 for prefix in shown)
    assert sorted(next(str(r.id) for r in past if str(r.id).startswith(p)) for p in shown) == sorted(
        str(r.id) for r in past)  # the future ones are not here
    for prefix, run in zip(shown[:2], past[-1:-3:-1]):  # newest first
        by_id, by_name = cli("status", prefix), cli("status", run.name)
        assert by_id.returncode == by_name.returncode == 0, by_id.stderr + by_name.stderr
        assert by_id.stdout.startswith(f"run {run.id} ({run.name})") and by_name.stdout == by_id.stdout
    upcoming = cli("runs", "-w", "made-together", "--scheduled")
    later_ids = [line.split("│")[1].strip() for line in upcoming.stdout.splitlines() if "made-tog" in line]
    assert sorted(next(str(r.id) for r in future if str(r.id).startswith(p)) for p in later_ids) == sorted(
        str(r.id) for r in future)
    firsts = [str(run.id)[0] for run in past]
    shared = next(c for c in firsts if firsts.count(c) > 1)  # 17 ids, 16 hex digits: one is shared
    ambiguous = cli("status", shared)
    assert ambiguous.returncode == 2 and f"'{shared}' matches" in ambiguous.stderr
    assert "give one of these" in ambiguous.stderr


@pytest.mark.parametrize("sig, name, steps", [(2, "SIGINT", 2), (15, "SIGTERM", 2), (2, "SIGINT", 1)],
                         ids=["SIGINT-parallel", "SIGTERM-parallel", "SIGINT-one-step"])
def test_interrupt_stops_running_commands(cli, write, tmp_path, prefect_server, sig, name, steps):
    """Ctrl-C or SIGTERM ends the run with 130 and kills the running commands, not waiting for
    them, whichever thread the OS delivers the signal to (one step runs in the flow's thread)."""
    import os

    fifos = [tmp_path / f"{n}.pid" for n in "ab"[:steps]]
    for fifo in fifos:
        os.mkfifo(fifo)
    lines = "".join(f'  - {{id: {f.stem}, run: [sh, -c, "echo $$ > {f}; exec sleep 300"]}}\n' for f in fifos)
    path = write(f"name: cli-interrupt\npattern: parallel\nsteps:\n{lines}")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(REPO / "tests" / "fixtures")}
    process = subprocess.Popen([sys.executable, "-m", "agentflow", "run", str(path)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = [int(fifo.read_text()) for fifo in fifos]  # blocks until each command has started
    process.send_signal(sig)
    out, _ = process.communicate(timeout=120)  # far less than the commands' 300 s
    assert process.returncode == 130, out
    assert "interrupted: running commands were stopped" in out
    for pid in pids:
        assert gone(pid), f"command {pid} still runs after {name}"



@pytest.mark.parametrize("args, said", [
    (["run", "--jsno", "wf.yaml"], "No such option: --jsno"),
    (["run", "missing.yaml"], "workflow file not found"),
    (["run", "wf.yaml", "-i", "nope=1"], "unknown input `nope`"),
    (["plan", "missing.yaml"], "workflow file not found"),
    (["status"], "Missing argument"),
    (["stats", "--since", "soon"], "--since 'soon'"),
    (["approve", "abc", "-f", "x"], "-f"),
])
@pytest.mark.unit
def test_a_mistake_is_answered_before_any_server_starts(tmp_path, args, said):
    """No server configured: a mistaken option, a missing file or a bad input is said at once
    (exit 2), and no embedded server was started for it (it would create the database)."""
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    (tmp_path / "wf.yaml").write_text("name: wf\nsteps:\n  - {id: a, run: [echo, a]}\n")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentflow", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not (home / "prefect.db").exists() and not (home / "agentflow-commands").exists()
    # At once: not even Prefect is imported (1.2-2 s) before the mistake is said.
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert "agentflow.flows.cli" in imported and "prefect" not in imported


def test_plan_says_a_step_never_cached_runs_even_after_a_step_it_waits_for(cli, write, tmp_path):
    path = write("""
name: plan-words
steps:
  - {id: first, run: [echo, one], cache: true}
  - {id: second, run: [echo, "{{ steps.first.summary }}"]}
""")
    done = cli("plan", str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    verdicts = {v["step"]: (v["outcome"], v["reason"]) for v in json.loads(done.stdout)}
    assert verdicts["first"][0] == "miss"
    assert verdicts["second"] == ("runs", "not cached: run steps run every time unless they set `cache:`")
    validated = cli("validate", str(path))
    assert "ok (2 steps," in validated.stdout

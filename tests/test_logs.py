"""agentflow's log (agentflow/log.py) and `agentflow logs`: each line bound with the run's
context, filtered, summed up; a run's secret never in it."""

from __future__ import annotations

import json

import pytest

CANARY = "canary-1b2c3d-log-secret"
WORKFLOW = """
name: logged
inputs:
  token: {secret: true}
steps:
  - {id: greet, run: [sh, -c, 'echo "hello with $AGENTFLOW_SECRET_TOKEN"']}
  - id: items
    for_each: ["a", "b"]
    run: [echo, "item {{ item }}"]
  - {id: breaks, depends_on: [greet], criticality: low, run: [sh, -c, "echo broken >&2; exit 3"]}
"""


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_step_is_logged_with_its_context_and_no_secret(cli, tmp_path):
    log = tmp_path / "agentflow.jsonl"
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = {"AGENTFLOW_LOG_FILE": str(log)}
    done = cli("run", "wf.yaml", "-i", f"token={CANARY}", "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert CANARY not in log.read_text()
    lines = [line for line in _lines(log) if line.get("run_id") == run_id]
    assert all(line["workflow"] == "logged" and line["component"] == "engine" for line in lines)
    by_event = {line["event"].split(" in ")[0]: line for line in lines}
    assert by_event["step greet: started"]["step"] == "greet" and by_event["step greet: started"]["attempt"] == 1
    ended = by_event["step greet: completed"]
    assert ended["outcome"] == "completed" and ended["event"].endswith(": hello with [secret]")
    assert isinstance(ended["duration_s"], float) and ended["level"] == "info"
    assert {"step items[a]: started", "step items[b]: started", "step items: completed"} <= set(by_event)
    failed = by_event["step breaks: failed"]
    assert failed["level"] == "warning" and "exited with code 3" in failed["error"]
    assert lines[-1]["event"] == f"run {run_id}: completed (3 steps)"


def test_logs_filters_and_analyzes(cli, tmp_path):
    log = tmp_path / "agentflow.jsonl"
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = {"AGENTFLOW_LOG_FILE": str(log), "AGENTFLOW_SECRET_TOKEN": CANARY}
    runs = [json.loads(cli("run", "wf.yaml", "--json", cwd=tmp_path, env=env).stdout)["run_id"] for _ in range(2)]

    mine = cli("logs", runs[0][:8], "--json", env=env)
    assert mine.returncode == 0, mine.stderr
    lines = [json.loads(line) for line in mine.stdout.splitlines()]
    assert lines and {line["run_id"] for line in lines} == {runs[0]}
    failures = cli("logs", "--step", "breaks", "--level", "warning", env=env)
    assert failures.stdout.count("step breaks: failed") == 2 and "started" not in failures.stdout
    assert f"[logged {runs[1][:8]} breaks]" in failures.stdout  # readable: where, then what
    items = cli("logs", runs[1], "--step", "items", "--json", env=env)
    assert sorted(json.loads(line)["step"] for line in items.stdout.splitlines()) == ["items", "items[a]", "items[b]"]
    assert cli("logs", "--since", "1h", "--json", env=env).stdout.count("\n") == len(_lines(log))

    summary = json.loads(cli("logs", "--analyze", "--json", env=env).stdout)
    assert summary["runs"] == 2 and summary["lines"] == len(_lines(log))
    # a failure per run, and per run the warning that it works in place (not a git repository)
    assert summary["by_level"]["warning"] == 4 and summary["by_step"]["breaks"] == 4
    breaks = next(e for e in summary["errors"] if e["step"] == "breaks")
    assert breaks == {"step": "breaks", "count": 2, "message": breaks["message"]}
    assert "exited with code N" in breaks["message"]
    durations = [row["duration_s"] for row in summary["slowest"]]
    assert durations == sorted(durations, reverse=True) and len(durations) == 6  # 3 step ends per run
    assert CANARY not in log.read_text()


def test_logs_says_what_is_wrong(cli, tmp_path):
    env = {"AGENTFLOW_LOG_FILE": str(tmp_path / "none.jsonl")}
    missing = cli("logs", env=env)
    assert missing.returncode == 1 and f"no log at {tmp_path / 'none.jsonl'} yet" in missing.stderr
    level = cli("logs", "--level", "loud", env=env)
    assert level.returncode == 2 and "use one of debug, info, warning, error, critical" in level.stderr
    since = cli("logs", "--since", "yesterday", env=env)
    assert since.returncode == 2 and "--since 'yesterday': a duration is" in since.stderr


@pytest.mark.unit
def test_the_log_rotates_by_size_and_keeps_three(tmp_path):
    """Past its size the file moves to .1 (.1 to .2, .2 to .3; the oldest goes); every line is
    whole, and `logs` reads the rotated files, oldest first."""
    from agentflow import log, log_query

    path = tmp_path / "x.jsonl"
    writer = log.JsonLines(path, rotate_bytes=2000)
    for n in range(200):
        writer.append(json.dumps({"event": f"line {n:03d}", "level": "info", "padding": "x" * 20}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl", "x.jsonl.1", "x.jsonl.2", "x.jsonl.3"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    kept = [line["event"] for line in log_query.read(log.files(path), log_query.Query())]
    assert kept[-1] == "line 199" and kept == sorted(kept) and len(kept) == len(set(kept)) > 40


def test_a_run_another_worker_ran_is_read_from_the_server(cli, tmp_path):
    """`agentflow logs RUN` on a machine whose log has none of the run's lines shows the run's log
    as the Prefect server keeps it: agentflow's step lines with their step, filtered, no secret."""
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    worker = {"AGENTFLOW_LOG_FILE": str(tmp_path / "worker.jsonl")}
    done = cli("run", "wf.yaml", "-i", f"token={CANARY}", "--json", cwd=tmp_path, env=worker)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]

    here = {"AGENTFLOW_LOG_FILE": str(tmp_path / "here.jsonl")}
    shown = cli("logs", run_id[:8], cwd=tmp_path, env=here)
    assert shown.returncode == 0, shown.stderr
    assert f"log has no line of run {run_id[:8]}: its log on the Prefect server" in shown.stderr
    assert f"[logged {run_id[:8]} greet] step greet: completed" in shown.stdout
    assert "step breaks: failed" in shown.stdout and CANARY not in shown.stdout
    warnings = cli("logs", run_id, "--level", "warning", "--json", cwd=tmp_path, env=here)
    lines = [json.loads(line) for line in warnings.stdout.splitlines()]
    assert lines and all(line["level"] in ("warning", "error") for line in lines)
    assert any(line["step"] == "breaks" and "exited with code 3" in line["event"] for line in lines)

"""Kills: what a killed run leaves behind is gone at once, not when someone next looks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from background import STEP, Killed
from procs import gone
from waiting import until

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _held_step(name: str) -> str:
    return json.dumps([*STEP, "out.txt", name, "calls.txt", f"hold-{name}", "announce"])


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(stat.parent.name), cmdline))
    return found


def test_a_killed_runs_command_dies_with_it(prefect_server, tmp_path):
    """SIGKILL of `agentflow run` during a step: its command (and the command's own
    children) are killed by the run's watchdog, without anyone running `agentflow runs`."""
    (tmp_path / "wf.yaml").write_text(f"name: orphan\nsteps:\n  - {{id: s1, run: {_held_step('s1')}}}\n")
    (tmp_path / "hold-s1").touch()
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES)}
    run = Killed(env, tmp_path, tmp_path / "wf.yaml", holders=1)
    command = run.held["s1"]
    assert not gone(command)
    run.kill()
    until(lambda: gone(command), 30, "the watchdog to kill the orphaned command")


def test_the_embedded_server_dies_with_a_killed_cli(tmp_path):
    """No PREFECT_API_URL: the CLI starts a temporary server; SIGKILL of the CLI stops it too."""
    (tmp_path / "wf.yaml").write_text(f"name: embedded\nsteps:\n  - {{id: s1, run: {_held_step('s1')}}}\n")
    (tmp_path / "hold-s1").touch()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(FIXTURES),
               PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"))
    run = Killed(env, tmp_path, tmp_path / "wf.yaml", holders=1)
    servers = [pid for pid, cmdline in _children(run.process.pid) if "uvicorn" in cmdline or "server" in cmdline]
    assert servers, _children(run.process.pid)
    command = run.held["s1"]
    run.kill()
    until(lambda: all(gone(pid) for pid in [*servers, command]), 30, "the server and the command to stop")


def test_the_embedded_server_dies_with_a_killed_listing_command(tmp_path):
    """`agentflow runs` (no run, so no run's watchdog) killed while its embedded server is
    still starting: the server it started is stopped too."""
    import signal
    import subprocess

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"))
    command = subprocess.Popen([sys.executable, "-m", "agentflow", "runs"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        notes = home / "agentflow-commands" / str(command.pid)
        # the server's process exists and is noted (its note names its pid)
        (server,) = until(lambda: [int(p.name) for p in notes.glob("[0-9]*")], 60, "the server to be noted")
        assert "uvicorn" in Path(f"/proc/{server}/cmdline").read_bytes().decode(errors="replace")
        os.kill(command.pid, signal.SIGKILL)
        command.wait()
        until(lambda: gone(server), 30, "the embedded server to stop")
        until(lambda: not notes.exists(), 30, "the watchdog to clear its notes")
    finally:
        command.kill()


def _damaged_db_answer(cli, tmp_path, content: bytes) -> str:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "prefect.db").write_bytes(content)
    env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": ""}
    done = cli("runs", env=env, timeout=60)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert f"Prefect's database {home / 'prefect.db'}" in done.stderr
    assert "move it aside" in done.stderr
    return done.stderr


def test_a_damaged_prefect_database_is_named(cli, tmp_path):
    assert "is not a usable database" in _damaged_db_answer(cli, tmp_path, b"this is not sqlite\n" * 10)


def test_a_truncated_prefect_database_is_named(cli, tmp_path):
    import sqlite3

    source = tmp_path / "real.db"
    with sqlite3.connect(source) as connection:
        connection.execute("CREATE TABLE t (x TEXT)")
        connection.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    content = source.read_bytes()
    answer = _damaged_db_answer(cli, tmp_path, content[: len(content) // 2])
    assert "is cut short" in answer or "database disk image is malformed" in answer


def test_damaged_run_record_and_journal_get_a_message(cli, write, tmp_path):
    path = write("name: broken-later\nsteps:\n  - {id: a, run: [echo, a]}\n  - {id: b, run: [sh, -c, 'exit 4']}\n")
    failed = cli("run", str(path), "--json", cwd=tmp_path)
    assert failed.returncode == 1
    run_id = json.loads(failed.stdout)["run_id"]
    run_dir = Path(os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"]) / "agentflow-runs" / run_id

    (run_dir / "steps.jsonl").unlink()
    (run_dir / "steps.jsonl").mkdir()
    journal = cli("resume", run_id[:8], cwd=tmp_path)
    assert journal.returncode == 3, journal.stdout + journal.stderr
    assert f"{run_dir / 'steps.jsonl'} is a directory" in journal.stderr
    assert "a resume then runs every step of the run again" in journal.stderr

    (run_dir / "run.json").write_text('{"run_id": "truncat')
    status = cli("status", run_id[:8], cwd=tmp_path)
    assert status.returncode == 1  # the run failed: its record is not needed to say so
    resume = cli("resume", run_id[:8], cwd=tmp_path)
    assert resume.returncode == 3
    assert f"{run_dir / 'run.json'} is not a run record" in resume.stderr
    assert "Traceback" not in journal.stderr + status.stderr + resume.stderr


def test_six_runs_at_once_on_the_embedded_server_all_complete(tmp_path):
    """Six CLIs at once, no server configured: each starts the embedded server on one SQLite
    database (warmed by a first run, which creates it); every run completes, all recorded."""
    import sqlite3
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"))
    (tmp_path / "wf.yaml").write_text("name: together\nsteps:\n  - {id: a, run: [echo, a]}\n  - {id: b, run: [echo, b]}\n")
    cli = [sys.executable, "-m", "agentflow", "run", "wf.yaml"]
    first = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    runs = [subprocess.Popen(cli, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(6)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 6, "\n".join(outputs)
    assert all("Traceback" not in output for output in outputs)
    with sqlite3.connect(tmp_path / "home" / "prefect.db") as db:
        states = db.execute("SELECT state_name FROM flow_run").fetchall()
    assert sorted(s for (s,) in states) == ["Completed"] * 7


def _storage_block(tmp_path):
    """A result storage block that is not local files (fsspec's `file://` through Prefect's
    RemoteFileSystem, as an S3 bucket would be), saved on the server as the default."""
    from prefect.filesystems import RemoteFileSystem

    # fsspec reads `local://shared-storage/` as the folder shared-storage in the working
    # directory (the CLI runs in tmp_path); Prefect wants a location after the scheme.
    shared = tmp_path / "shared-storage"
    RemoteFileSystem(basepath="local://shared-storage/").save(f"shared-{tmp_path.name[-20:].lower().replace('_', '-')}",
                                                       overwrite=True)
    return shared, {"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK":
                    f"remote-file-system/shared-{tmp_path.name[-20:].lower().replace('_', '-')}"}


@pytest.mark.parametrize("storage", ["local", "block"])
def test_a_crafted_cache_record_is_never_read(cli, write, tmp_path, storage):
    """Result storage may be shared: a record written with pickle (which would run code when
    read) in place of agentflow's JSON one is not read; the step runs again and replaces it.
    The check is made on the bytes Prefect then reads, for local files and storage blocks."""
    import base64
    import pickle

    if storage == "local":
        where, env = Path(os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"]), {}
    else:
        where, env = _storage_block(tmp_path)
    marker = f"fresh-{tmp_path.name}"
    path = write(f'name: crafted\nsteps:\n  - {{id: s, cache: true, run: [sh, -c, "echo called >> calls.txt; echo {marker}"]}}\n')
    first = cli("run", str(path), "--json", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    records = [p for p in where.rglob("*") if p.is_file() and marker in p.read_text(errors="replace")
                 and not any(part.startswith("agentflow-") for part in p.relative_to(where).parts)]
    assert len(records) == 1, records
    (record,) = records
    stored = json.loads(record.read_text())
    assert stored["metadata"]["serializer"] == {"type": "agentflow-result"}

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    stored["metadata"]["serializer"] = {"type": "pickle", "picklelib": "pickle"}
    stored["result"] = base64.b64encode(pickle.dumps(Boom())).decode()
    record.write_text(json.dumps(stored))

    plan = cli("plan", str(path), cwd=tmp_path, env=env)
    assert plan.returncode == 0 and "miss" in plan.stdout, plan.stdout + plan.stderr
    second = cli("run", str(path), "--json", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["steps"]["s"]["cached"] is False
    assert json.loads(second.stdout)["steps"]["s"]["result"]["summary"] == marker
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "calls.txt").read_text().count("called") == 2
    # The warning is in agentflow's log, with the run it happened in (the UI's run log too).
    logged = [json.loads(line) for line in Path(os.environ["AGENTFLOW_LOG_FILE"]).read_text().splitlines()]
    second_id = json.loads(second.stdout)["run_id"]
    assert any(line["level"] == "warning" and "was not written by agentflow" in line["event"]
               and line.get("run_id") == second_id for line in logged)
    assert json.loads(record.read_text())["metadata"]["serializer"] == {"type": "agentflow-result"}
    third = cli("run", str(path), "--json", cwd=tmp_path, env=env)
    assert json.loads(third.stdout)["steps"]["s"]["cached"] is True  # its own record is read again

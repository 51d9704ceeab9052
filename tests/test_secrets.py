"""A secret input is found nowhere agentflow or Prefect writes: not after a run, a cached
re-run, a crash and a resume. A step using it is keyed on its name, not its value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from background import STEP, Killed
from postgres import free_port
from procs import kill_recorded_server

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CANARY = "canary-7f3a9c1e-secret"
WORKFLOW = f"""
name: secretive
inputs:
  token: {{secret: true}}
  who: {{default: team}}
steps:
  - id: use
    cache: true
    run: [sh, -c, 'echo "got $AGENTFLOW_SECRET_TOKEN for $1"; echo "warning: $AGENTFLOW_SECRET_TOKEN is old" >&2', sh, "{{{{ inputs.who }}}}"]
  - id: later
    run: {json.dumps([*STEP, "out.txt", "later", "calls.txt", "hold-later", "announce"])}
"""


def _everywhere(tmp_path: Path) -> list[str]:
    """Files under the Prefect home, the result storage and the project that hold the canary."""
    found = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "announce":
            if CANARY.encode() in path.read_bytes():
                found.append(str(path.relative_to(tmp_path)))
    return found


def test_a_secret_is_written_nowhere(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "wf.yaml").write_text(WORKFLOW)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    # Everything under tmp_path (the log and audit log too: their default place, the Prefect home).
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "AGENTFLOW_LOG_FILE",
                                                            "AGENTFLOW_AUDIT_FILE")}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"),
               PYTHONPATH=str(FIXTURES), AGENTFLOW_SECRET_TOKEN=CANARY)
    cli = [sys.executable, "-m", "agentflow"]
    # One local server for the test's commands (`agentflow server start`), its database and
    # logs in the same Prefect home, searched with the rest: each command starting the
    # embedded server would cost ~10 s.
    started = subprocess.run([*cli, "server", "start", "--port", str(free_port())], env=env, capture_output=True,
                             text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        _run_crash_and_resume(cli, env, project, tmp_path)
    finally:
        subprocess.run([*cli, "server", "stop"], env=env, capture_output=True, timeout=120)
        kill_recorded_server(tmp_path / "home")
    assert _everywhere(tmp_path) == []


def _run_crash_and_resume(cli: list[str], env: dict, project: Path, tmp_path: Path) -> None:
    first = subprocess.run([*cli, "run", "wf.yaml", "--json"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    use = json.loads(first.stdout)["steps"]["use"]
    assert use["result"]["output"] == "got [secret] for team\n"  # the agent had it; its result does not
    assert CANARY not in first.stdout + first.stderr

    cached = subprocess.run([*cli, "run", "wf.yaml", "--json"], cwd=project, env=env, capture_output=True,
                            text=True, timeout=300)
    assert json.loads(cached.stdout)["steps"]["use"]["cached"] is True  # keyed on the secret's name

    (project / "hold-later").touch()
    run = Killed(env, project, project / "wf.yaml", holders=1)
    run_id = run.kill()
    (project / "hold-later").unlink()
    no_secret = {k: v for k, v in env.items() if k != "AGENTFLOW_SECRET_TOKEN"}
    refused = subprocess.run([*cli, "resume", run_id], cwd=project, env=no_secret, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2
    assert "give them again with -i token=... (or AGENTFLOW_SECRET_TOKEN)" in refused.stderr
    resumed = subprocess.run([*cli, "resume", run_id, "-i", f"token={CANARY}", "--json"], cwd=project,
                             env=no_secret, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    steps = json.loads(resumed.stdout)["steps"]
    assert steps["use"]["reused"] is True and steps["later"]["status"] == "success"

    log = tmp_path / "home" / "agentflow" / "agentflow.jsonl"  # agentflow's log: it holds the run, not the secret
    assert run_id in log.read_text() and "step use: " in log.read_text()


def test_a_command_gets_a_secret_in_its_environment_not_its_arguments(cli, tmp_path):
    """Given with -i (not in agentflow's own environment), the secret reaches the command as
    AGENTFLOW_SECRET_TOKEN; its arguments, which any user can read, do not hold it."""
    (tmp_path / "wf.yaml").write_text(
        "name: secret-env\ninputs:\n  token: {secret: true}\nsteps:\n"
        "  - id: use\n    run: [sh, -c, 'echo \"env=$AGENTFLOW_SECRET_TOKEN\"; tr \"\\\\0\" \" \" < /proc/$$/cmdline']\n")
    env = {"AGENTFLOW_SECRET_TOKEN": ""}  # not inherited from the caller: from -i only
    done = cli("run", "wf.yaml", "-i", f"token={CANARY}", "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    first, cmdline = json.loads(done.stdout)["steps"]["use"]["result"]["output"].splitlines()
    assert first == "env=[secret]"  # it had the value (redacted in its result)
    assert cmdline.startswith("sh -c ") and "[secret]" not in cmdline and CANARY not in cmdline

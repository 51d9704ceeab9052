"""Compensation (engine/saga.py): a step that fails the workflow undoes the completed steps'
effects, newest first, each an `undo STEP` task run; a failing compensation does not stop
the others; a cached step is undone too; a crash during compensation resumes the compensation."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from background import STEP, Killed
from waiting import until

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _workflow(name: str, hold_undo_s2: bool = False) -> str:
    undo_2 = ([*STEP, "undone.txt", "undo-s2", "calls.txt", "hold-undo", "announce"] if hold_undo_s2
              else ["sh", "-c", "echo 'undo 2 broke' >&2; exit 4"])
    return f"""
name: {name}
steps:
  - id: s1
    run: [sh, -c, "echo made 1 >> ledger; echo '## Summary'; echo one"]
    cache: {{key: [inputs]}}
    compensate: {{run: [sh, -c, "echo 'undid 1 ({{{{ result.summary }}}})' >> ledger"]}}
  - id: s2
    run: [sh, -c, "echo made 2 >> ledger; echo two"]
    compensate: {{run: {json.dumps(undo_2)}}}
    depends_on: [s1]
  - id: s3
    run: [sh, -c, "echo made 3 >> ledger; echo three"]
    compensate: {{run: [sh, -c, "echo undid 3 >> ledger"]}}
    depends_on: [s2]
  - id: s4
    run: [sh, -c, "echo tried 4 >> ledger; exit 9"]
    depends_on: [s3]
"""


@pytest.fixture
def cli_env(prefect_server):
    return {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES)}


def _ledger(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_failed_step_undoes_the_steps_before_it_newest_first(cli, tmp_path):
    """s4 fails: s3, s2, s1 are undone in that order; s2's undo fails and s1's still runs; each is
    a task run `undo STEP`; on a second run s1 comes from the cache and is undone all the same."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    (tmp_path / "wf.yaml").write_text(_workflow(f"saga_{uuid.uuid4().hex[:8]}"))
    first = cli("run", "wf.yaml", "--json", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    result = json.loads(first.stdout)
    assert list(result["compensations"]) == ["s3", "s2", "s1"]
    assert [c["status"] for c in result["compensations"].values()] == ["success", "failed", "success"]
    assert "undo 2 broke" in result["compensations"]["s2"]["summary"]
    assert _ledger(tmp_path / "ledger") == ["made 1", "made 2", "made 3", "tried 4", "undid 3", "undid 1 (one)"]
    assert "undo s2" in first.stderr and "failed steps: s4" in first.stderr

    def undos() -> tuple | None:  # the server records task runs in the background
        with get_client(sync_client=True) as client:
            names = {t.name: t.state.name for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(result["run_id"])])))}
        found = tuple(names.get(f"undo {step}") for step in ("s3", "s2", "s1"))
        return found if None not in found and "Running" not in found else None

    assert until(undos, 30, "the undo task runs on the server") == ("Completed", "Failed", "Completed")

    second = cli("run", "wf.yaml", "--json", cwd=tmp_path)
    again = json.loads(second.stdout)
    assert again["steps"]["s1"]["cached"] is True and again["compensations"]["s1"]["status"] == "success"
    assert _ledger(tmp_path / "ledger")[6:] == ["made 2", "made 3", "tried 4", "undid 3", "undid 1 (one)"]


def test_a_crash_during_compensation_resumes_the_compensation(cli, cli_env, tmp_path):
    """Killed while undoing s2: the resume undoes s2 and s1, not s3 again, and does not try s4 again."""
    (tmp_path / "wf.yaml").write_text(_workflow(f"saga_{uuid.uuid4().hex[:8]}", hold_undo_s2=True))
    (tmp_path / "hold-undo").touch()
    run = Killed(cli_env, tmp_path, tmp_path / "wf.yaml", holders=1)
    run_id = run.kill()
    assert _ledger(tmp_path / "ledger") == ["made 1", "made 2", "made 3", "tried 4", "undid 3"]
    (tmp_path / "hold-undo").unlink()
    until(lambda: any(run_id[:8] in line and "Crashed" in line for line in cli("runs", "-n", "50").stdout.splitlines()),
          60, "the killed run to be found Crashed")

    resumed = cli("resume", run_id, "--json", cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    result = json.loads(resumed.stdout)
    assert list(result["compensations"]) == ["s3", "s2", "s1"]
    assert all(c["status"] == "success" for c in result["compensations"].values())
    assert _ledger(tmp_path / "ledger") == ["made 1", "made 2", "made 3", "tried 4", "undid 3", "undid 1 (one)"]
    assert _ledger(tmp_path / "undone.txt") == ["undo-s2"]
    assert result["steps"]["s4"]["status"] == "failed" and result["steps"]["s1"]["status"] == "success"


@pytest.mark.unit
def test_a_compensation_must_say_how():
    """compensate with none (or two) of run, call, agent, or a prompt without an agent: file:line."""
    from agentflow.errors import SpecError
    from agentflow.flows.language.loader import load_text

    for compensate, said in (("{}", "exactly one of run, call, agent (got none)"),
                             ("{run: [echo], call: 'm:f'}", "(got run, call)"),
                             ("{run: [echo], prompt: hi}", "compensate.prompt is for an agent")):
        with pytest.raises(SpecError) as raised:
            load_text(f"name: x\nsteps:\n  - {{id: a, run: [echo], compensate: {compensate}}}\n", source="s.yaml")
        assert "s.yaml:3" in str(raised.value) and said in str(raised.value), str(raised.value)


def test_a_compensation_works_in_the_runs_tree_never_in_the_users(cli, tmp_path):
    """In a git repository a run works in a tree of its own; its compensations run there too. An
    undo that resets the tree (`git checkout HEAD -- .`) leaves the user's uncommitted work alone."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "notes.txt").write_text("committed\n")
    (tmp_path / "wf.yaml").write_text(f"""
name: undo_in_tree_{uuid.uuid4().hex[:8]}
steps:
  - id: change
    run: [sh, -c, "echo by the run > notes.txt"]
    compensate: {{run: [sh, -c, "git checkout HEAD -- . && pwd > undone-in.txt"]}}
  - {{id: fails, run: [sh, -c, "exit 3"], depends_on: [change]}}
""")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    (tmp_path / "notes.txt").write_text("the user's own work, not committed\n")
    done = cli("run", "wf.yaml", "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["compensations"]["change"]["status"] == "success"
    assert (tmp_path / "notes.txt").read_text() == "the user's own work, not committed\n"
    assert not (tmp_path / "undone-in.txt").exists()

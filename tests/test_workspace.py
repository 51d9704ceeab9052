"""A step's work: captured as a patch, brought back by a cache hit and a resume, isolated per
run and per parallel step, and delivered as a branch (or applied, or left for `agentflow apply`).

Real git repositories, real commands, the session's Prefect server.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentflow import build_flow
from agentflow.errors import WorkflowFailed
from agentflow.flows.durability import worktrees
from agentflow.flows.language.loader import load_workflow
from agentflow.tasks import workspace

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True)
    return done.stdout.decode(errors="replace")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with a few tracked files, as the current directory."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "keep.txt").write_text("keep\n")
    (root / "edit.txt").write_text("one\ntwo\n")
    (root / "gone.txt").write_text("gone\n")
    (root / "move.txt").write_text("a file long enough to be seen as renamed\n" * 3)
    (root / "tool.sh").write_text("echo tool\n")
    (root / "logo.bin").write_bytes(b"\0\1\2\3")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", f"init {tmp_path.name}")  # its own commit: no cache entry shared across tests
    monkeypatch.chdir(root)
    return root


def run(repo: Path, text: str, **inputs):
    """Run the workflow in-process; its WorkflowResult, failed or not."""
    (repo / "wf.yaml").write_text(text)
    try:
        return build_flow(load_workflow(repo / "wf.yaml"))(**inputs)
    except WorkflowFailed as exc:
        return exc.result


def files_of(result, step: str) -> dict[str, tuple]:
    changes = result[step].changes
    return {f.path: (f.action, f.added, f.deleted, f.old_path) for f in changes.files}


def in_branch(repo: Path, branch: str, path: str) -> str:
    return git(repo, "show", f"{branch}:{path}")


def status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all")


def test_every_kind_of_change_is_captured_as_a_patch_and_delivered_as_a_branch(repo):
    """New, edited, deleted, renamed, binary and mode changes are the step's patch; the user's
    tree is untouched, and the branch holds exactly the step's tree."""
    result = run(repo, r"""
name: every-change
steps:
  - id: change
    run: [sh, -c, 'echo new > new.txt; echo three >> edit.txt; rm gone.txt; mv move.txt moved.txt; chmod +x tool.sh; printf "\000\377\001" > logo.bin']
  - id: look
    run: [cat, new.txt]
""")
    assert result.status == "completed"
    assert files_of(result, "change") == {
        "new.txt": ("created", 1, 0, None), "edit.txt": ("modified", 1, 0, None),
        "gone.txt": ("deleted", 0, 1, None), "moved.txt": ("renamed", 0, 0, "move.txt"),
        "tool.sh": ("modified", 0, 0, None), "logo.bin": ("modified", None, None, None)}
    assert [a.path for a in result["change"].artifacts] == [f.path for f in result["change"].changes.files]
    assert result["look"].output.strip() == "new"  # the next step saw the first one's work
    assert result["look"].changes.empty
    assert status(repo) == "?? wf.yaml\n"  # the user's own tree: nothing written
    branch = result.work["branch"]
    assert branch == f"agentflow/every-change/{result.run_id}"
    assert git(repo, "rev-parse", f"{branch}^{{tree}}").strip() == result["change"].changes.tree
    assert git(repo, "log", "--format=%an %s", branch, "-1").strip() == "agentflow change"
    assert in_branch(repo, branch, "edit.txt") == "one\ntwo\nthree\n"
    patch = workspace.read_patch(worktrees.patch_store(), result["change"].changes.patch)
    assert Path(result.work["patch_store"], result["change"].changes.patch + ".patch").read_bytes() == patch
    assert b"GIT binary patch" in patch and b"new mode 100755" in patch and b"rename from move.txt" in patch
    assert not list(worktrees.worktrees_root().glob(f"{result.run_id}*"))  # its worktree was removed
    assert str(worktrees.worktrees_root()) not in git(repo, "worktree", "list")


def test_a_cache_hit_brings_the_work_back(repo, tmp_path):
    """The second run's cached step is not called, and its file is in the tree the next step
    sees and in the second branch, which holds the same tree as the first."""
    calls = tmp_path / "calls.log"
    text = f"""
name: cached-work
steps:
  - id: write
    cache: true
    run: [sh, -c, 'echo called >> {calls}; echo "from the agent" > written.txt']
  - id: read
    run: [cat, written.txt]
"""
    first = run(repo, text)
    second = run(repo, text)
    assert calls.read_text() == "called\n"
    assert second.steps["write"].cached and not first.steps["write"].cached
    assert second["read"].output.strip() == "from the agent"
    assert second["write"].changes == first["write"].changes
    trees = {git(repo, "rev-parse", f"{r.work['branch']}^{{tree}}") for r in (first, second)}
    assert len(trees) == 1 and first.work["branch"] != second.work["branch"]


def test_parallel_steps_capture_only_their_own_work(repo):
    """Two steps running at once each have a worktree: each patch holds only its own file, and
    the run's tree (and branch) both."""
    result = run(repo, """
name: side-by-side
pattern: parallel
steps:
  - {id: a, run: [sh, -c, "echo a > a.txt"]}
  - {id: b, run: [sh, -c, "echo b > b.txt; echo b2 >> edit.txt"]}
""")
    assert result.status == "completed"
    assert set(files_of(result, "a")) == {"a.txt"}
    assert set(files_of(result, "b")) == {"b.txt", "edit.txt"}
    branch = result.work["branch"]
    assert in_branch(repo, branch, "a.txt") == "a\n" and in_branch(repo, branch, "b.txt") == "b\n"
    assert len(result.work["commits"]) == 2


def test_parallel_steps_that_conflict_fail_the_later_one_naming_the_file(repo):
    """Two steps at once writing the same file differently: the one applied second fails, its
    error naming the file; nothing is overwritten silently."""
    result = run(repo, """
name: clash
pattern: parallel
steps:
  - {id: a, run: [sh, -c, "echo from-a > same.txt"]}
  - {id: b, run: [sh, -c, "echo from-b > same.txt"]}
""")
    assert result.status == "failed"
    (loser,) = result.failed_steps
    winner = "a" if loser == "b" else "b"
    assert "same.txt" in result[loser].error and "do not apply" in result[loser].error
    assert result.steps[winner].status == "success"


def test_a_failed_attempt_leaves_nothing_for_the_retry(repo, tmp_path):
    """What a failed attempt wrote is discarded: the retry starts from the tree it was keyed on."""
    once = tmp_path / "failed-once"
    result = run(repo, f"""
name: retried
steps:
  - id: flaky
    retries: 1
    retry_backoff: {{base_seconds: 0, max_seconds: 0}}
    run: [sh, -c, 'if [ -e junk.txt ]; then echo dirty > seen.txt; fi; echo x > junk.txt; if [ ! -e {once} ]; then touch {once}; exit 1; fi; echo ok > done.txt']
""")
    assert result.status == "completed" and result.steps["flaky"].attempts == 2
    assert set(files_of(result, "flaky")) == {"junk.txt", "done.txt"}


def test_deliver_apply_puts_the_work_in_the_users_tree(repo):
    """`deliver: apply`: the branch, and the run's changes in the user's working tree."""
    result = run(repo, """
name: applied
deliver: apply
steps:
  - {id: w, run: [sh, -c, "echo out > out.txt; echo more >> edit.txt"]}
""")
    assert sorted(result.work["applied"]) == ["edit.txt", "out.txt"]
    assert (repo / "out.txt").read_text() == "out\n"
    assert (repo / "edit.txt").read_text() == "one\ntwo\nmore\n"
    assert result.work["branch"]


def test_deliver_apply_refuses_to_overwrite_the_users_changes(repo):
    """The user edited a file the run changed while it ran: nothing is applied, the user's
    edit stays, the branch still has the run's work, and the result says why."""
    result = run(repo, """
name: refused
deliver: apply
steps:
  - {id: w, run: [sh, -c, "echo run >> edit.txt; echo new > fresh.txt"]}
  - {id: user, run: [sh, -c, "echo mine > {{ run.origin }}/edit.txt"]}
""")
    assert result.status == "completed"
    assert result.work["applied"] is None and "overwrite" in result.work["refused"]
    assert (repo / "edit.txt").read_text() == "mine\n"
    assert not (repo / "fresh.txt").exists()
    assert in_branch(repo, result.work["branch"], "edit.txt") == "one\ntwo\nrun\n"


def test_a_run_started_with_uncommitted_changes_works_on_them(repo):
    """The user's uncommitted edit to a tracked file is part of the run's tree (and the first
    commit of its branch); an untracked file is not."""
    (repo / "edit.txt").write_text("edited by the user\n")
    (repo / "scratch.txt").write_text("untracked\n")
    result = run(repo, """
name: dirty-start
steps:
  - {id: look, run: [sh, -c, "cat edit.txt; test ! -e scratch.txt && echo ok > checked.txt"]}
""")
    assert result["look"].output.strip() == "edited by the user"
    assert set(files_of(result, "look")) == {"checked.txt"}
    log = git(repo, "log", "--format=%s", result.work["branch"]).splitlines()
    assert log[:2] == ["look: edited by the user", "agentflow: the uncommitted changes the run started from"]


def test_workflow_step_work_is_the_parent_steps(repo):
    """A sub-workflow works in its parent step's tree: its files are the step's changes."""
    (repo / "child.yaml").write_text("""
name: child
steps:
  - {id: c1, run: [sh, -c, "echo child > child.txt"]}
""")
    git(repo, "add", "child.yaml")
    git(repo, "commit", "-qm", "child")
    result = run(repo, """
name: parent
steps:
  - {id: sub, workflow: child.yaml}
  - {id: after, run: [cat, child.txt]}
""")
    assert result.status == "completed", result.failed_steps
    assert set(files_of(result, "sub")) == {"child.txt"}
    assert result["after"].output.strip() == "child"


def test_outside_git_steps_work_in_place_and_say_so(cli, tmp_path):
    """Not in a git repository: one warning saying what is not protected; the step writes in place."""
    (tmp_path / "wf.yaml").write_text("name: plain\nsteps:\n  - {id: w, run: [sh, -c, 'echo x > here.txt']}\n")
    done = cli("run", "wf.yaml", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "not in a git repository" in done.stderr and "neither isolated" in done.stderr
    assert (tmp_path / "here.txt").exists()
    document = json.loads(done.stdout)
    assert document["work"] is None and document["steps"]["w"]["result"]["changes"] is None


@pytest.fixture
def cli_env(prefect_server):
    return {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES)}


@pytest.mark.parametrize("collected", [False, True], ids=["worktree-kept", "worktree-collected"])
def test_resume_after_a_kill_brings_back_completed_work_and_drops_the_partial(repo, cli, cli_env, tmp_path,
                                                                              collected):
    """SIGKILL while the second step has written half its work: the resumed run does not call the
    first step again, brings its file back, and the branch has no trace of the cut step's
    partial write; also when `agentflow gc` removed the crashed run's worktree before."""
    home = tmp_path / "home"  # the worktrees of this test's runs only: `gc` looks at no other test's
    cli_env = {**cli_env, "PREFECT_HOME": str(home)}
    calls, hold, announce = tmp_path / "calls.log", tmp_path / "hold", tmp_path / "announce"
    os.mkfifo(announce)
    hold.touch()
    (repo / "wf.yaml").write_text(f"""
name: killed
steps:
  - {{id: s1, run: [sh, -c, 'echo s1 >> {calls}; echo one > one.txt']}}
  - {{id: s2, run: [sh, -c, 'if [ -e {hold} ]; then echo half > partial.txt; echo "s2 $$" > {announce}; exec sleep 600; fi; echo two > two.txt']}}
""")
    git(repo, "add", "wf.yaml")
    git(repo, "commit", "-qm", "workflow")
    process = subprocess.Popen([sys.executable, "-m", "agentflow", "run", "wf.yaml"], cwd=repo,
                               env={**cli_env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        run_id = next(line.split()[1] for line in process.stdout if line.startswith("run "))
        held = _announced(announce, process)  # s1 done, s2 wrote half its work and holds
        process.kill()
        process.wait()
    finally:
        process.stdout.close()
    hold.unlink()
    left = home / "agentflow-worktrees" / run_id
    assert (left / "partial.txt").exists()  # the cut step's half-done work, in the crashed run's tree
    if collected:
        swept = cli("gc", cwd=repo, env={"PREFECT_HOME": str(home)})
        assert swept.returncode == 0 and f"removed {left}" in swept.stdout, swept.stdout + swept.stderr
        assert not left.exists() and str(left) not in git(repo, "worktree", "list")
    try:
        done = cli("resume", run_id, "--json", cwd=repo, env={"PREFECT_HOME": str(home)})
    finally:
        if Path(f"/proc/{held}").exists():  # the run's watchdog normally killed it already
            os.kill(held, 9)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["steps"]["s1"]["reused"] is True
    assert calls.read_text() == "s1\n"
    branch = document["work"]["branch"]
    names = set(git(repo, "ls-tree", "-r", "--name-only", branch).split())
    assert {"one.txt", "two.txt"} <= names and "partial.txt" not in names
    assert status(repo) == ""


def _announced(fifo: Path, process: subprocess.Popen) -> int:
    """The pid a held step wrote to `fifo` ("NAME PID"); fails if the run ends first."""
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # never waits for a writer, never sees EOF
    text = ""
    try:
        deadline = time.monotonic() + 120
        while "\n" not in text:
            assert process.poll() is None, "the run ended before its step held"
            assert time.monotonic() < deadline, "no step held within 120 s"
            if select.select([fd], [], [], 1.0)[0]:
                text += os.read(fd, 4096).decode()
    finally:
        os.close(fd)
    return int(text.split()[1])


def test_two_runs_at_once_never_eat_each_others_work(repo, cli_env, tmp_path):
    """Two runs of one workflow on one repository, their steps at the same moment: each sees
    only its own file, each gets its own branch, and the user's tree gets neither."""
    (repo / "wf.yaml").write_text(f"""
name: twins
inputs:
  v: {{type: string}}
steps:
  - id: w
    run: [sh, -c, 'echo {{{{ inputs.v }}}} > shared.txt; touch {tmp_path}/ready-{{{{ inputs.v }}}}; n=0; while [ ! -e {tmp_path}/ready-1 ] || [ ! -e {tmp_path}/ready-2 ]; do n=$((n+1)); [ $n -gt 600 ] && exit 3; sleep 0.1; done; cat shared.txt']
""")
    git(repo, "add", "wf.yaml")
    git(repo, "commit", "-qm", "twins")
    runs = [subprocess.Popen([sys.executable, "-m", "agentflow", "run", "wf.yaml", "-i", f"v={v}", "--json"],
                             cwd=repo, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for v in ("1", "2")]
    outputs = [p.communicate(timeout=240) for p in runs]
    documents = [json.loads(out) for out, _ in outputs]
    for value, document in zip(("1", "2"), documents):
        assert document["state"] == "Completed"
        assert document["steps"]["w"]["result"]["output"].strip() == value
        assert in_branch(repo, document["work"]["branch"], "shared.txt") == f"{value}\n"
    assert not (repo / "shared.txt").exists()


def test_diff_and_apply_a_finished_runs_work(repo, cli, tmp_path):
    """`agentflow diff RUN [STEP]` prints each step's patch; `agentflow apply RUN` applies the
    run's work here, and refuses the second time, changing nothing."""
    (repo / "wf.yaml").write_text("""
name: later
deliver: none
steps:
  - {id: one, run: [sh, -c, "echo 1 > one.txt"]}
  - {id: two, run: [sh, -c, "echo 2 >> edit.txt"]}
""")
    git(repo, "add", "wf.yaml")
    git(repo, "commit", "-qm", "later")
    done = cli("run", "wf.yaml", "--json", cwd=repo)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert "branch" not in json.loads(done.stdout)["work"]
    assert not (repo / "one.txt").exists()
    stat = cli("diff", run_id, "--stat", cwd=repo)
    assert stat.returncode == 0, stat.stderr
    assert "created  one.txt  +1 -0" in stat.stdout and "modified edit.txt  +1 -0" in stat.stdout
    patch = cli("diff", run_id, "two", cwd=repo)
    assert "+2" in patch.stdout and "one.txt" not in patch.stdout
    applied = cli("apply", run_id, cwd=repo)
    assert applied.returncode == 0, applied.stderr
    assert (repo / "one.txt").read_text() == "1\n" and (repo / "edit.txt").read_text() == "one\ntwo\n2\n"
    again = cli("apply", run_id, cwd=repo)
    assert again.returncode == 1 and "overwrite" in again.stderr
    assert (repo / "edit.txt").read_text() == "one\ntwo\n2\n"
    unknown = cli("diff", "ffffffff-0000", cwd=repo)
    assert unknown.returncode == 2 and "no run" in unknown.stderr


def test_a_cached_patch_that_no_longer_applies_is_a_miss_and_the_step_runs_again(repo, tmp_path):
    """In place, the first run's file is already in the tree the second run starts from: the
    cached patch (which creates it) does not apply, so the step runs again and its entry is
    refreshed; the run completes."""
    calls = tmp_path / "calls.log"
    text = f"""
name: moved-on
workspace: in-place
steps:
  - {{id: write, cache: true, run: [sh, -c, 'echo called >> {calls}; echo made > made.txt']}}
"""
    first = run(repo, text)
    assert first.status == "completed" and (repo / "made.txt").read_text() == "made\n"
    second = run(repo, text)
    assert second.status == "completed", second.failed_steps
    assert calls.read_text() == "called\ncalled\n"
    assert not second.steps["write"].cached
    assert second["write"].changes.empty  # the same file, made again: nothing new


def test_workspace_in_place_from_the_command_line(repo, cli):
    """`--workspace in-place` keeps the old behaviour for one run (the step writes your tree, its
    changes still captured); refused, naming the steps, when steps may run at the same time."""
    (repo / "wf.yaml").write_text("name: here\nsteps:\n  - {id: w, run: [sh, -c, 'echo x > here.txt']}\n")
    done = cli("run", "wf.yaml", "--workspace", "in-place", "--json", cwd=repo)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (repo / "here.txt").read_text() == "x\n"
    assert document["work"]["workspace"] == "in-place" and "branch" not in document["work"]
    assert [f["path"] for f in document["steps"]["w"]["result"]["changes"]["files"]] == ["here.txt"]
    (repo / "wf.yaml").write_text("name: both\npattern: parallel\nsteps:\n  - {id: a, run: [echo, a]}\n"
                                  "  - {id: b, run: [echo, b]}\n")
    refused = cli("run", "wf.yaml", "--workspace", "in-place", cwd=repo)
    assert refused.returncode == 2 and "steps a, b may run at the same time" in refused.stderr


def test_the_cli_run_leaves_no_begun_tree_behind(repo, cli, tmp_path):
    """`agentflow run` checks the run's tree out while Prefect starts (durability/early_tree.py):
    the run works in it under its own name, and when the run cannot start (no server answers)
    nothing is left in the worktrees folder or in git's list."""
    home = tmp_path / "home"
    (repo / "wf.yaml").write_text("name: early\nsteps:\n  - {id: w, run: [sh, -c, 'echo $(pwd) $(cat edit.txt)']}\n")
    (repo / "edit.txt").write_text("changed\n")
    done = cli("run", "wf.yaml", "--json", cwd=repo, env={"PREFECT_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    output = document["steps"]["w"]["result"]["summary"]
    assert f"agentflow-worktrees/{document['run_id']}" in output and "changed" in output
    unreachable = cli("run", "wf.yaml", cwd=repo, timeout=120, env={
        "PREFECT_HOME": str(home), "PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_CLIENT_MAX_RETRIES": "0"})
    assert unreachable.returncode == 3 and "cannot reach the Prefect API at http://127.0.0.1:9/api" in unreachable.stderr, unreachable.stderr
    assert not [p.name for p in (home / "agentflow-worktrees").iterdir() if p.name.startswith("pending-")]
    assert "pending-" not in git(repo, "worktree", "list")

"""A run's worktree begun before the run has an id (durability/early_tree.py): taken and moved
to the run's name, removed when begun for something else or not taken, made anew when it
cannot be moved, and collected by `gc` when its process died."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prefect.settings import PREFECT_HOME, temporary_settings

from agentflow.flows.durability import early_tree, worktrees

pytestmark = pytest.mark.unit


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True)
    return done.stdout.decode()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository with one commit and an uncommitted change; PREFECT_HOME under tmp_path."""
    home = tmp_path / "home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.txt").write_text("one\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    (root / "a.txt").write_text("two\n")
    with temporary_settings({PREFECT_HOME: str(home)}):
        yield root


def pending(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list").splitlines() if early_tree.PENDING in line]


def test_the_begun_tree_becomes_the_runs_with_the_uncommitted_change(repo):
    early_tree.begin(str(repo), "worktree")
    begun = early_tree.take(str(repo), "worktree")
    assert begun is not None and begun.tree.is_dir() and begun.tree.name.startswith(early_tree.PENDING)
    assert begun.found.commit == git(repo, "rev-parse", "HEAD").strip() and b"+two" in begun.found.start

    base, why = worktrees.pin(str(repo), "worktree", begun.found)
    assert why == "" and base is not None
    ws, _ = worktrees.open_tree("run-1", base, begun.tree)

    assert Path(ws.dir) == worktrees.worktrees_root() / "run-1"
    assert (Path(ws.dir) / "a.txt").read_text() == "two\n"  # the commit, and the change on top
    assert not begun.tree.exists() and pending(repo) == []
    assert early_tree.take(str(repo), "worktree") is None  # taken once


@pytest.mark.parametrize("mode", ["in-place", "worktree"])
def test_a_tree_begun_for_another_directory_or_mode_is_removed(repo, tmp_path, mode):
    early_tree.begin(str(repo), "worktree")
    assert early_tree.take(str(tmp_path) if mode == "worktree" else str(repo), mode) is None
    assert pending(repo) == [] and not any((tmp_path / "home" / "agentflow-worktrees").iterdir())


def test_a_tree_not_taken_is_removed_when_the_command_ends(repo, tmp_path):
    early_tree.begin(str(repo), "worktree")
    early_tree.abandon()
    assert pending(repo) == [] and not any((tmp_path / "home" / "agentflow-worktrees").iterdir())


def test_nothing_is_begun_in_place_or_outside_a_repository(repo, tmp_path):
    early_tree.begin(str(repo), "in-place")
    assert early_tree.take(str(repo), "in-place") is None
    outside = tmp_path / "plain"
    outside.mkdir()
    early_tree.begin(str(outside), "worktree")
    assert early_tree.take(str(outside), "worktree") is None


def test_a_tree_that_cannot_be_moved_is_made_anew(repo, tmp_path):
    """As where the worktrees folder is on another file system: git moves by renaming."""
    base, _ = worktrees.pin(str(repo), "worktree")
    assert base is not None
    ws, _ = worktrees.open_tree("run-2", base, tmp_path / "home" / "agentflow-worktrees" / "pending-1-gone")
    assert (Path(ws.dir) / "a.txt").read_text() == "two\n"
    assert git(Path(ws.dir), "rev-parse", "HEAD").strip() == base.commit


def test_gc_finds_a_begun_tree_whose_process_died(repo, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    root = tmp_path / "home" / "agentflow-worktrees"
    for pid in (dead.pid, subprocess.os.getpid()):
        git(repo, "worktree", "add", "--detach", "-q", str(root / f"{early_tree.PENDING}{pid}-ab12"), "HEAD")
    assert worktrees.left_behind() == [root / f"{early_tree.PENDING}{dead.pid}-ab12"]
    worktrees.remove_left_behind(root / f"{early_tree.PENDING}{dead.pid}-ab12")
    assert len(pending(repo)) == 1  # this process's own, still alive


def test_worktree_commands_of_one_repository_wait_for_each_other(repo, tmp_path):
    """`git worktree add` reads every worktree entry of the repository and fails on one another
    process is making (seen: two workers, one project): each waits for the repository's lock,
    a file in its git directory (shared by processes with Prefect homes of their own), also
    when asked from one of its worktrees."""
    import fcntl
    import threading

    first = tmp_path / "first"
    assert worktrees.worktree_git(repo, "worktree", "add", "--detach", "-q", str(first)).returncode == 0
    lock_file = repo / ".git" / "agentflow-worktree.lock"
    assert lock_file.exists()
    second = tmp_path / "second"
    done: list[int] = []
    with open(lock_file, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process making a worktree of this repository
        adding = threading.Thread(target=lambda: done.append(worktrees.worktree_git(
            first, "worktree", "add", "--detach", "-q", str(second)).returncode))
        adding.start()
        adding.join(timeout=1.0)
        assert adding.is_alive() and not second.exists()  # it waits (asked from a worktree: the same lock)
    adding.join(timeout=60)
    assert done == [0] and (second / "a.txt").read_text() == "one\n"

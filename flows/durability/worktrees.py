"""A run's workspace on disk: the git worktree it works in, and what it was made from.

A run pins a `Base` when it starts: the commit (HEAD) and the user's uncommitted changes to
tracked files as a patch (in the patch store). Its worktree is made from them, outside the
user's tree (`<PREFECT_HOME>/agentflow-worktrees/<run id>`), so runs never share a tree and
the user's own files are never written. A resumed run makes its tree again from the same
base (a cut-short step's partial changes are discarded) and the journaled patches are
applied on top by the scheduler (engine/run_workspace.py). A step that may run beside others
works in a worktree of its own, made from the run's tree at its start.

`in-place` (the workflow's `workspace: in-place`) works in the user's tree itself; a private
index under the run's directory tracks it, so the user's staging area is never touched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agentflow.errors import ConfigError
from agentflow.git import git
from agentflow.flows.durability import patches, storage
from agentflow.flows.durability.records import run_dir, run_key
from agentflow.tasks import workspace
from agentflow.tasks.workspace import Workspace

# A worktree's files are written by as many processes as there are cores (git >= 2.32; older
# git ignores the setting): a run's worktree is made 40 % faster, on its path to the first step.
PARALLEL_CHECKOUT = ("-c", "checkout.workers=0")
AUTHOR = {"GIT_AUTHOR_NAME": "agentflow", "GIT_AUTHOR_EMAIL": "agentflow@localhost",
          "GIT_COMMITTER_NAME": "agentflow", "GIT_COMMITTER_EMAIL": "agentflow@localhost"}


def worktree_git(repo: str | Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`git -C repo ARGS` for a `git worktree` command (add, move, remove, prune), one at a time
    per repository on this machine. While git adds a worktree it reads every other worktree's
    entry under `.git/worktrees/`, and fails on one another process is still making: "failed to
    read .git/worktrees/ID/commondir" (seen: two workers starting runs of one project). The lock
    is a file in the repository's git directory, so that workers with Prefect homes of their
    own share it."""
    common = _common_dir(str(repo))
    if common is None:  # not a repository (git says so itself)
        return git(repo, *args)
    with open(os.path.join(common, "agentflow-worktree.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return git(repo, *args)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_common_dirs: dict[str, str | None] = {}


def _common_dir(repo: str) -> str | None:
    if repo not in _common_dirs:
        done = git(repo, "rev-parse", "--git-common-dir")
        found = done.stdout.decode().strip() if done.returncode == 0 else ""
        _common_dirs[repo] = os.path.join(repo, found) if found else None  # relative to `repo`, or absolute
    return _common_dirs[repo]


class Base(BaseModel):
    """What a run works from: kept in `<run dir>/workspace.json`, so a resume (or a rerun)
    makes the same tree again."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    mode: Literal["worktree", "in-place"]
    top: str  # the user's repository (its top directory)
    sub: str = ""  # where in it the run was started
    commit: str
    start: str = ""  # the patch of uncommitted changes it started from ("" if none)


def patch_store() -> str:
    """This machine's patch directory (durability/patches.py copies them to and from the shared store)."""
    return str(patches.local_dir())


def worktrees_root() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser() / "agentflow-worktrees"


class Found(BaseModel):
    """A repository as a run finds it: where it is, its HEAD, and the uncommitted changes."""

    model_config = ConfigDict(frozen=True)

    top: str
    sub: str
    commit: str
    start: bytes


def find(directory: str) -> Found | str:
    """The repository `directory` is in, or why there is none (not a git repository, no
    commit yet, git missing)."""
    try:
        top = git(directory, "rev-parse", "--show-toplevel")
    except ConfigError as exc:
        return str(exc)
    if top.returncode != 0:
        return f"{os.path.abspath(directory)} is not in a git repository"
    top_dir = top.stdout.decode().strip()
    head = git(top_dir, "rev-parse", "--verify", "--quiet", "HEAD")
    if head.returncode != 0:
        return f"{top_dir} has no commit yet"
    sub = os.path.relpath(os.path.realpath(directory), os.path.realpath(top_dir))
    return Found(top=top_dir, sub="" if sub == "." else sub, commit=head.stdout.decode().strip(),
                 start=starting_patch(top_dir))


def pin(directory: str, mode: str, found: Found | None = None) -> tuple[Base | None, str]:
    """The base a run started in `directory` works from (`found` there already, or found now),
    or None and why not: the run then works in place, uncaptured."""
    if found is None:
        located = find(directory)
        if isinstance(located, str):
            return None, located
        found = located
    digest = workspace.store_patch(patch_store(), found.start) if found.start else ""
    patches.share(digest)
    base = Base(mode="in-place" if mode == "in-place" else "worktree", top=found.top, sub=found.sub,
                commit=found.commit, start=digest)
    return base, ""


def starting_patch(top: str) -> bytes:
    """The user's uncommitted changes to tracked files, staged or not: what a run starts from
    on top of HEAD (untracked files are not part of it)."""
    return git(top, "diff", "HEAD", "--binary", "--full-index").stdout


def save_base(run_id: str, base: Base) -> None:
    storage.shared().write(run_key(run_id, "workspace.json"), base.model_dump_json().encode())


def read_base(run_id: str) -> Base | None:
    try:
        return Base.model_validate_json(storage.shared().read(run_key(run_id, "workspace.json")))
    except (OSError, ValueError):
        return None


def here(base: Base, directory: str) -> Base:
    """The base as this machine works from it: in the repository `directory` is in (a resume
    on another machine, in its own checkout), when that is not where the run started.
    ConfigError if that checkout lacks the run's commit."""
    found = git(directory, "rev-parse", "--show-toplevel")
    top = found.stdout.decode().strip() if found.returncode == 0 else ""
    if not top or os.path.realpath(top) == os.path.realpath(base.top):
        return base
    if git(top, "cat-file", "-e", f"{base.commit}^{{commit}}").returncode != 0:
        raise ConfigError(f"the run started at commit {base.commit[:12]}, which the repository {top} does not have; "
                          "fetch it (git fetch) and resume again")
    return base.model_copy(update={"top": top})


def open_tree(run_id: str, base: Base, made: Path | None = None) -> tuple[Workspace, str]:
    """The run's workspace, made (or made again, on a resume) from its base; and its tree.
    `made`: a worktree of the base's commit checked out already (durability/early_tree.py),
    moved into place."""
    store = patch_store()
    if base.mode == "in-place":
        index = run_dir(run_id) / "index"
        ws = Workspace(dir=base.top, sub=base.sub, mode="in-place", index=str(index), store=store)
        if not index.exists():
            index.parent.mkdir(parents=True, exist_ok=True)
            _must(git(base.top, "read-tree", base.commit, env=ws.env()), "read the commit into agentflow's index")
        return ws, workspace.tree_of(ws)
    directory = worktrees_root() / run_id
    ws = Workspace(dir=str(directory), sub=base.sub, mode="worktree", store=store)
    if directory.is_dir() and git(directory, "rev-parse", "--git-dir").returncode == 0:
        workspace.reset(ws, base.commit)  # a resume: what a cut-short step left is discarded
        if made is not None:
            remove(base.top, str(made))
    else:
        if directory.exists():  # a worktree git no longer knows: made again
            shutil.rmtree(directory)
            worktree_git(base.top, "worktree", "prune")
        directory.parent.mkdir(parents=True, exist_ok=True)
        if made is None or worktree_git(base.top, "worktree", "move", str(made), str(directory)).returncode != 0:
            if made is not None:  # another file system (git moves by renaming): made here instead
                remove(base.top, str(made))
            _must(worktree_git(base.top, *PARALLEL_CHECKOUT, "worktree", "add", "--detach", "-q", str(directory),
                      base.commit), f"make the run's worktree at {directory}")
    if base.start:
        patches.bring(base.start)
        _must(git(directory, "apply", "--index", "--binary", "--whitespace=nowarn",
                  input=workspace.read_patch(store, base.start)), "apply the uncommitted changes the run started from")
    # Just checked out (and patched through the index): the index is the tree, no file to stage.
    return ws, _must(git(directory, "write-tree"), "write the run's starting tree").decode().strip()


def isolated(run_id: str, run_ws: Workspace, tree: str, number: int) -> Workspace:
    """A worktree of its own for a step call that may run beside others, holding `tree`."""
    commit = _must(git(run_ws.dir, "commit-tree", tree, "-m", "agentflow: a step's starting tree", env=AUTHOR),
                   "record the step's starting tree").decode().strip()
    directory = worktrees_root() / f"{run_id}.{number}"
    if directory.exists():
        remove(run_ws.dir, str(directory))
    _must(worktree_git(run_ws.dir, *PARALLEL_CHECKOUT, "worktree", "add", "--detach", "-q", str(directory), commit),
          f"make a step's worktree at {directory}")
    return Workspace(dir=str(directory), sub=run_ws.sub, mode="worktree", base=tree, store=run_ws.store,
                     isolated=True)


def remove(repo: str, directory: str) -> None:
    """Remove a worktree (and what git keeps of it)."""
    if worktree_git(repo, "worktree", "remove", "--force", directory).returncode != 0 and os.path.isdir(directory):
        shutil.rmtree(directory, ignore_errors=True)
        worktree_git(repo, "worktree", "prune")


def remove_run(run_id: str, base: Base) -> None:
    """Remove the run's worktree and its steps' (a finished run's, or one nothing needs)."""
    root = worktrees_root()
    for directory in [root / run_id, *root.glob(f"{run_id}.*")]:
        if directory.is_dir():
            remove(base.top, str(directory))


def _must(done: object, what: str) -> bytes:
    if done.returncode != 0:  # type: ignore[attr-defined]
        error = done.stderr.decode(errors="replace").strip()[:300]  # type: ignore[attr-defined]
        raise ConfigError(f"agentflow could not {what}: git said: {error}")
    return done.stdout  # type: ignore[attr-defined]


def left_behind() -> list[Path]:
    """Worktrees no running process works in: a crashed run's (its resume makes its tree again
    from the base and the journal, so nothing needs them). A worktree whose run has no record
    here (another storage root's) is left alone: nothing says its process is gone."""
    from agentflow.errors import StateDamaged
    from agentflow.flows.durability.processes import process_start
    from agentflow.flows.durability.records import read_record

    found = []
    root = worktrees_root()
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if directory.name.startswith("pending-"):  # begun for a run not named yet (durability/early_tree.py)
            pid = directory.name.split("-")[1]
            if not pid.isdigit() or process_start(int(pid)) is None:
                found.append(directory)
            continue
        run_id = directory.name.split(".", 1)[0]
        try:
            record = read_record(run_id)
        except StateDamaged:
            record = None
        if record is not None and not (record.attempts and record.attempts[-1].alive()):
            found.append(directory)
    return found


def remove_left_behind(directory: Path) -> None:
    """Remove a worktree `left_behind` found, and what its repository keeps of it."""
    common = git(directory, "rev-parse", "--git-common-dir")
    repo = common.stdout.decode().strip() if common.returncode == 0 else ""
    if repo:
        remove(str(Path(directory, repo).resolve().parent) if not os.path.isabs(repo) else str(Path(repo).parent),
               str(directory))
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)

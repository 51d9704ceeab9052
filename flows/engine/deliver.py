"""A finished run's work, delivered as its workflow says (`deliver:`).

`branch` (the default): a branch `agentflow/<workflow>/<run id>` in the user's repository,
from the commit the run pinned: a first commit with the uncommitted changes it started from
(if any), then one commit per step that changed files, authored by agentflow, its message
naming the step and its summary. `apply`: that branch, and its changes applied to the user's
working tree (refused, with the files named, if that would overwrite the user's own
uncommitted changes). `none`: nothing; `agentflow apply RUN` applies it later.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from agentflow.errors import AgentflowError
from agentflow.git import git
from agentflow.flows.durability import patches, worktrees
from agentflow.flows.durability.journal import Journal
from agentflow.flows.durability.worktrees import AUTHOR, Base
from agentflow.flows.engine.run_workspace import Commit, RunWorkspace
from agentflow.tasks import workspace
from agentflow.tasks.changes import Changes

_log = logging.getLogger("agentflow")


class DeliveryRefused(AgentflowError):
    """The run's work cannot be applied to the user's tree as it is now."""


def branch_name(workflow: str, run_id: str) -> str:
    return "agentflow/" + re.sub(r"\.{2,}|\.$|\.lock$", "-", workflow) + "/" + run_id


def make_branch(base: Base, start_tree: str, commits: list[Commit], workflow: str, run_id: str) -> tuple[str, str]:
    """The branch holding the run's commits; returns its name and its head commit."""
    parent = base.commit
    if base.start:
        parent = _commit(base.top, start_tree, parent, "agentflow: the uncommitted changes the run started from")
    for commit in commits:
        summary = " ".join(commit.summary.split())[:200]
        parent = _commit(base.top, commit.tree, parent, f"{commit.label}: {summary}" if summary else commit.label)
    name = branch_name(workflow, run_id)
    done = git(base.top, "update-ref", f"refs/heads/{name}", parent)
    if done.returncode != 0:
        raise AgentflowError(f"agentflow could not make branch {name}: {done.stderr.decode(errors='replace')[:300]}")
    return name, parent


def apply_to_tree(top: str, start_tree: str, final_tree: str) -> list[str]:
    """Apply the run's changes (its starting tree to its final one) to the user's working
    tree at `top`; return the files. DeliveryRefused, changing nothing, if they do not apply
    (the user changed those files since the run started)."""
    patch = git(top, "diff", "--binary", "--full-index", "-M", start_tree, final_tree).stdout
    if not patch:
        return []
    names = git(top, "diff", "--name-only", "-z", "-M", start_tree, final_tree).stdout.decode().split("\0")
    files = [n for n in names if n]
    check = git(top, "apply", "--check", "--binary", "--whitespace=nowarn", input=patch)
    if check.returncode != 0:
        said = check.stderr.decode(errors="replace").strip().splitlines()
        raise DeliveryRefused("the run's changes were not applied to your working tree: they would overwrite "
                              f"changes of yours ({'; '.join(said[:3])}); commit or stash yours, then "
                              "`agentflow apply RUN` (the branch has the run's work)")
    done = git(top, "apply", "--binary", "--whitespace=nowarn", input=patch)
    if done.returncode != 0:
        raise DeliveryRefused(f"applying the run's changes failed: {done.stderr.decode(errors='replace')[:300]}")
    return files


def _commit(top: str, tree: str, parent: str, message: str) -> str:
    done = git(top, "commit-tree", tree, "-p", parent, "-m", message, env=AUTHOR)
    if done.returncode != 0:
        raise AgentflowError(f"agentflow could not commit a step's work: {done.stderr.decode(errors='replace')[:300]}")
    return done.stdout.decode().strip()


def finish(rws: RunWorkspace, workflow: str, how: str, completed: bool) -> dict[str, Any]:
    """Deliver a finished run's work (`how`, when it completed); return what
    `WorkflowResult.work` says of it. Its worktrees stay until `remove` (after the run's
    reports were read from them)."""
    work: dict[str, Any] = {"workspace": rws.base.mode, "commit": rws.base.commit,
                            "commits": [{"step": c.label, "tree": c.tree} for c in rws.commits],
                            # where each step's `changes.patch` is: `<patch_store>/<digest>.patch`
                            "patch_store": rws.ws.store}
    if rws.attached:
        return work  # a child run's work is its parent step's
    if completed and rws.commits and rws.base.mode == "worktree" and how != "none":
        work["branch"], work["head"] = make_branch(rws.base, rws.start_tree, rws.commits, workflow, rws.run_id)
        if how == "apply":
            try:
                work["applied"] = apply_to_tree(rws.base.top, rws.start_tree, rws.tree)
            except DeliveryRefused as exc:
                work["applied"] = None
                work["refused"] = str(exc)
                _log.warning("agentflow: %s", exc)
    return work


def remove(rws: RunWorkspace) -> None:
    """A finished run's worktrees (its own and its steps'): nothing needs them any more."""
    if not rws.attached and rws.base.mode == "worktree":
        worktrees.remove_run(rws.run_id, rws.base)


def recorded(run_id: str) -> tuple[Base | None, list[tuple[str, str, Changes]]]:
    """A run's base and its steps' changes as its journal holds them, in the order they
    joined the run's tree: (call label, step, changes)."""
    base = worktrees.read_base(run_id)
    if base is not None:
        base = worktrees.here(base, ".")  # a run of another machine: this checkout
    journal = Journal(run_id)
    try:
        entries = [(label, done.step, done.result.changes) for label, done in journal.done.items()
                   if done.result.changes is not None and not done.result.changes.empty]
    finally:
        journal.close()
    return base, entries


def rebuild(base: Base, changes: list[Changes]) -> tuple[str, str]:
    """The run's starting and final trees, made again from its base and its steps' patches in
    a private index of the user's repository (nothing in the user's tree or index moves)."""
    store = worktrees.patch_store()
    with tempfile.TemporaryDirectory(prefix="agentflow-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _must(git(base.top, "read-tree", base.commit, env=env), "read the run's commit")
        for digest in [base.start, *(c.patch for c in changes)]:
            patches.bring(digest)  # made on another machine: copied from the shared store
        start = _apply_cached(base.top, env, [workspace.read_patch(store, base.start)] if base.start else [])
        final = _apply_cached(base.top, env, [workspace.read_patch(store, c.patch) for c in changes])
    return start, final


def _apply_cached(top: str, env: dict[str, str], patches: list[bytes]) -> str:
    for patch in patches:
        _must(git(top, "apply", "--cached", "--binary", "--whitespace=nowarn", env=env, input=patch),
              "apply a step's patch to the run's commit")
    return _must(git(top, "write-tree", env=env), "write the run's tree").decode().strip()


def _must(done: Any, what: str) -> bytes:
    if done.returncode != 0:
        raise AgentflowError(f"agentflow could not {what}: {done.stderr.decode(errors='replace').strip()[:300]}")
    return done.stdout

"""A run's tree as its steps change it: which tree each call starts from, how each step's work
joins the run's tree (computed there, brought from a step's own worktree, from the cache, or
from the journal on a resume), and the cache key's part that names the tree a step sees.

The run's tree only changes through this object, in the scheduler's thread, one step's
patch at a time; the patches applied so far (content-addressed, in order) are its lineage,
and a step's cache key holds the pinned commit, the run's starting patch and that lineage
rather than a hash of the live tree: a file nothing declares and nothing wrote changes no
key, and `plan` can say which step's patch differed.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from agentflow.flows.durability import early_tree, patches, worktrees
from agentflow.flows.durability.worktrees import Base
from agentflow.tasks import workspace
from agentflow.tasks.kinds import KINDS
from agentflow.tasks.changes import Changes
from agentflow.tasks.workspace import Workspace

_log = logging.getLogger("agentflow")
# Kinds of call that work in the repository: the agents' that do (tasks/kinds.py) and a local
# child workflow.
WRITING_KINDS = (*(kind.request_kind for kind in KINDS.values() if kind.works_in_tree), "workflow")


@dataclass
class Commit:
    """A step whose work changed the run's tree: one commit of the delivered branch."""

    label: str
    summary: str
    tree: str


@dataclass
class RunWorkspace:
    run_id: str
    base: Base
    ws: Workspace  # the run's tree
    tree: str  # the tree it holds now
    start_tree: str = ""  # the tree it started from (commit and starting patch)
    attached: bool = False  # a child workflow's run, working in its parent's tree
    lineage: list[str] = field(default_factory=list)  # digests of the patches applied, in order
    by_step: dict[str, str] = field(default_factory=dict)  # patch digest -> the call that made it
    commits: list[Commit] = field(default_factory=list)
    _steps: int = 0

    def key_part(self) -> dict[str, Any]:
        """What a call's tree is made of, for its cache key (durability/cache.py `Commit`):
        the pinned commit (a child run: its parent step's tree), the patch the run started
        from, and the patches of the steps before it, in order; `from` names their steps,
        for `plan`'s explanation only."""
        return tree_key(self.base.commit, self.base.start, self.lineage, self.by_step)

    def for_call(self, isolated: bool, tree: str) -> Workspace:
        """Where a call works, starting from `tree` (the run's tree when it was queued): the
        run's tree, or (`isolated`: it may run beside others) a worktree of its own."""
        if not isolated or self.ws.mode != "worktree":
            return self.ws.model_copy(update={"base": tree})
        self._steps += 1
        return worktrees.isolated(self.run_id, self.ws, tree, self._steps)

    def discard(self, ws: Workspace | None) -> None:
        """A call's own worktree, once its work (if any) was taken."""
        if ws is not None and ws.isolated:
            worktrees.remove(self.ws.dir, ws.dir)

    def took(self, label: str, summary: str, changes: Changes | None, ws: Workspace | None,
             fresh: bool) -> None:
        """A call's work joins the run's tree: already there (`fresh`: it was just computed in
        the run's tree), else applied (its own worktree, the cache, the journal).
        PatchConflict if it does not apply, naming the files; the run's tree is then unchanged."""
        try:
            if changes is None or changes.empty:
                return
            in_tree = fresh and ws is not None and not ws.isolated and changes.base == self.tree
            if not in_tree:
                patches.bring(changes.patch)  # computed on another machine: its patch is in the shared store
            tree = changes.tree if in_tree else workspace.apply(self.ws, changes, label)
            self.tree = tree
            self.lineage.append(changes.patch)
            self.by_step.setdefault(changes.patch, label)
            self.commits.append(Commit(label=label, summary=summary, tree=tree))
        finally:
            self.discard(ws)


def tree_key(commit: str | None, start: str, lineage: list[str], by_step: dict[str, str]) -> dict[str, Any]:
    """The cache key's part naming a tree by what made it (shared with `plan`, engine/dry_run.py)."""
    return {"commit": commit, "start": start, "patches": list(lineage), "from": [by_step.get(d, "?") for d in lineage]}


@contextmanager
def entered(rws: RunWorkspace | None) -> Iterator[None]:
    """The run's steps work in its tree: this process's directory is the run's tree while they
    run (functions called in-process and relative paths see it too)."""
    if rws is None or rws.attached or rws.base.mode != "worktree":
        yield
        return
    before = os.getcwd()
    os.chdir(rws.ws.workdir)
    try:
        yield
    finally:
        os.chdir(before)


def open_for_run(run_id: str, mode: str, directory: str) -> tuple[RunWorkspace | None, str]:
    """The workspace of the run `run_id`, started in `directory`: its base pinned on the first
    attempt (or by the run it reruns), its tree made, or made again on a resume; or None and
    why (not in a git repository: the steps then work in place, uncaptured). A child workflow
    run works in its parent step's tree (`workspace.ATTACHED`)."""
    parent = workspace.ATTACHED.get()
    if parent is not None:
        base = Base(mode=parent.mode, top=parent.dir, sub=parent.sub, commit=parent.base)
        return RunWorkspace(run_id=run_id, base=base, ws=parent, tree=parent.base, start_tree=parent.base,
                            attached=True), ""
    base = worktrees.read_base(run_id)
    begun = None
    if base is not None:
        base = worktrees.here(base, directory)  # resumed on another machine: its own checkout
    else:
        begun = early_tree.take(directory, mode)  # `agentflow run` began its tree
        base, why = worktrees.pin(directory, mode, begun.found if begun else None)
        if base is None:
            return None, why
        worktrees.save_base(run_id, base)
    ws, tree = worktrees.open_tree(run_id, base, begun.tree if begun else None)
    return RunWorkspace(run_id=run_id, base=base, ws=ws, tree=tree, start_tree=tree), ""

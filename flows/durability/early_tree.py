"""A run's worktree, begun before the run has an id.

`agentflow run` knows the repository and the commit it will work from about a second before
Prefect is imported and the server names the run. The checkout is git's work, in processes
of its own (0.1 s for 400 files, 0.4 s for 2000): it is made meanwhile, under a provisional
name in the worktrees folder, and the run moves it to its own name when it opens its tree
(durability/worktrees.py `open_tree`). What was begun for another directory or mode, or not
taken (a mistake found later, a resume), is removed; a checkout that failed is made again by
the run, which then says why if it cannot be.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from agentflow._prefect_env import prefect_home
from agentflow.flows.durability import worktrees
from agentflow.flows.durability.worktrees import PARALLEL_CHECKOUT, Found

PENDING = "pending-"  # `<pid>-<random>` follows: durability/worktrees.py `left_behind` knows it


@dataclass(frozen=True)
class Begun:
    directory: str  # what it was begun for
    mode: str
    found: Found
    tree: Path  # the worktree, checked out at found.commit


_begun: list[Begun] = []
_thread: list[threading.Thread] = []


def begin(directory: str, mode: str) -> None:
    """Start making the worktree a run in `directory` will work in (`workspace: worktree` only)."""
    if mode != "worktree" or _thread:
        return
    thread = threading.Thread(target=_make, args=(directory, mode), name="agentflow-early-tree", daemon=True)
    _thread.append(thread)
    thread.start()


def take(directory: str, mode: str) -> Begun | None:
    """The worktree begun for a run in `directory` with `mode`, once; None if none was (or its
    checkout failed). One begun for anything else is removed."""
    if not _thread:
        return None
    _thread.pop().join()
    begun = _begun.pop() if _begun else None
    if begun is not None and (begun.directory, begun.mode) != (directory, mode):
        worktrees.remove(begun.found.top, str(begun.tree))
        return None
    return begun


def abandon() -> None:
    """Remove a worktree begun and not taken (the command ends)."""
    take("", "")


def _make(directory: str, mode: str) -> None:
    try:
        found = worktrees.find(directory)
        if isinstance(found, str):
            return
        tree = prefect_home() / "agentflow-worktrees" / f"{PENDING}{os.getpid()}-{secrets.token_hex(4)}"
        tree.parent.mkdir(parents=True, exist_ok=True)
        made = worktrees.worktree_git(found.top, *PARALLEL_CHECKOUT, "worktree", "add", "--detach", "-q", str(tree),
                                      found.commit)
        if made.returncode == 0:
            _begun.append(Begun(directory=directory, mode=mode, found=found, tree=tree))
    except Exception:  # noqa: BLE001 - an early start only: the run makes its tree itself, and says what fails
        return

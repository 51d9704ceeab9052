"""A template step's file: written into the step's tree (the run's worktree), where the step's
capture takes it as its work (tasks/workspace.py). Called as a `python` step by the engine
with the template already rendered (engine/requests.py)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from agentflow.errors import StepFailed
from agentflow.tasks.results import AgentResult


def inside(dest: str) -> str | None:
    """Why `dest` cannot name a file inside the tree, or None if it can."""
    path = PurePosixPath(dest)
    if not dest.strip() or path.is_absolute() or ".." in path.parts or dest.startswith("~"):
        return f"dest {dest!r} is not inside the repository: give a path relative to it, without `..`"
    return None


def write_rendered(dest: str, content: str, mode: str = "create") -> AgentResult:
    """Write `content` to `dest` (relative to this process's directory: the step's tree)."""
    why = inside(dest)
    if why is not None:
        raise StepFailed(why, retryable=False)
    root = Path.cwd().resolve()
    target = root / dest
    # A symbolic link on the way could lead outside the tree: the real parent must be inside.
    parent = target.parent.resolve()
    if parent != root and root not in parent.parents:
        raise StepFailed(f"dest {dest!r} leads outside the repository (through a symbolic link)", retryable=False)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise StepFailed(f"dest {dest!r} is not a plain file; give another path", retryable=False)
    if mode == "create" and target.exists():
        raise StepFailed(f"dest {dest!r} exists already; set `mode: overwrite` to replace it, or choose another path",
                         retryable=False)
    parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
    return AgentResult(summary=f"wrote {dest} ({lines} line{'s' if lines != 1 else ''})",
                       data={"dest": dest, "bytes": len(content.encode()), "mode": mode},
                       metrics={"bytes": len(content.encode())}, output=os.fspath(dest))

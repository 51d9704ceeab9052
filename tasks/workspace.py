"""Where a step call works, and how its work is captured, stored and brought back.

A `Workspace` is a directory in a git repository plus the index that tracks it: a run's
worktree (its own index), a worktree of the step's own (a step that may run beside others),
or the user's tree itself (`workspace: in-place`, tracked by a private index so that the
user's staging area is never touched). The flow fills one in for each call that may write
(tasks/request.py: `AgentRequest.workspace`), with `base`, the git tree the call starts from.

When the call ends, everything in the directory (tracked or not, ignored files aside) is
staged into that index and written as a tree: the diff from `base` to it is the call's patch
(new, deleted, renamed, binary and mode changes). Its bytes go to the patch store, named by
their sha256, and the `Changes` (tasks/changes.py) join the call's result. A call that fails
leaves nothing behind in a worktree: the tree is reset to `base`, so a retry, a fallback or
the next step starts from exactly what was keyed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agentflow import config
from agentflow.errors import StepFailed
from agentflow.git import git
from agentflow.tasks.changes import Changes, FileChange
from agentflow.tasks.results import AgentResult, Artifact

_log = logging.getLogger("agentflow")
Mode = Literal["worktree", "in-place"]
_MB = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class PatchConflict(StepFailed):
    """A patch does not apply to the tree it is brought to (files changed there since)."""

    def __init__(self, message: str, files: list[str]):
        self.files = files
        super().__init__(message, retryable=False)


class Workspace(BaseModel):
    """One call's directory, the index that tracks it, and the tree it starts from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str  # the top of the worktree (or of the user's repository, in place)
    sub: str = ""  # where in it the run was started: commands and agents work there
    mode: Mode = "worktree"
    index: str | None = None  # GIT_INDEX_FILE; None: the worktree's own index
    base: str = ""  # the git tree the call starts from (what its cache key was made of)
    store: str = ""  # the patch store: a directory of `<sha256>.patch` files
    isolated: bool = False  # a worktree of the call's own, removed once its patch is applied

    @property
    def workdir(self) -> str:
        return str(Path(self.dir) / self.sub) if self.sub else self.dir

    def env(self) -> dict[str, str] | None:
        return {"GIT_INDEX_FILE": self.index} if self.index else None


def _run(ws: Workspace, *args: str, input: bytes | None = None) -> bytes:
    done = git(ws.dir, *args, env=ws.env(), input=input)
    if done.returncode != 0:
        raise StepFailed(f"git {' '.join(args[:3])} failed in {ws.dir}: "
                         f"{done.stderr.decode(errors='replace').strip()[:300]}", retryable=False)
    return done.stdout


def tree_of(ws: Workspace) -> str:
    """The tree the directory holds now: everything in it, ignored files aside, staged."""
    _run(ws, "add", "--all")
    return _run(ws, "write-tree").decode().strip()


def reset(ws: Workspace, tree: str) -> None:
    """Make a worktree hold exactly `tree` again: what a failed call wrote is discarded.
    Never done to the user's own tree (`in-place`)."""
    if ws.mode != "worktree":
        return
    _run(ws, "read-tree", "--reset", "-u", tree)
    _run(ws, "clean", "-fdq", "--", ":/")


def max_patch_bytes() -> int:
    """`max_patch_mb` (AGENTFLOW_MAX_PATCH_MB, agentflow.toml): read once per process, not at
    every step's capture; a bad value is a ConfigError."""
    return int(config.current().max_patch_mb * _MB)


def diff(ws: Workspace, base: str, tree: str, label: str = "") -> Changes:
    """The changes from tree `base` to tree `tree`, their patch stored (content-addressed)."""
    if tree == base:
        return Changes(base=base, tree=tree)
    files = _files(ws, base, tree)
    patch = _run(ws, "diff", "--binary", "--full-index", "-M", base, tree)
    limit = max_patch_bytes()
    if len(patch) > limit:
        raise StepFailed(f"step call `{label}` changed {len(files)} files, a {len(patch) / _MB:.1f} MB patch, over "
                         f"the {limit / _MB:g} MB limit; narrow what it writes, or raise AGENTFLOW_MAX_PATCH_MB",
                         retryable=False)
    return Changes(base=base, tree=tree, patch=store_patch(ws.store, patch), bytes=len(patch), files=files)


def _files(ws: Workspace, base: str, tree: str) -> list[FileChange]:
    """Each changed file's action and line counts, from one `git diff --raw --numstat -z`: the
    raw entries (`:modes shas STATUS\0path\0[new path\0]`) come first, then the counts
    (`added\tdeleted\tpath\0`, or for a rename `added\tdeleted\t\0old\0new\0`)."""
    tokens = [t.decode(errors="replace") for t in _run(ws, "diff", "--raw", "--numstat", "-z", "-M", base, tree)
              .split(b"\0")]
    raw: list[tuple[str, str | None, str]] = []  # (status, old path, path)
    position = 0
    while position < len(tokens) and tokens[position].startswith(":"):
        status = tokens[position].split()[-1]
        if status.startswith(("R", "C")):
            raw.append((status, tokens[position + 1], tokens[position + 2]))
            position += 3
        else:
            raw.append((status, None, tokens[position + 1]))
            position += 2
    counts: dict[str, tuple[int | None, int | None]] = {}
    while position < len(tokens) and tokens[position]:
        added, deleted, path = tokens[position].split("\t", 2)
        if not path:  # a rename: the old and new paths follow
            path = tokens[position + 2]
            position += 2
        counts[path] = (None if added == "-" else int(added), None if deleted == "-" else int(deleted))
        position += 1
    files = []
    for status, old, path in raw:
        action = {"A": "created", "D": "deleted", "R": "renamed", "C": "created"}.get(status[0], "modified")
        added, deleted = counts.get(path, (None, None))
        files.append(FileChange(path=path, action=action, added=added, deleted=deleted,
                                old_path=old if action == "renamed" else None))
    return files


def store_patch(store: str, patch: bytes) -> str:
    digest = hashlib.sha256(patch).hexdigest()
    path = Path(store) / f"{digest}.patch"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(patch)
        os.replace(partial, path)
    return digest


def read_patch(store: str, digest: str) -> bytes:
    """A stored patch, checked against its digest (a damaged file is not applied)."""
    if not _DIGEST.match(digest):
        raise ValueError(f"not a patch digest: {digest[:80]!r}")
    path = Path(store) / f"{digest}.patch"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StepFailed(f"the patch {digest[:12]} is not in the patch store ({path.parent}): the step's work "
                         "cannot be brought back; run it again (--no-cache, or agentflow rerun --from STEP)",
                         retryable=False) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise StepFailed(f"{path} is damaged (its content does not match its name); move it aside and run the "
                         "step again", retryable=False)
    return data


def apply(ws: Workspace, changes: Changes, label: str = "") -> str:
    """Bring `changes` into the workspace (files and index); return the tree it then holds.
    PatchConflict, naming the files, if the patch does not apply: nothing is changed then."""
    if changes.empty:
        return tree_of(ws)
    patch = read_patch(ws.store, changes.patch)
    index = ["--index"] if ws.mode == "worktree" else []
    # git apply is all or nothing: a patch that does not apply changes no file.
    done = git(ws.dir, "apply", "--binary", "--whitespace=nowarn", *index, env=ws.env(), input=patch)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")
        files = sorted(set(re.findall(r"(?:patch failed|already exists in (?:working directory|index)|"
                                      r"does not exist in index|does not match index): ?([^\s:]+)", stderr)))
        files = files or [f.path for f in changes.files]
        raise PatchConflict(f"the changes of `{label}` do not apply to the run's tree: {', '.join(files[:10])} "
                            "changed there since", files)
    # Applied through the index (a worktree), the index is the tree; in place, staged first.
    return _run(ws, "write-tree").decode().strip() if index else tree_of(ws)


def captured(request_label: str, ws: Workspace | None, call: Callable[[], AgentResult],
             writes: list[str] | None = None) -> AgentResult:
    """`call()`'s result with the changes it made to `ws` (none: `call()` as it is). A call
    that fails, or changes files outside `writes` (globs), leaves a worktree as it found it;
    a result that says it failed keeps no changes either."""
    if ws is None:
        return call()
    try:
        result = call()
        changes = diff(ws, ws.base, tree_of(ws), request_label)
        _within(request_label, changes, writes)
    except BaseException:
        reset(ws, ws.base)
        raise
    if result.status == "failed":
        reset(ws, ws.base)
        return result
    result = with_changes(result, changes, ws.dir)
    claimed = result.changes.unbacked_claims if result.changes is not None else []
    if claimed:  # the answer says it wrote files it did not: a warning on the step (its log, the UI)
        _log.warning("agentflow: step call %s says it created or modified %s, which it did not change", request_label,
                     ", ".join(claimed[:10]))
    return result


def _within(label: str, changes: Changes, writes: list[str] | None) -> None:
    """StepFailed, naming the files, if the call changed files its `writes:` does not allow."""
    if writes is None or changes.empty:
        return
    touched = [f.path for f in changes.files] + [f.old_path for f in changes.files if f.old_path]
    outside = [p for p in touched if not any(fnmatch.fnmatchcase(p, glob) for glob in writes)]
    if outside:
        shown = ", ".join(outside[:10]) + (f" and {len(outside) - 10} more" if len(outside) > 10 else "")
        raise StepFailed(f"step call `{label}` changed files outside its `writes:` ({', '.join(writes)}): {shown}; "
                         "its changes were discarded (widen `writes:`, or tell the agent where to write)",
                         retryable=False)


def with_changes(result: AgentResult, changes: Changes, workdir: str = "") -> AgentResult:
    """The result with its changes, its artifacts being the files really changed; the
    agent's own `Created:`/`Modified:` claims that the patch does not back are kept apart."""
    changed = {f.path for f in changes.files} | {f.old_path for f in changes.files if f.old_path}
    # A file written on purpose outside the workspace (a report for the user, by absolute
    # path) is real work too: kept as an artifact if it is there, though not in the patch.
    outside = [a for a in result.artifacts if os.path.isabs(a.path) and not _under(a.path, workdir)
               and os.path.exists(a.path)]
    unbacked = [a.path for a in result.artifacts if _normal(a.path) not in changed and a not in outside]
    artifacts = [Artifact(path=f.path, action=f.action) for f in changes.files] + outside
    return result.model_copy(update={"changes": changes.model_copy(update={"unbacked_claims": unbacked}),
                                     "artifacts": artifacts})


def _under(path: str, directory: str) -> bool:
    return bool(directory) and os.path.realpath(path).startswith(os.path.realpath(directory) + os.sep)


def _normal(path: str) -> str:
    return path[2:] if path.startswith("./") else path


# The workspace of the step whose call runs a child workflow here (engine/children.py): the
# child's run works in it rather than in a worktree of its own.
ATTACHED: ContextVar[Workspace | None] = ContextVar("agentflow_attached_workspace", default=None)

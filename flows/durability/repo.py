"""The repository state a run works on, and the content of a step's files: the parts of a
cache key that live outside the definition."""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.errors import ConfigError
from agentflow.git import git

MAX_FILES = 5000  # files hashed per step; beyond this the glob is too wide to be a cache input


@dataclass(frozen=True)
class RepoState:
    """The git state a run works on: the commit, and a hash of uncommitted changes if any."""

    commit: str | None
    dirty: str | None = None
    reason: str = ""  # why there is no commit (not a repository, no commits yet)

    def key_part(self) -> dict[str, Any]:
        if self.commit is None:
            # Said explicitly, so that a step outside git is never silently keyed as if it
            # were at some commit; it is keyed on its inputs and files only.
            return {"commit": None, "reason": self.reason}
        return {"commit": self.commit, "dirty": self.dirty}


def read_repo_state(path: str | Path = ".") -> RepoState:
    """HEAD, and a hash of the diff against it plus untracked files when the tree is dirty."""
    try:
        head = git(path, "rev-parse", "--verify", "--quiet", "HEAD")
    except ConfigError:
        return RepoState(commit=None, reason="git is not installed")
    if head.returncode != 0:
        inside = git(path, "rev-parse", "--git-dir").returncode == 0
        return RepoState(commit=None, reason="no commits yet" if inside else f"not a git repository: {path}")
    commit = head.stdout.decode().strip()
    status = git(path, "status", "--porcelain=v1", "-z", "--untracked-files=all").stdout
    if not status:
        return RepoState(commit=commit)
    digest = hashlib.sha256(status)
    digest.update(git(path, "diff", "HEAD", "--binary").stdout)
    untracked = git(path, "ls-files", "--others", "--exclude-standard", "-z").stdout.split(b"\0")
    for name in sorted(n for n in untracked if n):
        digest.update(name)
        try:
            digest.update(hashlib.sha256((Path(path) / name.decode()).read_bytes()).digest())
        except OSError:
            digest.update(b"<unreadable>")
    return RepoState(commit=commit, dirty=digest.hexdigest()[:16])


def hash_files(patterns: list[str], base: str | Path = ".") -> dict[str, str]:
    """Content hashes of the files the globs match, by path (the step's `files:`)."""
    found: dict[str, str] = {}
    for pattern in patterns:
        for name in sorted(glob.glob(str(Path(base) / pattern), recursive=True)):
            path = Path(name)
            if path.is_file() and name not in found:
                if len(found) >= MAX_FILES:
                    break
                found[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return found

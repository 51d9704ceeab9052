"""The step cache: a content-addressed key over everything that can change a step's answer.

The key is computed by the flow before a step is submitted (`step_key`, pure) from the
rendered request, the step's definition, the agent's configuration, the repository state
(read once per run by `read_repo_state`) and the content hashes of the step's `files`.
`StepCachePolicy` only hands that key to Prefect, so key computation in the task engine
does no I/O. Nothing secret goes into a key: requests and agent configurations hold no
credentials (those live in blocks).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.locking.filesystem import FileSystemLockManager
from prefect.utilities.annotations import quote

KEY_PARTS = ("inputs", "files", "commit", "agent")
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
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, timeout=60)

    try:
        head = git("rev-parse", "--verify", "--quiet", "HEAD")
    except FileNotFoundError:
        return RepoState(commit=None, reason="git is not installed")
    if head.returncode != 0:
        inside = git("rev-parse", "--git-dir").returncode == 0
        return RepoState(commit=None, reason="no commits yet" if inside else f"not a git repository: {path}")
    commit = head.stdout.decode().strip()
    status = git("status", "--porcelain=v1", "-z", "--untracked-files=all").stdout
    if not status:
        return RepoState(commit=commit)
    digest = hashlib.sha256(status)
    digest.update(git("diff", "HEAD", "--binary").stdout)
    untracked = git("ls-files", "--others", "--exclude-standard", "-z").stdout.split(b"\0")
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


def step_key(*, workflow: str, step_definition: dict[str, Any], request: dict[str, Any],
             agent: dict[str, Any] | None, repo: RepoState, files: dict[str, str],
             parts: tuple[str, ...] = KEY_PARTS) -> tuple[str, dict[str, Any]]:
    """The cache key of one step call, and the parts it was made of (for `plan` to explain)."""
    components: dict[str, Any] = {"workflow": workflow, "step": step_definition}
    if "inputs" in parts:
        components["inputs"] = request
    if "agent" in parts:
        components["agent"] = agent
    if "commit" in parts:
        components["repo"] = repo.key_part()
    if "files" in parts:
        components["files"] = files
    canonical = json.dumps(components, sort_keys=True, separators=(",", ":"), default=str)
    return "agentflow-" + hashlib.sha256(canonical.encode()).hexdigest()[:40], components


@dataclass
class StepCachePolicy(CachePolicy):
    """Use the key the flow computed and put in the step's request; no key, no caching."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        request = inputs.get("request")
        if isinstance(request, quote):
            request = request.unquote()
        return getattr(request, "cache_key", None)


class StepLocks(FileSystemLockManager):
    """Locks on cache keys, so that two runs reaching the same step call at once make one
    agent call: with SERIALIZABLE isolation the second waits for the first's lock, then
    finds its record and is Cached (a failed first call releases the lock; the second then
    calls). Prefect's file locks never expire on their own; these are also freed when the
    process holding them is gone (same machine), so a run killed with SIGKILL does not block
    every later run. The directory, beside the result records, is resolved on first use.
    """

    def __init__(self) -> None:  # no I/O here: built by the compiler
        self._locks = {}
        self._directory: Path | None = None

    @property
    def lock_files_directory(self) -> Path:  # type: ignore[override]
        if self._directory is None:
            from prefect.settings import get_current_settings

            base = Path(get_current_settings().results.local_storage_path).expanduser()
            self._directory = base / "agentflow-locks"
        return self._directory

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        acquired = super().acquire_lock(key, holder, acquire_timeout, hold_timeout)
        if acquired:
            # Prefect's holder is a transaction id; add who holds it, so that others can tell
            # when it has died. Written whole (rename), never seen half-written.
            path = self._lock_path_for_key(key)
            expiration = self._locks[key].get("expiration")
            info = {"holder": holder, "expiration": str(expiration) if expiration is not None else None,
                    "host": socket.gethostname(), "pid": os.getpid()}
            temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(info))
            os.replace(temporary, path)
        return acquired

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        if self.is_locked(key):
            from agentflow.events import StepEvent, emit

            emit(StepEvent(kind="waiting", step="", label="", cache_key=key))
        return super().wait_for_lock(key, timeout)

    def _get_lock_info(self, key: str, use_cache: bool = True) -> Any:
        try:
            info = super()._get_lock_info(key, use_cache=use_cache)
        except ValueError:
            # Created but not yet written by the process taking it: held.
            return {"holder": "", "expiration": None, "path": self._lock_path_for_key(key)}
        if info is not None and _holder_gone(info):
            Path(info["path"]).unlink(missing_ok=True)
            self._locks.pop(key, None)
            return None
        return info


def _holder_gone(info: dict[str, Any]) -> bool:
    """Whether the process that took the lock is dead (known only on the machine it ran on)."""
    pid = info.get("pid")
    return info.get("host") == socket.gethostname() and isinstance(pid, int) and not os.path.exists(f"/proc/{pid}")

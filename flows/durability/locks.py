"""Locks on cache keys, so that two runs reaching the same step call at once make one call.

With SERIALIZABLE isolation Prefect takes a lock on a task's cache key before it runs the
task, and a second run of the same key waits for it, then finds the first's record and is
Cached. A lock whose holder was killed must not block every later run: Prefect's own file
locks never expire (its holder is a transaction id, not a process).

`StepLocks` implements Prefect's public `LockManager` protocol with `flock(2)` on one file
per key: the kernel releases a lock when the process that holds it dies, whatever killed
it, so a dead holder frees its lock by construction, and no process id is ever compared
(there is nothing to reuse). A lock file is never deleted: a waiter may hold it open, and
a deleted file would let two processes each lock a different inode.

A flock holds on one machine only. Where machines share the results (and so the cache),
`agentflow storage set --locks redis://...` names a Redis every one of them reaches, and
the locks are leases there (durability/leases.py): chosen when the locks are first used.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agentflow.events import StepEvent, emit
from agentflow.flows.durability.leases import RedisLeases

_POLL_S = 0.05  # how often a waiter tries again


class StepLocks:
    """A `prefect.locking.protocol.LockManager` on `flock`. The directory, beside the result
    records, is resolved on first use (the compiler builds this and does no I/O)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._held: dict[str, tuple[str, int]] = {}  # key -> (holder, open file descriptor)
        self._guard = threading.Lock()
        self._leases: RedisLeases | None = None
        self._chosen = directory is not None  # a directory given: flock there
        self._choosing = threading.Lock()

    def _shared(self) -> "RedisLeases | None":
        """The Redis leases every machine sharing the storage uses, if it names a Redis:
        chosen once (steps side by side ask at once, and must share one)."""
        with self._choosing:
            if not self._chosen:
                from agentflow.flows.durability import storage

                url = storage.config().get("locks")
                self._leases = RedisLeases(url) if url else None
                self._chosen = True
        return self._leases

    def __deepcopy__(self, memo: dict) -> "StepLocks":
        return self  # shared state: Prefect copies cache policies, and a copy would forget its locks

    @property
    def directory(self) -> Path:
        if self._directory is None:
            from agentflow.flows.durability import storage

            self._directory = storage.root() / "agentflow-locks"
        return self._directory

    def _path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:100]
        if safe != key:
            safe += "-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        return self.directory / f"{safe}.lock"

    def _try(self, key: str) -> int | None:
        """An open descriptor holding the key's lock, or None if another holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _until(ready: Callable[[], bool], key: str, timeout: float | None) -> bool:
        """Poll `ready` until it holds (True) or `timeout` runs out (False); say once that the
        run waits, so that the live view shows why a step has not started."""
        deadline = None if timeout is None else time.monotonic() + timeout
        announced = False
        while not ready():
            if not announced:
                emit(StepEvent(kind="waiting", step="", label="", cache_key=key))
                announced = True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    # ---- the LockManager protocol ---------------------------------------------------------
    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        if hold_timeout is not None:
            raise ValueError("StepLocks holds a lock until it is released or its process ends; "
                             "hold_timeout is not supported")
        leases = self._shared()
        if leases is not None:
            return self._until(lambda: leases.try_acquire(key, holder), key, acquire_timeout)
        with self._guard:
            held = self._held.get(key)
            if held is not None and held[0] == holder:
                return True
        taken: list[int] = []

        def take() -> bool:
            fd = self._try(key)
            if fd is not None:
                taken.append(fd)
            return fd is not None

        if not self._until(take, key, acquire_timeout):
            return False
        with self._guard:
            self._held[key] = (holder, taken[0])
        return True

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        leases = self._shared()
        if leases is not None:
            leases.release(key, holder)
            return
        with self._guard:
            held = self._held.get(key)
            if held is None or held[0] != holder:
                raise ValueError(f"no lock held by {holder} for key {key}")
            del self._held[key]
        os.close(held[1])  # closing the descriptor releases the flock

    def is_locked(self, key: str) -> bool:
        leases = self._shared()
        if leases is not None:
            return leases.is_locked(key)
        with self._guard:
            if key in self._held:
                return True
        if not self._path(key).exists():
            return False
        fd = self._try(key)
        if fd is None:
            return True
        os.close(fd)
        return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        leases = self._shared()
        if leases is not None:
            return leases.is_holder(key, holder)
        with self._guard:
            held = self._held.get(key)
        return held is not None and held[0] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return self._until(lambda: not self.is_locked(key), key, timeout)

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.wait_for_lock, key, timeout)

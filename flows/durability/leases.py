"""Locks on cache keys across machines: a lease in Redis that its holder keeps renewing.

Where several machines share one result storage, two of them reaching the same cached step
call at once must still make one call (README: "one call"). A flock is per machine, so then
the lock is a Redis key, `agentflow:lock:<cache key>`, set only if absent (SET NX) with an
expiry (`LEASE_S`), holding a token of its holder. While it holds the key, this process
renews the expiry every third of it, from one thread for all its keys; a holder that dies
(a killed process, a lost machine) stops renewing, and the key expires: a dead holder frees
the key within `LEASE_S`, and nobody compares process ids across machines. Release deletes
the key only if it still holds the holder's token (a script, so that is one step).

Chosen over a lease in the object store because an object store has no put-if-absent
that every store offers (and fsspec exposes none), so two machines could each believe they
won; Redis's SET NX is atomic, and Prefect's own distributed locking (prefect-redis) uses it
too. The Redis URL is kept in the shared store (`agentflow storage set --locks URL`), so
every machine that shares the results shares the locks, and is never logged with its
password.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from agentflow.errors import ConfigError

LEASE_S = 30.0  # how long a dead holder keeps a key
_POLL_S = 0.1
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=f"{user}{host}" + (f":{parts.port}" if parts.port else "")))


class RedisLeases:
    """The lock operations of `StepLocks` (durability/locks.py), on Redis leases."""

    def __init__(self, url: str, lease_s: float = LEASE_S) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError("the shared storage's locks are in Redis (`agentflow storage set --locks`), and the "
                              "redis package is not installed here: pip install redis") from None
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"--locks must be a Redis URL (redis://HOST:PORT/DB), not {redacted(url)!r}")
        self.url = redacted(url)
        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.lease_ms = int(lease_s * 1000)
        self._release = self.client.register_script(_RELEASE)
        self._renew = self.client.register_script(_RENEW)
        self._tokens: dict[str, tuple[str, str]] = {}  # key -> (holder, token)
        self._guard = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._me = f"{socket.gethostname()}:{os.getpid()}"

    @staticmethod
    def _name(key: str) -> str:
        return f"agentflow:lock:{key}"

    def _call(self, what: Callable[[], Any]) -> Any:
        import redis

        try:
            return what()
        except redis.RedisError as exc:
            raise ConfigError(f"the step locks' Redis at {self.url} cannot be reached ({exc}); start it, or "
                              "`agentflow storage set --locks none` to lock per machine") from None

    def try_acquire(self, key: str, holder: str) -> bool:
        with self._guard:
            held = self._tokens.get(key)
            if held is not None:
                return held[0] == holder
        token = f"{self._me}:{holder}:{uuid.uuid4().hex}"
        if not self._call(lambda: self.client.set(self._name(key), token, nx=True, px=self.lease_ms)):
            return False
        with self._guard:
            self._tokens[key] = (holder, token)
            self._start_renewing()
        return True

    def release(self, key: str, holder: str) -> None:
        with self._guard:
            held = self._tokens.get(key)
            if held is None or held[0] != holder:
                raise ValueError(f"no lock held by {holder} for key {key}")
            del self._tokens[key]
        self._call(lambda: self._release(keys=[self._name(key)], args=[held[1]]))

    def is_locked(self, key: str) -> bool:
        with self._guard:
            if key in self._tokens:
                return True
        return bool(self._call(lambda: self.client.exists(self._name(key))))

    def is_holder(self, key: str, holder: str) -> bool:
        with self._guard:
            held = self._tokens.get(key)
        return held is not None and held[0] == holder

    def _start_renewing(self) -> None:
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(target=self._renew_all, name="agentflow-lease-renewer", daemon=True)
            self._renewer.start()

    def _renew_all(self) -> None:
        import redis

        while True:
            time.sleep(self.lease_ms / 3000)
            with self._guard:
                held = dict(self._tokens)
                if not held:
                    self._renewer = None
                    return
            for key, (_, token) in held.items():
                try:
                    self._renew(keys=[self._name(key)], args=[token, self.lease_ms])
                except redis.RedisError:
                    continue  # tried again next period; the lease outlives a short outage

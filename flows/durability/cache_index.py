"""What agentflow knows about its cache entries, next to Prefect's result records.

Prefect stores each step result under its key; this index adds what `plan`, `cache stats`
and `cache clear` need: which workflow, step and agent a key belongs to, the parts the key
was made of (so `plan` can say which one changed), and hit/miss counts. It lives in the
shared store beside the results (durability/storage.py), so every machine sharing the
results sees every entry and every machine's counts: one object per entry
(`agentflow-index/entries/<key>.json`), the latest per step, and the hits and misses: lines
appended to `outcomes.jsonl` in a directory, or in an object store (which cannot append)
one object of counts per process (`outcomes/<host>-<pid>-<start>.json`, rewritten whole by
the process that owns it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agentflow.flows.durability import storage
from agentflow.flows.durability.store import StoreUnavailable

_log = logging.getLogger("agentflow")
FOLDER = "agentflow-index"
_counts: dict[str, Counter] = {}  # this process's hits and misses, by agent
_counts_lock = threading.Lock()
_own: dict[int, str] = {}  # this process's object of counts, by pid (a forked child has its own)


def where() -> str:
    store = storage.shared()
    return str(store.local / FOLDER) if store.local is not None else f"{FOLDER}/ in {store.where}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass(frozen=True)
class Entry:
    key: str
    workflow: str
    step: str
    agent: str | None
    created: float
    expires: float
    components: dict[str, Any]


def record_call(workflow: str, step: str, agent: str | None, key: str, components: dict[str, Any],
                ttl_s: float, hit: bool) -> None:
    """A cached call's outcome (and, on a miss, its new entry); never fails a run over it."""
    try:
        if not hit:
            record_entry(workflow, step, agent, key, components, ttl_s)
        record_outcome(agent, step, hit)
    except (OSError, StoreUnavailable) as exc:
        _log.warning("agentflow: could not update the cache index (%s); results are unaffected", exc)


def record_entry(workflow: str, step: str, agent: str | None, key: str, components: dict[str, Any],
                 ttl_s: float) -> None:
    """Remember a freshly computed entry, and make it the step's latest (what `plan` compares to)."""
    now = time.time()
    entry = {"key": key, "workflow": workflow, "step": step, "agent": agent, "created": now,
             "expires": now + ttl_s, "components": components}
    _write(f"{FOLDER}/entries/{key}.json", entry)
    _write(_latest_key(workflow, step), entry)


def _latest_key(workflow: str, step: str) -> str:
    return f"{FOLDER}/latest/{_safe(workflow)}/{_safe(step)}.json"


def record_outcome(agent: str | None, step: str, hit: bool) -> None:
    """Count a hit or a miss: a line appended to `outcomes.jsonl` where the store is a
    directory (one short write: appends do not interleave), else this process's object of
    counts, rewritten whole (an object store cannot append)."""
    store = storage.shared()
    if store.local is not None:
        line = json.dumps({"agent": agent or f"({step})", "hit": hit, "at": time.time()}) + "\n"
        path = store.local / FOLDER / "outcomes.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line)
        return
    with _counts_lock:
        _counts.setdefault(agent or f"({step})", Counter())["hits" if hit else "misses"] += 1
        data = json.dumps({name: dict(c) for name, c in _counts.items()}, sort_keys=True).encode()
        own = _own.setdefault(os.getpid(), f"{FOLDER}/outcomes/{socket.gethostname()}-{os.getpid()}-{time.time_ns()}.json")
        storage.shared().write(own, data)


def latest(workflow: str, step: str) -> Entry | None:
    return _read(_latest_key(workflow, step))


def entries() -> list[Entry]:
    store = storage.shared()
    found = store.read_many(sorted(store.list(f"{FOLDER}/entries")))
    return [e for e in (_parse(found[key]) for key in sorted(found)) if e is not None]


def outcomes() -> dict[str, Counter]:
    """Hits and misses by agent, of every process of every machine sharing the store."""
    store = storage.shared()
    counts: dict[str, Counter] = {}
    for data in store.read_many(sorted(store.list(f"{FOLDER}/outcomes"))).values():
        try:
            for agent, numbers in json.loads(data).items():
                counts.setdefault(agent, Counter()).update({k: int(v) for k, v in numbers.items()})
        except (ValueError, AttributeError, TypeError):
            continue  # not ours, or damaged: its counts are left out
    _legacy(counts)
    return counts


def _legacy(counts: dict[str, Counter]) -> None:
    """Counts appended to one file, `outcomes.jsonl` (a directory's)."""
    try:
        text = storage.shared().read(f"{FOLDER}/outcomes.jsonl").decode("utf-8", errors="replace")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            item = json.loads(line)
            counts.setdefault(item["agent"], Counter())["hits" if item["hit"] else "misses"] += 1
        except (ValueError, KeyError, TypeError):
            continue  # a torn line from a killed process


def forget(entry: Entry) -> None:
    store = storage.shared()
    store.delete(f"{FOLDER}/entries/{entry.key}.json")
    current = latest(entry.workflow, entry.step)
    if current is not None and current.key == entry.key:
        store.delete(_latest_key(entry.workflow, entry.step))


def _write(key: str, data: dict[str, Any]) -> None:
    storage.shared().write(key, json.dumps(data, sort_keys=True, default=str).encode())  # never half an entry


def _read(key: str) -> Entry | None:
    try:
        return _parse(storage.shared().read(key))
    except FileNotFoundError:
        return None


def _parse(data: bytes) -> Entry | None:
    try:
        return Entry(**json.loads(data))
    except (ValueError, TypeError):
        return None

"""What agentflow knows about its cache entries, next to Prefect's result records.

Prefect stores each step result under its key; this index adds what `plan`, `cache stats`
and `cache clear` need: which workflow, step and agent a key belongs to, the parts the key
was made of (so `plan` can say which one changed), and hit/miss counts. It lives beside the
local result records (`$PREFECT_HOME/storage/agentflow-index` by default), one JSON file per
entry plus an append-only log of hits and misses: a local index; with a shared storage block
the results are shared, their explanations are per machine.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.flows.durability import storage

_log = logging.getLogger("agentflow")


def index_dir() -> Path:
    return storage.root() / "agentflow-index"


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
    except OSError as exc:
        _log.warning("agentflow: could not update the cache index (%s); results are unaffected", exc)


def record_entry(workflow: str, step: str, agent: str | None, key: str, components: dict[str, Any],
                 ttl_s: float) -> None:
    """Remember a freshly computed entry, and make it the step's latest (what `plan` compares to)."""
    now = time.time()
    entry = {"key": key, "workflow": workflow, "step": step, "agent": agent, "created": now,
             "expires": now + ttl_s, "components": components}
    base = index_dir()
    _write(base / "entries" / f"{key}.json", entry)
    _write(base / "latest" / _safe(workflow) / f"{_safe(step)}.json", entry)


def record_outcome(agent: str | None, step: str, hit: bool) -> None:
    line = json.dumps({"agent": agent or f"({step})", "hit": hit, "at": time.time()}) + "\n"
    path = index_dir() / "outcomes.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:  # one short line per write: appends do not interleave
        handle.write(line)


def latest(workflow: str, step: str) -> Entry | None:
    return _read(index_dir() / "latest" / _safe(workflow) / f"{_safe(step)}.json")


def entries() -> list[Entry]:
    folder = index_dir() / "entries"
    found = [_read(path) for path in sorted(folder.glob("*.json"))] if folder.exists() else []
    return [e for e in found if e is not None]


def outcomes() -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    path = index_dir() / "outcomes.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a torn line from a killed process
            counts.setdefault(item["agent"], Counter())["hits" if item["hit"] else "misses"] += 1
    return counts


def forget(entry: Entry) -> None:
    (index_dir() / "entries" / f"{entry.key}.json").unlink(missing_ok=True)
    latest_path = index_dir() / "latest" / _safe(entry.workflow) / f"{_safe(entry.step)}.json"
    current = _read(latest_path)
    if current is not None and current.key == entry.key:
        latest_path.unlink(missing_ok=True)


def _write(path: Path, data: dict[str, Any]) -> None:
    storage.atomic_write(path, json.dumps(data, sort_keys=True, default=str))  # never half an entry


def _read(path: Path) -> Entry | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Entry(**data)
    except (OSError, ValueError, TypeError):
        return None

"""The run journal: what a run has finished, kept so that a resumed run never does it again.

Every step call that completes (a step, one `for_each` item, one `repeat` round) is appended
to its run's journal the moment the scheduler learns of it, whatever the step's cache
settings. A resumed run (the same Prefect flow run started again: `agentflow resume`, a flow
retry, `prefect flow-run retry`) reads the journal and takes a call's result from it instead
of calling again, as long as the call is the same: same label and same call identity (step
definition, agent and rendered request: `CallKey.identity`, the same digests the cache key
is made of, without the repository state). The cache answers "has anyone computed this at
this commit?"; the journal answers "has this run already done this?", and is never expired,
cleared or keyed on the commit.

Entries are JSON (a result is an `AgentResult` as JSON): nothing read back runs code.

Where the shared store is a directory, the journal is one append-only file,
`agentflow-runs/<run>/steps.jsonl`, written through a memory map (`_MappedLog`). An object
store cannot append: there each entry is an object of its own, `steps/<time>-<pid>-<n>.json`,
written once before the call counts as done, and read back in name order (a later entry for
the same label wins, as a later line does).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from agentflow.flows.durability import storage
from agentflow.flows.durability.records import damaged, run_key, where
from agentflow.tasks.results import AgentResult

_log = logging.getLogger("agentflow")


@dataclass(frozen=True)
class Done:
    step: str
    identity: str
    result: AgentResult


class Journal:
    """The completed calls of one run: read at start, appended to as calls complete."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.store = storage.shared()
        self.where = where(run_key(run_id, "steps.jsonl" if self.store.local is not None else "steps/"))
        self.done: dict[str, Done] = {}  # by label: `review`, `gateways[bKash]`, `profile#2`
        self._lock = threading.Lock()
        self._log: _MappedLog | None = None
        self._written = 0  # entries this process wrote (an object store's: numbers their objects)
        self._load()

    @property
    def path(self) -> Path:
        """The journal's file, where the store is a directory."""
        assert self.store.local is not None
        return self.store.local / run_key(self.run_id, "steps.jsonl")

    def _load(self) -> None:
        if self.store.local is None:
            folder = run_key(self.run_id, "steps")
            found = self.store.read_many(sorted(self.store.list(folder)))
            lines = [found[key] for key in sorted(found)]
        else:
            try:
                content = self.path.read_bytes()
            except FileNotFoundError:
                return
            except OSError as exc:
                raise damaged(self.path, exc, "a resume then runs every step of the run again") from None
            lines = content[:_data_length(content)].splitlines()
        for line in lines:
            try:
                entry = json.loads(line)
                result = AgentResult.model_validate(entry["result"])
                self.done[entry["label"]] = Done(entry.get("step", ""), entry["id"], result)
            except (ValueError, KeyError, TypeError, ValidationError):
                continue  # a line cut short by a kill, or of an older format: that call runs again

    def lookup(self, label: str, identity: str) -> AgentResult | None:
        found = self.done.get(label)
        return found.result if found is not None and found.identity == identity else None

    def record(self, label: str, done: Done) -> None:
        try:
            line = json.dumps({"label": label, "step": done.step, "id": done.identity, "at": time.time(),
                               "result": done.result.model_dump(mode="json")}) + "\n"
        except (TypeError, ValueError) as exc:  # a result whose data is not JSON: a redo on resume
            _log.warning("agentflow: step call %s is not kept for resume: its result is not JSON (%s)",
                         label, exc)
            return
        with self._lock:
            if self.store.local is None:
                # Written before the call counts as done: if the store cannot be reached, the
                # call fails (StoreUnavailable) and a resume runs it again.
                self._written += 1
                name = f"{time.time_ns():020d}-{os.getpid()}-{self._written:06d}.json"
                self.store.write(run_key(self.run_id, f"steps/{name}"), line.encode())
            else:
                if self._log is None:
                    self._log = _MappedLog(self.path)
                self._log.append(line.encode())
        self.done[label] = done

    def seed(self, entries: dict[str, Done]) -> None:
        """Start a new run with calls another run did (`agentflow rerun`)."""
        for label, done in entries.items():
            self.record(label, done)

    def close(self) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None


class _MappedLog:
    """An append-only file written through a shared memory map.

    A record is in the page cache, so it outlives a SIGKILL of this process, as soon as it is
    copied in; no system call, so the GIL is never given up. A write and flush per record did
    give it up and, with Prefect's threads busy, took 0.25-0.5 ms to get it back, per step
    (benchmarks/ B1; a writer thread had the same cost, waking per record). The file grows
    in chunks of zeros: readers stop at the first NUL, and `close` trims the rest. A kill in
    the middle of a copy leaves a torn last line, which `Journal._load` skips.
    """

    CHUNK = 1 << 20

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        size = os.fstat(self.fd).st_size
        self.end = _data_length(os.pread(self.fd, size, 0)) if size else 0
        self.map: mmap.mmap | None = None
        self._grow(0)

    def _grow(self, need: int) -> None:
        if self.map is not None and self.end + need <= len(self.map):
            return
        if self.map is not None:
            self.map.close()
        size = self.end + need + self.CHUNK
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)

    def append(self, data: bytes) -> None:
        self._grow(len(data))
        assert self.map is not None
        self.map[self.end:self.end + len(data)] = data
        self.end += len(data)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
        os.ftruncate(self.fd, self.end)
        os.close(self.fd)


def _data_length(content: bytes) -> int:
    """Where the records end in a journal file: at the first NUL of a preallocated tail."""
    position = content.find(b"\0")
    return len(content) if position < 0 else position

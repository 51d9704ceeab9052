"""The run journal: what a run has finished, kept so that a resumed run never does it again.

Every step call that completes (a step, one `for_each` item, one `repeat` round) is appended
to its run's journal the moment the scheduler learns of it, whatever the step's cache
settings. A resumed run (the same Prefect flow run started again: `agentflow resume`, a flow
retry, `prefect flow-run retry`) reads the journal and takes a call's result from it instead
of calling again, as long as the call is the same: same label, same step definition, same
agent, same rendered request (its fingerprint). The cache answers "has anyone computed this
at this commit?"; the journal answers "has this run already done this?", and is never
expired, cleared or keyed on the commit.

A run's directory also holds its record (`run.json`: what it was started from, pinned for
resume) and one file per command running now (`procs/PID`), so that the commands a crashed
run left behind can be found and stopped. It lives beside the local result records:
`<results.local_storage_path>/agentflow-runs/<flow run id>/`. Local to the machine that ran
the run: resume it there (or share the directory).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import mmap
import pickle
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentflow.tasks.backends.process import process_start
from agentflow.tasks.results import AgentResult

_log = logging.getLogger("agentflow")


def runs_dir() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path).expanduser() / "agentflow-runs"


def run_dir(run_id: str) -> Path:
    return runs_dir() / run_id


class Attempt(BaseModel):
    """One process that ran (part of) the run: enough to tell later whether it still lives."""

    pid: int
    host: str
    proc_start: int | None = None  # the process's start time in clock ticks (guards pid reuse)
    started: float


class RunRecord(BaseModel):
    """What a run was started from, pinned so that `resume` finishes that same run."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    workflow: str
    source: str  # the workflow file, absolute (or `<text>`)
    cwd: str  # steps run here (relative paths, the repository)
    spec_hash: str
    definition: dict[str, Any]  # {"spec": ..., "agents": ...} as loaded, to say what changed
    inputs: dict[str, Any]
    repo: dict[str, Any] = Field(default_factory=dict)  # commit and dirty hash when it started
    cache: str = "use"
    created: float
    attempts: list[Attempt] = Field(default_factory=list)


def read_record(run_id: str) -> RunRecord | None:
    path = run_dir(run_id) / "run.json"
    try:
        return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_record(record: RunRecord) -> None:
    directory = run_dir(record.run_id)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f"run.json.{os.getpid()}.tmp"
    temporary.write_text(record.model_dump_json(indent=1), encoding="utf-8")
    os.replace(temporary, directory / "run.json")  # never a half-written record


def this_attempt() -> Attempt:
    return Attempt(pid=os.getpid(), host=socket.gethostname(), proc_start=process_start(os.getpid()),
                   started=time.time())


def definition_of(workflow: Any) -> dict[str, Any]:
    """A workflow's definition as loaded, for a run to pin and `resume` to compare."""
    return {"spec": workflow.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            "agents": {name: agent.model_dump(mode="json", exclude_defaults=True)
                       for name, agent in sorted(workflow.agents.items())}}


def fingerprint(label: str, definition: dict[str, Any], agent: dict[str, Any] | None,
                request_view: dict[str, Any]) -> str:
    """Identity of one step call within a run. No repository state: a resumed run takes a
    completed call from the journal even if the commit moved since."""
    canonical = json.dumps({"label": label, "step": definition, "agent": agent, "request": request_view},
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Done:
    step: str
    fingerprint: str
    result: AgentResult


class Journal:
    """The completed calls of one run: read at start, appended to as calls complete."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.directory = run_dir(run_id)
        self.path = self.directory / "steps.jsonl"
        self.done: dict[str, Done] = {}  # by label: `review`, `gateways[bKash]`, `profile#2`
        self._lock = threading.Lock()
        self._log: _MappedLog | None = None
        self._load()

    def _load(self) -> None:
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = content[:_data_length(content)].splitlines()
        for line in lines:
            try:
                entry = json.loads(line)
                result = pickle.loads(base64.b64decode(entry["result"]))
            except Exception:  # a line cut short by a kill: the call it names did not count
                continue
            if isinstance(result, AgentResult):
                self.done[entry["label"]] = Done(entry.get("step", ""), entry["fp"], result)

    def lookup(self, label: str, fp: str) -> AgentResult | None:
        found = self.done.get(label)
        return found.result if found is not None and found.fingerprint == fp else None

    def record(self, label: str, done: Done) -> None:
        try:
            payload = base64.b64encode(pickle.dumps(done.result, protocol=pickle.HIGHEST_PROTOCOL)).decode()
        except Exception as exc:  # noqa: BLE001 - an unpicklable value costs a redo on resume, not the run
            _log.warning("agentflow: step call %s is not kept for resume: its result cannot be pickled (%s)",
                         label, exc)
            return
        line = json.dumps({"label": label, "step": done.step, "fp": done.fingerprint, "at": time.time(),
                           "result": payload}) + "\n"
        self.done[label] = done
        with self._lock:
            if self._log is None:
                self._log = _MappedLog(self.path)
            self._log.append(line.encode())

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

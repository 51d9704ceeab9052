"""agentflow's own log, on structlog: one call site per line, three places it goes.

`configure()` is called once by each entry point (the CLI, the flow a worker runs). A line is
an event with its context bound (workflow, run_id, step, agent, attempt, component); it is
written

- as one JSON object per line to the log file (AGENTFLOW_LOG_FILE, default
  `$PREFECT_HOME/agentflow/agentflow.jsonl`), rotated by size, that `agentflow logs` reads;
- to the console (stderr), readable, from `console_level` up (a worker's flow runs show
  info; the CLI none: its live view is its console);
- to the run's log in the Prefect UI, when it belongs to a run this process runs (the run's
  publisher routes its lines: engine/publish.py). One path: not two copies of a message.

A run's secret values are masked in every string of every line (`mask`), and keys named
like secrets are dropped: the log is shared, its readers are not the run's owner.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import structlog

from agentflow import config

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50, "off": 100}
ROTATE_BYTES = 20 * 1024 * 1024
KEEP = 3  # rotated files kept: agentflow.jsonl.1 .. .3
_CHECK_S = 1.0  # how often a writer looks for a rotation by another process
_SECRET_KEYS = ("secret", "token", "password", "api_key", "apikey", "authorization")

_routes: dict[str, Callable[[int, str], None]] = {}  # run id -> where its lines go in the UI
_masks: dict[str, tuple[str, ...]] = {}  # run id -> its secret values
_state: dict[str, Any] = {"console": LEVELS["off"]}


def default_file(variable: str = "AGENTFLOW_LOG_FILE", name: str = "agentflow.jsonl") -> Path:
    """`$variable` if set, else its setting (agentflow/config.py: `AGENTFLOW_LOG_FILE` is
    `log_file`), else `$PREFECT_HOME/agentflow/NAME` (the audit log lives there too)."""
    configured = os.environ.get(variable)
    if configured:
        return Path(configured).expanduser()
    field = variable.removeprefix("AGENTFLOW_").lower()
    if field in config.Settings.model_fields:
        setting = getattr(config.current(), field)
        if setting is not None:
            return Path(setting).expanduser()
    home = os.environ.get("PREFECT_HOME") or "~/.prefect"
    return Path(home).expanduser() / "agentflow" / name


def now_iso() -> str:
    """The time a line is written, as every line of agentflow's logs spells it (UTC, ms)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def configure(console_level: str = "off", file: Path | None = None) -> None:
    """This process's console level and log file (the last call holds). Without a call (the
    Python API, the CLI, whose live view is its console), lines go to the default file and
    the UI only; a worker's flow shows them from `info` (deployments/entry.py)."""
    _state["console"] = LEVELS[console_level]
    _state["file"] = JsonLines(file or default_file())


def logger(**context: Any) -> Any:
    """A logger with `context` bound. agentflow's own pipeline, not structlog's global
    configuration: an application's own structlog set-up is left alone."""
    return structlog.wrap_logger(None, processors=_PROCESSORS, wrapper_class=_BOUND, context_class=dict,
                                 cache_logger_on_first_use=True).bind(**context)


@contextmanager
def run_context(run_id: str, workflow: str, route: Callable[[int, str], None] | None = None,
                secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Within it, lines name this run and workflow; `route` shows them in the run's UI log;
    `secrets` are masked in them."""
    _routes[run_id] = route or (lambda level, message: None)
    _masks[run_id] = tuple(s for s in secrets if s)
    with structlog.contextvars.bound_contextvars(run_id=run_id, workflow=workflow):
        try:
            yield
        finally:
            _routes.pop(run_id, None)
            _masks.pop(run_id, None)


# ---- the processors ----------------------------------------------------------------------
def _timestamp(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event["timestamp"] = now_iso()
    return event


def _mask(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    secrets = [s for values in _masks.values() for s in values]
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_KEYS):
            event[key] = "[secret]"
        elif secrets and isinstance(event[key], str):
            for secret in secrets:
                event[key] = event[key].replace(secret, "[secret]")
    return event


def _to_run_log(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    route = _routes.get(event.get("run_id", ""))
    if route is not None and event.get("ui", True):
        route(LEVELS.get(event["level"], 20), str(event["event"]))
    event.pop("ui", None)
    return event


def _write(_: Any, __: str, event: dict[str, Any]) -> Any:
    quiet = event.pop("quiet", False)
    log_file = _state.get("file")
    if log_file is None:
        log_file = _state["file"] = JsonLines(default_file())
    log_file.append(json.dumps(event, default=str, ensure_ascii=False))
    if LEVELS.get(event["level"], 20) >= _state["console"] and not quiet:
        context = " ".join(f"{k}={event[k]}" for k in ("step", "agent", "attempt") if event.get(k) is not None)
        sys.stderr.write(f"agentflow {event['level']}: {event['event']}{'  (' + context + ')' if context else ''}\n")
    raise structlog.DropEvent


class JsonLines:
    """An append-only file of lines (one write each, O_APPEND: lines of several processes do
    not mix), rotated past ROTATE_BYTES (KEEP older files). A process that finds the file
    rotated by another reopens it. Also the audit log's (tasks/audit.py).

    A line costs one write: whether the file was rotated, and its size with what other
    processes wrote, are looked at once a second (three stat calls a line made a 200-step
    run's lines cost more than its steps on a slow filesystem: benchmarks/ B1)."""

    def __init__(self, path: Path, rotate_bytes: int = ROTATE_BYTES):
        self.path = path
        self.rotate_bytes = rotate_bytes
        self._fd: int | None = None
        self._size = 0
        self._checked = 0.0
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        data = (line + "\n").encode()
        with self._lock:
            try:
                now = time.monotonic()
                if self._fd is None or now - self._checked > _CHECK_S:
                    self._checked = now
                    if self._fd is None or self._rotated():
                        self._open()
                    self._size = os.fstat(self._fd).st_size
                if self._size + len(data) > self.rotate_bytes:
                    self._rotate()
                os.write(self._fd, data)
                self._size += len(data)
            except OSError:
                pass  # the log never fails a run: the UI and the result still tell it

    def _open(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _rotated(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return True

    def _rotate(self) -> None:
        for n in range(KEEP - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()


def files(path: Path | None = None) -> list[Path]:
    """The log file and its rotated predecessors, oldest first."""
    current = path or default_file()
    older = [current.with_name(f"{current.name}.{n}") for n in range(KEEP, 0, -1)]
    return [p for p in [*older, current] if p.exists()]


class _FromLogging(logging.Handler):
    """agentflow's warnings written with the standard library (`logging.getLogger("agentflow")`:
    a foreign cache record, an open circuit, artifacts not sent) go this way too: into the file
    and the run's UI log, with the run's context; the console shows them as it did."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger(component=record.module).log(record.levelno, record.getMessage(), quiet=True)
        except Exception:  # noqa: BLE001 - a log line never fails what is logging it
            pass


logging.getLogger("agentflow").addHandler(_FromLogging())

_PROCESSORS = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, _timestamp, _mask,
               _to_run_log, _write]
_BOUND = structlog.make_filtering_bound_logger(LEVELS["debug"])

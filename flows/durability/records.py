"""A run's record: what it was started from, pinned so that `resume` finishes that same run.

Each run has a folder, `agentflow-runs/<flow run id>/`, in the shared store (durability/
storage.py: beside the step results, seen by every machine that shares them) holding this
record (`run.json`), its journal of completed calls (durability/journal.py) and its pinned
workspace (`workspace.json`). What only the machine running it can use, the notes of the
commands it started (`procs/PID`), is in the same folder of this machine's directory
(`run_dir`), which is the same place when the storage is a directory.

The record names its workflow file and working directory both as they were (absolute) and
relative to the repository's top, so that another machine, in its own checkout, finds them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow.errors import ConfigError, StateDamaged
from agentflow.git import git

from agentflow.flows.durability import storage
from agentflow.flows.durability.processes import ProcessId

Attempt = ProcessId  # one process that ran (part of) the run


def run_dir(run_id: str) -> Path:
    """This machine's folder for the run (its processes' notes, an in-place run's index)."""
    return storage.root() / "agentflow-runs" / run_id


def run_key(run_id: str, name: str) -> str:
    """The key of one of the run's records in the shared store."""
    return f"agentflow-runs/{run_id}/{name}"


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: str
    workflow: str
    source: str  # the workflow file, absolute (or `<text>`)
    cwd: str  # steps run here (relative paths, the repository)
    top: str = ""  # the git repository's top directory, where it started ("" outside one)
    source_rel: str = ""  # `source` relative to `top`: how another checkout finds it
    cwd_rel: str = ""  # `cwd` relative to `top`
    spec_hash: str
    definition: dict[str, Any]  # the workflow's definition (language.canonical), to say what changed
    inputs: dict[str, Any]
    repo: dict[str, Any] = Field(default_factory=dict)  # commit and dirty hash when it started
    cache: str = "use"
    created: float
    attempts: list[Attempt] = Field(default_factory=list)


def project_relative(source: str, cwd: str) -> dict[str, str]:
    """`top`, `source_rel` and `cwd_rel` of a new record: where the repository `cwd` is in
    has its top, and the workflow file and `cwd` relative to it (nothing outside one)."""
    try:
        found = git(cwd, "rev-parse", "--show-toplevel")
    except ConfigError:  # git is not installed: nothing to be relative to
        return {}
    if found.returncode != 0:
        return {}
    top = os.path.realpath(found.stdout.decode().strip())
    relative = {"top": top, "cwd_rel": os.path.relpath(os.path.realpath(cwd), top)}
    if not source.startswith("<"):
        inside = os.path.relpath(os.path.realpath(source), top)
        if not inside.startswith(".."):
            relative["source_rel"] = inside
    return relative


def read_record(run_id: str) -> RunRecord | None:
    """The run's record; None if the store has none; StateDamaged if it cannot be read
    (StoreUnavailable if the store cannot be reached)."""
    store = storage.shared()
    key = run_key(run_id, "run.json")
    try:
        return RunRecord.model_validate_json(store.read(key))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        raise damaged(where(key), exc) from None


def where(key: str) -> str:
    """How to name a key of the shared store to a user: a path they can look at."""
    store = storage.shared()
    return str(store.local / key) if store.local is not None else f"{key} in {store.where}"


def damaged(path: Path | str, exc: BaseException,
            after: str = "the run it belongs to can then no longer be resumed here") -> StateDamaged:
    """The error for a file of agentflow's own that cannot be read as it should."""
    if isinstance(exc, IsADirectoryError):
        what = "is a directory"
    elif isinstance(exc, PermissionError):
        what = "cannot be read (permission denied)"
    elif isinstance(exc, ValidationError):
        what = "is not a run record (damaged or truncated: " + exc.errors()[0]["msg"] + ")"
    elif isinstance(exc, UnicodeDecodeError):
        what = "is not text (damaged)"
    else:
        what = f"cannot be read ({exc})"
    aside = (f"move it aside (mv {path} {path}.damaged)" if storage.shared().local is not None
             else "remove it from the storage (or rename it)")
    return StateDamaged(f"{path} {what}; restore it from a backup, or {aside}: {after}")


def _write_record(record: RunRecord) -> None:
    storage.shared().write(run_key(record.run_id, "run.json"), record.model_dump_json(indent=1).encode())


def begin_attempt(run_id: str, new_record: Callable[[], RunRecord]) -> RunRecord:
    """Note that this process runs (part of) the run: on its first attempt the record is made
    (`new_record`), on a resume a new attempt is added to the pinned one."""
    record = read_record(run_id) or new_record()
    record.attempts.append(Attempt.current())
    _write_record(record)
    (run_dir(run_id) / "crash-handled").unlink(missing_ok=True)  # a new attempt may crash anew
    return record

"""A run's record: what it was started from, pinned so that `resume` finishes that same run.

Each run has a directory, `<storage root>/agentflow-runs/<flow run id>/`, holding this
record (`run.json`), its journal of completed calls (`steps.jsonl`, flows/durability/journal.py)
and a note per command running now (`procs/PID`). The storage root is the directory of
Prefect's default result storage (durability/storage.py): shared by workers that share it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow.errors import StateDamaged

from agentflow.flows.durability import storage
from agentflow.flows.durability.processes import ProcessId

Attempt = ProcessId  # one process that ran (part of) the run


def _runs_dir() -> Path:
    return storage.root() / "agentflow-runs"


def run_dir(run_id: str) -> Path:
    return _runs_dir() / run_id


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: str
    workflow: str
    source: str  # the workflow file, absolute (or `<text>`)
    cwd: str  # steps run here (relative paths, the repository)
    spec_hash: str
    definition: dict[str, Any]  # the workflow's definition (language.canonical), to say what changed
    inputs: dict[str, Any]
    repo: dict[str, Any] = Field(default_factory=dict)  # commit and dirty hash when it started
    cache: str = "use"
    created: float
    attempts: list[Attempt] = Field(default_factory=list)


def read_record(run_id: str) -> RunRecord | None:
    """The run's record; None if this machine has none; StateDamaged if it cannot be read."""
    path = run_dir(run_id) / "run.json"
    try:
        return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        raise damaged(path, exc) from None


def damaged(path: Path, exc: BaseException,
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
    return StateDamaged(f"{path} {what}; restore it from a backup, or move it aside "
                        f"(mv {path} {path}.damaged): {after}")


def _write_record(record: RunRecord) -> None:
    storage.atomic_write(run_dir(record.run_id) / "run.json", record.model_dump_json(indent=1))


def begin_attempt(run_id: str, new_record: Callable[[], RunRecord]) -> RunRecord:
    """Note that this process runs (part of) the run: on its first attempt the record is made
    (`new_record`), on a resume a new attempt is added to the pinned one."""
    record = read_record(run_id) or new_record()
    record.attempts.append(Attempt.current())
    _write_record(record)
    (run_dir(run_id) / "crash-handled").unlink(missing_ok=True)  # a new attempt may crash anew
    return record

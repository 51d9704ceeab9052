"""Process identity: whether the process that ran something still runs, and the commands a
dead run left behind.

A pid alone can be reused by another process after the first died; a pid together with
the process's start time (from /proc) cannot. Known only on the machine the process ran on.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path


def process_start(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if there is no such process
    (or it has ended and waits to be reaped); -1 if it exists but its start cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return -1
    # The command name (field 2) may hold spaces and parentheses: count after the last `)`.
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # a zombie has ended: only its exit status is left to collect
        return None
    return int(fields[19])  # field 22 of stat: starttime


@dataclass
class ProcessId:
    """One process, told apart from any later process that gets the same pid. A dataclass, not
    a pydantic model (a run record holds it all the same): a run's watchdog imports this
    module, and pydantic would cost it 0.3 s of CPU per run (durability/watchdog.py)."""

    pid: int
    host: str
    proc_start: int | None = None  # clock ticks since boot (None: unknown)
    started: float = 0.0  # wall-clock time, for people

    @classmethod
    def current(cls) -> "ProcessId":
        return cls(pid=os.getpid(), host=socket.gethostname(), proc_start=process_start(os.getpid()),
                   started=time.time())

    def alive(self) -> bool | None:
        """Whether it still runs; None if it ran on another machine (cannot tell from here)."""
        if self.host != socket.gethostname():
            return None
        now = process_start(self.pid)
        if now is None:
            return False
        return self.proc_start is None or now in (-1, self.proc_start)


def note_command(directory: Path, pid: int) -> Path | None:
    """Note a command a run has started (`directory/PID` holding its start time), so that the
    commands left by a run whose process dies can be found and stopped (`kill_orphans`)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / str(pid)
        path.write_text(str(process_start(pid) or 0))
        return path
    except OSError:
        return None  # tracking helps clean up after a crash; it never fails a step


def kill_orphans(directory: Path) -> list[int]:
    """Kill the process groups of the commands noted in `directory` that still run; return
    their pids. A pid now used by another process is left alone."""
    killed = []
    for note in sorted(directory.glob("[0-9]*")):
        pid = int(note.name)
        try:
            noted = int(note.read_text() or "0")
        except (OSError, ValueError):
            noted = 0
        if process_start(pid) == noted:
            try:
                os.killpg(pid, signal.SIGKILL)  # a command leads its own process group
                killed.append(pid)
            except ProcessLookupError:
                try:
                    os.kill(pid, signal.SIGKILL)  # not a group leader (an embedded server)
                    killed.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            except PermissionError:
                pass
        note.unlink(missing_ok=True)
    return killed


"""Run a command (a `run` step or a `shell` agent) as an argv list, never through a shell.

The command gets its own process group so that a timeout kills it and every child it
started; stdout becomes the result, the tail of stderr explains a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from agentflow.errors import ConfigError, StepFailed, StepTimeout
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, parse_text

STDERR_TAIL = 2000

# Commands running now, so that an interrupted run can stop them (their own sessions do not
# get the terminal's Ctrl-C, and a Python thread cannot be interrupted while it waits).
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_stopping = False  # set by kill_running: a command that starts afterwards is killed at once
# Where the current run notes the commands it has running (`<run dir>/procs/PID`), so that
# if this process is killed the commands it leaves behind can be found and stopped.
_track_dir: Path | None = None


def kill_running() -> int:
    """Kill every command this process started and that still runs (with its children).

    Also kills a command whose Popen is under way right now: it registers after this and
    finds `_stopping` set (without that, a command that had just started survived).
    """
    global _stopping
    with _live_lock:
        _stopping = True
        processes = list(_live)
    for process in processes:
        _kill_group(process)
    return len(processes)


def allow_commands(track_dir: Path | None = None) -> None:
    """Start of a run: commands may run again after an earlier kill_running in this process;
    note each running command in `track_dir` if given."""
    global _stopping, _track_dir
    with _live_lock:
        _stopping = False
        _track_dir = track_dir


def process_start(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if there is no such process.

    Read from /proc: a pid alone may have been reused by another process since.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return -1  # exists but unreadable: alive, start unknown
    # The command name (field 2) may hold spaces and parentheses: count after the last `)`.
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[19])  # field 22 of stat: starttime


def kill_orphans(track_dir: Path) -> list[int]:
    """Kill the process groups of the commands noted in `track_dir` that still run (a crashed
    run's commands); return their pids. A pid now used by another process is left alone."""
    killed = []
    for note in sorted(track_dir.glob("[0-9]*")):
        pid = int(note.name)
        try:
            noted = int(note.read_text() or "0")
        except (OSError, ValueError):
            noted = 0
        if process_start(pid) == noted:
            try:
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        note.unlink(missing_ok=True)
    return killed


def _note(process: subprocess.Popen, directory: Path | None) -> Path | None:
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / str(process.pid)
        path.write_text(str(process_start(process.pid) or 0))
        return path
    except OSError:
        return None  # tracking helps clean up after a crash; it never fails a step


class ProcessBackend:
    def call(self, request: AgentRequest) -> AgentResult:
        argv = request.argv
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                text=True,
                errors="replace",
            )
        except FileNotFoundError:
            raise ConfigError(f"step `{request.step}`: command `{argv[0]}` was not found on PATH; "
                              "install it or fix the command") from None
        except PermissionError:
            raise ConfigError(f"step `{request.step}`: command `{argv[0]}` is not executable; "
                              "check its permissions") from None
        note = None
        try:  # from here on, whatever interrupts us (Ctrl-C arrives anywhere) kills the command
            with _live_lock:
                _live.add(process)
                stopping = _stopping
                track_dir = _track_dir
            note = _note(process, track_dir)
            if stopping:
                _kill_group(process)
            stdout, stderr = process.communicate(input=request.prompt or None, timeout=request.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            stdout, stderr = process.communicate()
            raise StepTimeout(f"step `{request.step}`: `{argv[0]}` timed out after {request.timeout:g}s "
                              "and was killed with its children", output=stdout) from None
        except BaseException:
            # Cancelled or interrupted: never leave the command running behind us.
            _kill_group(process)
            process.wait()
            raise
        finally:
            with _live_lock:
                _live.discard(process)
            if note is not None:
                note.unlink(missing_ok=True)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if process.returncode != 0:
            tail = stderr.strip()[-STDERR_TAIL:] or "(no stderr)"
            raise StepFailed(f"step `{request.step}`: `{argv[0]}` exited with code {process.returncode}: {tail}",
                             output=stdout)
        result = parse_text(stdout)
        return result.model_copy(update={"metrics": {**result.metrics, "duration_ms": elapsed_ms, "exit_code": 0}})


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it has already exited

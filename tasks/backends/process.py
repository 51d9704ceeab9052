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

from flows.errors import ConfigError, StepFailed, StepTimeout
from tasks.request import AgentRequest
from tasks.results import AgentResult, parse_text

STDERR_TAIL = 2000

# Commands running now, so that an interrupted run can stop them (their own sessions do not
# get the terminal's Ctrl-C, and a Python thread cannot be interrupted while it waits).
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_stopping = False  # set by kill_running: a command that starts afterwards is killed at once


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


def allow_commands() -> None:
    """Start of a run: commands may run again after an earlier kill_running in this process."""
    global _stopping
    with _live_lock:
        _stopping = False


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
        with _live_lock:
            _live.add(process)
            stopping = _stopping
        if stopping:
            _kill_group(process)
        try:
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

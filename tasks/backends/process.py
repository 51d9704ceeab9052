"""Run a command (a `run` step or a `shell` agent) as an argv list, never through a shell.

The command gets its own process group so that a timeout kills it and every child it
started; stdout becomes the result, the tail of stderr explains a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from agentflow.errors import AgentNotSetUp, ConfigError, StepFailed, StepTimeout
from agentflow.tasks.kind import AgentKind
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, parse_text

STDERR_TAIL = 2000

# Commands running now, so that an interrupted run can stop them (their own sessions do not
# get the terminal's Ctrl-C, and a Python thread cannot be interrupted while it waits).
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_stopping = False  # set by kill_running: a command that starts afterwards is killed at once


class Tracker(Protocol):
    """Told of each command, so that one left behind by a killed run is found and stopped
    (the engine's RunGuard). `prepare` runs before the command starts; `in_child` in the new
    process before it executes the command (so the command is noted before it can do
    anything), with os-level calls only; `started` after, returning what to call once the
    command has ended."""

    def prepare(self) -> None: ...

    def in_child(self) -> None: ...

    def started(self, pid: int) -> Callable[[], None]: ...


_tracker: Tracker | None = None


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


def allow_commands(tracker: Tracker | None = None) -> Tracker | None:
    """Start of a run: commands may run again after an earlier kill_running in this process;
    tell `tracker` of each command started from now on. Returns the tracker it replaces, for
    a child run (a sub-workflow) to hand back to its parent's when it ends."""
    global _stopping, _tracker
    with _live_lock:
        _stopping = False
        previous, _tracker = _tracker, tracker
    return previous


def hand_back(tracker: Tracker | None) -> None:
    """End of a run: the tracker it replaced (a parent run's, or none) tracks commands again;
    a command started after a kill stays refused (`kill_running`)."""
    global _tracker
    with _live_lock:
        _tracker = tracker


def track(pid: int) -> Callable[[], None]:
    """Tell the run's tracker of a process an agent backend started itself (the Claude Code
    CLI), so that the run's watchdog stops it if the run is killed. Returns what to call
    once it has ended."""
    with _live_lock:
        tracker = _tracker
    if tracker is None:
        return lambda: None
    tracker.prepare()
    return tracker.started(pid)


def children_running(program: str) -> set[int]:
    """This process's children whose command line starts with a path ending in `program`."""
    found = set()
    me = str(os.getpid())
    for stat in os.scandir("/proc"):
        if not stat.name.isdigit():
            continue
        try:
            with open(f"/proc/{stat.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            if fields[1].decode() != me:
                continue
            with open(f"/proc/{stat.name}/cmdline", "rb") as handle:
                first = handle.read().split(b"\0", 1)[0].decode(errors="replace")
        except (OSError, IndexError):
            continue
        if first.endswith(program):
            found.add(int(stat.name))
    return found


def kill_on_sigterm() -> Callable[[], None]:
    """Kill running commands the moment SIGTERM arrives, then let Prefect's handler act.

    Prefect turns SIGTERM into an exception in the flow's thread; killing at the signal
    itself does not depend on where that exception surfaces. Returns what restores the
    handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        kill_running()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


class ProcessBackend:
    def call(self, request: AgentRequest) -> AgentResult:
        argv = request.argv
        started = time.monotonic()
        with _live_lock:
            tracker = _tracker
        if tracker is not None:
            tracker.prepare()
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                text=True,
                errors="replace",
                preexec_fn=tracker.in_child if tracker is not None else None,
                env={**os.environ, **request.secrets} if request.secrets else None,
                cwd=request.workspace.workdir if request.workspace is not None else None,
            )
        except FileNotFoundError:
            # For a shell agent, a missing program means the agent is unavailable here (its
            # fallback may serve); for a `run:` step it is a mistake in the definition.
            error = AgentNotSetUp if request.agent else ConfigError
            raise error(f"step `{request.step}`: command `{argv[0]}` was not found on PATH; "
                        "install it or fix the command") from None
        except PermissionError:
            raise ConfigError(f"step `{request.step}`: command `{argv[0]}` is not executable; "
                              "check its permissions") from None
        ended: Callable[[], None] | None = None
        try:  # from here on, whatever interrupts us (Ctrl-C arrives anywhere) kills the command
            with _live_lock:
                _live.add(process)
                stopping = _stopping
            if tracker is not None:
                ended = tracker.started(process.pid)
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
            if ended is not None:
                ended()
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


def _shell_ready(agent: Any, given: Any = None) -> tuple[bool, str]:
    program = (agent.command or [""])[0]
    if "{{" in program:
        return True, "its program is chosen at run time"
    found = shutil.which(program)
    return (True, f"{program} at {found}") if found else (False, f"`{program}` is not on PATH")


# A `shell` agent is a command whose arguments are templates rendered with the step's prompt
# and values (never a shell string).
SHELL = AgentKind(name="shell", request_kind="process", backend=ProcessBackend(), ready=_shell_ready, works_in_tree=True,
                  request_fields=lambda agent, render: {"argv": [render(arg) for arg in agent.command or []]})

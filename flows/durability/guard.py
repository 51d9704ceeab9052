"""What a run leaves behind if its process is killed, and what cleans it up at once.

A run notes each command it starts, and an embedded Prefect server its process started,
in its `procs/` directory (pid + start time, durability/processes.py), and starts a
watchdog process (durability/watchdog.py) that kills whatever is still noted when the run's
process ends without removing its notes: a SIGKILL of the run no longer leaves a step's
command writing to the repository, or a server holding the database. `agentflow runs`,
`status` and `resume` kill what is noted too, as a backstop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentflow import prefect_compat
from agentflow.flows.durability.processes import note_command


class Watchdog:
    """Starts the run's watchdog (durability/watchdog.py) on first need; `stop` at the run's end."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._write: int | None = None
        self._guard = threading.Lock()

    def ensure(self) -> None:
        with self._guard:
            if self._write is not None:
                return
            read, write = os.pipe()  # not inherited by the commands the run starts (PEP 446)
            try:
                subprocess.Popen([sys.executable, "-m", "agentflow.flows.durability.watchdog", str(self.directory),
                                  str(read)], pass_fds=(read,), start_new_session=True, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except OSError:
                os.close(write)
                return  # no watchdog: `agentflow runs`/`resume` still kill what a dead run left
            finally:
                os.close(read)
            self._write = write

    def stop(self) -> None:
        """The run ended: what it noted has ended too, so the watchdog just exits."""
        with self._guard:
            if self._write is not None:
                os.close(self._write)
                self._write = None


class RunGuard:
    """One run's notes and watchdog; the process backend's Tracker for the run's commands."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.watchdog = Watchdog(directory)
        self._server_note: Path | None = None
        self._prefix = os.fsencode(directory) + b"/"

    def start(self) -> None:
        pid = _embedded_server_pid()
        if pid is not None:
            self.watchdog.ensure()
            self._server_note = note_command(self.directory, pid)

    # ---- the process backend's Tracker ----------------------------------------------------
    def prepare(self) -> None:
        """Before a command starts: its watchdog and its notes directory exist."""
        self.watchdog.ensure()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # tracking helps clean up after a crash; it never fails a step
        self._prefix = os.fsencode(self.directory) + b"/"

    def in_child(self) -> None:
        """In the new process, before it runs the command: note itself (pid + start time) with
        os-level calls only (other threads of the parent may hold Python's locks)."""
        try:
            stat = os.open("/proc/self/stat", os.O_RDONLY)
            try:
                text = os.read(stat, 4096)
            finally:
                os.close(stat)
            start = text[text.rindex(b")") + 2:].split()[19]
            note = os.open(self._prefix + str(os.getpid()).encode(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(note, start)
            finally:
                os.close(note)
        except Exception:  # noqa: BLE001 - never keep a command from starting
            pass

    def started(self, pid: int) -> Callable[[], None]:
        note = self.directory / str(pid)
        if not note.exists():  # the child could not note itself: note it from here
            note = note_command(self.directory, pid) or note
        return lambda: note.unlink(missing_ok=True)

    def stop(self) -> None:
        """The run ended here: the server lives on with this process, the watchdog can go."""
        if self._server_note is not None:
            self._server_note.unlink(missing_ok=True)
        self.watchdog.stop()


class ServerGuard:
    """The embedded Prefect server a CLI command needs, started here and noted for a watchdog
    from the moment its process exists, so that a SIGKILL of the command (even while the
    server is still starting, which takes seconds) does not leave it holding the database.
    A run's own guard (RunGuard) notes it again for the run's lifetime."""

    _POLL_S = 0.02

    def __init__(self, directory: Path):
        self.directory = directory
        self.watchdog = Watchdog(directory)
        self._notes: list[Path] = []

    def start(self) -> bool:
        """Start the embedded server unless a server is configured (PREFECT_API_URL); whether
        it was started here."""
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:
            return False
        server = prefect_compat.embedded_server()
        if server.running:
            return False
        self.watchdog.ensure()
        started = threading.Event()
        watcher = threading.Thread(target=self._note_while_starting, args=(server, started), daemon=True)
        watcher.start()
        try:
            server.start()
        finally:
            started.set()
            watcher.join()
        self._note(server)
        return True

    def _note_while_starting(self, server: Any, started: threading.Event) -> None:
        while not started.wait(self._POLL_S):
            self._note(server)

    def _note(self, server: Any) -> None:
        process = getattr(server, "server_process", None)  # replaced if its port was taken
        if process is not None and not any(note.name == str(process.pid) for note in self._notes):
            note = note_command(self.directory, process.pid)
            if note is not None:
                self._notes.append(note)

    def stop(self) -> None:
        """The command ended here: Prefect stops the server as this process exits."""
        for note in self._notes:
            note.unlink(missing_ok=True)
        self.watchdog.stop()
        try:
            self.directory.rmdir()
        except OSError:
            pass


def _embedded_server_pid() -> int | None:
    """The pid of the temporary Prefect server this process started, if it runs one."""
    running = prefect_compat.running_embedded_servers()
    return running[0].server_process.pid if running else None


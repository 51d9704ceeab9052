"""A run's watchdog: a small process that cleans up after the run's process if it is killed.

The run starts it (in a session of its own, so that killing the run's process group does
not reach it) with the read end of a pipe whose write end only the run holds. When the run
ends normally it closes that end; when it is killed, even with SIGKILL, the kernel closes
it. Either way the watchdog reads end-of-file, kills what is still noted in the run's
`procs/` directory (the commands the run had running, and an embedded Prefect server it
started: each a pid with its start time, so a reused pid is never hit), and exits.

    python -m agentflow.flows.durability.watchdog PROCS_DIR FD
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def main() -> None:
    directory, fd = Path(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only end-of-file ends it
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
    from agentflow.flows.durability.processes import kill_orphans

    kill_orphans(directory)
    try:
        directory.rmdir()  # a command's own directory; a run's `procs/` if nothing is left in it
    except OSError:
        pass


if __name__ == "__main__":
    main()

"""B4: a run killed with SIGKILL mid-way, then `agentflow resume`d: steps redone (target 0),
and what the resume costs against the work that was left. `benchmarks/run.py` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def b4(api_url: str, steps: int = 20, kill_at: int = 10) -> dict:
    """A run of 1 s command steps killed with SIGKILL during step `kill_at`, then resumed.

    Each step logs its start and end; a step redone is one that had ended before the kill
    and starts again after it (target 0). Resume time is the CLI's own figure (its run,
    from the crash check to the end) and the wall time of the whole `agentflow resume`
    process; the remaining work is what an uninterrupted run spends on the steps left.
    """
    import re
    import signal

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        log = work / "log.txt"
        lines = "\n".join(f'  - {{id: s{i}, run: [sh, -c, "echo start s{i} >> log.txt; sleep 1; '
                          f'echo end s{i} >> log.txt"]}}' for i in range(1, steps + 1))
        (work / "wf.yaml").write_text(f"name: b4-resume\nsteps:\n{lines}\n")
        env = {**os.environ, "PREFECT_API_URL": api_url}
        cli = [sys.executable, "-m", "agentflow"]
        full = subprocess.run([*cli, "run", "wf.yaml"], cwd=work, env=env, capture_output=True, text=True)
        uninterrupted = float(re.search(r"completed in ([0-9.]+)s", full.stdout).group(1))
        log.unlink()
        process = subprocess.Popen([*cli, "run", "wf.yaml"], cwd=work, env={**env, "PYTHONUNBUFFERED": "1"},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        run_id = None
        for line in process.stdout:
            if line.startswith("run "):
                run_id = line.split()[1]
            if line.strip() == f"start  s{kill_at}":
                break
        # The step's command has been submitted; wait until it has really begun.
        while f"start s{kill_at}" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        ended_before = {m for m in re.findall(r"end (s\d+)", log.read_text())}
        mark = len(log.read_text().splitlines())
        started = time.perf_counter()
        resumed = subprocess.run([*cli, "resume", run_id], cwd=work, env=env, capture_output=True, text=True)
        resume_wall = time.perf_counter() - started
        after = log.read_text().splitlines()[mark:]
        redone = sorted({line.split()[1] for line in after if line.startswith("start")} & ended_before)
        resume_run = float(re.search(r"completed in ([0-9.]+)s", resumed.stdout).group(1))
    remaining = steps - len(ended_before)
    return {"completed_before": len(ended_before), "redone": len(redone), "resume_run_s": resume_run,
            "resume_wall_s": resume_wall, "remaining_steps": remaining,
            "remaining_work_s": uninterrupted * remaining / steps, "uninterrupted_s": uninterrupted,
            "import_floor_s": import_floor()}


def import_floor(rounds: int = 3) -> float:
    """What a new process pays before a resume can begin: Python's start and the imports of
    `agentflow resume` (Prefect's flow engine among them) as the command makes them (the
    collector paused: agentflow/startup.py), median wall time, s."""
    import statistics

    walls = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import agentflow.__main__, agentflow.flows.engine.restart"],
                       check=True)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)

"""S: start-up times: the embedded Prefect server (fresh home and warm), the CLI's time to
its first step on the embedded server and against a started one, and `agentflow runs` and
`agentflow status RUN` against a started one, and a mistaken option with no server
configured, each beside `python -c "import prefect"` (median of 5)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def startup(api_url: str) -> dict:
    workflow = ROOT / "benchmarks" / "one-step.yaml"
    results = {}
    probe = ("import time, agentflow; from prefect.server.api.server import SubprocessASGIServer;"
             "s = SubprocessASGIServer(); t = time.perf_counter(); s.start(timeout=120);"
             "print(time.perf_counter() - t); s.stop()")
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["PREFECT_HOME"] = home
        fresh = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=ROOT)
        warm = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=ROOT)
        results["embedded_fresh_s"] = float(fresh.stdout.strip().splitlines()[-1])
        results["embedded_warm_s"] = float(warm.stdout.strip().splitlines()[-1])
        results["cli_embedded_first_step_s"], results["cli_embedded_total_s"], _ = _cli_first_step(workflow, env)
        # A mistake, with no server configured: answered before any server would start.
        results["cli_mistake_s"] = statistics.median(
            _timed([sys.executable, "-m", "agentflow", "run", "--jsno", str(workflow)], env, expect=2) for _ in range(5))
    env = {**os.environ, "PREFECT_API_URL": api_url}
    _cli_first_step(workflow, env)  # the server's first run: its first requests are slow, once
    runs = [_cli_first_step(workflow, env) for _ in range(5)]
    results["cli_server_first_step_s"] = statistics.median(first for first, _, _ in runs)
    results["cli_server_total_s"] = statistics.median(total for _, total, _ in runs)
    run_id = runs[-1][2]
    for name, args in (("cli_runs_s", ["runs"]), ("cli_status_s", ["status", run_id[:8]])):
        results[name] = statistics.median(_timed([sys.executable, "-m", "agentflow", *args], env) for _ in range(5))
    # The peer: what importing Prefect alone costs on this machine.
    results["import_prefect_s"] = statistics.median(_timed([sys.executable, "-c", "import prefect"], env)
                                                    for _ in range(5))
    return results


def _timed(argv: list[str], env: dict, expect: int = 0) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(argv[2:])} failed: {done.stderr}")
    return time.perf_counter() - started


def _cli_first_step(workflow: Path, env: dict) -> tuple[float, float, str]:
    env = {**env, "PYTHONPATH": str(ROOT / "benchmarks")}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "agentflow", "run", str(workflow)], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first, run_id = None, ""
    for line in process.stdout:
        if line.startswith("run "):
            run_id = line.split()[1]
        if first is None and line.strip().startswith("start"):
            first = time.perf_counter() - started
    process.wait()
    return first or float("nan"), time.perf_counter() - started, run_id

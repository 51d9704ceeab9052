"""SA: the server API calls of one run, agentflow beside its peer, by endpoint.

B5's five-step workflow (each step a command that appends to a file of a git project: each
step's work is captured, and gets its page in the UI) and B5's hand-written peer, run in a
process of their own against a server given by URL: every HTTP request their process makes is
counted (Prefect's client logs each one on the `httpx` logger), for the second run of each
(the first registers the flow and warms the client). Events travel apart, over one websocket:
SC counts them.

Each call is a request the server answers and, mostly, a write: on a server shared by many
workers this is part of what a run costs it (B5: the server's CPU per run).

`python benchmarks/bench_calls.py URL` prints the counts as JSON.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_REQUEST = re.compile(r"HTTP Request: (\w+) (\S+)")


def api_calls(url: str) -> dict[str, dict[str, int]]:
    """{"ours": {"POST /logs/": 2, ...}, "peer": {...}}: one run's requests of each."""
    project = Path(tempfile.mkdtemp(prefix="agentflow-bench-calls-"))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q",
                    "--allow-empty", "-m", "start"], cwd=project, check=True)
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(project / ".prefect-home")}
    out = subprocess.run([sys.executable, str(Path(__file__)), "--child"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"SA: the runs failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child() -> None:
    import logging

    sys.path[:0] = [str(HERE.parent), str(HERE)]
    import agentflow  # noqa: F401  (agentflow's Prefect defaults, before Prefect is imported)
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    from agentflow import build_flow
    from agentflow.flows.language.loader import load_text
    from bench_deployments import PEER, POOL, WORKFLOW

    ours = build_flow(load_text(WORKFLOW.replace(f"work_pool: {POOL}\n", "")))

    # B5's peer, the same source its deployment runs: a module of the project
    Path("b5_peer.py").write_text(PEER)
    sys.path.insert(0, str(Path.cwd()))
    from b5_peer import peer

    calls: collections.Counter = collections.Counter()

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = _REQUEST.search(record.getMessage())
            if found:
                path = _ID.sub("{id}", found.group(2).split("/api", 1)[-1].split("?")[0])
                calls[f"{found.group(1)} {path}"] += 1

    httpx_log = logging.getLogger("httpx")
    httpx_log.setLevel(logging.INFO)
    httpx_log.addHandler(Count())
    httpx_log.propagate = False
    counted = {}
    for name, run in (("ours", lambda tag: ours(tag=tag)), ("peer", peer)):
        for tag in ("warm", "counted"):
            calls.clear()
            run(tag)
            APILogWorker.drain_all(timeout=30)
            EventsWorker.drain_all(timeout=30)
        counted[name] = dict(sorted(calls.items()))
    print(json.dumps(counted))


def describe(counts: dict[str, dict[str, int]]) -> str:
    """`POST /logs/ 2/1, POST /artifacts/ 4/0, ...`: ours/peer, where they differ."""
    names = sorted(set(counts["ours"]) | set(counts["peer"]))
    return ", ".join(f"{name} {counts['ours'].get(name, 0)}/{counts['peer'].get(name, 0)}" for name in names
                     if counts["ours"].get(name, 0) != counts["peer"].get(name, 0))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child()
    else:
        counts = api_calls(sys.argv[1])
        print(json.dumps(counts, indent=1))
        print(f"ours {sum(counts['ours'].values())}, peer {sum(counts['peer'].values())}: {describe(counts)}")

"""SC: what a step costs the Prefect server, in CPU: 200 sequential no-op steps as an agentflow
workflow and as a hand-written Prefect flow of plain tasks, interleaved, against a server of
its own with its default services (the event persister and triggers on: what a step sends is
part of its cost). The server's CPU (its process and its children's) is read from /proc from
just before a flow call until the server has recorded the run and gone idle again.

A third flow, the hand-written one that also sends after each task the outcome event an
agentflow step sends (engine/announce.py's own function, the same shape), shows how much of
the difference that event is.

On a server shared by many workers, its CPU is the limit of the whole system: this is the
figure that says how far one server scales. The flows run in a child process, which the
parent steps through its rounds (one line on stdin per run), so that nothing else in the
measuring process talks to the server.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
_IDLE_WINDOW_S = 0.5
_IDLE_BELOW = 0.03  # of a core: the server's background loops when nothing is asked of it


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its living descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(member, 0.0) for member in tree)


def _idle(pid: int, limit_s: float = 60.0) -> None:
    """Wait until the server uses less than _IDLE_BELOW of a core over a window."""
    deadline = time.monotonic() + limit_s
    before = process_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(_IDLE_WINDOW_S)
        now = process_cpu_s(pid)
        if (now - before) / _IDLE_WINDOW_S < _IDLE_BELOW:
            return
        before = now


def recorded(url: str, flow_run_id: str, task_runs: int) -> None:
    """Wait until the server has recorded every task run of the flow run (from its events, in
    the background)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        count = httpx.post(f"{url}/task_runs/count", json={"flow_runs": {"id": {"any_": [flow_run_id]}}},
                           timeout=30).json()
        if count >= task_runs:
            return
        time.sleep(0.2)


def sent(url: str, flow_run_id: str, steps: int) -> dict[str, float]:
    """What a run sent the server, per step: log rows, events (of the run, or naming it as a
    related resource), and the resource rows those events are stored with (one for the event's
    resource, one for each related one). Read once the counts stop growing: the server
    persists events in batches, in the background."""
    def count() -> tuple[int, int, int]:
        logs = offset = 0
        while True:
            page = httpx.post(f"{url}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                                          "limit": 200, "offset": offset}, timeout=30).json()
            logs += len(page)
            offset += len(page)
            if len(page) < 200:
                break
        events = resources = 0
        page = httpx.post(f"{url}/events/filter", json={"filter": {
            "any_resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
            "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}, timeout=30).json()
        while True:
            events += len(page["events"])
            resources += sum(1 + len(event.get("related", [])) for event in page["events"])
            if not page.get("next_page"):
                break
            page = httpx.get(page["next_page"], timeout=30).json()
        return logs, events, resources

    seen, deadline = None, time.monotonic() + 60
    while time.monotonic() < deadline:
        now = count()
        if now == seen and now[1] >= 3 * steps:
            break
        seen = now
        time.sleep(1.0)
    logs, events, resources = seen or (0, 0, 0)
    return {"logs": logs / steps, "events": events / steps, "resources": resources / steps}


def server_cpu(rounds: int, steps: int, start_server) -> dict:
    """Median server CPU per step, ms, for agentflow's flow, the hand-written one, and the
    hand-written one with agentflow's outcome event per task ("hand_event")."""
    if not Path("/proc/self/stat").exists():
        return {}
    home = Path(tempfile.mkdtemp(prefix="agentflow-bench-sc-"))
    server, url, _ = start_server(home)  # default services: events persisted, triggers on
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(home / "client")}
    child = subprocess.Popen([sys.executable, str(Path(__file__)), "--child", str(steps)], cwd=home, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    samples: dict[str, list[float]] = {"ours": [], "hand": [], "hand_event": []}
    last: dict[str, str] = {}
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"  # both flows warmed (imports, registration)
        for _ in range(rounds):
            for name in samples:
                _idle(server.pid)
                before = process_cpu_s(server.pid)
                child.stdin.write(f"{name}\n")
                child.stdin.flush()
                flow_run_id = last[name] = child.stdout.readline().strip()
                recorded(url, flow_run_id, steps)
                _idle(server.pid)
                samples[name].append((process_cpu_s(server.pid) - before) * 1000 / steps)
        child.stdin.close()
        child.wait(timeout=60)
        what_was_sent = {name: sent(url, flow_run_id, steps) for name, flow_run_id in last.items()
                         if name != "hand_event"}
    finally:
        if child.poll() is None:
            child.kill()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return {**{name: statistics.median(values) for name, values in samples.items()},
            "ours_all": samples["ours"], "hand_all": samples["hand"], "sent": what_was_sent}


def _child(steps: int) -> None:
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    import agentflow  # noqa: F401  (agentflow's Prefect defaults, before Prefect is imported)
    from prefect import flow, task

    from agentflow import build_flow
    from agentflow.flows.language.loader import load_text

    lines = "\n".join(f"  - {{id: s{i}, call: 'bench_steps:noop'}}" for i in range(steps))
    ours = build_flow(load_text(f"name: sc-agentflow\npattern: sequential\nsteps:\n{lines}\n"))

    @task(name="noop", task_run_name="s{i}", persist_result=False)
    def noop_task(i: int) -> int:
        return i

    @flow(name="sc-hand-written", persist_result=False)
    def hand() -> None:
        for i in range(steps):
            noop_task(i)

    from prefect.context import FlowRunContext

    from agentflow.flows.engine import announce
    from agentflow.tasks.results import AgentResult

    @flow(name="sc-hand-written-with-events", persist_result=False)
    def hand_event() -> None:
        context = FlowRunContext.get()
        run_id = str(context.flow_run.id) if context and context.flow_run else None
        for i in range(steps):
            noop_task(i)
            announce.step_outcome("sc-hand", run_id, f"s{i}", AgentResult(), "completed", None, None, {
                "duration_s": 0.001, "attempts": 1, "cache_hits": 0, "cache_misses": 0, "tokens": 0,
                "cost_usd": 0.0, "variant": None})

    flows = {"ours": ours, "hand": hand, "hand_event": hand_event}
    for fn in flows.values():
        fn()
    print("ready", flush=True)
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for line in sys.stdin:
        state = flows[line.strip()](return_state=True)
        # What the run sends in the background (log lines, events) reaches the server now, so
        # that it is counted with this run and not the next.
        APILogWorker.drain_all(timeout=30)
        EventsWorker.drain_all(timeout=30)
        print(json.dumps(str(state.state_details.flow_run_id)).strip('"'), flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _child(int(sys.argv[2]))

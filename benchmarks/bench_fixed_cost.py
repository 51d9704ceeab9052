"""B7: the fixed cost of a flow run: from the flow call to its first step starting, and from its
last step's end to the call returning (the process free again).

A one-step workflow of a no-op `call` step, against the same one task in a hand-written
Prefect flow, interleaved, on the suite's server. The peer's marks are taken inside its task
(start and end of the task body). `python benchmarks/bench_fixed_cost.py` runs it alone, on a
server of its own.
"""

from __future__ import annotations

import statistics
import time


def fixed_cost(rounds: int) -> dict:
    from prefect import flow, task

    from agentflow import build_flow
    from agentflow.events import listening
    from agentflow.flows.language.loader import load_text

    ours = build_flow(load_text("name: b7-fixed\nsteps:\n  - {id: only, call: 'bench_steps:noop'}\n"))
    marks: dict[str, float] = {}

    @task(name="noop", task_run_name="only", persist_result=False)
    def noop_task() -> None:
        marks["start"] = time.perf_counter()
        marks["end"] = time.perf_counter()

    @flow(name="b7-hand-written", persist_result=False)
    def hand() -> None:
        noop_task()

    def run_ours() -> tuple[float, float]:
        seen: dict[str, float] = {}

        def note(event) -> None:
            if event.kind == "started":
                seen.setdefault("start", time.perf_counter())
            elif event.kind == "step_finished":
                seen["end"] = time.perf_counter()

        with listening(note):
            called = time.perf_counter()
            ours()
            returned = time.perf_counter()
        return seen["start"] - called, returned - seen["end"]

    def run_hand() -> tuple[float, float]:
        called = time.perf_counter()
        hand()
        returned = time.perf_counter()
        return marks["start"] - called, returned - marks["end"]

    run_ours()  # warm both (imports, flow registration)
    run_hand()
    samples: dict[str, list[tuple[float, float]]] = {"ours": [], "hand": []}
    for _ in range(rounds):
        samples["ours"].append(run_ours())
        samples["hand"].append(run_hand())
    return {f"{name}_{part}": statistics.median(s[i] for s in values) * 1000
            for name, values in samples.items() for i, part in enumerate(("start_ms", "end_ms"))}


if __name__ == "__main__":
    import os
    import sys
    import tempfile
    from pathlib import Path

    sys.path[:0] = [str(Path(__file__).resolve().parent)]
    from servers import QUIET_SERVER, start_server

    server, url, _ = start_server(Path(tempfile.mkdtemp(prefix="agentflow-b7-")), QUIET_SERVER)
    os.environ["PREFECT_API_URL"] = url
    try:
        figures = fixed_cost(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # the hand-written flow's log lines, before the server stops
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("  ".join(f"{name} {value:.0f}" for name, value in figures.items()))

"""agentflow's performance suite: `python benchmarks/run.py` prints a table and writes BENCHMARKS.md.

B1  overhead: a 200-step sequential workflow of no-op `call` steps vs the same 200 steps as a
    hand-written Prefect flow with plain tasks; same server, same process, interleaved.
B2  fan-out: 50 independent steps that each sleep 1 s, max_parallel 50: wall time / 1 s.
B6  a claude-code step against a local Messages API stub: agentflow's whole step vs the SDK
    called directly by a plain script, interleaved; and primary failure (529) to fallback answer
    (bench_agents.py; needs the claude extra).
B5  100 deployed 5-step runs through `run_workflow_deployment` on two workers and a
    PostgreSQL-backed server (bench_deployments.py; needs PostgreSQL on 127.0.0.1:5432;
    --skip-b5 leaves it out), beside the same runs as a hand-written Prefect deployment;
    `--memory 500` adds each worker's RSS after every 100 of 500 more runs.
SC  the server's CPU per step (bench_server_cpu.py): B1's two flows against a server of its own
    with its default services (events persisted), its process's CPU from /proc per run.
SA  the API calls of one run (bench_calls.py): B5's workflow and its peer, run locally, every
    HTTP request of their process counted by endpoint.
B7  the fixed cost of a flow run: flow call to first step, last step's end to the call
    returning, vs a hand-written one-task flow (bench_fixed_cost.py).
S   start-up (bench_startup.py): a started `prefect server` until healthy, the embedded server's start, the
    CLI's time to its first step (embedded server, and against a started server), `runs` and `status`.
B8  the workspace (bench_workspace.py): making a run's worktree, capturing a step's patch and
    applying it (1, 100, 1000 files), vs the same step in place outside git; a cache hit
    replaying 100 files vs a no-op step.
B9  shared storage (bench_shared.py): a run killed at its second of 12 x 1 s steps, resumed on
    the same machine with local storage vs on another machine (another clone and Prefect home)
    through an S3 bucket (moto's server, from the test extra); a journal entry's cost on each
    (--skip-b9 leaves it out).
M   the metrics exporter (bench_metrics.py): 10 000 step events recorded on a server of its own
    (events persister on) plus 3 real runs; a new exporter's catch-up, a refresh with nothing new
    and with 100 new events, 50 scrapes of `agentflow metrics serve`, its RSS and state file
    (--skip-metrics leaves it out).

It starts its own Prefect server on a free port with a temporary PREFECT_HOME, with the
background services that B1/B2 do not use turned off (see QUIET_SERVER); the start-up
figures use default settings.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import agentflow  # noqa: E402,F401  (agentflow's Prefect defaults, before Prefect is imported)
from bench_agents import b6  # noqa: E402
from bench_calls import api_calls, describe as describe_calls  # noqa: E402
from bench_deployments import b5, describe as describe_b5, describe_memory, memory  # noqa: E402
from bench_fixed_cost import fixed_cost  # noqa: E402
from bench_metrics import describe as describe_metrics, metrics_cost  # noqa: E402
from bench_resume import b4  # noqa: E402
from bench_shared import available as b9_available, b9, describe as describe_b9  # noqa: E402
from bench_server_cpu import recorded, server_cpu  # noqa: E402
from bench_startup import startup  # noqa: E402
from bench_workspace import b8, describe as describe_b8  # noqa: E402
from servers import QUIET_SERVER, start_server  # noqa: E402


def settle(state, task_runs: int) -> None:
    """Wait until the server has recorded every task run of the flow run that just ended.

    The server records task runs from events in the background; a run measured while it
    still digests the previous one's backlog pays for it (seen: 11 to 22 ms per step for
    the same flow), which made interleaved comparisons noise.
    """
    recorded(os.environ["PREFECT_API_URL"], str(state.state_details.flow_run_id), task_runs)


def b1(rounds: int, steps: int) -> dict:
    from prefect import flow, task

    from agentflow import build_flow
    from agentflow.flows.language.loader import load_text
    from agentflow.events import listening

    lines = "\n".join(f"  - {{id: s{i}, call: 'bench_steps:noop'}}" for i in range(steps))
    ours = build_flow(load_text(f"name: b1-agentflow\npattern: sequential\nsteps:\n{lines}\n"))

    @task(name="noop", task_run_name="s{i}", persist_result=False)
    def noop_task(i: int) -> int:
        return i

    tagged_task = noop_task.with_options(tags={"workflow:b1", "agent:noop"})

    # Each variant returns the time its steps took, measured inside the flow: the fixed cost
    # of a flow run (creating it; joining its heartbeat thread, which waits up to 1 s at the
    # end) is the same for all and, divided by 200, swamped the per-step comparison.
    def hand_written(name: str, step_task):
        @flow(name=name, persist_result=False)
        def steps_by_hand() -> float:
            started = time.perf_counter()
            for i in range(steps):
                step_task(i)
            return time.perf_counter() - started

        return steps_by_hand

    hand = hand_written("b1-hand-written", noop_task)
    hand_tagged = hand_written("b1-hand-written-tagged", tagged_task)

    def ours_steps(return_state: bool = True):
        marks: list[float] = []
        with listening(lambda event: marks.append(time.perf_counter())):
            state = ours(return_state=True)
        return state, max(marks) - min(marks)

    def hand_steps(fn):
        def run(return_state: bool = True):
            state = fn(return_state=True)
            return state, state.result()
        return run

    ours()  # warm all three (imports, flow registration)
    hand()
    hand_tagged()
    samples: dict[str, list[float]] = {"ours": [], "hand": [], "hand_tagged": []}
    walls: dict[str, list[float]] = {"ours": [], "hand": [], "hand_tagged": []}
    # The tagged flow runs in rounds of its own, after the others.
    schedule = [(("ours", ours_steps), ("hand", hand_steps(hand))) for _ in range(rounds)]
    schedule += [(("hand_tagged", hand_steps(hand_tagged)),) for _ in range(rounds)]
    for pair in schedule:
        for name, fn in pair:
            started = time.perf_counter()
            state, inside = fn()
            walls[name].append((time.perf_counter() - started) * 1000 / steps)
            samples[name].append(inside * 1000 / steps)
            settle(state, steps)
    result = {name: statistics.median(values) for name, values in samples.items()}
    result.update({f"{name}_wall": statistics.median(values) for name, values in walls.items()})
    return {**result, "ours_all": samples["ours"], "hand_all": samples["hand"]}


def b2(rounds: int, width: int) -> dict:
    from agentflow import build_flow
    from agentflow.flows.language.loader import load_text
    from agentflow.events import listening

    lines = "\n".join(f"  - {{id: s{i}, call: 'bench_steps:sleep1'}}" for i in range(width))
    fan = build_flow(load_text(f"name: b2-fanout\npattern: parallel\nmax_parallel: {width}\nsteps:\n{lines}\n"))
    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner

    @task(name="sleep1", persist_result=False)
    def sleep_task(i: int) -> int:
        time.sleep(1)
        return i

    @flow(name="b2-hand-written", task_runner=ThreadPoolTaskRunner(max_workers=width), persist_result=False)
    def hand() -> float:
        started = time.perf_counter()
        futures = [sleep_task.submit(i) for i in range(width)]
        for future in futures:
            future.result()
        return time.perf_counter() - started

    fan()  # warm
    hand()
    phases, walls, hand_phases = [], [], []
    for _ in range(rounds):
        state = hand(return_state=True)
        hand_phases.append(state.result())
        settle(state, width)
        marks: list[float] = []
        with listening(lambda event: marks.append(time.perf_counter())):
            started = time.perf_counter()
            state = fan(return_state=True)
            walls.append(time.perf_counter() - started)
        settle(state, width)
        # from the first step's start to the last one's end, as the peer measures inside its flow
        phases.append(max(marks) - min(marks))
    return {"steps_phase": statistics.median(phases), "flow_wall": statistics.median(walls),
            "hand_phase": statistics.median(hand_phases)}


def b3(steps: int = 20) -> dict:
    """A workflow of 1 s agent steps, run twice: the second run is answered from the cache."""
    from agentflow import build_flow
    from agentflow.flows.language.loader import load_text
    from agentflow.events import listening

    lines = "\n".join(f"  - {{id: s{i}, agent: sleeper, prompt: 'step {i} {{{{ inputs.nonce }}}}'}}"
                      for i in range(steps))
    text = (f"name: b3-cache\ninputs:\n  nonce: {{default: ''}}\nagents:\n"
            f"  sleeper: {{kind: python, callable: 'bench_steps:sleep1', ttl: 1h}}\nsteps:\n{lines}\n")
    flow = build_flow(load_text(text))
    nonce = str(time.time())  # a key no earlier benchmark run has written
    timings = []
    for _ in range(2):
        marks: list[float] = []
        with listening(lambda event: marks.append(time.perf_counter())):
            started = time.perf_counter()
            state = flow(nonce=nonce, return_state=True)
            total = time.perf_counter() - started
        timings.append((total, max(marks) - min(marks)))
        settle(state, steps)
    (first_total, first_steps), (second_total, second_steps) = timings
    return {"first_total": first_total, "second_total": second_total, "first_steps": first_steps,
            "second_steps": second_steps, "per_cached_step_ms": second_steps * 1000 / steps}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import prefect

    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, Prefect {prefect.__version__}, "
            f"{platform.system()} {platform.release()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--quick", action="store_true", help="B1 and B2 only; print, do not write the file")
    parser.add_argument("--skip-b5", action="store_true", help="leave out B5 (it needs PostgreSQL)")
    parser.add_argument("--memory", type=int, default=0, metavar="RUNS",
                        help="also B5's memory rows: RUNS deployed runs in batches of 100, each worker's RSS after "
                             "each (500: ~35 min on 2 cores)")
    parser.add_argument("--skip-b9", action="store_true", help="leave out B9 (it needs the test extra: moto, s3fs)")
    parser.add_argument("--skip-metrics", action="store_true", help="leave out M (the metrics exporter, ~2 min)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="agentflow-bench-"))
    server, url, server_start = start_server(home, QUIET_SERVER)
    os.environ["PREFECT_API_URL"] = url
    here = os.getcwd()
    os.chdir(home)  # B1-B3 measure the engine: run outside git, where no step has a workspace (B8 is its cost)
    try:
        r1 = b1(args.rounds, 200)
        r2 = b2(args.rounds, 50)
        sc = server_cpu(args.rounds, 200, start_server)
        sa = api_calls(url)
        if args.quick:
            print(f"B1 ours {r1['ours']:.2f} ms/step, hand {r1['hand']:.2f}, tagged {r1['hand_tagged']:.2f}, "
                  f"walls {r1['ours_wall']:.2f}/{r1['hand_wall']:.2f}, "
                  f"ratio {r1['ours'] / r1['hand']:.3f}; "
                  f"B2 steps phase {r2['steps_phase']:.3f}, flow {r2['flow_wall']:.3f}, hand {r2['hand_phase']:.3f}; "
                  + (f"SC server CPU ms/step ours {sc['ours']:.2f}, hand {sc['hand']:.2f}, "
                     f"hand with our event {sc['hand_event']:.2f}, "
                     f"ratio {sc['ours'] / sc['hand']:.3f}" if sc else "SC: no /proc here")
                  + f"; SA calls per run ours {sum(sa['ours'].values())}, peer {sum(sa['peer'].values())}")
            return
        r3 = b3()
        os.chdir(here)
        r8 = b8(args.rounds)
        r4 = b4(url)
        missing = "" if args.skip_b9 else b9_available()
        if missing:
            print(f"B9 left out: {missing}", file=sys.stderr)
        r9 = None if args.skip_b9 or missing else b9(url)
        r6 = b6(args.rounds)
        r7 = fixed_cost(max(args.rounds, 5))
        rs = startup(url)
    finally:
        os.chdir(here)
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # the hand-written flows' log lines, before the server stops
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    r5 = None if args.skip_b5 else b5(100, 2, 4)
    r5m = memory(args.memory, 100, 2, 4) if args.memory and not args.skip_b5 else None
    rm = None if args.skip_metrics else metrics_cost()
    ratio = r1["ours"] / r1["hand"]
    rows = [
        ("B1 agentflow, ms per step (200 sequential no-op steps)", f"{r1['ours']:.2f}", "first step start to last end"),
        ("B1 hand-written Prefect flow, ms per step", f"{r1['hand']:.2f}", ""),
        ("B1 ratio agentflow / hand-written, medians", f"{ratio:.3f}",
         "target <= 1.10; the extra buys, a step: its two lines in agentflow's log (one in the UI's run log, "
         "in place of Prefect's own), its outcome event (metrics, automations), its journal entry"),
        ("B1 whole flow call, ms per step: agentflow / hand-written",
         f"{r1['ours_wall']:.2f} / {r1['hand_wall']:.2f}", "includes the flow run's fixed cost"),
        ("B1 hand-written with two task tags, ms per step", f"{r1['hand_tagged']:.2f}",
         "Prefect asks the server for tag concurrency limits per tagged task run"),
        *([("SC the server's CPU per step, ms: agentflow / hand-written", f"{sc['ours']:.2f} / {sc['hand']:.2f}",
            f"ratio {sc['ours'] / sc['hand']:.3f} (target <= 1.10); default services (events persisted); "
            "from the flow call until the server is idle again; medians"),
           ("SC the hand-written flow also sending, per task, the outcome event an agentflow step sends, ms",
            f"{sc['hand_event']:.2f}",
            f"agentflow / this: {sc['ours'] / sc['hand_event']:.3f}. Of the {sc['ours'] - sc['hand']:.2f} ms a step "
            f"costs the server beyond a plain task, that event is {sc['hand_event'] - sc['hand']:.2f} ms: one event a "
            "step is what the metrics exporter counts (runs, durations, cache hits, retries, fallbacks, tokens, cost), "
            "what automations act on (monitoring/automations/) and the UI's event feed shows. The rest: the run's "
            "`agentflow` tag, which Prefect names on every event of the run's task runs"),
           ("SC what a step sends: log rows / events / event resource rows, agentflow vs hand-written",
            " / ".join(f"{sc['sent']['ours'][k]:.2f}" for k in ("logs", "events", "resources")) + " vs "
            + " / ".join(f"{sc['sent']['hand'][k]:.2f}" for k in ("logs", "events", "resources")),
            "per step, counted on the server. Ours: the step's line (its outcome, time and summary; Prefect's "
            "own end line is kept off the UI for our steps); its outcome event `agentflow.step.*` (the metrics "
            "exporter's figures, automations); every event of an agentflow run also names the run's `agentflow` "
            "tag (crash automation, metrics, runs in flight)")] if sc else []),
        ("SA the API calls of one run of B5's 5-step workflow, agentflow / hand-written peer",
         f"{sum(sa['ours'].values())} / {sum(sa['peer'].values())}",
         f"run locally, every request of the run's process (events apart: SC); where they differ, ours/peer: "
         f"{describe_calls(sa)}. Ours buys: a page per step that changed files (its diff), the run's table, its "
         "progress bar (made with its first value, moved at most once a second), the run's lines a batch a second, "
         "the count of task runs it ended (a label `agentflow status` waits on), the publisher's own client"),
        ("B2 50 x 1 s steps, steps phase / 1 s", f"{r2['steps_phase']:.3f}", "target <= 1.15"),
        ("B2 50 x 1 s steps, whole flow call / 1 s", f"{r2['flow_wall']:.3f}", "includes flow start and end"),
        ("B2 peer: 50 plain Prefect tasks submitted by hand / 1 s", f"{r2['hand_phase']:.3f}",
         "same task runner, same server"),
        ("B3 20 x 1 s cached agent steps: first run / second run, s (flow call)",
         f"{r3['first_total']:.2f} / {r3['second_total']:.2f}",
         f"{r3['first_total'] / r3['second_total']:.1f}x faster; steps only "
         f"{r3['first_steps'] / r3['second_steps']:.0f}x (target >= 15x)"),
        ("B3 ms per cached step", f"{r3['per_cached_step_ms']:.1f}",
         f"fixed cost per flow run {r3['second_total'] - r3['second_steps']:.2f} s (creation, heartbeat join)"),
        ("B4 20 x 1 s steps, SIGKILL during step 10, resume: steps redone", str(r4["redone"]),
         f"target 0; {r4['completed_before']} had completed before the kill"),
        ("B4 resume: run / remaining work, s", f"{r4['resume_run_s']:.2f} / {r4['remaining_work_s']:.2f}",
         f"ratio {r4['resume_run_s'] / r4['remaining_work_s']:.2f}; remaining = {r4['remaining_steps']} steps "
         f"of an uninterrupted run ({r4['uninterrupted_s']:.1f} s for 20); whole `agentflow resume` "
         f"process {r4['resume_wall_s']:.1f} s"),
        ("B4 resume's cost above the work left, s: whole `agentflow resume` - remaining work",
         f"{r4['resume_wall_s'] - r4['remaining_work_s']:.2f}",
         f"target <= 1; of which a new process's Python start and imports (Prefect's flow engine): "
         f"{r4['import_floor_s']:.2f} s, measured alone"),
        *(() if r6 is None else (
            ("B6 claude-code step against a stub: SDK called directly, ms", f"{r6['direct_ms']:.0f}",
             "a plain script: query() read to the end"),
            ("B6 the same call as an agentflow step, ms", f"{r6['ours_ms']:.0f}",
             f"+{r6['ours_ms'] - r6['direct_ms']:.0f} ms: task run, journal, options, run log; whole flow call "
             f"{r6['ours_flow_ms']:.0f} ms"),
            ("B6 primary answers 529: step start to the fallback's answer, ms", f"{r6['to_fallback_ms']:.0f}",
             f"of which primary failure to fallback answer {r6['failure_to_answer_ms']:.0f} ms "
             "(the rest is the CLI's one retry)"),
        )),
        *(() if r5 is None else describe_b5(r5)),
        *(() if r5m is None else describe_memory(r5m)),
        *describe_b8(r8),
        *(() if r9 is None else describe_b9(r9)),
        ("B7 fixed cost per flow run, ms: flow call to first step / last step's end to return",
         f"{r7['ours_start_ms']:.0f} / {r7['ours_end_ms']:.0f}", "target <= 200 in all; a one-step flow"),
        ("B7 peer: hand-written one-task Prefect flow, ms", f"{r7['hand_start_ms']:.0f} / {r7['hand_end_ms']:.0f}",
         "Prefect's heartbeat thread is joined at the end"),
        ("started `prefect server` healthy after, s (fresh home)", f"{server_start:.1f}", ""),
        ("embedded server start, s (fresh home / warm)", f"{rs['embedded_fresh_s']:.1f} / {rs['embedded_warm_s']:.1f}", ""),
        ("CLI to first step, embedded server, s", f"{rs['cli_embedded_first_step_s']:.1f}",
         f"whole run {rs['cli_embedded_total_s']:.1f} s"),
        ("CLI to first step, started server, s", f"{rs['cli_server_first_step_s']:.2f}",
         f"{rs['cli_server_first_step_s'] / rs['import_prefect_s']:.2f}x `import prefect`; target <= 1.5 s; "
         f"whole run {rs['cli_server_total_s']:.1f} s; median of 5 after the server's first run"),
        ("`agentflow runs` / `agentflow status RUN`, started server, s",
         f"{rs['cli_runs_s']:.2f} / {rs['cli_status_s']:.2f}",
         f"{rs['cli_runs_s'] / rs['import_prefect_s']:.2f}x / {rs['cli_status_s'] / rs['import_prefect_s']:.2f}x "
         "`import prefect`; target <= 0.6x; whole process, median of 5"),
        ("`agentflow run --jsno`, no server configured, s", f"{rs['cli_mistake_s']:.2f}",
         f"{rs['cli_mistake_s'] / rs['import_prefect_s']:.2f}x `import prefect`: answered before any server starts"),
        ("`python -c 'import prefect'`, s", f"{rs['import_prefect_s']:.2f}", "the peer of the lines above"),
        *(() if rm is None else describe_metrics(rm)),
    ]
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"{name:<{width}}  {value:>12}  {note}" for name, value, note in rows)
    print(table)
    md = ["# Benchmarks", "", f"Machine: {machine()}.", f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},"
          f" {args.rounds} interleaved rounds, medians; `python benchmarks/run.py`."
          " B1/B2 run against a `prefect server` with its unused background services off"
          " (scheduler, late runs, foreman, triggers, event persister...: they made rounds"
          " bimodal); each run starts once the server has recorded the previous one.", "",
          "| measure | value | note |", "|---|---:|---|"]
    md += [f"| {name} | {value} | {note} |" for name, value, note in rows]
    md += ["", "B1 rounds (ms per step): agentflow " + ", ".join(f"{v:.2f}" for v in r1["ours_all"])
           + "; hand-written " + ", ".join(f"{v:.2f}" for v in r1["hand_all"]) + "."]
    Path(args.out).write_text("\n".join(md) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

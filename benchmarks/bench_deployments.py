"""B5: many deployed runs on two workers, on a PostgreSQL-backed server.

`python benchmarks/bench_deployments.py [--runs 100] [--workers 2] [--limit 4]` starts
`agentflow server start` on a PostgreSQL database of its own (created on the machine's server,
127.0.0.1:5432 with trust auth, or `--database-url`, and dropped at the end), deploys a 5-step
workflow with `agentflow deploy --apply`, starts the workers (`prefect worker start`, each
running at most `--limit` flow runs at once), submits the runs through
`run_workflow_deployment(wait=False)` and waits for every one to end.

Reported: runs completed, lost (not completed) and duplicated (a run's step done twice, or
more flow runs than submitted), runs per minute (first submit to last end), p50/p95 from a
run's submit to its end (the server's end time), and peak RSS: the server's process tree,
each worker process, and each worker with the flow-run processes it started (sampled every
0.5 s).

Then the peer: the same five steps as a hand-written Prefect flow (`PEER`), deployed to the
same pool with Prefect's `Flow.from_source(...).deploy(...)`, the same number of runs on the
same workers: its runs per minute beside agentflow's, and for both the time from a worker
taking a run to the run's first step (process start, imports, flow build); each worker's RSS
after agentflow's runs and after the peer's.

`--memory 500`: instead, agentflow's runs only, submitted 100 at a time (each batch ends
before the next), and each worker's RSS after every 100: whether a worker running `--limit`
flow runs at once grows with the runs it has run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "fixtures")]

from procstat import PeakRss, cpu_when_idle, rss_kib  # noqa: E402
POOL = "agentflow-b5"

WORKFLOW = f"""name: b5-five-steps
work_pool: {POOL}
inputs:
  tag: {{type: string}}
steps:
""" + "".join(f"""  - id: s{i}
    depends_on: [{f"s{i - 1}" if i > 1 else ""}]
    run: [sh, -c, 'echo "$0 s{i}" >> marks.txt', "{{{{ inputs.tag }}}}"]
""" for i in range(1, 6))


# The peer: the same five steps as a hand-written Prefect flow, deployed to the same pool and
# run by the same workers (Prefect's own `flow.from_source(...).deploy(...)`).
PEER = """import subprocess

from prefect import flow, task


@task
def mark(tag: str, i: int) -> None:
    subprocess.run(["sh", "-c", f'echo "$0 s{i}" >> peer-marks.txt', tag], check=True)


@flow(name="b5-peer")
def peer(tag: str) -> None:
    for i in range(1, 6):
        mark(tag, i)
"""


def _database(url: str | None):
    if url:
        import contextlib

        return contextlib.nullcontext(url)
    from postgres import temporary_database

    return temporary_database("agentflow_b5")


@dataclass
class Pool:
    """A started server on PostgreSQL, the workflow deployed, and the workers of its pool."""

    work: Path
    project: Path
    url: str
    server_pid: int
    workers: list[subprocess.Popen]
    env: dict[str, str]  # what a worker's flow-run process gets: this server, a Prefect home of its own

    def worker_rss_mib(self) -> dict[str, int]:
        return {f"worker {n}": round(rss_kib(p.pid) / 1024) for n, p in enumerate(self.workers, 1)}


@contextmanager
def _pool(workers: int, limit: int, database_url: str | None) -> Iterator[Pool]:
    from postgres import free_port

    work = Path(tempfile.mkdtemp(prefix="agentflow-b5-"))
    project = work / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "b5.yaml").write_text(WORKFLOW)
    cli = [sys.executable, "-m", "agentflow"]
    with _database(database_url) as database:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        server_env = {**base, "PREFECT_HOME": str(work / "home"), "PREFECT_SERVER_DATABASE_CONNECTION_URL": database}
        port = free_port()
        started = subprocess.run([*cli, "server", "start", "--port", str(port)], env=server_env, capture_output=True,
                                 text=True, timeout=300)
        if started.returncode != 0:
            raise SystemExit(f"agentflow server start failed:\n{started.stdout}{started.stderr}")
        server_pid = json.loads((work / "home" / "agentflow-server.json").read_text())["pid"]
        url = f"http://127.0.0.1:{port}/api"
        env = {**base, "PREFECT_HOME": str(work / "client-home"), "PREFECT_API_URL": url}
        processes: list[subprocess.Popen] = []
        try:
            deployed = subprocess.run([*cli, "deploy", "--apply"], cwd=project, env=env, capture_output=True,
                                      text=True, timeout=600)
            if deployed.returncode != 0:
                raise SystemExit(f"agentflow deploy --apply failed:\n{deployed.stdout}{deployed.stderr}")
            for n in range(1, workers + 1):
                (work / f"w{n}").mkdir()
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", f"b5-w{n}",
                     "--limit", str(limit)], cwd=work / f"w{n}", env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
                    stdout=open(work / f"w{n}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
            yield Pool(work, project, url, server_pid, processes, env)
        finally:
            for process in processes:
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # a worker ignores one SIGTERM for ~20 s
                except ProcessLookupError:
                    pass
                process.wait(timeout=30)
            subprocess.run([*cli, "server", "stop"], env=server_env, capture_output=True, timeout=120)
            shutil.rmtree(work, ignore_errors=True)


def b5(runs: int, workers: int, limit: int, database_url: str | None = None) -> dict:
    with _pool(workers, limit, database_url) as pool:
        peaks = PeakRss({"server": pool.server_pid, **{f"worker {n}": p.pid for n, p in enumerate(pool.workers, 1)}})
        peaks.start()
        try:
            server_at_start = cpu_when_idle(pool.server_pid)
            figures = _submit_and_wait(pool.url, pool.project / "marks.txt", runs, "b5-five-steps", _ours)
            figures["server_cpu_per_run_s"] = (cpu_when_idle(pool.server_pid) - server_at_start) / runs
            rss_after_ours = pool.worker_rss_mib()
            (pool.project / "peer.py").write_text(PEER)
            _deploy_peer(pool.url, pool.project)
            server_at_start = cpu_when_idle(pool.server_pid)
            figures["peer"] = _submit_and_wait(pool.url, pool.project / "peer-marks.txt", runs, "b5-peer", _peer)
            figures["peer"]["server_cpu_per_run_s"] = (cpu_when_idle(pool.server_pid) - server_at_start) / runs
            figures["worker_rss_mib"] = {"after ours": rss_after_ours, "after the peer": pool.worker_rss_mib()}
            figures["process_cpu_s"] = _process_cpu(pool, rounds=5)
        finally:
            peaks.stopped.set()
            peaks.join()
    figures.update(workers=workers, limit=limit,
                   peak_rss_mib={name: round(kib / 1024) for name, kib in peaks.alone.items()},
                   peak_tree_rss_mib={name: round(kib / 1024) for name, kib in peaks.tree.items()})
    return figures


def memory(runs: int, batch: int, workers: int, limit: int, database_url: str | None = None) -> dict:
    """Each worker's RSS after every `batch` runs (all submitted, all ended), up to `runs`:
    whether a worker that runs `limit` flow runs at once grows with the runs it has run."""
    rss: dict[int, dict[str, int]] = {}
    lost = 0
    marks = [*range(batch, runs, batch), runs]  # the last batch may be smaller
    with _pool(workers, limit, database_url) as pool:
        for before, done in zip([0, *marks], marks):
            figures = _submit_and_wait(pool.url, pool.project / "marks.txt", done - before, "b5-five-steps", _ours,
                                       first=before)
            lost += figures["lost"]
            rss[done] = pool.worker_rss_mib()
    return {"runs": runs, "lost": lost, "workers": workers, "limit": limit, "rss_mib": rss}


def describe_memory(figures: dict) -> list[tuple[str, str, str]]:
    rss = figures["rss_mib"]
    marks = list(rss)
    return [(f"B5 memory: each worker's RSS, MiB, after {' / '.join(map(str, marks))} runs",
             "  ".join("/".join(str(rss[n][w]) for n in marks) for w in rss[marks[0]]),
             f"{figures['workers']} workers, each running at most {figures['limit']} at once; "
             f"{figures['lost']} runs lost")]


def _process_cpu(pool: Pool, rounds: int) -> dict[str, float]:
    """The CPU and the time one flow-run process takes (`python -m prefect.engine`, as a worker
    starts it, with the commands it waits for), agentflow's and the peer's, interleaved,
    medians. The runs are created Pending, which the workers leave alone (they take Scheduled
    ones)."""
    import resource

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Pending

    taken: dict[str, list[float]] = {"ours": [], "peer": [], "ours wall": [], "peer wall": []}
    names = {"ours": "b5-five-steps/b5-five-steps", "peer": "b5-peer/b5-peer"}
    with temporary_settings({PREFECT_API_URL: pool.url}), get_client(sync_client=True) as client:
        deployments = {who: client.read_deployment_by_name(name).id for who, name in names.items()}
        for n in range(rounds):
            for who, deployment in deployments.items():
                flow_run = client.create_flow_run_from_deployment(deployment, parameters={"tag": f"cpu{n}"},
                                                                  state=Pending())
                cwd = Path(tempfile.mkdtemp(prefix="b5-run-", dir=pool.work))
                before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
                done = subprocess.run([sys.executable, "-m", "prefect.engine"], cwd=cwd, capture_output=True,
                                      text=True, env={**pool.env, "PREFECT__FLOW_RUN_ID": str(flow_run.id)})
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                state = client.read_flow_run(flow_run.id).state
                if done.returncode != 0 or state is None or state.type.value != "COMPLETED":
                    raise SystemExit(f"B5 CPU probe: {who}'s run did not complete:\n{done.stdout}{done.stderr}")
                taken[who].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                taken[f"{who} wall"].append(time.monotonic() - started)
    return {who: statistics.median(values) for who, values in taken.items()}


def _ours(n: int) -> str:
    from agentflow.deployments import run_workflow_deployment

    return run_workflow_deployment("b5-five-steps", {"tag": f"r{n}"}, wait=False)


def _peer(n: int) -> str:
    from prefect.deployments import run_deployment

    return str(run_deployment("b5-peer/b5-peer", parameters={"tag": f"r{n}"}, timeout=0).id)


def _deploy_peer(url: str, project: Path) -> None:
    from prefect import Flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}):
        Flow.from_source(source=str(project), entrypoint="peer.py:peer").deploy(name="b5-peer", work_pool_name=POOL,
                                                                                print_next_steps=False)


def _submit_and_wait(url: str, marks_file: Path, runs: int, deployment: str, submit, first: int = 0) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}):
        submitted: dict[str, float] = {}
        for n in range(first, first + runs):
            at = time.time()
            submitted[submit(n)] = at
        final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
        deadline = time.monotonic() + 60 * 60
        with get_client(sync_client=True) as client:
            while True:
                # A later batch (`first`): its own runs only (the API reads at most 200 at once).
                flow_runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(submitted))) if first else None,
                    limit=runs * 2)
                if all(r.state and r.state.type.value in final for r in flow_runs) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            first_step = _picked_to_first_step(client, flow_runs)
    marks = collections.Counter(marks_file.read_text().splitlines())
    completed = [r for r in flow_runs if r.state.type.value == "COMPLETED"]
    latencies = sorted(r.end_time.timestamp() - submitted[str(r.id)] for r in completed if str(r.id) in submitted)
    span = max(r.end_time.timestamp() for r in completed) - min(submitted.values()) if completed else float("nan")
    expected = {f"r{n} s{i}" for n in range(first, first + runs) for i in range(1, 6)}
    return {
        "submitted": runs, "completed": len(completed), "lost": runs - len(completed),
        "duplicated": max(0, len(flow_runs) - runs) + sum(1 for line, count in marks.items() if count > 1),
        "steps_missing": len(expected - set(marks)),
        "runs_per_min": len(completed) / span * 60,
        "p50_s": statistics.median(latencies) if latencies else float("nan"),
        "p95_s": latencies[max(0, round(len(latencies) * 0.95) - 1)] if latencies else float("nan"),
        "first_step_p50_s": statistics.median(first_step) if first_step else float("nan"),
    }


def _picked_to_first_step(client, flow_runs) -> list[float]:
    """For each run: from the moment a worker took it (its Pending state) to its first task
    run's start: the flow-run process's start, its imports, the flow's build."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    first: dict[str, float] = {}
    ids = [r.id for r in flow_runs]
    for chunk in range(0, len(ids), 50):
        offset = 0
        while True:
            page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[chunk:chunk + 50])),
                                         sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=offset)
            for task_run in page:
                if task_run.start_time is not None:
                    at = task_run.start_time.timestamp()
                    key = str(task_run.flow_run_id)
                    first[key] = min(first.get(key, at), at)
            offset += len(page)
            if len(page) < 200:
                break
    gaps = []
    for flow_run in flow_runs:
        if str(flow_run.id) not in first:
            continue
        pending = [s.timestamp.timestamp() for s in client.read_flow_run_states(flow_run.id) if s.type.value == "PENDING"]
        if pending:
            gaps.append(first[str(flow_run.id)] - min(pending))
    return gaps


def describe(figures: dict) -> list[tuple[str, str, str]]:
    """The rows B5 adds to the benchmark table."""
    workers = [v for k, v in figures["peak_rss_mib"].items() if k.startswith("worker")]
    trees = [v for k, v in figures["peak_tree_rss_mib"].items() if k.startswith("worker")]
    return [
        (f"B5 {figures['submitted']} deployed 5-step runs on {figures['workers']} workers: completed / lost / "
         "duplicated", f"{figures['completed']} / {figures['lost']} / {figures['duplicated']}",
         f"PostgreSQL server; each worker runs at most {figures['limit']} at once; "
         f"{figures['steps_missing']} step marks missing"),
        ("B5 runs per minute", f"{figures['runs_per_min']:.1f}", "first submit to last end"),
        ("B5 submit to end, p50 / p95, s", f"{figures['p50_s']:.1f} / {figures['p95_s']:.1f}",
         "all runs submitted at once: includes the queue"),
        ("B5 peak RSS, MiB: server / a worker / a worker with its flow runs",
         f"{figures['peak_tree_rss_mib']['server']} / {max(workers)} / {max(trees)}", "sampled every 0.5 s"),
        *_beside_the_peer(figures),
    ]


def _beside_the_peer(figures: dict) -> list[tuple[str, str, str]]:
    peer = figures.get("peer")
    if not peer:
        return []
    rss = figures["worker_rss_mib"]
    return [
        ("B5 peer: the same runs as a hand-written 5-task Prefect deployment, same workers: completed / lost",
         f"{peer['completed']} / {peer['lost']}", "run after agentflow's, on the same two workers and server"),
        ("B5 runs per minute: agentflow / peer", f"{figures['runs_per_min']:.1f} / {peer['runs_per_min']:.1f}",
         f"ratio {figures['runs_per_min'] / peer['runs_per_min']:.2f} (target >= 0.9)"),
        ("B5 a worker's pick to the run's first step, p50, s: agentflow / peer",
         f"{figures['first_step_p50_s']:.2f} / {peer['first_step_p50_s']:.2f}",
         "the flow-run process's start, imports and flow build (from the run's Pending state to its first task run)"),
        ("B5 the server's CPU per run, s: agentflow / peer",
         f"{figures['server_cpu_per_run_s']:.2f} / {peer['server_cpu_per_run_s']:.2f}",
         f"ratio {figures['server_cpu_per_run_s'] / peer['server_cpu_per_run_s']:.2f}; from the first submit until "
         "the server is idle again; it shares the machine's 2 cores with the workers' runs"),
        *_process_cpu_row(figures),
        ("B5 worker RSS, MiB, after agentflow's runs / after the peer's too",
         " ".join(f"{rss['after ours'][w]}/{rss['after the peer'][w]}" for w in rss["after ours"]),
         f"each worker, after {figures['submitted']} and {2 * figures['submitted']} runs"),
    ]


def _process_cpu_row(figures: dict) -> list[tuple[str, str, str]]:
    cpu = figures.get("process_cpu_s")
    if not cpu:
        return []
    return [("B5 one flow-run process, alone: CPU s / wall s, agentflow vs peer",
             f"{cpu['ours']:.2f} / {cpu['ours wall']:.2f} vs {cpu['peer']:.2f} / {cpu['peer wall']:.2f}",
             f"CPU ratio {cpu['ours'] / cpu['peer']:.2f}; `python -m prefect.engine` for one run, with the commands "
             "it waits for, medians of 5, interleaved. In the throughput above the server shares the 2 cores: "
             "agentflow's extra per step on the server (SC), its run's watchdog, and its wall time (Prefect's "
             "heartbeat thread joined at the end: the runs' crash detection) are what it pays beyond this")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=4, help="flow runs a worker runs at once")
    parser.add_argument("--memory", type=int, metavar="RUNS",
                        help="instead: run RUNS runs (agentflow's only) in batches of 100, each worker's RSS after each")
    parser.add_argument("--database-url", help="a PostgreSQL database for the server (asyncpg URL); default: "
                        "a temporary one on 127.0.0.1:5432")
    args = parser.parse_args()
    if args.memory:
        rows = describe_memory(memory(args.memory, 100, args.workers, args.limit, args.database_url))
    else:
        rows = describe(b5(args.runs, args.workers, args.limit, args.database_url))
    for name, value, note in rows:
        print(f"{name:<80}  {value:>14}  {note}")


if __name__ == "__main__":
    main()

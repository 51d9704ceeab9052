"""M: the metrics exporter's cost with 10 000 recorded step runs (`agentflow metrics serve`, flows/observe/).

`python benchmarks/bench_metrics.py [--events 10000] [--burst]` starts `agentflow server start` on a
free port with a Prefect home of its own (its default settings: the event persister on), makes 3
real runs of a small workflow with `agentflow run` (python agents, a fallback, a retry, a cache
hit, a skip, a failure), then records `--events` step events through Prefect's events client
(the websocket a run's events worker uses): `agentflow.step.<outcome>` with the resource and
payload engine/announce.py and engine/publish.py give them, over 20 workflows x 10 steps, 6
agents and a fallback, every outcome, two workflows with two variants. Their `occurred` is
spread over the 24 hours before now (--burst: all now, one burst); it waits until the server has persisted every one. Then:

- cold catch-up: a new `Figures` (flows/observe/exporter.py) refreshed until a refresh folds
  nothing (one refresh reads for at most `_READ_BUDGET_S`): time, events, pages read, and where
  a page's time goes (the server's answer, the client's parse, the fold);
- warm refresh with nothing new (median of 10), and after 100 new step events (median of 5);
- the real exporter process (`agentflow metrics serve --every 5`): time until its /metrics counts
  every event, then 50 scrapes (median, p95), the response's size and series, its RSS, and the
  size of its state file.

Only Python, agentflow and its dependencies are used. `benchmarks/run.py` includes it (row M).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metrics_load import PageClock, page_anatomy, render_ms, send, synthetic, wait_stored

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent

# The real runs: python agents and `call` steps of this module (no tool but Python).
WORKFLOW = """name: metrics-bench
inputs:
  fail: {type: boolean, default: false}
defaults: {retries: 0, timeout: 30s}
agents:
  down: {kind: python, callable: "bench_metrics:agent_down", fallback: up}
  up: {kind: python, callable: "bench_metrics:agent_up"}
steps:
  - {id: greet, call: "bench_steps:noop", cache: {key: [inputs]}}
  - {id: answer, agent: down, prompt: answer, cache: false}
  - {id: spend, agent: up, prompt: spend, cache: false}
  - {id: never, call: "bench_steps:noop", when: "inputs.fail and not inputs.fail"}
  - id: flaky
    call: "bench_metrics:flaky"
    retries: 1
    retry_backoff: {base_seconds: 0.1, max_seconds: 0.1, jitter: 0}
    cache: false
  - {id: gate, assert: "not inputs.fail", message: "the run was asked to fail", depends_on: [flaky]}
"""
REAL_RUNS = (["-i", "fail=false"], ["-i", "fail=true"], ["-i", "fail=false"])



# ---- what the real runs call ------------------------------------------------------------------
def agent_down(prompt: str) -> str:
    raise RuntimeError("overloaded (529)")


def agent_up(prompt: str) -> str:
    return f"## Summary\nup answered {prompt}\n\n## Metrics\n- tokens: 1200\n- cost_usd: 0.02\n"


_tries = {"flaky": 0}


def flaky() -> str:
    _tries["flaky"] += 1
    if _tries["flaky"] == 1:
        raise RuntimeError("the first try fails")
    return "second try"


# ---- helpers ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(len(ordered) * q) - 1))]


def metrics_cost(events: int = 10_000, spread_s: float = 24 * 3600.0, new: int = 100, rounds: int = 5,
                 warm: int = 10, scrapes: int = 50, verbose: bool = False) -> dict:
    """The exporter's figures with `events` step events recorded (see the module's docstring)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    import agentflow  # noqa: F401  (its Prefect defaults, before Prefect is imported)
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from agentflow.flows.observe import exporter

    work = Path(tempfile.mkdtemp(prefix="agentflow-bench-metrics-"))
    home = work / "home"
    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE",
                                                               "PREFECT_PROFILES_PATH")}
    server_env = {**base, "PREFECT_HOME": str(home)}
    cli = [sys.executable, "-m", "agentflow"]
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    figures: dict = {"events": events, "spread_s": spread_s}
    server_pid = None
    serving = None
    started = time.perf_counter()

    def say(what: str) -> None:
        if verbose:
            print(f"[{time.perf_counter() - started:6.1f} s] {what}", file=sys.stderr, flush=True)

    try:
        done = subprocess.run([*cli, "server", "start", "--port", str(port)], env=server_env, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"agentflow server start failed:\n{done.stdout}{done.stderr}")
        server_pid = json.loads((home / "agentflow-server.json").read_text())["pid"]
        figures["server_start_s"] = time.perf_counter() - started
        client_env = {**base, "PREFECT_HOME": str(work / "client-home"), "PREFECT_API_URL": url,
                      "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCHMARKS), base.get("PYTHONPATH")]))}

        say(f"server at {url}; {len(REAL_RUNS)} real runs")
        # 3 real runs, at once, each in a directory of its own.
        runs = []
        for n, args in enumerate(REAL_RUNS):
            (work / f"run{n}").mkdir()
            (work / f"run{n}" / "wf.yaml").write_text(WORKFLOW)
            runs.append(subprocess.Popen([*cli, "run", "wf.yaml", *args, "--json"], cwd=work / f"run{n}",
                                         env=client_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        real_steps, states = 0, []
        for process in runs:
            out, errors = process.communicate(timeout=300)
            try:
                result = json.loads(out)
            except ValueError:
                raise SystemExit(f"agentflow run failed ({process.returncode}):\n{out}{errors}") from None
            real_steps += len(result["steps"])
            states.append(result["state"])
        figures.update(real_runs=len(runs), real_run_states=states, real_step_events=real_steps)

        with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            say(f"real runs: {states}; sending {events} step events")
            # ---- record the step runs
            batch = synthetic(events, spread_s)
            figures["send_s"] = send(url, batch)
            stored_after = wait_stored(client, events + real_steps)
            figures["persisted_s"] = figures["send_s"] + stored_after  # first sent to all persisted
            figures["persisted_after_send_s"] = stored_after
            expected_steps = events + real_steps

            say("persisted; cold catch-up")
            # ---- (a) cold catch-up
            clock = PageClock(client)
            cold = exporter.Figures(work / "figures.json")
            refreshes, folded, cold_pages = [], 0, []
            while True:  # until a refresh folds nothing: that last one is not counted in
                t = time.perf_counter()
                n = cold.refresh(client, settle=0)
                refreshes.append((time.perf_counter() - t, n))
                pages = clock.take()
                if n == 0:
                    break
                cold_pages += pages
                folded += n
                if len(refreshes) == 30:
                    break
            figures["cold_s"] = sum(s for s, n in refreshes if n)
            figures["cold_refreshes"] = sum(1 for _, n in refreshes if n)
            figures["cold_refresh_s"] = [round(s, 2) for s, _ in refreshes]
            figures["cold_folded"] = folded
            step_pages = [p for p in cold_pages if p[1]]
            figures["cold_pages"] = len(cold_pages)
            figures["cold_page_s"] = sum(s for s, _ in cold_pages)
            figures["page_ms"] = statistics.median(s for s, _ in step_pages) * 1000 if step_pages else float("nan")
            figures["page_ms_first10"] = statistics.mean(s for s, _ in step_pages[:10]) * 1000
            figures["page_ms_last10"] = statistics.mean(s for s, _ in step_pages[-10:]) * 1000
            with cold.lock:
                figures["step_runs_counted"] = sum(cold.totals.counters.get("agentflow_step_runs", {}).values())
                figures["workflow_runs_counted"] = sum(cold.totals.counters.get("agentflow_workflow_runs", {}).values())
            figures["expected_step_events"] = expected_steps
            figures["cold_missing"] = expected_steps - round(figures["step_runs_counted"])  # a stalled catch-up
            figures["anatomy"] = page_anatomy(client)
            clock.take()

            say(f"caught up in {figures['cold_s']:.1f} s; warm refreshes")
            # ---- (b) warm refresh, nothing new
            warm_s, warm_pages, figures["warm_folded"] = [], [], 0
            warm_started = time.perf_counter()
            for _ in range(warm):
                if len(warm_s) >= 3 and time.perf_counter() - warm_started > 30:
                    break  # --burst: each one re-reads every event
                t = time.perf_counter()
                figures["warm_folded"] += cold.refresh(client, settle=0)  # 0 but for a straggler
                warm_s.append(time.perf_counter() - t)
                warm_pages.append(len(clock.take()))
            figures["warm_ms"] = statistics.median(warm_s) * 1000
            figures["warm_rounds"] = len(warm_s)
            figures["warm_pages"] = statistics.median(warm_pages)
            figures["render_ms"] = render_ms(cold)

            say(f"warm {figures['warm_ms']:.0f} ms; {rounds} rounds of {new} new")
            # ---- (c) a refresh after `new` new step events
            new_s, new_pages, new_folded, new_persist = [], [], [], []
            for r in range(rounds):
                sent = send(url, synthetic(new, 0, seed=100 + r))
                new_persist.append(sent + wait_stored(client, expected_steps + new))
                expected_steps += new
                clock.take()  # wait_stored's reads
                t = time.perf_counter()
                new_folded.append(cold.refresh(client, settle=0))
                new_s.append(time.perf_counter() - t)
                new_pages.append(len(clock.take()))
            figures.update(new=new, new_ms=statistics.median(new_s) * 1000, new_ms_all=[round(s * 1000) for s in new_s],
                           new_pages=new_pages, new_folded=new_folded,
                           new_persisted_s=statistics.median(new_persist))
            with cold.lock:
                all_events = cold.totals.value("agentflow_exporter_events")
            figures["figures_state_bytes"] = (work / "figures.json").stat().st_size

        say(f"refresh with {new} new {figures['new_ms']:.0f} ms; the exporter process")
        # ---- (d) the exporter process: catch-up, scrapes, RSS, state file
        state = work / "exporter-state.json"
        log = open(work / "exporter.log", "w")
        out_path = work / "exporter.out"
        exporter_started = time.perf_counter()
        serving = subprocess.Popen([*cli, "metrics", "serve", "--port", "0", "--every", "5", "--settle", "0", "--state", str(state)],
                                   env={**client_env, "PREFECT_HOME": str(work / "exporter-home")},
                                   stdout=open(out_path, "w"), stderr=log)
        metrics_url = None
        while metrics_url is None:
            if serving.poll() is not None:
                raise SystemExit(f"agentflow metrics serve exited:\n{(work / 'exporter.log').read_text()}")
            line = out_path.read_text().strip()
            if line.startswith("serving http://"):
                metrics_url = line.split()[1]
            elif time.perf_counter() - exporter_started > 120:
                raise SystemExit("agentflow metrics serve did not start within 120 s")
            else:
                time.sleep(0.05)
        figures["exporter_listening_s"] = time.perf_counter() - exporter_started

        def counted() -> tuple[float, float]:
            """The events the exporter has folded, and how long its latest read took."""
            found = {}
            for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=30).text):
                if family.name in ("agentflow_exporter_events", "agentflow_exporter_refresh_seconds"):
                    found[family.name] = sum(s.value for s in family.samples if not s.name.endswith("_created"))
            return found.get("agentflow_exporter_events", 0.0), found.get("agentflow_exporter_refresh_seconds", 0.0)

        while (seen := counted())[0] < all_events:
            if time.perf_counter() - exporter_started > 300:
                raise SystemExit(f"the exporter counted {seen[0]} of {all_events} events within 300 s")
            time.sleep(1.0)  # a scrape takes the GIL from the reading thread: not too often
        figures["exporter_catch_up_s"] = time.perf_counter() - exporter_started
        figures["exporter_read_s"] = seen[1]  # its own figure for the read that caught up
        say(f"the exporter counts every event after {figures['exporter_catch_up_s']:.1f} s; {scrapes} scrapes")
        figures["exporter_rss_mib"] = _status_kib(serving.pid, "VmRSS") / 1024
        figures["state_bytes"] = state.stat().st_size
        times, response = [], None
        with httpx.Client(timeout=30) as http:
            for _ in range(scrapes):
                t = time.perf_counter()
                response = http.get(metrics_url)
                response.raise_for_status()
                times.append(time.perf_counter() - t)
        figures["scrape_ms"] = statistics.median(times) * 1000
        figures["scrape_p95_ms"] = _percentile(times, 0.95) * 1000
        figures["scrape_bytes"] = len(response.content)
        figures["scrape_wire_bytes"] = response.num_bytes_downloaded
        figures["scrape_encoding"] = response.headers.get("content-encoding", "identity")
        families = list(text_string_to_metric_families(response.text))
        figures["series"] = sum(len(f.samples) for f in families)
        figures["series_by_metric"] = {f.name: len(f.samples) for f in families if f.samples}
        figures["exporter_rss_after_scrapes_mib"] = _status_kib(serving.pid, "VmRSS") / 1024
        figures["exporter_peak_rss_mib"] = _status_kib(serving.pid, "VmHWM") / 1024
        serving.send_signal(signal.SIGTERM)
        serving.wait(timeout=60)
        serving = None
    finally:
        if serving is not None:
            serving.kill()
            serving.wait(timeout=30)
        if server_pid is None and (home / "agentflow-server.json").exists():  # its start did not return
            server_pid = json.loads((home / "agentflow-server.json").read_text())["pid"]
        if server_pid is not None:
            subprocess.run([*cli, "server", "stop"], env=server_env, capture_output=True, timeout=120)
            try:
                os.killpg(server_pid, signal.SIGKILL)  # `server stop` failed, or left something
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(work, ignore_errors=True)
    figures["total_s"] = time.perf_counter() - started
    return figures


def describe(f: dict) -> list[tuple[str, str, str]]:
    """The rows M adds to the benchmark table."""
    spread = f"over {f['spread_s'] / 3600:g} h" if f["spread_s"] else "all at once (burst)"
    a = f["anatomy"]
    return [
        (f"M metrics exporter: {f['events']} step events {spread} + {f['real_runs']} real runs: "
         "sent / persisted, s", f"{f['send_s']:.1f} / {f['persisted_s']:.1f}",
         "Prefect's events client; persisted: first sent to the server's count reaching all"),
        ("M cold catch-up of a new exporter, s", f"{f['cold_s']:.1f}",
         f"{f['cold_folded']} events" + (f" ({f['cold_missing']} NOT FOLDED: the catch-up stalled)"
                                         if f["cold_missing"] else "")
         + f", {f['cold_pages']} pages of 50 in {f['cold_refreshes']} refresh(es); "
         f"{f['page_ms']:.0f} ms a page (first 10 {f['page_ms_first10']:.0f}, last 10 {f['page_ms_last10']:.0f}): "
         f"server {a['server_ms']:.0f}, parse {a['parse_ms']:.1f}, dump {a['dump_ms']:.1f}, fold {a['fold_ms']:.1f}"),
        ("M warm refresh: nothing new / 100 new step events, ms", f"{f['warm_ms']:.0f} / {f['new_ms']:.0f}",
         f"medians of {f['warm_rounds']} / 5; {f['warm_pages']:.0f} pages read with nothing new (a refresh reads on from its latest event); "
         f"with 100 new, rounds {', '.join(map(str, f['new_ms_all']))} ms"),
        ("M scrape /metrics, median / p95, ms", f"{f['scrape_ms']:.1f} / {f['scrape_p95_ms']:.1f}",
         f"{f['series']} series, {f['scrape_bytes'] / 1024:.0f} KiB ({f['scrape_wire_bytes'] / 1024:.0f} KiB "
         f"{f['scrape_encoding']}); 50 GETs while the exporter reads every 5 s; rendering alone "
         f"{f['render_ms']:.0f} ms"),
        ("M exporter process: catch-up, s / RSS, MiB / state file, KiB",
         f"{f['exporter_catch_up_s']:.1f} / {f['exporter_rss_mib']:.0f} / {f['state_bytes'] / 1024:.0f}",
         f"process start to /metrics counting every event (its read that caught up: {f['exporter_read_s']:.1f} s); "
         f"peak RSS {f['exporter_peak_rss_mib']:.0f} MiB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--burst", action="store_true", help="every event at once, now")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON too")
    args = parser.parse_args()
    figures = metrics_cost(args.events, 0.0 if args.burst else 24 * 3600.0, verbose=True)
    rows = describe(figures)
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    if args.json:
        print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    sys.path[:0] = [str(BENCHMARKS)]
    main()

"""`agentflow metrics serve`: Prometheus figures from the Prefect server, right with two workers
and across a restart of the exporter; `/health` that names what is down.

Real processes: a Prefect server of this module's own (`agentflow server start`, stopped at
the end to take the API down), runs by two "workers" (`agentflow run` processes with Prefect
homes and working directories of their own) and the exporter, scraped over HTTP and read
with prometheus-client's own parser.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from procs import kill_recorded_server
from postgres import free_port
from prometheus_client.parser import text_string_to_metric_families
from waiting import until

pytestmark = pytest.mark.xdist_group("test_metrics")  # one worker runs the module: it shares a module fixture

FIXTURES = Path(__file__).resolve().parent / "fixtures"

WORKFLOW = """
name: {name}
inputs:
  fail: {{type: boolean, default: false}}
defaults: {{retries: 0, timeout: 30s}}
agents:
  down:
    kind: shell
    command: [sh, -c, "echo down >&2; exit 3"]
    fallback: up
  up:
    kind: shell
    command: [sh, -c, 'printf "## Summary\\nup answered\\n\\n## Metrics\\n- tokens: 7\\n- cost_usd: 0.25\\n"']
steps:
  - {{id: greet, run: [echo, hello], cache: {{key: [inputs]}}}}
  - {{id: answer, agent: down, prompt: "answer", cache: false}}
  - {{id: spend, agent: up, prompt: "spend", cache: false}}
  - {{id: never, run: [echo, never], when: "inputs.fail and not inputs.fail"}}
  - {{id: nolint, call: "probe:nothing_to_do", cache: false}}
  - id: flaky
    run: [sh, -c, "if [ -f tried ]; then echo second; else touch tried; exit 1; fi"]
    retries: 1
    retry_backoff: {{base_seconds: 0.1, max_seconds: 0.1, jitter: 0}}
    cache: false
  - id: gate
    run: [sh, -c, "exit {{{{ 1 if inputs.fail else 0 }}}}"]
    cache: false
    depends_on: [flaky]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect server of this module's own, so that a test may stop it."""
    home = tmp_path_factory.mktemp("metrics-server-home")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PYTHONPATH=str(FIXTURES))
    port = free_port()
    started = subprocess.run([sys.executable, "-m", "agentflow", "server", "start", "--port", str(port)],
                             env=env, capture_output=True, text=True, timeout=240)
    assert started.returncode == 0, started.stdout + started.stderr
    yield {"home": home, "env": env, "api": f"http://127.0.0.1:{port}/api"}
    kill_recorded_server(home)


def worker_env(server: dict, home: Path) -> dict:
    """A worker of its own (its Prefect home) reporting to the module's server."""
    return {**server["env"], "PREFECT_HOME": str(home), "PREFECT_API_URL": server["api"]}


def run(env: dict, cwd: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "agentflow", "run", *args, "--json"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return json.loads(done.stdout)


class Exporter:
    def __init__(self, env: dict, state: Path, *extra: str):
        self.process = subprocess.Popen([sys.executable, "-m", "agentflow", "metrics", "serve", "--port", "0",
                                         "--every", "0.5", "--settle", "8", "--state", str(state), *extra],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("serving http://"), line + self.process.stderr.read()
        self.url = line.split()[1].removesuffix("/metrics")

    def scrape(self, headers: dict | None = None) -> dict[tuple, float]:
        response = httpx.get(f"{self.url}/metrics", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_figures_from_two_workers_survive_a_restart_and_health_names_the_api_when_it_stops(server, tmp_path):
    """Runs on two workers are counted by outcome, agent, cache, retry, fallback, skip and spend;
    a restarted exporter serves no counter lower; with the server stopped /health is 503."""
    name = f"metered_{uuid.uuid4().hex[:8]}"
    workers = []
    for which in ("a", "b"):
        cwd = tmp_path / which
        cwd.mkdir()
        (cwd / "wf.yaml").write_text(WORKFLOW.format(name=name))
        workers.append((worker_env(server, tmp_path / f"home-{which}"), cwd))
    results = [run(*workers[0], "wf.yaml"), run(*workers[1], "wf.yaml"), run(*workers[1], "wf.yaml", "-i", "fail=true")]
    assert [r["state"] for r in results] == ["Completed", "Completed", "Failed"], results

    state = tmp_path / "metrics-state.json"
    exporter = Exporter(worker_env(server, tmp_path / "home-exporter"), state)
    try:
        ours = {"workflow": name}
        samples = until(lambda: (s := exporter.scrape()) and value(s, "agentflow_workflow_runs_total", **ours) == 3
                        and value(s, "agentflow_step_runs_total", **ours) == 21 and s, 60, "the three runs' figures")
        assert value(samples, "agentflow_workflow_runs_total", state="completed", **ours) == 2
        assert value(samples, "agentflow_workflow_runs_total", state="failed", **ours) == 1
        steps = {(dict(ls)["step"], dict(ls)["outcome"]): v for (n, ls), v in samples.items()
                 if n == "agentflow_step_runs_total" and dict(ls)["workflow"] == name and v}
        # Every outcome of a step is served from its first event on (at 0): a first failure is an increase.
        assert value(samples, "agentflow_step_runs_total", step="greet", outcome="failed", **ours) == 0
        assert (("agentflow_step_runs_total", tuple(sorted({"workflow": name, "step": "greet", "agent": "",
                 "variant": "", "outcome": "failed"}.items())))) in samples
        assert steps == {("greet", "completed"): 1, ("greet", "cached"): 2, ("answer", "degraded"): 3,
                         ("spend", "completed"): 3, ("never", "skipped"): 3, ("nolint", "skipped"): 3,
                         ("flaky", "completed"): 3,
                         ("gate", "completed"): 2, ("gate", "failed"): 1}
        # Each worker's first `flaky` try fails (its directory has no `tried` yet): one retry each.
        assert value(samples, "agentflow_step_retries_total", step="flaky", **ours) == 2
        assert value(samples, "agentflow_cache_hits_total", step="greet", **ours) == 2
        assert value(samples, "agentflow_cache_misses_total", step="greet", **ours) == 1
        assert value(samples, "agentflow_fallbacks_total", step="answer", agent="down", fallback="up", **ours) == 3
        assert value(samples, "agentflow_skips_total", step="never", reason="condition", **ours) == 3
        # Its function answered that it had nothing to do: not a `when`.
        assert value(samples, "agentflow_skips_total", step="nolint", reason="answered", **ours) == 3
        assert value(samples, "agentflow_step_duration_seconds_count", step="spend", agent="up", **ours) == 3
        assert value(samples, "agentflow_step_duration_seconds_count", step="greet", **ours) == 1  # hits took no agent time
        # Spend by the agent that answered: `up` answered `spend` and, as the fallback, `answer`.
        assert value(samples, "agentflow_agent_tokens_total", agent="up") >= 6 * 7
        assert value(samples, "agentflow_agent_cost_usd_total", agent="up") >= 6 * 0.25
        assert value(samples, "agentflow_exporter_refresh_ok") == 1
        health = httpx.get(f"{exporter.url}/health", timeout=30)
        assert health.status_code == 200 and health.json()["failing"] == []
        assert set(health.json()["components"]) == {"prefect_api", "database", "result_storage", "local_server", "events"}
        assert exporter.stop() == 0
        assert json.loads(state.read_text())["totals"]["counters"]["agentflow_step_runs"]

        # Restarted on the same state: every counter is where it was (nothing new ran), none lower.
        exporter = Exporter(worker_env(server, tmp_path / "home-exporter"), state)
        again = exporter.scrape()
        counters = {k: v for k, v in samples.items() if k[0].endswith(("_total", "_count", "_bucket", "_sum"))}
        assert {k: again.get(k) for k in counters} == counters
        # It reads on from its cursor: one more run adds exactly its figures.
        run(*workers[0], "wf.yaml")
        after = until(lambda: (s := exporter.scrape()) and value(s, "agentflow_workflow_runs_total", **ours) == 4
                      and value(s, "agentflow_step_runs_total", **ours) == 28 and s, 60, "the fourth run's figures")
        assert value(after, "agentflow_step_runs_total", step="answer", outcome="degraded", **ours) == 4

        stopped = subprocess.run([sys.executable, "-m", "agentflow", "server", "stop"], env=server["env"],
                                 capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        down = until(lambda: (r := httpx.get(f"{exporter.url}/health", timeout=30)).status_code == 503 and r, 60,
                     "/health to say the API is down")
        assert "prefect_api" in down.json()["failing"]
        assert down.json()["components"]["prefect_api"]["ok"] is False
        # The figures stay served, none lower, and the exporter says its reads fail.
        last = until(lambda: (s := exporter.scrape()) and value(s, "agentflow_exporter_refresh_ok") == 0 and s, 30,
                     "the exporter to see its reads fail")
        assert value(last, "agentflow_step_runs_total", **ours) == 28
    finally:
        exporter.process.kill()


def test_a_token_guards_metrics_and_health(server, tmp_path):
    """With a token, a scrape without `Authorization: Bearer TOKEN` (or with another) gets 401."""
    env = {**worker_env(server, tmp_path / "home"), "AGENTFLOW_METRICS_TOKEN": "s3cret-token"}
    exporter = Exporter(env, tmp_path / "state.json")
    try:
        assert httpx.get(f"{exporter.url}/metrics", timeout=10).status_code == 401
        wrong = httpx.get(f"{exporter.url}/health", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401 and "Bearer" in wrong.headers["WWW-Authenticate"]
        samples = exporter.scrape({"Authorization": "Bearer s3cret-token"})
        assert ("agentflow_exporter_refresh_ok", ()) in samples
    finally:
        exporter.process.kill()


def test_serving_metrics_without_a_server_says_how_to_get_one(tmp_path):
    """With no Prefect server configured the exporter refuses to start, and says how to start one."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-m", "agentflow", "metrics", "serve"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "agentflow server start" in done.stderr and "PREFECT_API_URL" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args, said", [(["--every", "0"], "--every 0.0: give a number of seconds above 0"),
                                        (["--settle", "-1"], "--settle -1.0: give a number of seconds, 0 or more"),
                                        (["--token", " "], "--token is empty")])
def test_bad_options_are_refused(args, said, prefect_server):
    """A bad option is refused with what to give instead, before anything is served."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    done = subprocess.run([sys.executable, "-m", "agentflow", "metrics", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and said in done.stderr, done.stderr


def test_a_taken_port_is_named(prefect_server, tmp_path):
    """A port already in use is an error that names it and the option to change it."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_HOME": str(tmp_path)}
        done = subprocess.run([sys.executable, "-m", "agentflow", "metrics", "serve", "--port", str(port)], env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr

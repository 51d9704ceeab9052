"""`agentflow stats`: per workflow, agent and A/B variant, the figures equal those computed by hand
from the runs themselves (their `--json` results)."""

from __future__ import annotations

import json
import math
import uuid

from waiting import until

WORKFLOW = """
name: {name}
inputs:
  fail: {{type: boolean, default: false}}
agents:
  writer:
    kind: shell
    command: [sh, -c, 'printf "## Summary\\nvariant a\\n\\n## Metrics\\n- tokens: 10\\n- cost_usd: 0.01\\n"']
    variants:
      - {{name: a}}
      - name: b
        command: [sh, -c, 'printf "## Summary\\nvariant b\\n\\n## Metrics\\n- tokens: 20\\n- cost_usd: 0.02\\n"']
steps:
  - {{id: greet, run: [echo, hello], cache: {{key: [inputs]}}}}
  - {{id: w1, agent: writer, prompt: one, cache: false}}
  - {{id: w2, agent: writer, prompt: two, cache: false}}
  - {{id: w3, agent: writer, prompt: three, cache: false}}
  - {{id: w4, agent: writer, prompt: four, cache: false}}
  - id: gate
    run: [sh, -c, "exit {{{{ 1 if inputs.fail else 0 }}}}"]
    depends_on: [w1, w2, w3, w4]
"""
PRICE = {"a": (10, 0.01), "b": (20, 0.02)}


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def test_stats_equal_the_figures_of_the_runs(cli, write, tmp_path):
    """Runs, success rates, cache hits, p50/p95, tokens and cost by variant: as computed from the runs."""
    name = f"stats_{uuid.uuid4().hex[:8]}"
    path = write(WORKFLOW.format(name=name))
    runs = []
    for fail in ("false", "false", "false", "true"):
        done = cli("run", str(path), "--json", "-i", f"fail={fail}", cwd=tmp_path)
        assert done.returncode in (0, 1), done.stderr
        runs.append(json.loads(done.stdout))
    assert [r["state"] for r in runs] == ["Completed"] * 3 + ["Failed"]

    # By hand, from the runs: which variant each writer step used (its answer says), its time.
    picks: dict[str, list[float]] = {"a": [], "b": []}
    for r in runs:
        for step in ("w1", "w2", "w3", "w4"):
            outcome = r["steps"][step]
            picks[outcome["summary"].removeprefix("variant ")].append(outcome["duration_s"])
    hits = sum(r["steps"]["greet"]["cached"] for r in runs)
    assert hits == 3  # the first run fills the cache, the other three hit it
    assert picks["a"] and picks["b"], "16 picks of 1:1 weights all fell on one variant"

    def figures():
        done = cli("stats", "--workflow", name, "--json")
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        rows = document["workflows"]
        return document if rows and rows[0]["runs"] == 4 and rows[0]["steps"] == 24 else None

    document = until(figures, 60, "the four runs in `agentflow stats`")
    (row,) = document["workflows"]
    assert (row["runs"], row["runs_completed"], row["runs_failed"], row["run_success_rate"]) == (4, 3, 1, 0.75)
    assert (row["cache_hits"], row["cache_misses"], row["cache_hit_rate"]) == (3, 1, 0.75)
    assert row["failed"] == 1 and row["skipped"] == 0 and row["degraded"] == 0
    assert row["tokens"] == sum(len(picks[v]) * PRICE[v][0] for v in picks)
    assert math.isclose(row["cost_usd"], sum(len(picks[v]) * PRICE[v][1] for v in picks))

    variants = {r["variant"]: r for r in document["variants"] if r["agent"] == "writer"}
    assert set(variants) == {v for v in picks if picks[v]}
    for v, durations in picks.items():
        if not durations:
            continue
        got = variants[v]
        assert (got["called"], got["succeeded"], got["success_rate"]) == (len(durations), len(durations), 1.0)
        assert (got["tokens"], got["timed"]) == (len(durations) * PRICE[v][0], len(durations))
        assert math.isclose(got["cost_usd"], len(durations) * PRICE[v][1])
        assert math.isclose(got["p50_s"], nearest_rank(durations, 50), abs_tol=2e-3)
        assert math.isclose(got["p95_s"], nearest_rank(durations, 95), abs_tol=2e-3)
    (writer,) = [r for r in document["agents"] if r["agent"] == "writer"]
    assert writer["called"] == 16 and writer["success_rate"] == 1.0

    table = cli("stats", "--workflow", name)
    assert table.returncode == 0 and name[:6] in table.stdout and "A/B variants" in table.stdout


def test_stats_of_nothing_and_a_bad_period(cli):
    """No runs in the period: said plainly; a period that is not a duration: exit 2 with the fix."""
    nothing = cli("stats", "--workflow", f"never_{uuid.uuid4().hex[:6]}")
    assert nothing.returncode == 0 and "no runs of workflow" in nothing.stdout
    bad = cli("stats", "--since", "lately")
    assert bad.returncode == 2 and "--since 'lately'" in bad.stderr and "Traceback" not in bad.stderr

"""Per-agent `concurrency` is a Prefect global concurrency limit: it holds across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentflow.tasks import limits

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _most_at_once(log: Path) -> int:
    spans = [tuple(map(float, line.split()[:2])) for line in log.read_text().splitlines()]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def test_an_agents_concurrency_holds_across_two_processes(prefect_server, tmp_path):
    agent = f"one-at-a-time-{tmp_path.name[-10:].lower().replace('_', '-')}"
    log = tmp_path / "intervals.log"
    (tmp_path / "wf.yaml").write_text(f"""
name: limited
agents:
  {agent}: {{kind: python, callable: "probe:interval", concurrency: 1}}
steps:
  - id: work
    agent: {agent}
    for_each: [1, 2, 3]
    max_parallel: 3
    with: {{log: "{log}", hold: 0.3}}
    cache: false
""")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES)}
    command = [sys.executable, "-m", "agentflow", "run", "wf.yaml"]
    runs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)
    assert len(log.read_text().splitlines()) == 6
    assert len({line.split()[2] for line in log.read_text().splitlines()}) == 2  # both processes called it
    assert _most_at_once(log) == 1


@pytest.mark.unit
def test_limit_names_are_valid_and_distinct():
    names = {limits.limit_name(a) for a in ("Code.Reviewer", "code-reviewer")}
    assert len(names) == 2 and all(n.startswith("agentflow-agent-") for n in names)


def test_two_runs_creating_the_same_limit_at_once_both_go_on(prefect_server, tmp_path):
    """The upsert is a read then a create: two runs starting together both find no limit and
    both create it; the second must not fail (it did, on CI: ObjectAlreadyExists)."""
    import threading

    from prefect.client.orchestration import get_client

    failures: list[BaseException] = []
    for attempt in range(5):
        agent = f"together-{tmp_path.name[-8:].lower().replace('_', '-')}-{attempt}"
        gate = threading.Barrier(4)

        def ensure(agent=agent, gate=gate):
            gate.wait()
            try:
                limits.ensure({agent: 2})
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=ensure) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(limits.limit_name(agent)).limit == 2
    assert failures == []

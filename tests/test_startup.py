"""A command's start (agentflow/startup.py): the collector waits while the command imports,
and runs again before its steps, or after the backstop whatever the command does."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from agentflow import startup

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def collector_restored():
    was = gc.isenabled()
    yield
    startup.collect_now()
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


@pytest.mark.unit
def test_paused_until_collect_now_then_frozen_and_on(collector_restored):
    gc.enable()
    gc.unfreeze()
    timer = startup.collect_later()
    assert timer is not None and not gc.isenabled()
    assert startup.collect_later() is None  # once: a second call changes nothing
    startup.collect_now()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    timer.join(5)
    assert not timer.is_alive()  # cancelled: nothing left to do


@pytest.mark.unit
def test_the_backstop_turns_it_on_whatever_the_command_does(collector_restored):
    gc.enable()
    timer = startup.collect_later(backstop_s=0.01)
    timer.join(30)
    assert gc.isenabled()


@pytest.mark.unit
def test_a_collector_switched_off_by_the_user_stays_off(collector_restored):
    gc.disable()
    assert startup.collect_later() is None
    startup.collect_now()
    assert not gc.isenabled()


def test_a_runs_steps_run_with_the_collector_on(cli, write, tmp_path):
    """`agentflow run`: the imports were made with the collector paused (frozen since), and
    the steps run with it on (a long run's garbage is collected)."""
    path = write('name: collected\nsteps:\n  - {id: look, call: "probe:collector"}\n')
    done = cli("run", str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["steps"]["look"]["result"]["summary"]
    enabled, frozen = summary.split()
    assert enabled == "enabled=True"
    assert int(frozen.removeprefix("frozen=")) > 10_000  # Prefect's and agentflow's modules, frozen


DEPLOYED_RUN = """
import gc, json
import prefect  # a worker's flow-run process has imported Prefect when it asks for the flow
from agentflow.deployments import entry

flow = entry.collected  # built as a deployment's flow is: the collector paused meanwhile
paused = not gc.isenabled()
result = flow()
print(json.dumps({"paused_while_built": paused, "summary": result["look"].summary}))
"""


def test_a_deployed_runs_flow_is_built_with_the_collector_paused_and_runs_with_it_on(prefect_server, tmp_path):
    """A worker's flow-run process (deployments/entry.py): agentflow's imports and the flow's
    build are made with the collector paused; the flow body lets it run again, frozen."""
    import os
    import subprocess
    import sys

    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "collected.yaml").write_text(
        'name: collected\nsteps:\n  - {id: look, call: "probe:collector"}\n')
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES)}
    done = subprocess.run([sys.executable, "-c", DEPLOYED_RUN], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["paused_while_built"] is True
    enabled, frozen = seen["summary"].split()
    assert enabled == "enabled=True" and int(frozen.removeprefix("frozen=")) > 10_000

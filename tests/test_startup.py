"""A command's start (agentflow/startup.py): the collector waits while the command imports,
and runs again before its steps, or after the backstop whatever the command does."""

from __future__ import annotations

import gc
import json

import pytest

from agentflow import startup


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

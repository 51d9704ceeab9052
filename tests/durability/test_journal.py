"""The run journal stores JSON only, reads back what it wrote, and skips what it cannot trust."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pickle
import subprocess
import sys
import uuid

import pytest

from agentflow.flows.durability.journal import Done, Journal
from agentflow.flows.durability.processes import ProcessId, process_start
from agentflow.flows.durability.records import run_dir
from agentflow.tasks.results import AgentResult, Artifact

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch should-never-exist",))


def test_results_round_trip_as_json():
    run = str(uuid.uuid4())
    journal = Journal(run)
    result = AgentResult(summary="ok", data={"n": 1, "items": [1, 2]}, metrics={"tokens": 3},
                         artifacts=[Artifact(path="a.py", action="created")])
    journal.record("s", Done("s", "id-1", result))
    journal.close()
    lines = (run_dir(run) / "steps.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["result"]["data"] == {"n": 1, "items": [1, 2]}
    again = Journal(run)
    assert again.lookup("s", "id-1") == result
    assert again.lookup("s", "id-2") is None  # same label, another call: not reused


def test_never_unpickles_and_skips_torn_or_foreign_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = str(uuid.uuid4())
    directory = run_dir(run)
    directory.mkdir(parents=True)
    hostile = base64.b64encode(pickle.dumps(_Boom())).decode()
    good = {"label": "b", "step": "b", "id": "x", "result": AgentResult(summary="fine").model_dump(mode="json")}
    (directory / "steps.jsonl").write_text("\n".join([
        json.dumps({"label": "a", "step": "a", "fp": "x", "result": hostile}),  # the old pickled format
        json.dumps(good),
        '{"label": "c", "step": "c", "id": "x", "result": {"summ',  # cut short by a kill
    ]))
    journal = Journal(run)
    assert set(journal.done) == {"b"}
    assert not (tmp_path / "should-never-exist").exists()


def test_a_result_that_is_not_json_is_not_journaled():
    run = str(uuid.uuid4())
    journal = Journal(run)
    journal.record("s", Done("s", "id", AgentResult(data={"when": object()})))
    journal.close()
    assert Journal(run).done == {}


def test_process_identity_survives_pid_reuse():
    """A process is its pid and its start time: a later process with the same pid is another."""
    me = ProcessId.current()
    assert me.alive() is True
    assert dataclasses.replace(me, proc_start=(me.proc_start or 0) + 1).alive() is False
    assert dataclasses.replace(me, host="another-machine").alive() is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start(child.pid) is None
    assert ProcessId(pid=child.pid, host=me.host, proc_start=1).alive() is False


def test_a_process_that_ended_but_was_not_reaped_is_not_alive():
    """A killed run's process whose parent died too may stay a zombie (an init that reaps
    late): it has ended, so its run is crashed, not `still Running`."""
    from pathlib import Path

    from waiting import until

    child = subprocess.Popen(["true"])
    until(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 30,
          "the child to end (not reaped: a zombie)")
    assert process_start(child.pid) is None
    assert ProcessId(pid=child.pid, host=ProcessId.current().host, proc_start=1).alive() is False
    child.wait()

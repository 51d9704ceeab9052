"""What the Prefect UI shows of a run: log lines per step, artifacts, events (engine/publish.py)."""

from __future__ import annotations

import json

import pytest
from waiting import until

from agentflow import run_workflow
from agentflow.flows.engine.publish import artifact_key
from agentflow.flows.language.loader import load_text

WORKFLOW = """
name: Published_Run.v2
steps:
  - id: write
    run: [sh, -c, "printf '# Notes\\\\nall good\\\\n' > notes.md; echo '## Summary'; echo wrote notes; echo 'Created: notes.md'"]
  - {id: maybe, run: [echo, never], when: "false"}
  - {id: last, run: [echo, done], depends_on: [write]}
"""


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


@pytest.mark.unit
def test_artifact_keys_follow_prefects_rule():
    assert artifact_key("Published Run.v2", "gateways[bKash]") == "published-run-v2-gateways-bkash"
    assert artifact_key("", "") == "agentflow"


def test_a_run_has_its_step_artifacts_table_progress_and_report(tmp_path, monkeypatch):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    monkeypatch.chdir(tmp_path)
    result = run_workflow(load_text(WORKFLOW, source="published.yaml"))
    with _client() as client:
        artifacts = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[result.run_id])))}
    prefix = "published-run-v2"
    # `write` wrote a file: a page of its own; `last` and `maybe` (a quick command that went
    # well, a `when` that was false) are rows of the table
    assert set(artifacts) == {f"{prefix}-write", f"{prefix}-steps", f"{prefix}-progress", f"{prefix}-report-notes"}
    write = artifacts[f"{prefix}-write"]
    assert write.type == "markdown" and write.task_run_id is not None  # on the step's task run
    assert "wrote notes" in write.data and "- created: `notes.md`" in write.data
    rows = json.loads(artifacts[f"{prefix}-steps"].data)
    assert [(r["step"], r["status"]) for r in rows] == [("write", "completed"), ("maybe", "skipped"),
                                                        ("last", "completed")]
    assert artifacts[f"{prefix}-progress"].data == 100
    assert artifacts[f"{prefix}-report-notes"].data == "# Notes\nall good\n"


def test_the_run_log_has_one_line_per_step_its_end(tmp_path, monkeypatch):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    monkeypatch.chdir(tmp_path)
    result = run_workflow(load_text(WORKFLOW, source="published.yaml"))

    def ours():
        with _client() as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[result.run_id])))
        messages = [log.message for log in logs]
        # Sent in batches, ours and Prefect's apart: wait for our last line, and for Prefect's
        # line for the flow run, which its log worker sends after any of the task runs'.
        ended = f"run {result.run_id}: completed (3 steps)" in messages and any(
            m.startswith("Finished in state") for m in messages)
        return messages if ended else None

    lines = until(ours, 30, "the run's log lines to reach the server")
    ours_ = [line for line in lines if line.startswith(("step ", "run "))]
    assert len(ours_) == 4, lines
    assert ours_[0] == "step write: completed in " + ours_[0].split(" in ")[1]
    assert ours_[0].endswith(": wrote notes")
    assert "step maybe: skipped: `false` is false" in ours_
    assert ours_[-1] == f"run {result.run_id}: completed (3 steps)"
    # One line a step: Prefect's own end line for a step's task run stays on the console; the
    # flow run's is there.
    assert [line for line in lines if line.startswith("Finished in state")] == ["Finished in state Completed()"], lines


def test_a_failed_step_is_logged_in_a_line_without_a_traceback(tmp_path, monkeypatch):
    """A failed step and the run it fails are outcomes agentflow describes: Prefect's lines for
    them keep their message, not a page of engine frames (engine/prefect_logs.py); an error in
    code keeps its traceback."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from agentflow.errors import WorkflowFailed

    monkeypatch.chdir(tmp_path)
    definition = """
name: fails-once
pattern: parallel
steps:
  - {id: bad, run: [sh, -c, "echo broken >&2; exit 4"]}
  - {id: buggy, call: "helpers:raises_type_error"}
"""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "helpers.py").write_text("def raises_type_error():\n    return 1 + 'a'\n")
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(load_text(definition, source="fails.yaml"))
    run_id = failure.value.result.run_id

    def final():
        with _client() as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        messages = [log.message for log in logs]
        return messages if any(m.startswith("Finished in state Failed('workflow") for m in messages) else None

    messages = until(final, 30, "the run's last log line to reach the server")
    assert "Task run failed with exception: StepFailed('step `bad`: `sh` exited with code 4: broken')" in messages
    assert not [m for m in messages if "Encountered exception" in m]
    buggy = next(m for m in messages if m.startswith("Task run failed with exception: StepFailed(\"step `buggy`"))
    # A bug in a `call:` function: the traceback of that function, not the engine's frames.
    assert "Traceback" in buggy and "return 1 + 'a'" in buggy and "task_engine.py" not in buggy
    assert not [m for m in messages if "Traceback" in m and m != buggy]


def test_every_step_and_run_outcome_is_an_event(tmp_path, monkeypatch):
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    monkeypatch.chdir(tmp_path)
    cached = WORKFLOW.replace("  - id: write\n", f"  - id: write\n    cache: true\n    with: {{here: '{tmp_path}'}}\n")
    result = run_workflow(load_text(cached, source="published.yaml"))
    again = run_workflow(load_text(cached, source="published.yaml"))  # `write` from the cache
    wanted = EventFilter(event=EventNameFilter(prefix=["agentflow."]),
                         related=EventRelatedFilter(id=[f"prefect.flow-run.{again.run_id}"]))

    def events():
        with _client() as client:
            page = client.read_events(wanted, limit=50)
        found = [(e.event, e.resource.id) for e in page.events]
        return found if ("agentflow.run.completed", f"agentflow.run.{again.run_id}") in found else None

    found = set(until(events, 30, "the run's events to reach the server"))
    assert ("agentflow.step.cached", "agentflow.step.Published_Run.v2.write") in found
    assert ("agentflow.step.skipped", "agentflow.step.Published_Run.v2.maybe") in found
    assert ("agentflow.step.completed", "agentflow.step.Published_Run.v2.last") in found
    assert result.run_id != again.run_id


def test_the_run_log_reaches_the_server_a_batch_a_second_not_a_call_a_line(cli, write, prefect_server):
    """60 quick steps: their 61 lines travel in a few calls (at most one batch a second, and
    Prefect's own log worker's every 2 s), counted by a proxy in front of the server."""
    import math
    import time

    from counting_proxy import CountingProxy

    steps = "".join(f"  - {{id: s{i}, run: [echo, s{i}]}}\n" for i in range(60))
    workflow = write(f"name: batched-lines\npattern: sequential\nsteps:\n{steps}")
    proxy = CountingProxy(prefect_server)
    try:
        started = time.monotonic()
        done = cli("run", str(workflow), cwd=workflow.parent, env={"PREFECT_API_URL": proxy.url})
        wall = time.monotonic() - started
        calls = proxy.requests("POST", "/api/logs/")
    finally:
        proxy.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert 1 <= calls <= math.ceil(wall) + math.ceil(wall / 2) + 2, (calls, wall)

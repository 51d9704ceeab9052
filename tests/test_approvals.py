"""Approval steps (engine/approvals.py): the run waits for a person, who answers with `agentflow
approve` or through the API the UI's form uses; the decision is the step's result; a timeout
decides the step's default. Real processes against the session's server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agentflow.errors import SpecError
from agentflow.flows.language.loader import load_text

FIXTURES = Path(__file__).resolve().parent / "fixtures"

WORKFLOW = """
name: {name}
steps:
  - {{id: plan, run: [echo, "## Summary\\nplan: ship v2"]}}
  - id: review_gate
    approval:
      message: "Ship **{{{{ steps.plan.summary }}}}**?"
      show: [plan]
      on_reject: {on_reject}
      fields:
        risk: {{type: string, default: low, enum: [low, high], description: "How risky"}}
  - {{id: ship, run: [echo, "shipping, risk {{{{ steps.review_gate.data.fields.risk }}}}"], depends_on: [review_gate]}}
"""


class Waiting:
    """`agentflow run` in the background, until its approval step asks (its `ask` line)."""

    def __init__(self, env: dict, cwd: Path, *args: str):
        self.process = subprocess.Popen([sys.executable, "-m", "agentflow", "run", "wf.yaml", "--json", *args],
                                        cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.said = []
        for line in self.process.stderr:  # with --json the live view is on stderr
            self.said.append(line)
            if line.startswith("run "):
                self.run_id = line.split()[1]
            if line.strip().startswith("ask"):
                break
        else:
            pytest.fail("the run never asked: " + "".join(self.said) + self.process.stdout.read())

    def result(self) -> tuple[int, dict]:
        stdout, stderr = self.process.communicate(timeout=120)
        self.said.append(stderr)
        return self.process.returncode, json.loads(stdout)


@pytest.fixture
def env(prefect_server):
    return {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES)}


def _workflow(tmp_path: Path, on_reject: str = "fail") -> str:
    name = f"approved_{uuid.uuid4().hex[:8]}"
    (tmp_path / "wf.yaml").write_text(WORKFLOW.format(name=name, on_reject=on_reject))
    return name


def test_approved_from_another_process_with_the_cli(cli, env, tmp_path):
    """`agentflow runs` shows the run awaiting approval; a bad field value is refused and the run
    still waits; `agentflow approve` goes on, the decision is the step's result and an audit line."""
    _workflow(tmp_path)
    waiting = Waiting(env, tmp_path)
    assert f"agentflow approve {waiting.run_id[:8]} review_gate" in "".join(waiting.said)
    listed = cli("runs")
    assert any(waiting.run_id[:8] in line and "Awaiting" in line for line in listed.stdout.splitlines())

    bad = cli("approve", waiting.run_id[:8], "review_gate", "-f", "risk=medium")
    assert bad.returncode == 2 and "'medium' is not one of ['low', 'high']" in bad.stderr
    assert "still waits" in bad.stderr
    wrong = cli("approve", waiting.run_id[:8], "deploy")
    assert wrong.returncode == 2 and "not `deploy`" in wrong.stderr
    # No caller sets the form's own fields: who decides is who runs the command, --reject rejects.
    forged = cli("approve", waiting.run_id[:8], "--reject", "-f", "approve=true", "-f", "decided_by=someone@else")
    assert forged.returncode == 2 and "`approve` is the form's own" in forged.stderr, forged.stderr
    named = cli("approve", waiting.run_id[:8], "-f", "decided_by=someone@else")
    assert named.returncode == 2 and "who decides is who runs this command" in named.stderr
    deep = cli("approve", waiting.run_id[:8], "-f", "risk=" + "[" * 40 + "]" * 40)
    assert deep.returncode == 2 and "nests deeper than 32 levels" in deep.stderr and "Traceback" not in deep.stderr
    deeper = cli("approve", waiting.run_id[:8], "-f", "risk=" + "[" * 60000 + "]" * 60000)
    assert deeper.returncode == 2 and "internal error" not in deeper.stderr and len(deeper.stderr) < 500
    big = cli("approve", waiting.run_id[:8], "-f", "risk=" + "x" * 120000)
    assert big.returncode == 2 and "at most 65,536" in big.stderr and len(big.stderr) < 500, big.stderr[:300]

    done = cli("approve", waiting.run_id[:8], "review_gate", "-f", "risk=high", "-m", "fine by me")
    assert done.returncode == 0, done.stderr
    code, result = waiting.result()
    assert code == 0 and result["state"] == "Completed"
    decision = result["steps"]["review_gate"]["result"]["data"]
    assert decision["approved"] is True and decision["comment"] == "fine by me" and decision["fields"] == {"risk": "high"}
    assert decision["decided_by"].endswith("@" + __import__("socket").gethostname())
    assert result["steps"]["ship"]["summary"] == "shipping, risk high"
    audit = [json.loads(line) for line in Path(os.environ["AGENTFLOW_AUDIT_FILE"]).read_text().splitlines()]
    (line,) = [a for a in audit if a["run_id"] == waiting.run_id and a["kind"] == "approval"]
    assert (line["outcome"], line["comment"], line["fields"]) == ("approved", "fine by me", {"risk": "high"})

    again = cli("approve", waiting.run_id[:8])
    assert again.returncode == 2 and "is not waiting for an approval" in again.stderr


def test_a_run_killed_while_it_waits_is_crashed_and_resumed_asks_again(cli, env, tmp_path):
    """kill -9 while the run waits for a person: it is found Crashed; its resume reuses `plan`
    and asks again; approved, it completes."""
    import signal

    _workflow(tmp_path)
    waiting = Waiting(env, tmp_path)
    refused = cli("resume", waiting.run_id)
    assert refused.returncode == 2 and "still Awaiting approval" in refused.stderr, refused.stderr
    waiting.process.send_signal(signal.SIGKILL)
    waiting.process.wait()
    listed = cli("runs", "-n", "50")
    assert any(waiting.run_id[:8] in line and "Crashed" in line for line in listed.stdout.splitlines())

    resumed = subprocess.Popen([sys.executable, "-m", "agentflow", "resume", waiting.run_id, "--json"], cwd=tmp_path,
                               env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for line in resumed.stderr:
        if line.strip().startswith("ask"):
            break
    assert cli("approve", waiting.run_id[:8], "-m", "again").returncode == 0
    stdout, _ = resumed.communicate(timeout=120)
    result = json.loads(stdout)
    assert resumed.returncode == 0 and result["steps"]["plan"]["reused"] is True
    assert result["steps"]["review_gate"]["result"]["data"]["comment"] == "again"


@pytest.mark.parametrize("on_reject", ["fail", "skip"])
def test_rejected_through_the_api_the_ui_uses(env, tmp_path, on_reject):
    """Rejected with the form's input (Prefect's resume_flow_run, as the UI sends it): the run
    fails with the comment, or with `on_reject: skip` the step and its dependents are skipped."""
    from prefect.flow_runs import resume_flow_run

    _workflow(tmp_path, on_reject)
    waiting = Waiting(env, tmp_path)
    with pytest.raises(Exception, match="decided_by"):  # not a field of the form: the answer is refused
        resume_flow_run(uuid.UUID(waiting.run_id), run_input={"approve": False, "decided_by": "someone@else"})
    resume_flow_run(uuid.UUID(waiting.run_id), run_input={"approve": False, "comment": "not this week"})
    code, result = waiting.result()
    gate = result["steps"]["review_gate"]
    assert gate["result"]["data"]["approved"] is False and gate["result"]["data"]["decided_by"] == "the Prefect UI"
    if on_reject == "fail":
        assert code == 1 and result["state"] == "Failed"
        assert gate["status"] == "failed" and "rejected by the Prefect UI: not this week" in gate["summary"]
        assert result["steps"]["ship"]["status"] == "not_run"
    else:
        assert code == 0 and gate["status"] == "skipped"
        assert result["steps"]["ship"]["status"] == "skipped"
        assert "`review_gate` was rejected" in result["steps"]["ship"]["summary"]


@pytest.mark.parametrize("default, state, status", [("approve", "Completed", "success"),
                                                     ("reject", "Failed", "failed"),
                                                     ("fail", "Failed", "failed")])
def test_a_timeout_decides_the_default(cli, tmp_path, default, state, status):
    """No answer within `timeout`: `default` decides (approve goes on; reject and fail fail the run)."""
    name = f"timed_{uuid.uuid4().hex[:8]}"
    (tmp_path / "wf.yaml").write_text(f"""
name: {name}
steps:
  - id: gate
    approval: {{message: "quick?", timeout: 2s, default: {default}}}
  - {{id: after, run: [echo, after], depends_on: [gate]}}
""")
    done = cli("run", "wf.yaml", "--json", cwd=tmp_path)
    result = json.loads(done.stdout)
    assert result["state"] == state, done.stderr
    gate = result["steps"]["gate"]
    assert gate["result"]["status"] == status and gate["result"]["data"]["timed_out"] is True
    assert gate["result"]["data"]["decided_by"] == f"timeout ({default})"
    assert (result["steps"]["after"]["status"] == "success") == (default == "approve")




GATED = """
name: {name}
inputs:
  c: {{type: string}}
agents:
  judge:
    kind: shell
    command: [sh, -c, 'printf "## Summary\\njudged\\nConfidence: %s\\n" "$0"', "{{{{ inputs.c }}}}"]
steps:
  - id: judge
    agent: judge
    prompt: judge it
    cache: false
    approve_if: "result.confidence >= 0.9"
    review_if: "result.confidence >= 0.6"
  - {{id: after, run: [echo, "used: {{{{ steps.judge.summary }}}}"], depends_on: [judge]}}
"""


@pytest.mark.parametrize("confidence, asked, answer", [("0.95", None, None), ("0.7", "review", "approve"),
                                                       ("0.3", "approval", "reject")])
def test_a_confidence_gate_in_each_band(cli, env, tmp_path, confidence, asked, answer):
    """Above approve_if the step goes on unasked; in the review band and below it the run waits
    for a person, who approves (the agent's answer is used) or rejects (the step fails)."""
    (tmp_path / "wf.yaml").write_text(GATED.format(name=f"gated_{uuid.uuid4().hex[:8]}"))
    if asked is None:
        done = cli("run", "wf.yaml", "--json", "-i", f"c={confidence}", cwd=tmp_path)
        result = json.loads(done.stdout)
        assert done.returncode == 0 and "ask" not in done.stderr
        assert result["steps"]["judge"]["result"]["confidence"] == 0.95
        assert result["steps"]["after"]["summary"] == "used: judged"
        return
    waiting = Waiting(env, tmp_path, "-i", f"c={confidence}")
    said = "".join(waiting.said)
    assert ("in the review band" if asked == "review" else "below `result.confidence >= 0.9`") in said
    flag = [] if answer == "approve" else ["--reject"]
    replied = cli("approve", waiting.run_id[:8], "judge", *flag, "-m", "checked")
    assert replied.returncode == 0, replied.stderr
    code, result = waiting.result()
    judge = result["steps"]["judge"]
    if answer == "approve":
        assert code == 0 and judge["summary"] == "judged" and judge["result"]["confidence"] == 0.7
        assert judge["result"]["metrics"]["approval"].startswith("approved by ")
        assert result["steps"]["after"]["summary"] == "used: judged"
    else:
        assert code == 1 and judge["status"] == "failed" and "rejected by" in judge["summary"]
        assert result["steps"]["after"]["status"] == "not_run"


@pytest.mark.parametrize("step, said", [
    ("{id: gate, approval: {fields: {approve: {type: boolean}}}}", "approve are the form's own"),
    ("{id: gate, approval: {fields: {token: {secret: true}}}}", "cannot be secret"),
    ("{id: gate, approval: {show: [nothing]}}", "shows unknown step `nothing`"),
    ("{id: gate, approval: {default: maybe}}", "default"),
    ("{id: s, run: [echo], review_if: 'result.confidence > 0.5'}", "give approve_if too"),
    ("{id: s, approval: ok?, approve_if: 'result.confidence > 0.5'}", "an approval step has none to gate"),
    ("{id: s, run: [echo], approve_if: 'result.confidence >'}", "steps[0].approve_if"),
])
@pytest.mark.unit
def test_bad_approvals_and_gates_are_refused_with_file_and_line(step, said):
    """A field the form owns, a secret field, an unknown step shown, a bad default; review_if
    without approve_if, a gate on an approval step, a gate that does not parse: file:line, why."""
    with pytest.raises(SpecError) as raised:
        load_text(f"name: x\nsteps:\n  - {step}\n", source="gate.yaml")
    assert "gate.yaml:3" in str(raised.value) and said in str(raised.value), str(raised.value)


def test_a_timer_the_server_cannot_keep_leaves_the_run_waiting_in_place(prefect_server):
    """A deployed run suspends only if the server keeps its approval's timeout: not one under
    Prefect's 10 s minimum, nor one the server refuses (here: a flow run it does not have)."""
    from agentflow.flows.engine import approval_timer

    assert approval_timer.arm(uuid.uuid4(), "approval-gate-abc123-00ff00", 5, "gate") is False
    assert approval_timer.arm(uuid.uuid4(), "approval-gate-abc123-00ff00", 60, "gate") is False


def test_a_timer_whose_run_ended_is_swept_by_the_next_one(prefect_server):
    """A run cancelled while suspended leaves its timer behind; the next timer armed removes it,
    and keeps the one of a run still waiting."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Suspended

    from agentflow.flows.engine import approval_timer

    @flow(name=f"timed_{uuid.uuid4().hex[:8]}")
    def timed() -> None:
        pass

    with get_client(sync_client=True) as client:
        ended, waiting = (client.create_flow_run(timed) for _ in range(2))
        client.set_flow_run_state(waiting.id, Suspended(pause_key="approval-x"), force=True)
        assert approval_timer.arm(ended.id, "approval-gate-abc123-00ff00", 60, "gate")
        client.set_flow_run_state(ended.id, Cancelled(), force=True)
        assert approval_timer.arm(waiting.id, "approval-gate-abc123-00ff01", 60, "gate")
        names = {a.name for a in client.read_automations()}
        assert f"agentflow: approval timeout of run {ended.id}" not in names
        assert f"agentflow: approval timeout of run {waiting.id}" in names
        approval_timer.disarm(client, waiting.id)


def test_a_recorded_run_keeps_the_decision_and_its_replay_is_not_asked(cli, env, tmp_path):
    """`run --record` keeps what the person decided (fields, comment, who); `run --replay`
    decides the same without asking anyone, so a replayed run goes on to the end by itself."""
    _workflow(tmp_path)
    waiting = Waiting(env, tmp_path, "--record", "run.rec.yaml")
    approved = cli("approve", waiting.run_id[:8], "review_gate", "-f", "risk=high", "--comment", "go")
    assert approved.returncode == 0, approved.stderr
    code, document = waiting.result()
    assert code == 0 and "recorded 0 agent calls and 1 decision in run.rec.yaml" in "".join(waiting.said)
    import yaml

    (decision,) = yaml.safe_load((tmp_path / "run.rec.yaml").read_text())["decisions"]
    by = document["steps"]["review_gate"]["result"]["data"]["decided_by"]
    assert decision == {"step": "review_gate", "approve": True, "comment": "go", "fields": {"risk": "high"}, "by": by}

    replayed = subprocess.run([sys.executable, "-m", "agentflow", "run", "wf.yaml", "--replay", "run.rec.yaml",
                               "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert " ask " not in replayed.stderr  # nobody was asked
    steps = json.loads(replayed.stdout)["steps"]
    assert steps["review_gate"]["result"]["data"]["comment"] == "go"
    assert steps["review_gate"]["result"]["data"]["decided_by"] == by
    assert steps["ship"]["summary"] == "shipping, risk high"

"""Sub-workflows: a `workflow: FILE` step runs the child as a subflow of its task run, with `with:` as
its inputs and its WorkflowResult as the step's result; fan-out, failure and resume work on it as
on any step; a cycle between files is refused naming the chain."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from agentflow.errors import SpecError
from agentflow.flows.language.loader import load_workflow

REPO = Path(__file__).resolve().parent.parent

CHILD = """
name: {name}
inputs:
  who: {{type: string}}
steps:
  - {{id: hello, run: [sh, -c, 'echo "{{{{ inputs.who }}}}" >> children.txt; echo "## Summary"; echo "hello {{{{ inputs.who }}}}"']}}
  - {{id: check, run: [sh, -c, 'test "{{{{ inputs.who }}}}" != broken']}}
"""

PARENT = """
name: {name}
inputs:
  first: {{type: string, default: world}}
steps:
  - {{id: sub, workflow: child.yaml, with: {{who: "{{{{ inputs.first }}}}"}}}}
  - id: many
    for_each: [ann, bob]
    workflow: child.yaml
    with: {{who: "{{{{ item }}}}"}}
  - id: after
    run: [sh, -c, 'test -f go || {{ touch go; exit 1; }}; echo "child said {{{{ steps.sub.data.steps.hello.summary }}}}"']
    depends_on: [sub, many]
"""


def _files(tmp_path, name: str) -> None:
    (tmp_path / "child.yaml").write_text(CHILD.format(name=f"{name}_child"))
    (tmp_path / "wf.yaml").write_text(PARENT.format(name=name))


def test_a_child_runs_as_a_subflow_and_a_resumed_parent_does_not_run_it_again(cli, tmp_path):
    """The child's result is the step's (`steps.sub.data...`), fanned out per item too, its flow run
    under the step's task run; the parent fails at `after`, and its resume reuses the children."""
    from prefect.client.orchestration import get_client

    name = f"parent_{uuid.uuid4().hex[:8]}"
    _files(tmp_path, name)
    first = cli("run", "wf.yaml", "--json", cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # `after` fails the first time
    result = json.loads(first.stdout)
    sub = result["steps"]["sub"]["result"]
    assert sub["data"]["workflow"] == f"{name}_child" and sub["data"]["steps"]["hello"]["summary"] == "hello world"
    items = result["steps"]["many"]["result"]["data"]["items"]
    assert [i["data"]["steps"]["hello"]["summary"] for i in items] == ["hello ann", "hello bob"]
    assert sorted((tmp_path / "children.txt").read_text().split()) == ["ann", "bob", "world"]

    with get_client(sync_client=True) as client:  # the child is a subflow of the parent's run in the UI
        child = client.read_flow_run(uuid.UUID(sub["metrics"]["run_id"]))
        assert str(client.read_task_run(child.parent_task_run_id).flow_run_id) == result["run_id"]

    resumed = cli("resume", result["run_id"], "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    again = json.loads(resumed.stdout)
    assert again["steps"]["sub"]["reused"] is True and again["steps"]["many"]["reused"] is True
    assert again["steps"]["after"]["summary"] == "child said hello world"
    assert sorted((tmp_path / "children.txt").read_text().split()) == ["ann", "bob", "world"]  # not run again


HELD_CHILD = """
name: {name}_child
steps:
  - {{id: one, run: [{step}, out.txt, one, calls.txt]}}
  - {{id: two, depends_on: [one], run: [{step}, out.txt, two, calls.txt, hold-two, announce]}}
"""


def test_a_parent_killed_during_its_child_resumes_that_child(cli, prefect_server, tmp_path):
    """kill -9 of the parent's process while its child runs: the parent's resume finds the child's
    flow run and resumes it (the child's journal answers `one`, which does not run again) instead
    of starting another; the command the killed child left is killed on the way."""
    from background import STEP, Killed
    from procs import gone

    name = f"parent_{uuid.uuid4().hex[:8]}"
    (tmp_path / "child.yaml").write_text(HELD_CHILD.format(name=name, step=", ".join(STEP)))
    (tmp_path / "wf.yaml").write_text(f"name: {name}\nsteps:\n  - {{id: sub, workflow: child.yaml}}\n")
    (tmp_path / "hold-two").touch()
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(REPO / "tests" / "fixtures")}
    run = Killed(env, tmp_path, tmp_path / "wf.yaml", holders=1)
    run_id = run.kill()
    (tmp_path / "hold-two").unlink()

    resumed = cli("resume", run_id, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert gone(run.held["two"])
    sub = json.loads(resumed.stdout)["steps"]["sub"]["result"]
    assert sub["data"]["steps"]["one"]["reused"] is True and sub["data"]["steps"]["two"]["summary"] == "wrote two"
    assert (tmp_path / "calls.txt").read_text().split() == ["one", "two", "two"]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:  # one child run, crashed and then resumed
        (child,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[uuid.UUID(run_id)])))
        states = [s.name for s in client.read_flow_run_states(child.id)]
    assert str(child.id) == sub["metrics"]["run_id"] and "Crashed" in states and states[-1] == "Completed"


def test_a_failing_child_fails_its_step(cli, tmp_path):
    """A child that fails makes its step fail (high criticality: the parent fails), naming the child's step."""
    name = f"parent_{uuid.uuid4().hex[:8]}"
    _files(tmp_path, name)
    done = cli("run", "wf.yaml", "--json", "-i", "first=broken", cwd=tmp_path)
    assert done.returncode == 1
    sub = json.loads(done.stdout)["steps"]["sub"]
    assert sub["status"] == "failed" and "step(s) check failed" in sub["summary"]
    assert sub["result"]["data"]["steps"]["check"]["status"] == "failed"


@pytest.mark.unit
def test_files_that_call_each_other_are_refused_naming_the_chain(tmp_path):
    """a.yaml -> b.yaml -> a.yaml: refused at load, the chain named at the line that closes it."""
    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  - {id: x, workflow: b.yaml}\n")
    (tmp_path / "b.yaml").write_text("name: b\nsteps:\n  - {id: y, workflow: a.yaml}\n")
    with pytest.raises(SpecError) as raised:
        load_workflow(tmp_path / "a.yaml")
    assert "b.yaml:3: steps[0].workflow: workflow files call each other: a.yaml -> b.yaml -> a.yaml" in str(raised.value)


@pytest.mark.unit
def test_with_is_checked_against_the_childs_inputs(tmp_path):
    """An input the child does not declare, and a required one not given: file:line and the child's inputs."""
    (tmp_path / "child.yaml").write_text(CHILD.format(name="c"))
    (tmp_path / "wf.yaml").write_text("name: p\nsteps:\n  - {id: s, workflow: child.yaml, with: {whom: x}}\n")
    with pytest.raises(SpecError) as raised:
        load_workflow(tmp_path / "wf.yaml")
    text = str(raised.value)
    assert "wf.yaml:3: steps[0].with.whom: workflow `c` has no input `whom`; its inputs: who" in text
    assert "needs input(s) who" in text


@pytest.mark.unit
def test_a_deployment_step_names_its_deployment_plainly(tmp_path):
    """`deployment:` is a name, not a template, and a step does one thing: file:line and the fix."""
    (tmp_path / "wf.yaml").write_text("name: p\nsteps:\n  - {id: a, deployment: '{{ inputs.which }}'}\n"
                                      "  - {id: b, deployment: greet, run: [echo]}\n")
    with pytest.raises(SpecError) as raised:
        load_workflow(tmp_path / "wf.yaml")
    text = str(raised.value)
    assert "wf.yaml:3: steps[0].deployment:" in text and "not a template; choose between two with `when:`" in text
    assert "wf.yaml:4: steps[1]:" in text and "deployment" in text.split("wf.yaml:4:")[1]
    plain = tmp_path / "ok.yaml"
    plain.write_text("name: p\nsteps:\n  - {id: a, deployment: greet/greet, with: {who: '{{ inputs.who }}'}}\n"
                     "inputs:\n  who: {type: string}\n")
    assert load_workflow(plain).spec.steps[0].deployment == "greet/greet"

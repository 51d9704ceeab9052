"""Sub-workflows: a `workflow: FILE` step runs the child as a subflow of its task run, with `with:` as
its inputs and its WorkflowResult as the step's result; fan-out, failure and resume work on it as
on any step; a cycle between files is refused naming the chain."""

from __future__ import annotations

import json
import uuid

import pytest

from agentflow.errors import SpecError
from agentflow.flows.language.loader import load_workflow

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


def test_a_failing_child_fails_its_step(cli, tmp_path):
    """A child that fails makes its step fail (high criticality: the parent fails), naming the child's step."""
    name = f"parent_{uuid.uuid4().hex[:8]}"
    _files(tmp_path, name)
    done = cli("run", "wf.yaml", "--json", "-i", "first=broken", cwd=tmp_path)
    assert done.returncode == 1
    sub = json.loads(done.stdout)["steps"]["sub"]
    assert sub["status"] == "failed" and "step(s) check failed" in sub["summary"]
    assert sub["result"]["data"]["steps"]["check"]["status"] == "failed"


def test_files_that_call_each_other_are_refused_naming_the_chain(tmp_path):
    """a.yaml -> b.yaml -> a.yaml: refused at load, the chain named at the line that closes it."""
    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  - {id: x, workflow: b.yaml}\n")
    (tmp_path / "b.yaml").write_text("name: b\nsteps:\n  - {id: y, workflow: a.yaml}\n")
    with pytest.raises(SpecError) as raised:
        load_workflow(tmp_path / "a.yaml")
    assert "b.yaml:3: steps[0].workflow: workflow files call each other: a.yaml -> b.yaml -> a.yaml" in str(raised.value)


def test_with_is_checked_against_the_childs_inputs(tmp_path):
    """An input the child does not declare, and a required one not given: file:line and the child's inputs."""
    (tmp_path / "child.yaml").write_text(CHILD.format(name="c"))
    (tmp_path / "wf.yaml").write_text("name: p\nsteps:\n  - {id: s, workflow: child.yaml, with: {whom: x}}\n")
    with pytest.raises(SpecError) as raised:
        load_workflow(tmp_path / "wf.yaml")
    text = str(raised.value)
    assert "wf.yaml:3: steps[0].with.whom: workflow `c` has no input `whom`; its inputs: who" in text
    assert "needs input(s) who" in text

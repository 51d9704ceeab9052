"""What `agentflow deploy` writes and checks, and `storage set` refuses: no deployed project needed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from deployed_project import REPO, WORKFLOWS

from agentflow.deployments import project
from agentflow.deployments.entry import workflow_files
from agentflow.flows.language.loader import load_workflow


def test_prefect_yaml_is_written_from_the_shipped_workflows():
    """prefect.yaml at the root is what `agentflow deploy` writes now: else it is stale."""
    loaded = [load_workflow(path) for path in workflow_files(REPO / "workflows").values()]
    assert (REPO / "prefect.yaml").read_text() == project.render(loaded), \
        "prefect.yaml is stale: run `agentflow deploy` and commit it"


def test_the_entry_flow_takes_the_workflow_inputs_and_no_secret(tmp_path, monkeypatch):
    """What `prefect deploy` reads for the UI's Run form: each input by name, type, default
    and description; a secret is not a parameter (Prefect would store it)."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "greet.yaml").write_text(WORKFLOWS["greet.yaml"])
    monkeypatch.setenv("AGENTFLOW_WORKFLOWS", str(tmp_path / "workflows"))
    flow = load_flow_from_entrypoint("agentflow.deployments.entry.greet")
    assert flow.name == "greet"
    schema = parameter_schema(flow.fn).model_dump()
    assert set(schema["properties"]) == {"who", "times"} and schema["required"] == ["who"]
    assert schema["properties"]["times"] == {"default": 1, "description": "How often.", "position": 1,
                                             "title": "times", "type": "integer"}
    with pytest.raises(Exception, match="'other' not found") as missing:
        load_flow_from_entrypoint("agentflow.deployments.entry.other")
    assert "no workflow named 'other'" in str(missing.value.__cause__)  # in the traceback Prefect logs



def test_deploy_writes_checks_and_says_what_is_wrong(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")  # no server recorded, no profile

    def agentflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agentflow", "deploy", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    empty = agentflow()
    assert empty.returncode == 2 and "no workflows in workflows/" in empty.stderr
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "greet.yaml").write_text(WORKFLOWS["greet.yaml"])
    stale = agentflow("--check")
    assert stale.returncode == 1 and "prefect.yaml is stale: run `agentflow deploy`" in stale.stderr
    written = agentflow()
    assert written.returncode == 0 and "prefect.yaml: 1 deployments (greet)" in written.stdout
    assert "entrypoint: agentflow.deployments.entry.greet" in (tmp_path / "prefect.yaml").read_text()
    assert agentflow("--check").returncode == 0
    no_server = agentflow("--apply")
    assert no_server.returncode == 2 and "needs a Prefect server that stays up" in no_server.stderr
    (tmp_path / "workflows" / "bad.yaml").write_text("name: bad\nschedules:\n  - {cron: nope}\nsteps:\n"
                                                     "  - {id: a, run: [echo]}\n")
    bad = agentflow()
    assert bad.returncode == 2 and "bad.yaml:3:" in bad.stderr and "is not a cron expression" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_storage_set_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_RESULTS_LOCAL_STORAGE_PATH")}
    env["PREFECT_HOME"] = str(tmp_path / "home")  # no server recorded, no profile

    def agentflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agentflow", "storage", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    assert agentflow("set").returncode == 2 and "give the storage: --path DIR or --block TYPE/NAME" in \
        agentflow("set").stderr
    no_server = agentflow("set", "--path", str(tmp_path / "shared"))
    assert no_server.returncode == 2 and "a Prefect server that stays up" in no_server.stderr
    shown = agentflow("show")  # the embedded server's: Prefect's local storage path, no server started
    assert shown.returncode == 0 and shown.stdout.startswith(str(tmp_path / "home" / "storage"))


def test_the_example_automation_is_one_prefect_accepts():
    """monitoring/automations/notify-on-degraded.yaml, its block id filled in, is a valid
    automation that triggers on agentflow's degraded and skipped step events."""
    import uuid

    import yaml
    from prefect.events.schemas.automations import AutomationCore

    text = (REPO / "monitoring" / "automations" / "notify-on-degraded.yaml").read_text()
    automation = AutomationCore.model_validate(yaml.safe_load(text.replace("BLOCK_DOCUMENT_ID", str(uuid.uuid4()))))
    assert automation.trigger.expect == {"agentflow.step.degraded", "agentflow.step.skipped"}
    assert automation.actions[0].type == "send-notification"

"""The flows that deployments run: one per workflow of the project, built from its YAML.

prefect.yaml names each deployment's entrypoint `agentflow.deployments.entry.NAME`, where NAME
is the workflow's name with `-` and `.` written `_` (a Python name). Prefect imports this
module and asks it for NAME; it is built then, from the workflow of that name in the
project's `workflows/` folder (or the folder AGENTFLOW_WORKFLOWS names), so the YAML stays the
one definition and nothing is generated per workflow. The flow's signature is the workflow's
inputs (name, type, default, description), which is what `prefect deploy` reads for the UI's
Run form; the workflow itself is fixed by the entrypoint, never a parameter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentflow import config, log, tracing

WORKFLOWS_ENV = "AGENTFLOW_WORKFLOWS"


def python_name(workflow_name: str) -> str:
    return workflow_name.replace("-", "_").replace(".", "_")


def workflows_folder() -> Path:
    """`workflows` (AGENTFLOW_WORKFLOWS, agentflow.toml; default `workflows`)."""
    return Path(os.environ.get(WORKFLOWS_ENV) or config.current().workflows)


def workflow_files(folder: Path | None = None) -> dict[str, Path]:
    """The workflows of a folder by name (agents files and unreadable files left out)."""
    from agentflow.flows.language import document as yamldoc

    found: dict[str, Path] = {}
    for path in sorted((folder or workflows_folder()).glob("*.y*ml")):
        try:
            data = yamldoc.parse(path.read_text(encoding="utf-8")).data
        except (OSError, UnicodeDecodeError, yamldoc.YamlSyntaxError):
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str) and "steps" in data:
            found.setdefault(data["name"], path)
    return found


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    from agentflow import startup

    # A worker's flow-run process: Prefect is imported; agentflow's modules and the flow are
    # built now, with the collector paused, which the flow body lets run again (agentflow/startup.py).
    startup.collect_later()
    from agentflow.flows.engine.compile import build_flow
    from agentflow.flows.language.loader import load_workflow

    folder = workflows_folder()
    matches = [path for workflow, path in workflow_files(folder).items() if python_name(workflow) == name]
    if len(matches) != 1:
        where = folder.resolve()
        raise AttributeError(f"no workflow named {name!r} (or with `-`/`.` for `_`) in {where}"
                             if not matches else f"{len(matches)} workflows in {where} are named {name!r}")
    flow = build_flow(load_workflow(matches[0]), deployed=True)
    # A worker's flow run: agentflow's lines on its console from info (the worker shows them),
    # in the log file, and in the run's log in the UI (agentflow/log.py).
    log.configure("info")
    tracing.configure()
    globals()[name] = flow  # asked again (Prefect does), the same flow
    return flow

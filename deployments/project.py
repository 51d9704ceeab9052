"""prefect.yaml, written from the project's workflows (`agentflow deploy`).

One deployment per workflow, named after it, its entrypoint the generic module that builds the
workflow's flow from its YAML (deployments/entry.py), with the workflow's schedules, triggers
and work pool. The YAML definitions stay the one source: prefect.yaml is regenerated, never
edited, and a test fails when it is stale. `prefect deploy --all` reads it as any Prefect
project's.
"""

from __future__ import annotations

from typing import Any

import yaml

from agentflow.deployments.entry import python_name
from agentflow.errors import Problem, SpecError
from agentflow.flows.language.deployment import Schedule, Trigger
from agentflow.flows.language.spec import ResolvedWorkflow

FILE = "prefect.yaml"
HEADER = ("# Written by `agentflow deploy` from workflows/*.yaml: edit those and run it again, not this file.\n"
          "# `prefect deploy --all` deploys every workflow; `prefect worker start --pool agentflow` runs them.\n")
RUN_TAG = "agentflow"  # flows/durability/crash.py: runs the crash automation watches


def render(workflows: list[ResolvedWorkflow]) -> str:
    """The whole prefect.yaml for these workflows (SpecError if two share a Python name)."""
    seen: dict[str, str] = {}
    problems = []
    for workflow in workflows:
        name = python_name(workflow.spec.name)
        if name in seen:
            problems.append(Problem(workflow.source, None, "name", f"workflow `{workflow.spec.name}` and "
                                    f"`{seen[name]}` have the same entrypoint name `{name}`",
                                    "rename one of them"))
        seen[name] = workflow.spec.name
    if problems:
        raise SpecError(problems)
    document = {
        "name": "agentflow",
        "build": [{"agentflow.deployments.steps.project_directory": {"id": "project"}}],
        "push": None,
        "pull": [{"agentflow.deployments.steps.enter_project": {"directory": "{{ project.directory }}"}}],
        "deployments": [deployment(w) for w in sorted(workflows, key=lambda w: w.spec.name)],
    }
    return HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)


def deployment(workflow: ResolvedWorkflow) -> dict[str, Any]:
    spec = workflow.spec
    entry: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description.strip() or f"agentflow workflow {spec.name}",
        "entrypoint": f"agentflow.deployments.entry.{python_name(spec.name)}",
        "tags": [RUN_TAG, f"workflow:{spec.name}"],
        "work_pool": {"name": spec.work_pool},
        "parameters": {},
        "enforce_parameter_schema": True,
        "schedules": [_schedule(s) for s in spec.schedules],
    }
    if spec.triggers:
        entry["triggers"] = [_trigger(t) for t in spec.triggers]
    return entry


def _schedule(schedule: Schedule) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if schedule.cron is not None:
        entry["cron"] = schedule.cron
    elif schedule.interval is not None:
        entry["interval"] = schedule.interval
    else:
        entry["rrule"] = schedule.rrule
    if schedule.timezone:
        entry["timezone"] = schedule.timezone
    entry["active"] = schedule.active
    if schedule.inputs:
        entry["parameters"] = dict(schedule.inputs)
    return entry


def _trigger(trigger: Trigger) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "event", "enabled": trigger.enabled, "expect": trigger.events()}
    if trigger.match:
        entry["match"] = dict(trigger.match)
    if trigger.match_related:
        entry["match_related"] = dict(trigger.match_related)
    if trigger.inputs:
        entry["parameters"] = dict(trigger.inputs)
    return entry

"""`run_workflow`: run a workflow by its file, the one entry point that deployments point at.

A deployment names this function and passes the workflow's path and its inputs as
parameters, so one generic flow interprets every workflow (no code generated per file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentflow.flows.engine.compile import build_flow
from agentflow.flows.engine.result import WorkflowResult
from agentflow.flows.language.inputs import secret_env
from agentflow.flows.language.loader import load_workflow
from agentflow.flows.language.spec import ResolvedWorkflow, Workflow


def run_workflow(workflow: str | Path | ResolvedWorkflow, inputs: dict[str, Any] | None = None,
                 cache: str = "use") -> WorkflowResult:
    """Load (if given a path), check the inputs, run; a WorkflowResult, or WorkflowFailed
    carrying one. SpecError or InputError before anything runs. Secret inputs not given are
    read from AGENTFLOW_SECRET_<NAME>."""
    resolved = workflow if isinstance(workflow, ResolvedWorkflow) else load_workflow(workflow)
    return build_flow(resolved, cache=cache)(**with_secrets_from_env(resolved.spec, inputs or {}))


def with_secrets_from_env(spec: Workflow, given: dict[str, Any]) -> dict[str, Any]:
    """Secret inputs not given are taken from AGENTFLOW_SECRET_<NAME>, if set."""
    found = {name: os.environ[secret_env(name)] for name, input_spec in spec.inputs.items()
             if input_spec.secret and name not in given and secret_env(name) in os.environ}
    return {**given, **found}

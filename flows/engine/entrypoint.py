"""`run_workflow`: run a workflow by its file or as loaded (the Python API's one call).

Deployments do not come through here: each deploys the workflow's own flow, with its inputs
as its parameters (agentflow/deployments/entry.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentflow import tracing
from agentflow.flows.engine.compile import build_flow
from agentflow.flows.engine.result import WorkflowResult
from agentflow.flows.engine.secrets import with_secrets_from_env
from agentflow.flows.language.loader import load_workflow
from agentflow.flows.language.spec import ResolvedWorkflow


def run_workflow(workflow: str | Path | ResolvedWorkflow, inputs: dict[str, Any] | None = None,
                 cache: str = "use") -> WorkflowResult:
    """Load (if given a path), check the inputs, run; a WorkflowResult, or WorkflowFailed
    carrying one. SpecError or InputError before anything runs. Secret inputs not given are
    read from AGENTFLOW_SECRET_<NAME>."""
    resolved = workflow if isinstance(workflow, ResolvedWorkflow) else load_workflow(workflow)
    tracing.configure()  # traces exported with OTLP if OTEL_EXPORTER_OTLP_ENDPOINT is set
    return build_flow(resolved, cache=cache)(**with_secrets_from_env(resolved.spec, inputs or {}))


"""agentflow: durable AI-agent workflows in YAML, run as Prefect 3 flows.

The public Python API is the handful of names in `__all__`:

    from agentflow import load_workflow, build_flow
    flow = build_flow(load_workflow("workflows/finance-feature.yaml"))
    result = flow(feature="VAT invoice")          # a WorkflowResult

Names are imported lazily so that the CLI can set Prefect's settings before Prefect is
imported: Prefect reads them once, at import. Importing any part of agentflow applies
agentflow's Prefect defaults (only where the user has not set them; `_prefect_env`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from agentflow import _prefect_env

_prefect_env.apply(_prefect_env.RELIABLE)

_PUBLIC = {
    "load_workflow": "agentflow.flows.language.loader",
    "build_flow": "agentflow.flows.engine.compile",
    "run_workflow": "agentflow.flows.engine.entrypoint",
    "WorkflowResult": "agentflow.flows.engine.result",
    "StepOutcome": "agentflow.flows.engine.result",
    "AgentResult": "agentflow.tasks.results",
    "AgentflowError": "agentflow.errors",
    "SpecError": "agentflow.errors",
    "InputError": "agentflow.errors",
    "WorkflowFailed": "agentflow.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'agentflow' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

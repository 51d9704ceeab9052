"""Deployments: prefect.yaml from the workflows (`project`), the flows they run (`entry`), the
steps that put a worker in the project (`steps`), work pools (`pools`), and the Python client
that starts a deployed workflow and returns its `WorkflowResult` (`client`)."""

from __future__ import annotations

from typing import Any

__all__ = ["run_workflow_deployment", "DeploymentNotFound", "DeploymentRunFailed", "DeploymentRunTimeout"]


def __getattr__(name: str) -> Any:  # lazy: `import agentflow.deployments.entry` need not load the client
    if name in __all__:
        from agentflow.deployments import client

        return getattr(client, name)
    raise AttributeError(name)

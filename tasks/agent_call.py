"""The one Prefect task that calls an agent: every step run is a run of `agent_call`.

The compiler gives each step its own copy (`with_options`) carrying the step's retries,
backoff, timeout and tags; the body only dispatches the request to its backend.
"""

from __future__ import annotations

from prefect import task

from agentflow.errors import AssertionFailed, ConfigError
from agentflow.events import retry_condition
from agentflow.tasks.backends import Backend
from agentflow.tasks.backends.process import ProcessBackend
from agentflow.tasks.backends.python import PythonBackend
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult

BACKENDS: dict[str, Backend] = {"process": ProcessBackend(), "python": PythonBackend()}


@task(name="agent_call", task_run_name="{request.label}", retry_condition_fn=retry_condition,
      persist_result=False)
def agent_call(request: AgentRequest) -> AgentResult:
    if request.kind == "skip":
        return AgentResult(status="skipped", summary=request.message)
    if request.kind == "error":
        raise ConfigError(request.message)
    if request.kind == "assert":
        if not request.passed:
            raise AssertionFailed(f"step `{request.step}`: {request.message}")
        return AgentResult(summary=f"holds: {request.message}")
    return BACKENDS[request.kind].call(request)

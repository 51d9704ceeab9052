"""Agent backends: one module per kind of agent, each behind the `Backend` protocol."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult


class Backend(Protocol):
    def call(self, request: AgentRequest) -> AgentResult:
        """Run the agent once; raise StepFailed (retryable) or ConfigError (not retryable)."""
        ...


def run_coroutine(make: Callable[[], Coroutine[Any, Any, AgentResult]]) -> AgentResult:
    """Run an async client's call from a task's (sync) body: in a loop of its own, and in a
    thread of its own if this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()

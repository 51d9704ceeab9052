"""Agent backends: one module per kind of agent, each behind the `Backend` protocol."""

from __future__ import annotations

from typing import Protocol

from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult


class Backend(Protocol):
    def call(self, request: AgentRequest) -> AgentResult:
        """Run the agent once; raise StepFailed (retryable) or ConfigError (not retryable)."""
        ...

"""Every kind of agent, by the name a workflow's `kind:` gives it (tasks/kind.py says what a
kind declares). Adding a kind: its backend module declares its AgentKind, and it is listed
here and in the language's AGENT_KINDS (tests/tasks/test_kinds.py keeps the two the same)."""

from __future__ import annotations

from agentflow.tasks.backends import Backend
from agentflow.tasks.backends.claude import KIND as CLAUDE_CODE
from agentflow.tasks.backends.http import KIND as HTTP
from agentflow.tasks.backends.llm import KIND as LLM
from agentflow.tasks.backends.process import SHELL
from agentflow.tasks.backends.python import PYTHON
from agentflow.tasks.kind import AgentKind

KINDS: dict[str, AgentKind] = {kind.name: kind for kind in (CLAUDE_CODE, LLM, HTTP, SHELL, PYTHON)}
# The backend each request kind is dispatched to (a `run:` step is a "process" request, a
# `call:` or `template:` step a "python" one: the shell and python agents' backends).
BACKENDS: dict[str, Backend] = {kind.request_kind: kind.backend for kind in KINDS.values()}
# Request kinds that are an agent's call (the fallback ladder applies), not a decision.
REQUEST_KINDS: tuple[str, ...] = tuple(BACKENDS)

"""What a kind of agent is: the one record each kind declares about itself.

An `AgentKind` says, for the agents of one `kind:`, everything the rest of agentflow asks of
it: which backend calls it and under which request kind, what goes into its request, why it
cannot be called on this machine (the SDK missing, no key: the same words before a call and
in `agentflow agents`), whether it is ready beyond that (a program on PATH, a server that
answers), and which environment variables it reads a credential from (masked wherever a run
writes). Each kind declares its own in its backend's module (tasks/backends/); tasks/kinds.py
lists them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agentflow.flows.language.spec import AgentSpec
from agentflow.tasks.backends import Backend

Given = Mapping[str, str] | None  # the keys a credentials block gives an agent, by variable
Render = Callable[[str], str]  # renders one template with the step's values
_CONNECT_TIMEOUT_S = 1.0


def _nothing_missing(config: Mapping[str, Any], given: Given) -> str | None:
    return None


def _no_variables(config: Mapping[str, Any]) -> tuple[str, ...]:
    return ()


def _agent_config(agent: AgentSpec, render: Render) -> dict[str, Any]:
    """A remote agent's request carries its whole configuration (the backend reads it)."""
    return {"agent_config": agent.model_dump(mode="json", exclude_defaults=False)}


@dataclass(frozen=True)
class AgentKind:
    name: str  # as written in a workflow's `kind:`
    request_kind: str  # the AgentRequest kind its calls are (a shell agent's is a command's: "process")
    backend: Backend
    ready: Callable[[AgentSpec, Given], tuple[bool, str]]  # (callable here now, why in a few words)
    # It works in the repository (its call gets a worktree, its changes are captured); an
    # agent that answers from elsewhere (a model, a service) changes nothing here.
    works_in_tree: bool = False
    # Why an agent configured as `config` cannot be called on this machine, or None: checked
    # before each call (AgentNotSetUp: the ladder moves on) and by `ready`.
    not_set_up: Callable[[Mapping[str, Any], Given], str | None] = _nothing_missing
    # The environment variables an agent configured as `config` reads a credential from.
    credential_variables: Callable[[Mapping[str, Any]], tuple[str, ...]] = _no_variables
    # The request's kind-specific fields (AgentRequest's `agent_config`, `argv`, `callable`).
    request_fields: Callable[[AgentSpec, Render], dict[str, Any]] = field(default=_agent_config)

    @property
    def carries_config(self) -> bool:
        """Its request carries the agent's configuration (what a step may narrow: its tools)."""
        return self.request_fields is _agent_config


def reachable(url: str) -> tuple[bool, str]:
    """Whether a server answers at `url`'s host and port: a short TCP connect, nothing sent."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            return True, f"{host}:{port} answers"
    except OSError as exc:
        return False, f"{host}:{port} cannot be reached ({exc.strerror or type(exc).__name__})"

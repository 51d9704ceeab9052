"""`AgentRequest`: everything one agent call needs, already rendered, and the call's key.

The flow renders templates and evaluates conditions before it submits a step, so a task's
input is exactly what the agent sees: the natural thing to key a cache on.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentflow.tasks.workspace import Workspace

# process: run an argv (a `run` step or a shell agent); python: call module:function;
# claude-code, llm, http: call that kind of agent (tasks/backends/); assert: report an
# already evaluated condition; skip: a step whose `when` was false; error: a step that could
# not be prepared (its template failed), reported as its failure.
Kind = Literal["process", "python", "claude-code", "llm", "http", "assert", "skip", "error", "approval", "workflow"]


class CallKey(BaseModel):
    """What one step call is made of, as digests computed once by the flow before it submits
    the call. The run journal knows a call by its `identity`; the cache key is composed from
    the same parts plus the repository state and the files' content
    (flows/durability/cache.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow: str
    step: str  # digest of the step's definition
    agent: str | None  # digest of the agent's configuration (None: not an agent step)
    request: str  # digest of the rendered request (`AgentRequest.key_view`)
    repo: dict[str, Any] | None = None  # commit and dirty hash: set when the cache key uses them
    files: dict[str, str] | None = None  # content hash by path: set when the cache key uses them

    @property
    def identity(self) -> str:
        """The call within a run: no repository state, so that a resumed run takes a completed
        call from its journal even if the commit moved since."""
        return f"{self.step}.{self.agent or '-'}.{self.request}"


class AgentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow: str
    step: str
    label: str  # the task run's name: `review`, `gateways[bKash]`, `profile#2`, `review (skipped)`
    kind: Kind
    agent: str | None = None
    prompt: str = ""
    argv: list[str] = Field(default_factory=list)
    callable: str | None = None
    # The agent's configuration (claude-code, llm, http: model, tools, url...), with its
    # subagent's definition; its digest is already in the key (CallKey.agent).
    agent_config: dict[str, Any] = Field(default_factory=dict)
    # The agent's circuit breaker (failures, cooldown in seconds), if it has one (tasks/circuit.py)
    circuit: tuple[int, float] | None = None
    limited: bool = False  # the agent has a `concurrency` limit: a call holds one of its slots
    in_place_of: str | None = None  # a fallback's call: the step's own agent, which could not serve
    variant: str | None = None  # the agent's A/B variant this call uses (part of its key)
    files: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = None
    item: Any = None
    iteration: int | None = None
    passed: bool | None = None  # for kind=assert
    message: str = ""  # why a step was skipped, the assert's message, or the preparation error
    key: CallKey | None = None  # set by the flow when the step's result may be cached
    # Where the call works and whose changes are its result's (tasks/workspace.py): set by the
    # flow for a call that may write (commands, functions, claude-code) when the run has one.
    # Not part of an identity: its tree is in the key as the patches that made it (CallKey.repo).
    workspace: Workspace | None = None
    writes: list[str] | None = None  # globs the call may change files under (None: anywhere)
    # The run's secret inputs by the environment variable a command receives them in
    # (AGENTFLOW_SECRET_<NAME>: a command's arguments are readable by every user of the
    # machine, its environment only by its owner); their values are removed from the result
    # and errors. Never part of an identity or key (a call is keyed on a secret's name: CallKey).
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)

    @property
    def redact(self) -> tuple[str, ...]:
        return tuple(self.secrets.values())

    def agent_prompt(self) -> str:
        """What a model-backed agent (claude-code, llm) is asked: the prompt, then the step's
        `files:` and `with:`, which it has no other way to receive."""
        text = self.prompt
        if self.files:
            text += "\n\nFiles to look at: " + ", ".join(self.files)
        if self.params:
            text += "\n\nParameters (JSON): " + json.dumps(self.params, default=str)
        return text

    def key_view(self) -> dict[str, Any]:
        """What the agent sees, for the call's identity: not the run's labels, not the key."""
        return self.model_dump(mode="json", exclude={"label", "timeout", "key", "workflow", "step", "secrets", "agent_config", "circuit", "limited", "in_place_of", "workspace"})

    def workdir(self) -> str:
        """Where the call's command or agent works: its workspace, else this process's directory."""
        return self.workspace.workdir if self.workspace is not None else os.getcwd()

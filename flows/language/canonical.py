"""The one serialisation of a definition, and the digests made from it.

A workflow's version (`spec_hash`), what a run pins for `resume` to compare, and the
identity of a step call (journal and cache key alike) are all computed from these.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agentflow.flows.language.spec import AgentSpec, Step, Workflow


_DEPLOYMENT = {"schedules", "triggers", "work_pool"}


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any, length: int = 32) -> str:
    """A stable hex digest of a JSON-able value."""
    return hashlib.sha256(_canonical_json(value).encode()).hexdigest()[:length]


def step_definition(step: Step) -> dict[str, Any]:
    """A step as written (defaults left out, so that a new optional field changes nothing)."""
    return step.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def agent_definition(agent: AgentSpec | None) -> dict[str, Any] | None:
    return agent.model_dump(mode="json", exclude_defaults=True) if agent is not None else None


def workflow_definition(spec: Workflow, agents: dict[str, AgentSpec]) -> dict[str, Any]:
    """A workflow and its agents, as loaded: what a run pins and `resume` compares. How it is
    deployed (schedules, triggers, work pool) is not what a run does: not part of it."""
    return {"spec": spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude=_DEPLOYMENT),
            "agents": {name: agent_definition(agent) for name, agent in sorted(agents.items())}}

"""What the scheduler tracks: a call queued or running (`Job`) and a step under way (`StepRun`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentflow.flows.engine.compiled import StepPlan
from agentflow.tasks.request import AgentRequest, CallKey
from agentflow.tasks.results import AgentResult
from agentflow.tasks.workspace import Workspace


@dataclass
class Job:
    step: str
    request: AgentRequest
    index: int | None = None
    started: float = 0.0
    key: CallKey | None = None  # its identity (journal) and what its cache key is made of
    cache_key: str | None = None
    rung: int = 0  # 0: the step's agent; n: its n-th fallback (engine/ladder.py)
    tried: tuple[tuple[str, str], ...] = ()  # agents that failed before this one, and why
    outcome: AgentResult | None = None  # decided before its task run, which only records it
    tree: str = ""  # the run's tree when it was queued: the tree it sees (engine/run_workspace.py)
    workspace: Workspace | None = None  # where it works, once started
    refresh: bool = False  # its cached work did not apply: computed again, its entry overwritten


@dataclass
class StepRun:
    plan: StepPlan
    started: float
    items: list[Any] | None = None
    item_results: dict[int, AgentResult] = field(default_factory=dict)
    running: int = 0
    iteration: int = 0

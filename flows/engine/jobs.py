"""What the scheduler tracks: a call queued or running (`Job`), everything about a step of
the run (`StepRun`), and the record of a step's end handed to every sink (`StepFinished`)."""

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
    """One step of the run, from its start to its end: its calls' progress, what became of
    them, and its result."""

    plan: StepPlan
    started: float = 0.0
    items: list[Any] | None = None  # a `for_each` step's items, once known
    item_results: dict[int, AgentResult] = field(default_factory=dict)
    running: int = 0  # its calls running now (its own `max_parallel` bounds them)
    iteration: int = 0  # a `repeat` step's round
    attempts: int = 1  # the most tries any of its task runs took
    cached: bool = False  # answered (at least in part) from the cache
    reused: bool = False  # answered (at least in part) from the journal: done before a resume
    cache_hits: int = 0
    cache_misses: int = 0
    task_run_id: Any = None  # its task run (not a fan-out step's: it has one per item)
    skipped_by: str | None = None  # why the run skipped it: condition | rejected
    rejected: bool = False  # rejected with `on_reject: skip`, or skipped for an upstream that was
    held: tuple[AgentResult, str, str] | None = None  # a result a confidence gate held back: (it, kind, why)
    result: AgentResult | None = None  # once it completed
    duration: float | None = None


@dataclass(frozen=True)
class StepFinished:
    """A step's end, as every sink gets it (the run's log, its artifacts and events, metrics)."""

    step: str
    result: AgentResult
    duration: float | None
    attempts: int = 1
    cached: bool = False
    reused: bool = False
    agent: str | None = None
    task_run_id: Any = None
    cache_calls: tuple[int, int] = (0, 0)  # its calls answered from the cache, and those that missed it
    variant: str | None = None  # its agent's A/B variant in this run
    skip_reason: str | None = None  # condition | rejected | agents_failed | answered
    spend: dict[str, Any] | None = None  # what its agents reported (usd, tokens)

"""`agentflow stats`: runs, success rates, step times, cache, degraded and skipped rates,
retries and spend, per workflow, per agent, and per A/B variant side by side.

The figures are folded from the same events as the metrics (flows/observe/fold.py), read
from the server for the period asked, so that `stats` and the dashboard never disagree on
what happened. Each rate comes with the counts it is made of.

- A workflow's success rate: its runs that completed, of those that ended (failed, crashed
  and cancelled runs count against it).
- An agent's success rate: its steps that its own agent answered (completed), of those that
  called it (completed, degraded: a fallback answered, failed, or skipped because every agent
  failed); cached, reused and `when`-skipped steps did not call it.
- p50 and p95 are nearest-rank percentiles of the step times of the steps that called an agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentflow.flows.observe import source
from agentflow.flows.observe.fold import Totals

_CALLED = ("completed", "degraded", "failed")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def read(client: Any, since: datetime) -> Totals:
    totals = Totals(keep_durations=True)
    for stream in source.STREAMS:
        seen: set[str] = set()
        for event in source.events(client, stream, since):
            if event["id"] not in seen:
                seen.add(event["id"])
                totals.fold(event)
    return totals


@dataclass
class _Group:
    """One row's figures, summed over the series that belong to it."""

    outcomes: dict[str, float]
    durations: list[float]
    hits: float = 0.0
    misses: float = 0.0
    retries: float = 0.0
    tokens: float = 0.0
    cost: float = 0.0

    def row(self) -> dict[str, Any]:
        o = self.outcomes
        steps = sum(o.values())
        called = sum(o.get(k, 0) for k in _CALLED) + o.get("skipped_agents_failed", 0)
        skipped = o.get("skipped", 0) + o.get("skipped_agents_failed", 0)
        looked = self.hits + self.misses
        return {
            "steps": int(steps), "called": int(called), "succeeded": int(o.get("completed", 0)),
            "success_rate": _rate(o.get("completed", 0), called),
            "p50_s": _round(percentile(self.durations, 50)), "p95_s": _round(percentile(self.durations, 95)),
            "timed": len(self.durations),
            "cache_hits": int(self.hits), "cache_misses": int(self.misses), "cache_hit_rate": _rate(self.hits, looked),
            "degraded": int(o.get("degraded", 0)), "degraded_rate": _rate(o.get("degraded", 0), called),
            "skipped": int(skipped), "skipped_rate": _rate(skipped, steps),
            "failed": int(o.get("failed", 0)), "retries": int(self.retries),
            "tokens": int(self.tokens), "cost_usd": round(self.cost, 6),
        }


def compute(totals: Totals, workflow: str | None = None) -> dict[str, Any]:
    """The `stats` document: `workflows`, `agents` and `variants` rows (each a dict of figures)."""
    def keep(labels: tuple[str, ...]) -> bool:
        return workflow is None or labels[0] == workflow

    by_workflow: dict[str, _Group] = {}
    by_agent: dict[tuple[str, str], _Group] = {}
    for labels, value in totals.counters.get("agentflow_step_runs", {}).items():
        if not keep(labels):
            continue
        wf, _step, agent, variant, outcome = labels
        for group in _groups(by_workflow, by_agent, wf, agent, variant):
            group.outcomes[outcome] = group.outcomes.get(outcome, 0) + value
    for labels, value in totals.counters.get("agentflow_skips", {}).items():
        wf, _step, agent, reason, variant = labels
        if keep(labels) and reason == "agents_failed":  # counted as called (and skipped), not as a `when`
            for group in _groups(by_workflow, by_agent, wf, agent, variant):
                group.outcomes["skipped"] -= value
                group.outcomes["skipped_agents_failed"] = group.outcomes.get("skipped_agents_failed", 0) + value
    for labels, durations in totals.durations.items():
        if keep(labels):
            for group in _groups(by_workflow, by_agent, labels[0], labels[2], labels[3]):
                group.durations += durations
    for metric, field in (("agentflow_cache_hits", "hits"), ("agentflow_cache_misses", "misses"),
                          ("agentflow_step_retries", "retries")):
        for labels, value in totals.counters.get(metric, {}).items():
            if keep(labels):
                for group in _groups(by_workflow, by_agent, labels[0], labels[2], labels[3]):
                    setattr(group, field, getattr(group, field) + value)
    _spend(totals, by_workflow, by_agent, workflow)

    runs: dict[str, dict[str, int]] = {}
    for (wf, state), value in totals.counters.get("agentflow_workflow_runs", {}).items():
        if workflow is None or wf == workflow:
            runs.setdefault(wf, {})[state] = runs.setdefault(wf, {}).get(state, 0) + int(value)
    workflows = []
    for wf in sorted(set(by_workflow) | set(runs)):
        ended = runs.get(wf, {})
        total = sum(ended.values())
        row = by_workflow.get(wf, _Group({}, [])).row()
        workflows.append({"workflow": wf, "runs": total, "runs_completed": ended.get("completed", 0),
                          "runs_failed": total - ended.get("completed", 0),
                          "run_success_rate": _rate(ended.get("completed", 0), total), **row})
    agents, variants = [], []
    for (agent, variant), group in sorted(by_agent.items()):
        row = {"agent": agent, "variant": variant, **group.row()}
        (variants if variant else agents).append(row)
    # An agent with variants also gets one row for all its calls.
    for agent in sorted({row["agent"] for row in variants}):
        merged = _Group({}, [])
        for (name, _variant), group in by_agent.items():
            if name == agent:
                merged = _merge(merged, group)
        agents.append({"agent": agent, "variant": "", **merged.row()})
    agents.sort(key=lambda r: r["agent"])
    return {"workflows": workflows, "agents": agents, "variants": variants}


def _groups(by_workflow: dict[str, _Group], by_agent: dict[tuple[str, str], _Group], workflow: str, agent: str,
            variant: str) -> list[_Group]:
    groups = [by_workflow.setdefault(workflow, _Group({}, []))]
    if agent:  # a `run:`, `call:` or `assert` step has no agent: its workflow's row only
        groups.append(by_agent.setdefault((agent, variant), _Group({}, [])))
    return groups


def _spend(totals: Totals, by_workflow: dict[str, _Group], by_agent: dict[tuple[str, str], _Group],
           workflow: str | None) -> None:
    """Tokens and cost, by the agent that answered (a fallback's answer is the fallback's spend)."""
    for metric, field in (("agentflow_agent_tokens", "tokens"), ("agentflow_agent_cost_usd", "cost")):
        for (wf, agent, variant), value in totals.counters.get(metric, {}).items():
            if workflow is None or wf == workflow:
                for group in _groups(by_workflow, by_agent, wf, agent, variant):
                    setattr(group, field, getattr(group, field) + value)


def _merge(a: _Group, b: _Group) -> _Group:
    outcomes = dict(a.outcomes)
    for k, v in b.outcomes.items():
        outcomes[k] = outcomes.get(k, 0) + v
    return _Group(outcomes, a.durations + b.durations, a.hits + b.hits, a.misses + b.misses,
                  a.retries + b.retries, a.tokens + b.tokens, a.cost + b.cost)


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)

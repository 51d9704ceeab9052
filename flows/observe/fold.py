"""What the metrics are, and how each event adds to them: a fold over Prefect events, pure.

The exporter (flows/observe/exporter.py) and `agentflow stats` read events from the Prefect
server and fold them here, one at a time, into `Totals`. Two kinds of event count:

- agentflow's own step events (`agentflow.step.<outcome>`, engine/announce.py), whose payload
  carries the step's workflow, agent, variant, duration, attempts, cache hits and misses,
  tokens and cost;
- Prefect's flow-run state events (`prefect.flow-run.<State>`) of agentflow's runs (tagged
  `agentflow`): the server sends them itself, so a run whose process was killed is counted
  too when the server marks it Crashed.

Totals are plain dictionaries of numbers keyed by label values, so that they are saved as
JSON between restarts of the exporter (its counters never go back) and compared in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEP_EVENTS = "agentflow.step."
RUN_EVENTS = "prefect.flow-run."
RUN_TAG_RESOURCE = "prefect.tag.agentflow"
TERMINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
OUTCOMES = ("completed", "degraded", "skipped", "cached", "reused", "failed")  # engine/publish.py outcome_of
OUTCOMES_THAT_RAN = ("completed", "degraded", "failed")  # an agent was called: its time is a duration
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

CIRCUIT_STATES = ("closed", "open", "half_open")  # tasks/circuit.py
SKIP_REASONS = ("condition", "rejected", "agents_failed", "answered")  # engine/steps.py _skip_reason

_STEP = ("workflow", "step", "agent", "variant")


@dataclass(frozen=True)
class Metric:
    name: str  # as served, without the `_total` a counter gets
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...]


# Every metric the exporter serves. monitoring/ (the dashboard, the alert rules) may use these
# and no others: tests/test_monitoring.py holds them to it.
METRICS = {m.name: m for m in (
    Metric("agentflow_workflow_runs", "counter", "Workflow runs that ended, by workflow and Prefect state "
           "(completed, failed, crashed, cancelled)", ("workflow", "state")),
    Metric("agentflow_workflow_runs_in_flight", "gauge", "Workflow runs pending, running or paused now",
           ("workflow", "state")),
    Metric("agentflow_step_runs", "counter", "Steps that ended, by outcome (completed, degraded, skipped, "
           "cached, reused, failed)", (*_STEP, "outcome")),
    Metric("agentflow_step_duration_seconds", "histogram", "Time a step took, of steps whose agent ran "
           "(completed, degraded, failed)", _STEP),
    Metric("agentflow_cache_hits", "counter", "Step calls answered from the step cache", _STEP),
    Metric("agentflow_cache_misses", "counter", "Step calls that looked in the step cache and ran", _STEP),
    Metric("agentflow_step_retries", "counter", "Retries of steps (tries after the first)", _STEP),
    Metric("agentflow_fallbacks", "counter", "Steps answered by a fallback agent in place of their own",
           ("workflow", "step", "agent", "fallback", "variant")),
    Metric("agentflow_skips", "counter", "Steps skipped: a `when` that was false (condition), or every "
           "agent on the ladder failed (agents_failed)", ("workflow", "step", "agent", "reason", "variant")),
    Metric("agentflow_agent_tokens", "counter", "Tokens agents reported, by workflow and the agent that answered",
           ("workflow", "agent", "variant")),
    Metric("agentflow_agent_cost_usd", "counter", "Dollars agents reported, by workflow and the agent that "
                                                  "answered", ("workflow", "agent", "variant")),
    Metric("agentflow_circuit_state", "gauge", "1 for the state each agent's circuit breaker is in "
           "(closed, open, half_open)", ("agent", "state")),
    Metric("agentflow_exporter_events", "counter", "Prefect events this exporter has folded into its "
                                                   "figures", ()),
    Metric("agentflow_exporter_refresh_ok", "gauge", "1 if the exporter's latest read of the Prefect API "
                                                     "succeeded", ()),
    Metric("agentflow_exporter_refresh_seconds", "gauge", "Time the exporter's latest read of the Prefect "
                                                          "API took", ()),
)}


@dataclass
class Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))  # not cumulative
    count: int = 0
    total: float = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
                break
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound, count at or below it), ending with +Inf."""
        running, out = 0, []
        for bound, n in zip(DURATION_BUCKETS, self.buckets):
            running += n
            out.append((f"{bound:g}", running))
        return out + [("+Inf", self.count)]


@dataclass
class Totals:
    """Every counter and histogram, by metric name and label values (in `METRICS` order)."""

    counters: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    histograms: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    durations: dict[tuple[str, ...], list[float]] = field(default_factory=dict)  # kept only for `stats`
    keep_durations: bool = False

    def add(self, metric: str, labels: tuple[str, ...], by: float = 1.0) -> None:
        if by:
            series = self.counters.setdefault(metric, {})
            series[labels] = series.get(labels, 0.0) + by

    def start(self, metric: str, labels: tuple[str, ...]) -> None:
        """A series at 0 before its first event, so that Prometheus sees that event as an increase
        (a series that appears at 1 is not one to rate() and increase(): a first failure would not alert)."""
        self.counters.setdefault(metric, {}).setdefault(labels, 0.0)

    def value(self, metric: str, **labels: str) -> float:
        """The sum of the series of `metric` whose labels match `labels` (tests, `stats`)."""
        names = METRICS[metric].labels
        return sum(v for key, v in self.counters.get(metric, {}).items()
                   if all(key[names.index(k)] == want for k, want in labels.items()))

    def fold(self, event: dict[str, Any]) -> bool:
        """Add one event (Prefect's JSON form of it); False if it is not one that counts."""
        name = str(event.get("event", ""))
        if name.startswith(STEP_EVENTS):
            self._step(name.removeprefix(STEP_EVENTS), event)
        elif name.startswith(RUN_EVENTS) and _tagged(event):
            state = str((event.get("resource") or {}).get("prefect.state-type", ""))
            if state not in TERMINAL_STATES:
                return False
            workflow = _related_name(event, "flow")
            for each in TERMINAL_STATES:
                self.start("agentflow_workflow_runs", (workflow, each.lower()))
            self.add("agentflow_workflow_runs", (workflow, state.lower()))
        else:
            return False
        self.add("agentflow_exporter_events", ())
        return True

    def _step(self, outcome: str, event: dict[str, Any]) -> None:
        p = event.get("payload") or {}
        workflow = str(p.get("workflow") or _related_name(event, "workflow"))
        step = str(p.get("step") or (event.get("resource") or {}).get("prefect.resource.name", ""))
        agent = str(p.get("agent") or "")
        variant = str(p.get("variant") or "")
        labels = (workflow, step, agent, variant)
        if (*labels, outcome) not in self.counters.get("agentflow_step_runs", {}):
            for each in OUTCOMES:
                self.start("agentflow_step_runs", (*labels, each))
            for metric in ("agentflow_cache_hits", "agentflow_cache_misses", "agentflow_step_retries"):
                self.start(metric, labels)
        self.add("agentflow_step_runs", (*labels, outcome))
        duration = _number(p.get("duration_s"))
        if outcome in OUTCOMES_THAT_RAN and duration is not None:
            self.histograms.setdefault(labels, Histogram()).observe(duration)
            if self.keep_durations:
                self.durations.setdefault(labels, []).append(duration)
        self.add("agentflow_cache_hits", labels, _number(p.get("cache_hits")) or 0)
        self.add("agentflow_cache_misses", labels, _number(p.get("cache_misses")) or 0)
        self.add("agentflow_step_retries", labels, max((_number(p.get("attempts")) or 1) - 1, 0))
        answered_by = str(p.get("answered_by") or agent)
        if outcome == "degraded":
            self.add("agentflow_fallbacks", (workflow, step, agent, answered_by, variant))
        if outcome == "skipped":
            self.add("agentflow_skips", (workflow, step, agent, str(p.get("skip_reason") or "condition"), variant))
        if outcome not in ("cached", "reused") and answered_by:  # a cache hit, a journal entry: nothing spent
            self.add("agentflow_agent_tokens", (workflow, answered_by, variant), _number(p.get("tokens")) or 0)
            self.add("agentflow_agent_cost_usd", (workflow, answered_by, variant), _number(p.get("cost_usd")) or 0)

    # ---- saved between restarts ---------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {"counters": {m: [[*k, v] for k, v in series.items()] for m, series in self.counters.items()},
                "histograms": [[*k, h.buckets, h.count, h.total] for k, h in self.histograms.items()]}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Totals:
        totals = cls()
        for metric, rows in (data.get("counters") or {}).items():
            if metric not in METRICS:
                continue
            width = len(METRICS[metric].labels)
            series = totals.counters.setdefault(metric, {})
            for row in rows:
                if not row or not isinstance(row[-1], (int, float)) or len(row) - 1 > width:
                    continue  # not a row this version wrote: dropped rather than misread
                # A label added since the file was written (they are added in front): "" there.
                labels = ("",) * (width - len(row) + 1) + tuple(str(x) for x in row[:-1])
                series[labels] = series.get(labels, 0.0) + float(row[-1])
        for row in data.get("histograms") or []:
            buckets, count, total = row[4], row[5], row[6]
            if len(buckets) == len(DURATION_BUCKETS):  # the bucket bounds changed: start them again
                totals.histograms[tuple(row[:4])] = Histogram(list(buckets), int(count), float(total))
        return totals


def _tagged(event: dict[str, Any]) -> bool:
    return any(r.get("prefect.resource.id") == RUN_TAG_RESOURCE for r in event.get("related") or [])


def _related_name(event: dict[str, Any], role: str) -> str:
    for related in event.get("related") or []:
        if related.get("prefect.resource.role") == role:
            return str(related.get("prefect.resource.name") or "")
    return ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)

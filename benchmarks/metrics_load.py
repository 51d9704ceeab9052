"""What benchmark M (bench_metrics.py) loads the server with and how it times a page: synthetic
step events as a run's engine sends them, sending them and waiting until the server has them,
and the anatomy of one page of events (the server's answer, the client's parse, the fold)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone

STEP_PREFIX = "agentflow.step."
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
OUTCOMES = {"completed": 0.70, "cached": 0.10, "degraded": 0.06, "skipped": 0.05, "failed": 0.05, "reused": 0.04}
AGENTS = ("planner", "code-reviewer", "test-writer", "security-auditor", "doc-writer", "api-integration-tester")
FALLBACK = "offline-stand-in"


def synthetic(count: int, spread_s: float, seed: int = 7, workflows: int = 20, steps: int = 10) -> list:
    """`count` step events as a run's engine sends them: runs of `steps` steps of one of
    `workflows` workflows, one after the other over the `spread_s` seconds before now."""
    from prefect.events import Event

    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    names, weights = list(OUTCOMES), list(OUTCOMES.values())
    events = []
    run_id, workflow = None, ""
    for i in range(count):
        if i % steps == 0:
            run_id, workflow = str(uuid.uuid4()), f"wf-{rng.randrange(workflows):02d}"
        w, s = int(workflow[3:]), i % steps
        step = f"s{s:02d}"
        agent = "" if s in (0, steps - 1) else AGENTS[(w + s) % len(AGENTS)]  # first and last: commands
        variant = ("a", "b")[i // steps % 2] if agent and w < 2 else None
        outcome = rng.choices(names, weights)[0]
        if not agent and outcome == "degraded":
            outcome = "completed"
        ran = outcome in ("completed", "degraded", "failed")
        answered_by = FALLBACK if outcome == "degraded" else agent
        skipped_agent = outcome == "skipped" and agent and rng.random() < 0.3
        if skipped_agent:
            related_agents = {"primary-agent": agent}
        elif outcome == "degraded":
            related_agents = {"primary-agent": agent, "fallback-agent": FALLBACK}
        else:
            related_agents = {"agent": agent}
        related = [{"prefect.resource.id": f"agentflow.workflow.{workflow}", "prefect.resource.role": "workflow",
                    "prefect.resource.name": workflow},
                   {"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}]
        related += [{"prefect.resource.id": f"agentflow.agent.{a}", "prefect.resource.role": role,
                     "prefect.resource.name": a} for role, a in related_agents.items() if a]
        duration = (rng.lognormvariate(3.0, 0.8) if agent else rng.lognormvariate(-1.0, 1.0)) if ran else None
        spent = ran and bool(answered_by) and agent
        payload = {
            "summary": f"{step} of {workflow}: {outcome}. " + "x" * rng.randrange(40, 300),
            "status": {"failed": "failed", "skipped": "skipped"}.get(outcome, "success"),
            "workflow": workflow, "step": step, "agent": agent, "answered_by": answered_by,
            "skip_reason": ("agents_failed" if skipped_agent else "condition") if outcome == "skipped" else None,
            "duration_s": None if duration is None else round(duration, 4),
            "attempts": (rng.choice((1, 1, 1, 1, 2, 3)) if ran else 1),
            "cache_hits": int(outcome == "cached"), "cache_misses": int(ran and bool(agent)),
            "tokens": rng.randrange(800, 30000) if spent else 0,
            "cost_usd": round(rng.uniform(0.002, 0.4), 4) if spent else 0.0,
            "variant": variant,
        }
        occurred = now - timedelta(seconds=spread_s * (count - i) / count) if spread_s else None
        events.append(Event(event=f"{STEP_PREFIX}{outcome}",
                            resource={"prefect.resource.id": f"agentflow.step.{workflow}.{step}",
                                      "prefect.resource.name": step},
                            related=related, payload=payload,
                            **({"occurred": occurred} if occurred else {})))
    return events


def send(api_url: str, events: list) -> float:
    """Send the events over Prefect's events websocket; the seconds it took."""
    from prefect.events.clients import PrefectEventsClient

    async def go() -> None:
        async with PrefectEventsClient(api_url=api_url) as client:
            for event in events:
                await client.emit(event)

    started = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - started


def step_events_stored(client) -> int:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    return client.read_events(EventFilter(occurred=EventOccurredFilter(since=EPOCH),
                                          event=EventNameFilter(prefix=[STEP_PREFIX])), limit=1).total


def wait_stored(client, want: int, timeout: float = 300.0) -> float:
    """Seconds until the server has persisted `want` step events."""
    started = time.perf_counter()
    while step_events_stored(client) < want:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"the server persisted {step_events_stored(client)} of {want} step events "
                             f"within {timeout:g} s")
        time.sleep(0.1)
    return time.perf_counter() - started


class PageClock:
    """Counts and times the exporter's reads of event pages (the client's own methods, wrapped)."""

    def __init__(self, client):
        self.pages: list[tuple[float, int]] = []  # (seconds, events)
        first, following = client.read_events, client.read_events_page

        def read_events(*args, **kwargs):
            started = time.perf_counter()
            page = first(*args, **kwargs)
            self.pages.append((time.perf_counter() - started, len(page.events)))
            return page

        def read_events_page(*args, **kwargs):
            started = time.perf_counter()
            page = following(*args, **kwargs)
            self.pages.append((time.perf_counter() - started, len(page.events)))
            return page

        client.read_events, client.read_events_page = read_events, read_events_page

    def take(self) -> list[tuple[float, int]]:
        pages, self.pages = self.pages, []
        return pages


def page_anatomy(client, pages: int = 20) -> dict:
    """Where a page of the steps stream goes, over its first `pages` pages: the server's answer
    (HTTP, query, serialising), the client's parse into an EventPage, the dump to JSON dicts the
    exporter folds, and the fold."""
    from prefect.client.schemas.events import EventPage
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventOrder

    from agentflow.flows.observe.fold import Totals

    totals, parts = Totals(), {"server_ms": [], "parse_ms": [], "dump_ms": [], "fold_ms": []}
    body = {"filter": EventFilter(occurred=EventOccurredFilter(since=EPOCH), event=EventNameFilter(prefix=[STEP_PREFIX]),
                                  order=EventOrder.ASC).model_dump(mode="json"), "limit": 50}
    http = client._client
    next_page = None
    for n in range(pages):
        t0 = time.perf_counter()
        response = http.post("/events/filter", json=body) if n == 0 else http.get(str(next_page))
        response.raise_for_status()
        t1 = time.perf_counter()
        page = EventPage.model_validate(response.json())
        t2 = time.perf_counter()
        dumped = [event.model_dump(mode="json") for event in page.events]
        t3 = time.perf_counter()
        for event in dumped:
            totals.fold(event)
        t4 = time.perf_counter()
        for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key].append(value * 1000)
        next_page = page.next_page
        if not next_page:
            break
    return {key: statistics.median(values) for key, values in parts.items()} | {
        "first_page_ms": parts["server_ms"][0], "page_bytes": len(response.content)}


def render_ms(figures, times: int = 10) -> float:
    """What rendering /metrics costs in process (prometheus-client's text format, no HTTP, no gzip)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from agentflow.flows.observe.exporter import Collector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(figures))
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        generate_latest(registry)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


# ---- the benchmark ----------------------------------------------------------------------------

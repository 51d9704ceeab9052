"""Reading agentflow's logs (agentflow/log.py, and the audit log: tasks/audit.py): filtering
their lines and summing them up, for `agentflow logs [--analyze]` and `agentflow audit`."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentflow.log import LEVELS
from agentflow.printable import one_line

_NUMBERS = re.compile(r"\b[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\b|\d+(\.\d+)?")


@dataclass(frozen=True)
class Query:
    run: str | None = None  # a run id or a prefix of one
    level: str = "debug"  # the lowest level shown
    step: str | None = None  # the step (a `for_each` item or round: `gateways[bKash]` is step `gateways`)
    since: float | None = None  # epoch seconds
    agent: str | None = None

    def matches(self, line: dict[str, Any]) -> bool:
        if self.run and not str(line.get("run_id") or "").startswith(self.run):
            return False
        if self.agent and line.get("agent") != self.agent:
            return False
        if LEVELS.get(line.get("level", "info"), 20) < LEVELS[self.level]:
            return False
        if self.step and _step_of(line) != self.step and line.get("step") != self.step:
            return False
        return self.since is None or timestamp(line) >= self.since


def _step_of(line: dict[str, Any]) -> str | None:
    step = line.get("step")
    return re.split(r"[\[#]", step, maxsplit=1)[0] if isinstance(step, str) else None


def timestamp(line: dict[str, Any]) -> float:
    try:
        return datetime.strptime(line["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def parse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The log's lines as dicts; a torn or foreign line is passed over."""
    for text in lines:
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict):
            yield line


def read(files: list[Path], query: Query) -> list[dict[str, Any]]:
    found = []
    for path in files:
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                found += [line for line in parse(handle) if query.matches(line)]
        except OSError:
            continue
    return found


def render(line: dict[str, Any]) -> str:
    """One line for people: time, level, where (workflow, run, step, agent), the message."""
    where = " ".join(str(v) for v in (line.get("workflow"), str(line.get("run_id", ""))[:8] or None,
                                      line.get("step"), line.get("agent") and f"agent={line['agent']}") if v)
    when = str(line.get("timestamp", "")).replace("T", " ")[:23]
    # One line, whatever a summary or an input in it holds (agentflow/printable.py).
    return one_line(f"{when} {line.get('level', 'info').upper():<8} {'[' + where + '] ' if where else ''}"
                    f"{line.get('event', '')}")


def analyze(lines: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    """Counts by level, component and step; the slowest step calls; the most frequent
    warnings and errors (numbers and ids in them made alike, so that one cause is one row)."""
    timed = [line for line in lines if isinstance(line.get("duration_s"), (int, float))]
    timed.sort(key=lambda line: line["duration_s"], reverse=True)
    problems = Counter()
    for line in lines:
        if LEVELS.get(line.get("level", "info"), 20) >= LEVELS["warning"]:
            problems[(_step_of(line) or "-", _NUMBERS.sub("N", str(line.get("error") or line.get("event", "")))[:200])] += 1
    return {
        "lines": len(lines),
        "runs": len({line["run_id"] for line in lines if line.get("run_id")}),
        "by_level": dict(Counter(line.get("level", "info") for line in lines).most_common()),
        "by_component": dict(Counter(line.get("component", "-") for line in lines).most_common()),
        "by_step": dict(Counter(_step_of(line) for line in lines if _step_of(line)).most_common()),
        "slowest": [{"step": line.get("step"), "run_id": line.get("run_id"), "workflow": line.get("workflow"),
                     "agent": line.get("agent"), "duration_s": line["duration_s"], "outcome": line.get("outcome")}
                    for line in timed[:top]],
        "errors": [{"step": step, "message": message, "count": count}
                   for (step, message), count in problems.most_common(top)],
    }

"""`AgentResult`, what every step returns, and the parsing of an agent's free-text output.

The text format is the earlier engine's: a `## Summary` section (or else the first line),
`Created:` / `Modified:` lines naming files, and a `## Metrics` section of `key: value` lines.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentflow.tasks.changes import Changes

Status = Literal["success", "failed", "completed_with_errors", "skipped"]

_SECTION = re.compile(r"^#{1,6}\s*(.+?)\s*$")
_ARTIFACT = re.compile(r"^\s*[-*]?\s*(Created|Modified):\s*`?([^`\s]+)`?", re.IGNORECASE)
_METRIC = re.compile(r"^\s*[-*]?\s*\**([A-Za-z][\w \-/]*?)\**\s*[:=]\s*(.+?)\s*$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?")
MAX_OUTPUT = 1_000_000  # characters of output kept in a result


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    action: Literal["created", "modified", "deleted", "renamed"]


class AgentResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status = "success"
    summary: str = ""
    output: str = ""
    data: Any = None
    artifacts: list[Artifact] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    confidence: float | None = None
    error: str | None = None
    # the step's work: what it changed in its workspace (tasks/changes.py), None if it ran in none
    changes: Changes | None = None
    # degraded mode (set by fallback handling)
    degraded: bool = False
    fallback_used: str | None = None
    primary_agent: str | None = None
    skipped_agent: str | None = None

    def context(self) -> dict[str, Any]:
        """The plain-data view that templates and expressions see as `steps.ID`."""
        return self.model_dump(mode="json")


RESULT_FIELDS = frozenset(AgentResult.model_fields)


def parse_text(text: str) -> AgentResult:
    """Build a result from an agent's free text; JSON output also becomes `data`."""
    text = text if len(text) <= MAX_OUTPUT else text[-MAX_OUTPUT:]
    sections = _sections(text)
    summary = sections.get("summary", "").strip()
    if not summary:
        summary = next((line.strip() for line in text.splitlines() if line.strip()), "")
    summary = summary.splitlines()[0].strip() if summary else ""
    data = _json(text)
    if data is not None and isinstance(data, dict) and isinstance(data.get("summary"), str):
        summary = data["summary"]
    metrics = _metrics(sections.get("metrics", ""))
    return AgentResult(
        summary=summary[:500],
        output=text,
        data=data,
        artifacts=_artifacts(text),
        metrics=metrics,
        confidence=confidence_of(text, data, metrics),
    )


def confidence_of(text: str, data: Any, metrics: dict[str, Any]) -> float | None:
    """How sure the agent says it is, 0..1: a `confidence` field of its JSON answer, a
    `Confidence: 0.8` (or `80%`) line, or its `confidence` metric; None if it does not say."""
    candidates: list[Any] = []
    if isinstance(data, dict):
        candidates.append(data.get("confidence"))
    match = _CONFIDENCE.search(text)
    if match:
        number = float(match.group(1))
        candidates.append(number / 100 if match.group(2) or number > 1 else number)
    candidates.append(metrics.get("confidence"))
    for value in candidates:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
    return None


_CONFIDENCE = re.compile(r"^\W*confidence\W*[:=]\s*([0-9]+(?:\.[0-9]+)?)\s*(%)?", re.IGNORECASE | re.MULTILINE)


def from_value(value: Any) -> AgentResult:
    """Turn what a Python callable returned into a result.

    An AgentResult passes through; a str is parsed as free text; a dict whose keys are all
    AgentResult fields is taken as one; any other value becomes `data`.
    """
    if isinstance(value, AgentResult):
        return value
    if isinstance(value, str):
        return parse_text(value)
    if isinstance(value, dict) and value and set(value) <= RESULT_FIELDS:
        return AgentResult.model_validate(value)
    if value is None:
        return AgentResult(summary="done")
    summary = value.get("summary") if isinstance(value, dict) else None
    return AgentResult(summary=str(summary or _describe(value)), data=value,
                       output=json.dumps(value, default=str)[:MAX_OUTPUT])


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return f"{len(value)} {'items' if not isinstance(value, dict) else 'keys'}"
    return str(value)[:200]


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = _SECTION.match(line)
        if match:
            current = match.group(1).strip().lower()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _artifacts(text: str) -> list[Artifact]:
    found: dict[str, Artifact] = {}
    for line in text.splitlines():
        match = _ARTIFACT.match(line)
        if match:
            path = match.group(2).rstrip(".,;")
            found[path] = Artifact(path=path, action=match.group(1).lower())
    return list(found.values())


def _metrics(section: str) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for line in section.splitlines():
        match = _METRIC.match(line)
        if not match:
            continue
        key = re.sub(r"[^a-z0-9]+", "_", match.group(1).strip().lower()).strip("_")
        raw = match.group(2).strip()
        number = _NUMBER.match(raw.replace(",", ""))
        if number:
            value = float(number.group(0))
            metrics[key] = int(value) if value.is_integer() and "." not in number.group(0) else value
        else:
            metrics[key] = raw
    return metrics


def _json(text: str) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


REDACTED = "[secret]"


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret value replaced by [secret] (longest first)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def redacted(result: AgentResult, secrets: tuple[str, ...]) -> AgentResult:
    """The result with every secret value removed from every string in it."""
    if not secrets:
        return result
    root = [result.model_dump(mode="json")]
    stack: list[Any] = [root]
    while stack:  # without recursion: data may nest deeply
        container = stack.pop()
        keys = list(container) if isinstance(container, dict) else range(len(container))
        for key in keys:
            value = container[key]
            if isinstance(value, str):
                container[key] = scrub(value, secrets)
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return AgentResult.model_validate(root[0])

"""The audit log: every agent call, one JSON line, append-only (the earlier engine's audit).

Each call an agent answers or fails (a step's agent or a fallback, not `run:`/`call:` steps)
is written when it ends: when, the run and step, the agent and its kind, a digest of the
request as rendered (its secret values taken out first: a digest of a short secret can be
guessed back), the tools the agent was allowed and denied, the outcome, the duration, the
tokens and cost it reported. Never the prompt itself. The file (AGENTFLOW_AUDIT_FILE, default
`$PREFECT_HOME/agentflow/audit.jsonl`) is rotated by size; `agentflow audit` reads it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from agentflow.log import JsonLines, default_file, now_iso
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, scrub

_files: dict[Path, JsonLines] = {}


def audit_file() -> Path:
    return default_file("AGENTFLOW_AUDIT_FILE", "audit.jsonl")


def request_digest(request: AgentRequest) -> str:
    rendered = request.model_dump_json(exclude={"secrets", "key"})
    return "sha256:" + hashlib.sha256(scrub(rendered, request.redact).encode()).hexdigest()[:32]


def record(request: AgentRequest, started: float, result: AgentResult | None, error: BaseException | None) -> None:
    """Append the call's line. Never raises: an audit that cannot be written is not a failed step."""
    try:
        _write(_line(request, started, result, error))
    except Exception:  # noqa: BLE001 - see the docstring
        pass


def _write(line: dict[str, Any]) -> None:
    path = audit_file()
    writer = _files.get(path) or _files.setdefault(path, JsonLines(path))
    writer.append(json.dumps(line, default=str, ensure_ascii=False))


def decision(request: AgentRequest) -> None:
    """An approval step's decision: who, when, approved or not, the comment and the fields."""
    decided = request.params
    try:
        line = {"timestamp": now_iso(), "run_id": _run_id(), "workflow": request.workflow, "step": request.label,
                "agent": None, "kind": "approval", "variant": None, "in_place_of": None,
                "request": request_digest(request), "tools_allowed": [], "tools_denied": [],
                "outcome": "approved" if decided.get("approved") else "rejected", "duration_s": None,
                "tokens": None, "cost_usd": None, "error": None, "decided_by": decided.get("decided_by"),
                "decided_at": decided.get("decided_at"), "comment": scrub(str(decided.get("comment", "")),
                                                                           request.redact)[:1000],
                "fields": decided.get("fields"), "timed_out": decided.get("timed_out")}
        _write(line)
    except Exception:  # noqa: BLE001 - as record(): an audit that cannot be written is not a failed step
        pass


def _line(request: AgentRequest, started: float, result: AgentResult | None, error: BaseException | None) -> dict:
    config: dict[str, Any] = request.agent_config
    metrics = result.metrics if result is not None else {}
    changes = result.changes if result is not None else None
    # the tools the call was really refused (a denial, or a tool the agent asked for and does
    # not have): tasks/backends/claude.py carries them out; other agents' metrics are their own
    reported = metrics.get("tools_denied")
    refused = [*(getattr(error, "tools_denied", None) or []), *(reported if isinstance(reported, list) else [])]
    if error is not None:
        outcome = f"failed: {type(error).__name__}"
    else:
        outcome = result.status if result is not None else "unknown"
    return {
        "timestamp": now_iso(),
        "run_id": _run_id(), "workflow": request.workflow, "step": request.label, "agent": request.agent,
        "kind": request.kind, "variant": request.variant, "in_place_of": request.in_place_of,
        "request": request_digest(request),
        "tools_allowed": sorted(config.get("allowed_tools") or config.get("tools")
                                or (config.get("subagent_definition") or {}).get("tools") or []),
        "tools_denied": sorted({*(config.get("disallowed_tools") or []), *map(str, refused)}),
        "outcome": outcome, "duration_s": round(time.time() - started, 3),
        "tokens": metrics.get("tokens"), "cost_usd": metrics.get("cost_usd"),
        "error": scrub(str(error), request.redact)[:300] if error is not None else None,
        # the step's work: the sha256 of its patch (tasks/workspace.py), and how many files
        "patch": changes.patch or None if changes is not None else None,
        "files_changed": len(changes.files) if changes is not None else None,
    }


def _run_id() -> str | None:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return str(context.task_run.flow_run_id) if context is not None and context.task_run else None

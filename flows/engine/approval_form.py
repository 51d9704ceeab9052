"""An approval's form and its decision: what a person is shown and answers, and what the
answer makes of the step.

The form is typed: approve or reject, a comment, and the fields the step declares (Prefect
builds the UI's form from its JSON schema and checks an answer against it), under the step's
message and the results of the steps it shows (markdown). The decision is the step's result:
`data` holds approved, decided_by, decided_at, comment, fields and timed_out; an approval
becomes status success, a rejection failed (or skipped, with `on_reject: skip`, and its
dependents with it). The waiting is engine/approvals.py.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import Field, create_model

from agentflow.flows.engine.compiled import StepPlan
from agentflow.flows.language import templates
from agentflow.flows.language.spec import Approval, InputSpec
from agentflow.tasks.results import AgentResult

PAUSE_PREFIX = "approval-"  # a paused run's pause key: `approval-STEP` (what `agentflow approve` reads)
_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
                          "object": dict}
_SHOWN_CHARS = 4000


def spec_of(plan: StepPlan) -> Approval:
    approval = plan.step.approval
    return Approval(message=approval) if isinstance(approval, str) else approval


def pause_key(step: str) -> str:
    """What the pause keys of `step` start with (each ask adds `-` and a nonce): Prefect's pause
    keys are lowercase letters, digits and dashes, so the step's id made so, and a digest of it,
    so that `Review` and `review` stay apart."""
    readable = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")[:40]
    return f"{PAUSE_PREFIX}{readable}-{hashlib.sha256(step.encode()).hexdigest()[:6]}"


def form(approval: Approval):
    """The form's model: Prefect builds the UI's form from its JSON schema, and checks an
    answer against it."""
    from prefect.input import RunInput

    declared = {name: (_annotation(spec), _field(spec)) for name, spec in approval.fields.items()}
    return create_model(
        "Approval", __base__=RunInput,
        approve=(bool, Field(description="Approve (checked) or reject (unchecked)")),
        comment=(str, Field(default="", description="Why: shown to later steps and in the run's result")),
        **declared)


def decided_by_key(key: str) -> str:
    """The flow-run input where `agentflow approve` says who answered the ask `key` (user@host):
    not part of the form, so no answer can set it; an answer from the UI has none."""
    return f"agentflow-decided-by-{key}"


def _annotation(spec: InputSpec) -> Any:
    if spec.enum:
        return Literal[tuple(spec.enum)]  # type: ignore[misc] - a Literal built from the enum
    return _TYPES[spec.type] if spec.required else _TYPES[spec.type] | None


def _field(spec: InputSpec) -> Any:
    if spec.required:
        return Field(description=spec.description or None)
    return Field(default=spec.default, description=spec.description or None)


def description(step: str, approval: Approval, context: dict[str, Any]) -> str:
    """The markdown above the form: the step's message, then each shown step's result."""
    lines = [f"## Approval: `{step}`", "", templates.render(approval.message, context), ""]
    for name in approval.show:
        shown = context["steps"].get(name) or {}
        lines += [f"### `{name}`: {shown.get('status', 'not run')}", "", str(shown.get("summary") or "")]
        output = str(shown.get("output") or "")
        if output and output != shown.get("summary"):
            lines += ["", "```", output[-_SHOWN_CHARS:], "```"]
        lines.append("")
    return "\n".join(lines)


def result(step: str, approval: Approval, decision: dict[str, Any]) -> AgentResult:
    who, comment = decision["decided_by"], decision["comment"]
    said = f"{who}{': ' + comment if comment else ''}"
    data = {k: v for k, v in decision.items() if k != "fail"}
    if decision.get("fail"):
        return AgentResult(status="failed", summary=f"no decision: {said}", data=data,
                           error=f"step `{step}`: no one approved or rejected it within {approval.timeout:g}s")
    if decision["approved"]:
        return AgentResult(summary=f"approved by {said}", data=data)
    if approval.on_reject == "skip":
        return AgentResult(status="skipped", summary=f"rejected by {said}", data=data)
    return AgentResult(status="failed", summary=f"rejected by {said}", data=data,
                       error=f"step `{step}`: rejected by {said}")

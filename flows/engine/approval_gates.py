"""Confidence gates: a step's result held back for a person when its confidence falls below
`approve_if` (an approval) or inside `review_if` (a review); asked as an approval of that
result (engine/approvals.py waits for the answer)."""

from __future__ import annotations

from typing import Any

from agentflow.flows.engine.compiled import StepPlan
from agentflow.flows.language.spec import Approval


def band(plan: StepPlan, context: dict[str, Any]) -> tuple[str, str] | None:
    """Where a step's result falls: None (approve_if holds: it goes on), or ("review" | "approval",
    why) for the person asked. An expression that cannot be evaluated (no confidence given)
    asks for an approval: a gate that cannot tell does not let the result through."""
    from agentflow.errors import ExpressionError

    confidence = context["result"].get("confidence")
    said = f"confidence {confidence:g}" if isinstance(confidence, (int, float)) else "no confidence given"
    for name, expression in (("approve_if", plan.approve_if), ("review_if", plan.review_if)):
        if expression is None:
            continue
        try:
            holds = bool(expression.evaluate(context))
        except ExpressionError as exc:
            return "approval", f"{said}; `{name}` could not be evaluated ({exc})"
        if holds:
            return None if name == "approve_if" else ("review", f"{said}: in the review band (`{plan.step.review_if}`)")
    return "approval", f"{said}: below `{plan.step.approve_if or 'approve_if'}`"


def gate_approval(step: str, kind: str, why: str) -> Approval:
    """What a person is asked about a gated step's result (shown with it)."""
    what = "Review" if kind == "review" else "Approval required"
    return Approval(message=f"**{what}**: step `{step}` answered with {why}. Approve to use its answer; "
                            "reject to fail the step.", show=[step])

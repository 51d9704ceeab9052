"""Budgets: what the agents of a step and of a run have spent, against what they may.

The spend is what each call's result reports (`metrics.cost_usd`, `metrics.tokens`: the
claude-code and llm agents fill them in). It is checked before each call starts, not
during one; a claude-code call is also told the dollars left (`max_budget_usd`) so that
Claude Code stops itself. A run over its budget starts nothing more and fails with the
spend in its result.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentflow.flows.language.spec import Budget
from agentflow.tasks.results import AgentResult


@dataclass
class Spend:
    usd: float = 0.0
    tokens: int = 0

    def add(self, result: AgentResult) -> None:
        cost = result.metrics.get("cost_usd")
        tokens = result.metrics.get("tokens")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            self.usd += float(cost)
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            self.tokens += tokens

    def view(self) -> dict[str, float | int]:
        return {"usd": round(self.usd, 6), "tokens": self.tokens}

    def over(self, budget: Budget | None) -> str | None:
        """What is spent past `budget`, said plainly; None if within it."""
        if budget is None:
            return None
        if budget.usd is not None and self.usd >= budget.usd:
            return f"spent ${self.usd:.4f} of its ${budget.usd:g} budget"
        if budget.tokens is not None and self.tokens >= budget.tokens:
            return f"spent {self.tokens} tokens of its {budget.tokens} budget"
        return None

    def usd_left(self, budget: Budget | None) -> float | None:
        if budget is None or budget.usd is None:
            return None
        return max(budget.usd - self.usd, 0.0)

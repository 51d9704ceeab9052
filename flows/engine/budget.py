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
from agentflow.tasks.request import AgentRequest
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


class Budgets:
    """A run's spend, as a whole and by step, against the run's and each step's budget."""

    def __init__(self, run_budget: Budget | None):
        self.run_budget = run_budget
        self.spent = Spend()
        self.by_step: dict[str, Spend] = {}
        self.exhausted = False  # the run's budget is spent: start nothing more

    def add(self, step_id: str, result: AgentResult) -> None:
        self.spent.add(result)
        self.by_step.setdefault(step_id, Spend()).add(result)

    def refusal(self, step_id: str, step_budget: Budget | None) -> str | None:
        """Why a call of this step may not start now, if its budget or the run's is spent."""
        run = self.spent.over(self.run_budget)
        if run is not None:
            self.exhausted = True
            return f"step `{step_id}`: not started: the run {run}"
        step = self.by_step.get(step_id, Spend()).over(step_budget)
        return f"step `{step_id}`: not started: the step {step}" if step is not None else None

    def passed_down(self, step_id: str, step_budget: Budget | None, request: AgentRequest) -> AgentRequest:
        """A claude-code call is told the dollars left, so that Claude Code stops itself."""
        if request.kind != "claude-code":
            return request
        limits_usd = [request.agent_config.get("max_budget_usd"), self.spent.usd_left(self.run_budget),
                      self.by_step.get(step_id, Spend()).usd_left(step_budget)]
        left = [value for value in limits_usd if value is not None]
        if not left:
            return request
        return request.model_copy(update={"agent_config": {**request.agent_config, "max_budget_usd": min(left)}})

    def why_stopped(self) -> str:
        return f" (the run {self.spent.over(self.run_budget)})" if self.exhausted else ""

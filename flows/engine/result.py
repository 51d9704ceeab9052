"""`WorkflowResult`: what a run comes to, returned by the flow.

The same object for every caller: the Python API (`flow(...)`, `run_workflow`), the CLI
(which renders it: its table and its `--json`), and deployments. JSON all the way down.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agentflow.tasks.results import AgentResult

StepStatus = Literal["success", "failed", "completed_with_errors", "skipped", "not_run"]


class StepOutcome(BaseModel):
    status: StepStatus
    summary: str = ""
    result: AgentResult | None = None  # None if the step never ran
    duration_s: float | None = None
    attempts: int = 1  # the most tries any of its task runs took
    cached: bool = False  # answered (at least in part) from the step cache
    reused: bool = False  # done by this run before it was resumed: taken from its journal


class WorkflowResult(BaseModel):
    workflow: str
    version: str
    run_id: str | None = None  # the Prefect flow run id
    status: Literal["completed", "failed"]
    message: str = ""  # a failed run: which steps failed it, and why it stopped
    steps: dict[str, StepOutcome] = Field(default_factory=dict)  # every step, in definition order
    failed_steps: list[str] = Field(default_factory=list)  # the failures that stopped the run
    spend: dict[str, float | int] = Field(default_factory=dict)  # what its agents reported: usd, tokens
    # A failed run's compensations (engine/saga.py), by step, in the order they ran (newest step first).
    compensations: dict[str, StepOutcome] = Field(default_factory=dict)
    # The run's work (engine/deliver.py): where it worked, the branch it was delivered to, the
    # commits (one per step that changed files), whether it was applied to the user's tree.
    work: dict[str, Any] | None = None

    def __getitem__(self, step: str) -> AgentResult:
        """A step's result: `result["review"].summary`. KeyError if it did not run."""
        outcome = self.steps[step]
        if outcome.result is None:
            raise KeyError(f"step `{step}` did not run ({outcome.status})")
        return outcome.result


def result_of(state: Any) -> WorkflowResult | None:
    """A finished flow run's WorkflowResult: its return value, or carried by the WorkflowFailed
    it raised. None if the run ended otherwise (crashed, cancelled, an error outside any step)."""
    from agentflow.errors import WorkflowFailed

    value = state.result(raise_on_failure=False)
    if isinstance(value, WorkflowFailed):
        value = value.result
    return value if isinstance(value, WorkflowResult) else None

"""`agent: block:NAME`: agents kept as Prefect blocks (agentflow.blocks), loaded when a run
is compiled, with the key of their credentials block kept apart from the definition."""

from __future__ import annotations

from agentflow.errors import Problem, SpecError
from agentflow.flows.language.spec import BLOCK_PREFIX, AgentSpec, ResolvedWorkflow

FIX = "create it in the UI (Blocks, agentflow Agent) after `prefect block register -m agentflow.blocks`, or fix the name"


def references(workflow: ResolvedWorkflow) -> dict[str, str]:
    """Each `block:NAME` agent the workflow's steps name, and the first step naming it."""
    wanted: dict[str, str] = {}
    for step in workflow.spec.steps:
        for reference in (step.agent, step.fallback):
            if reference and reference.startswith(BLOCK_PREFIX):
                wanted.setdefault(reference, step.id)
    return dict(sorted(wanted.items()))


def load(reference: str) -> tuple[AgentSpec, dict[str, str]]:
    """The agent a `block:NAME` reference names, and its credentials as environment variables.
    ValueError (saying why) when there is no usable block of that name on the server."""
    from agentflow.blocks import AgentConfig

    name = reference[len(BLOCK_PREFIX):]
    try:
        block = AgentConfig.load(name, validate=True)
        return block.spec(), block.environment()
    except ValueError as exc:
        raise ValueError(f"no usable AgentConfig block `{name}` on the Prefect server ({str(exc)[:200]})") from None


def resolve(workflow: ResolvedWorkflow) -> tuple[ResolvedWorkflow, dict[str, dict[str, str]]]:
    """The workflow with each `block:NAME` agent its steps name loaded, and each such agent's
    credentials as environment variables (agent -> {variable: key})."""
    wanted = references(workflow)
    if not wanted:
        return workflow, {}
    agents = dict(workflow.agents)
    credentials: dict[str, dict[str, str]] = {}
    problems = []
    for reference, step in wanted.items():
        try:
            agents[reference], credentials[reference] = load(reference)
        except ValueError as exc:
            problems.append(Problem(workflow.source, None, f"step {step}", f"agent `{reference}`: {exc}", FIX))
    if problems:
        raise SpecError(problems)
    return workflow.model_copy(update={"agents": agents}), credentials

"""`agent: block:NAME`: agents kept as Prefect blocks (agentflow.blocks), loaded when a run
is compiled, with the key of their credentials block kept apart from the definition."""

from __future__ import annotations

from agentflow.errors import Problem, SpecError
from agentflow.flows.language.spec import BLOCK_PREFIX, ResolvedWorkflow


def resolve(workflow: ResolvedWorkflow) -> tuple[ResolvedWorkflow, dict[str, dict[str, str]]]:
    """The workflow with each `block:NAME` agent its steps name loaded, and each such agent's
    credentials as environment variables (agent -> {variable: key})."""
    wanted: dict[str, str] = {}  # block reference -> the first step naming it
    for step in workflow.spec.steps:
        for reference in (step.agent, step.fallback):
            if reference and reference.startswith(BLOCK_PREFIX):
                wanted.setdefault(reference, step.id)
    if not wanted:
        return workflow, {}
    from agentflow.blocks import AgentConfig

    agents = dict(workflow.agents)
    credentials: dict[str, dict[str, str]] = {}
    problems = []
    for reference, step in sorted(wanted.items()):
        name = reference[len(BLOCK_PREFIX):]
        try:
            block = AgentConfig.load(name, validate=True)
            agents[reference] = block.spec()
        except ValueError as exc:
            problems.append(Problem(workflow.source, None, f"step {step}", f"agent `{reference}`: no usable "
                                    f"AgentConfig block `{name}` on the Prefect server ({str(exc)[:200]})",
                                    "create it in the UI (Blocks, agentflow Agent) after "
                                    "`prefect block register -m agentflow.blocks`, or fix the name"))
            continue
        credentials[reference] = block.environment()
    if problems:
        raise SpecError(problems)
    return workflow.model_copy(update={"agents": agents}), credentials

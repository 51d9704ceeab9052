"""A workflow's `phases:` (seed 003's phases, tool permissions and artifact checks), turned
into what the engine already runs: steps and dependencies. Pure: no I/O.

- Each step belongs to exactly one phase; a phase's `allowed_tools` narrow its agent steps'
  tools (intersected with the step's own), and its `writes` bound where its steps may change
  files (a step's own `writes:` wins).
- A phase with a `gate` gets a step of its own, `gate_<phase>`, after all of the phase's
  steps: it checks the gate's files in the run's tree (and their JSON Schema) and runs its
  command (tasks/gates.py). It is critical: a gate that does not hold fails the run, saying
  what was missing.
- Every step of a phase waits for the phase before it: its gate, or else all its steps.
"""

from __future__ import annotations

from typing import Any

from agentflow.errors import Problem
from agentflow.flows.language import graph
from agentflow.flows.language.document import Document
from agentflow.flows.language.spec import GateFile, Phase, Step, Workflow

GATE_CALLABLE = "agentflow.tasks.gates:check_gate"


def gate_id(phase: Phase) -> str:
    return f"gate_{phase.id}"


def expand(spec: Workflow, deps: dict[str, list[str]], document: Document,
           source: str) -> tuple[Workflow, dict[str, list[str]], list[Problem]]:
    """The workflow with its phases applied, its dependencies with the phases' order; or the
    problems (each located) that stop it."""
    if not spec.phases:
        return spec, deps, []
    problems = _problems(spec, document, source)
    if problems:
        return spec, deps, problems
    phase_of = {step: phase for phase in spec.phases for step in phase.steps}
    deps = {step: list(ups) for step, ups in deps.items()}
    steps: list[Step] = []
    previous: list[str] = []  # what the next phase waits for
    gates: dict[str, Step] = {}
    for phase in spec.phases:
        for step_id in phase.steps:
            deps[step_id] = list(dict.fromkeys([*deps.get(step_id, []), *previous]))
        if phase.gate is not None:
            gate = _gate_step(phase)
            gates[phase.steps[-1]] = gate
            deps[gate.id] = list(phase.steps)
            previous = [gate.id]
        else:
            previous = list(phase.steps)
    for step in spec.steps:  # in the file's order, each gate right after its phase's last step
        steps.append(_narrowed(step, phase_of[step.id]))
        if step.id in gates:
            steps.append(gates[step.id])
    cycle = graph.find_cycle(deps)
    if cycle:
        return spec, deps, [Problem(source, document.line_of(("phases",)), "phases",
                                    f"the phases' order contradicts the steps' own dependencies: "
                                    f"{' -> '.join(cycle)}", "move the step to a later phase, or drop its depends_on")]
    return spec.model_copy(update={"steps": steps}), deps, []


def _problems(spec: Workflow, document: Document, source: str) -> list[Problem]:
    ids = {s.id for s in spec.steps}
    seen: dict[str, str] = {}
    problems = []
    for p, phase in enumerate(spec.phases):
        if gate_id(phase) in ids:
            problems.append(Problem(source, document.line_of(("phases", p, "id")), f"phases[{p}].id",
                                    f"a step is named `{gate_id(phase)}`, the name of this phase's gate",
                                    "rename the step or the phase"))
        for s, step in enumerate(phase.steps):
            where = f"phases[{p}].steps[{s}]"
            line = document.line_of(("phases", p, "steps", s)) or document.line_of(("phases", p))
            if step not in ids:
                problems.append(Problem(source, line, where, f"`{step}` is not a step of this workflow",
                                        f"use one of: {', '.join(sorted(ids))}"))
            elif step in seen:
                problems.append(Problem(source, line, where, f"step `{step}` is already in phase `{seen[step]}`",
                                        "a step belongs to one phase"))
            else:
                seen[step] = phase.id
    missing = [s.id for s in spec.steps if s.id not in seen]
    if missing and not problems:
        problems.append(Problem(source, document.line_of(("phases",)), "phases",
                                f"steps {', '.join(f'`{m}`' for m in missing)} are in no phase",
                                "with phases, every step belongs to one: add them to a phase's `steps:`"))
    return problems


def _narrowed(step: Step, phase: Phase) -> Step:
    """The step under its phase's tools and paths (its own settings narrow them further)."""
    update: dict[str, Any] = {}
    if phase.writes is not None and step.writes is None and step.kind not in ("approval", "assert", "deployment"):
        update["writes"] = list(phase.writes)
    if phase.allowed_tools is not None and step.agent is not None:
        own = step.allowed_tools
        update["allowed_tools"] = [t for t in phase.allowed_tools if own is None or t in own]
    return step.model_copy(update=update) if update else step


def _gate_step(phase: Phase) -> Step:
    gate = phase.gate
    assert gate is not None
    files = [f.model_dump(by_alias=True) if isinstance(f, GateFile) else {"path": f, "schema": None}
             for f in gate.files]
    return Step.model_validate({
        "id": gate_id(phase), "call": GATE_CALLABLE, "name": f"gate of phase {phase.id}",
        "with": {"phase": phase.id, "files": files, "command": gate.run, "timeout": gate.timeout},
        "criticality": "critical", "cache": False, "writes": [],
    })

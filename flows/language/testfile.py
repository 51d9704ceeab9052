"""The `*.test.yaml` language: a workflow's test cases, run offline by `agentflow test`.

    workflow: review.yaml            # the file under test, relative to this one
    cases:
      - name: reviewer answers
        inputs: {target: src}
        agents:                      # how each agent answers (one answer, or a list taken in turn)
          reviewer: {summary: "2 findings", data: {findings: 2}}
        recording: review.rec.yaml   # or: answers from a recorded run (`agentflow run --record`)
        commands:                    # stand-ins for `run:` and `call:` steps (else they run for real)
          tests: {summary: "12 passed"}
        approvals:                   # how a person answers approval steps
          ship: {approve: true, comment: "looks right"}
        expect:
          status: completed
          steps:
            review: {status: success, data: {findings: 2}, summary: "2 find"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentflow.errors import Problem, SpecError
from agentflow.flows.language.answers import Answer, ApprovalAnswer, load_with_document
from agentflow.flows.language.document import Document


class StepExpect(BaseModel):
    """What a step must come to; a field left out is not checked."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["success", "failed", "completed_with_errors", "skipped", "not_run"] | None = None
    degraded: bool | None = None
    fallback_used: str | None = None
    data: Any = None  # the step's `data` holds these keys with these values (a dict), or equals it
    summary: str | None = None  # a regular expression the summary must contain a match of
    files: list[str] | None = None  # exactly the files the step changed
    attempts: int | None = None


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["completed", "failed"] | None = None
    steps: dict[str, StepExpect] = Field(default_factory=dict)
    max_cost_usd: float | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    agents: dict[str, Answer | list[Answer]] = Field(default_factory=dict)
    recording: str | None = None
    commands: dict[str, Answer] = Field(default_factory=dict)
    approvals: dict[str, ApprovalAnswer] = Field(default_factory=dict)
    expect: Expect = Field(default_factory=Expect)

    def answers(self) -> dict[str, list[Answer]]:
        return {agent: answer if isinstance(answer, list) else [answer] for agent, answer in self.agents.items()}


class WorkflowTests(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str
    cases: list[Case] = Field(min_length=1)

    @field_validator("cases")
    @classmethod
    def _names_differ(cls, cases: list[Case]) -> list[Case]:
        names = [case.name for case in cases]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"case names must differ; given more than once: {', '.join(twice)}")
        return cases


def read_test_file(path: Path) -> tuple[WorkflowTests, Document]:
    """The test file `path` and where each of its values is; SpecError naming the file and
    line of what is wrong."""
    return load_with_document(path, WorkflowTests, "see `agentflow test --help` for the shape of a test file")


def load_tests(path: Path) -> tuple[WorkflowTests, Any]:
    """The test file and the workflow it tests, loaded and checked against each other;
    SpecError naming the file and line of each problem."""
    from agentflow.flows.language.loader import load_workflow

    tests, document = read_test_file(path)
    workflow = path.parent / tests.workflow
    if not workflow.is_file():
        raise SpecError([Problem(str(path), document.line_of(("workflow",)), "workflow",
                                 f"{tests.workflow} does not exist", "name the workflow file, relative to the test file")])
    resolved = load_workflow(workflow)
    problems = problems_against(tests, document, path, resolved)
    if problems:
        raise SpecError(problems)
    return tests, resolved


def problems_against(tests: WorkflowTests, document: Document, path: Path, resolved: Any) -> list[Problem]:
    """What the test file names that the workflow does not have: steps, agents, commands and
    approvals, each located in the test file."""
    steps = {step.id: step for step in resolved.spec.steps}
    agents = set(resolved.agents)  # the workflow's and its agents file's, fallbacks too
    found: list[Problem] = []

    def problem(at: tuple, what: str, fix: str) -> None:
        found.append(Problem(str(path), document.line_of(at), ".".join(str(p) for p in at), what, fix))

    for number, case in enumerate(tests.cases):
        for name in case.expect.steps:
            if name not in steps:
                problem(("cases", number, "expect", "steps", name), f"step `{name}` is not in the workflow",
                        f"use one of {', '.join(steps)}")
        for name in case.agents:
            if name not in agents:
                problem(("cases", number, "agents", name), f"agent `{name}` is not defined for the workflow",
                        f"answer one of {', '.join(sorted(agents)) or '(none)'}")
        for name in case.commands:
            if name not in steps or not (steps[name].run or steps[name].call):
                runs = [s for s, step in steps.items() if step.run or step.call]
                problem(("cases", number, "commands", name), f"`{name}` is not a `run:` or `call:` step of the "
                        "workflow", f"give stand-ins for {', '.join(runs) or '(none)'}")
        for name in case.approvals:
            step = steps.get(name)
            if step is None or (step.approval is None and not step.approve_if and not step.review_if):
                problem(("cases", number, "approvals", name), f"`{name}` is not a step that asks a person",
                        "answer approval steps and steps with approve_if or review_if")
    return found

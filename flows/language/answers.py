"""How agents answer without being called: the shape of a recording and of a test's answers.

A recording (`agentflow run --record FILE`) keeps each agent call of a run: its step, what the
agent was asked, and its `Answer`; and what people decided at its approval steps. A test (`*.test.yaml`) gives answers per agent in the same
shape. tasks/recording.py records and replays them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow.errors import Problem, SpecError
from agentflow.flows.language.document import Document, YamlSyntaxError, parse
from agentflow.flows.language.pydantic_problems import problems_from

M = TypeVar("M", bound=BaseModel)

FORMAT = "agentflow-recording/1"


class Answer(BaseModel):
    """How an agent answers one call: a result, a failure (`fail`, retried and then the
    fallback ladder), or that it cannot be reached (`unavailable`: straight to the fallback)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["success", "failed", "completed_with_errors", "skipped"] = "success"
    summary: str = ""
    output: str = ""
    data: Any = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    confidence: float | None = None
    error: str | None = None
    fail: str | None = None
    unavailable: bool | str = False
    patch: str = ""  # the files the call changed, as `git diff --binary` prints them
    patch_base64: str = ""  # the same, for a patch that is not UTF-8 text


class RecordedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str
    label: str  # the call: `review`, `files[a.py]`, `fix#2`
    agent: str
    request: dict[str, Any]  # what the agent was asked (AgentRequest.key_view)
    answer: Answer


class ApprovalAnswer(BaseModel):
    """How a person answers an approval step (a test's `approvals:`, a recording's decisions)."""

    model_config = ConfigDict(extra="forbid")

    approve: bool = True
    comment: str = ""
    fields: dict[str, Any] = Field(default_factory=dict)
    by: str = "agentflow test"


class RecordedDecision(BaseModel):
    """A decision kept in a recording: the step, then an `ApprovalAnswer`'s fields (`approve`
    always written: a reader should not have to know its default)."""

    model_config = ConfigDict(extra="forbid")

    step: str
    approve: bool
    comment: str = ""
    fields: dict[str, Any] = Field(default_factory=dict)
    by: str = ""

    def answer(self) -> ApprovalAnswer:
        return ApprovalAnswer(approve=self.approve, comment=self.comment, fields=self.fields, by=self.by)


class Recording(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    workflow: str
    version: str = ""
    calls: list[RecordedCall] = Field(default_factory=list)
    # What people decided at the run's approval steps, in order: a replay decides the same.
    decisions: list[RecordedDecision] = Field(default_factory=list)


def read_recording(path: Path) -> Recording:
    """The recording in `path`; SpecError naming the file and line of what is wrong."""
    return load_model(path, Recording, "give a file `agentflow run --record FILE` wrote")


def dump_recording(recording: Recording) -> str:
    """The recording as YAML, multi-line answers and patches as blocks a reader can follow."""
    data = recording.model_dump(mode="json", exclude_defaults=True)
    data = {"format": FORMAT, **data}
    header = (f"# The agent calls and approval decisions of a run of workflow {recording.workflow}, kept by `agentflow run --record`.\n"
              "# `agentflow run --replay FILE` and a test case's `recording: FILE` answer each call from it;\n"
              "# when the workflow asks its agents something else, record a run again.\n")
    return header + yaml.dump(data, Dumper=_Blocks, sort_keys=False, allow_unicode=True, width=120)


def load_model(path: Path, model: type[M], fix: str) -> M:
    """A YAML file validated as `model`; SpecError with located problems otherwise."""
    return load_with_document(path, model, fix)[0]


def load_with_document(path: Path, model: type[M], fix: str) -> tuple[M, Document]:
    """`load_model`, and the parsed document (where each value is) for later checks."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(str(path), None, "", f"cannot be read: {exc}", fix)]) from None
    try:
        document = parse(text)
    except YamlSyntaxError as exc:
        raise SpecError([Problem(str(path), exc.line, "", f"is not valid YAML: {exc}", fix)]) from None
    try:
        return model.model_validate(document.data), document
    except ValidationError as exc:
        raise SpecError(problems_from(exc, model, document, str(path))) from None


class _Blocks(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Blocks.add_representer(str, _string)

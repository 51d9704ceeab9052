"""What a step may add to its action: retry backoff, cache settings, a repeat, an approval's
form, a compensation, a budget; and a workflow's phases with their gates. Pure data models
(spec.py's `Step` and `Workflow` hold them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from agentflow.flows.language.durations import Duration
from agentflow.flows.language.spec_types import AgentName, Callable_, InputSpec, StepId, _Model


class RetryBackoff(_Model):
    base_seconds: float = Field(default=1.0, ge=0)
    max_seconds: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.2, ge=0, le=1)


class TemplateSpec(_Model):
    """A file rendered into the run's tree: `source` (a file, relative to the workflow, read
    when the workflow is loaded: part of its version) or `inline` text, with the step's context
    and `vars`; `dest` (a template too) inside the repository; `create` refuses a file that
    exists, `overwrite` replaces it. The written file is the step's captured work."""

    source: str | None = Field(default=None, min_length=1, max_length=1000)
    inline: str | None = Field(default=None, max_length=1_000_000)
    dest: str = Field(min_length=1, max_length=1000)
    vars: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["create", "overwrite"] = "create"

    @model_validator(mode="after")
    def _one_text(self) -> "TemplateSpec":
        if self.inline is None:
            raise ValueError("a template needs `source: FILE` or `inline: TEXT`")
        parts = self.dest.replace("\\", "/").split("/")
        if "{{" not in self.dest and (self.dest.startswith(("/", "~")) or ".." in parts):
            raise ValueError(f"dest {self.dest!r} is not inside the repository: give a path relative to it, "
                             "without `..`")
        return self


class CacheSpec(_Model):
    ttl: Duration | None = None
    key: list[Literal["inputs", "files", "commit", "agent"]] | None = None


class Repeat(_Model):
    until: str
    max: int = Field(default=5, ge=1, le=100)


# The names the approval form uses itself (engine/approvals.py): a declared field may not take one.
APPROVAL_FORM_FIELDS = ("approve", "comment", "decided_by")
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]


class Approval(_Model):
    """A person's decision: the run waits (Prefect's pause) with a form in the UI, or for
    `agentflow approve`. The decision is the step's result (`steps.ID.data.approved`)."""

    message: str = "Approve to continue."  # markdown above the form; a template
    show: list[StepId] = Field(default_factory=list)  # upstream steps whose results are shown
    fields: dict[FieldName, InputSpec] = Field(default_factory=dict)  # asked besides approve/comment
    timeout: Duration | None = None
    default: Literal["approve", "reject", "fail"] = "fail"  # what a timeout decides
    on_reject: Literal["fail", "skip"] = "fail"  # skip: the step is skipped, and its dependents with it

    @model_validator(mode="after")
    def _fields(self) -> "Approval":
        taken = sorted(set(self.fields) & set(APPROVAL_FORM_FIELDS))
        if taken:
            raise ValueError(f"field(s) {', '.join(taken)} are the form's own ({', '.join(APPROVAL_FORM_FIELDS)}): "
                             "rename them")
        secret = sorted(name for name, field in self.fields.items() if field.secret)
        if secret:
            raise ValueError(f"field(s) {', '.join(secret)}: an approval field cannot be secret (the decision "
                             "is the step's result, shown to later steps and in the UI)")
        return self


class Compensate(_Model):
    """What undoes a step when a later step fails the workflow (saga: engine/saga.py). It sees
    the step's result as `result`; a callable is given `step` and `result`."""

    run: list[str] | None = Field(default=None, min_length=1)
    call: Callable_ | None = None
    agent: AgentName | None = None
    prompt: str = ""

    @model_validator(mode="after")
    def _one_way(self) -> "Compensate":
        chosen = [k for k in ("run", "call", "agent") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"compensate needs exactly one of run, call, agent (got {', '.join(chosen) or 'none'})")
        if self.prompt and self.agent is None:
            raise ValueError("compensate.prompt is for an agent: give `agent:` too, or drop the prompt")
        return self


class Budget(_Model):
    """What a step, or a whole run, may spend on agents: the cost and tokens they report."""

    usd: float | None = Field(default=None, gt=0, le=1_000_000)
    tokens: int | None = Field(default=None, ge=1)


class GateFile(_Model):
    """A file a phase's gate requires, optionally holding JSON that fits a JSON Schema."""

    path: str = Field(min_length=1, max_length=500)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class PhaseGate(_Model):
    """What must hold before the next phase starts: files in the run's tree (globs; each must
    match at least one file), and a command that must pass (an argv list)."""

    files: list[Union[str, GateFile]] = Field(default_factory=list)
    run: list[str] | None = Field(default=None, min_length=1)
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _something(self) -> "PhaseGate":
        if not self.files and self.run is None:
            raise ValueError("a gate checks `files:`, runs `run:`, or both: give at least one")
        return self


class Phase(_Model):
    """A group of steps (analyse, implement, verify...) with the tools and paths its agents may
    use, and a gate the next phase waits for (language/phases.py turns it into a step)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=50)]
    steps: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]] = Field(min_length=1)
    allowed_tools: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = None
    writes: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = None
    gate: PhaseGate | None = None

"""The exception root of agentflow and the `Problem` a definition can have.

Every error a user can cause says what went wrong, where, and how to fix it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class AgentflowError(Exception):
    """Root of every error agentflow raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition, located in its file."""

    file: str
    line: int | None
    where: str
    what: str
    fix: str = ""
    got: str | None = None

    def __str__(self) -> str:
        location = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{location}: {self.where}: {self.what}" if self.where else f"{location}: {self.what}"
        if self.got is not None:
            text += f" (got {self.got})"
        if self.fix:
            text += f"; {self.fix}"
        return text


def format_path(path: tuple) -> str:
    """`("steps", 2, "retries")` → `steps[2].retries`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_got(value: Any) -> str:
    """A short rendering of a wrong value, for the `(got X)` part of a problem."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class SpecError(AgentflowError, ValueError):
    """A workflow definition (or its agents file) is invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InputError(AgentflowError, ValueError):
    """The inputs given to a workflow run do not match its declared `inputs`."""


class ConfigError(AgentflowError):
    """A step cannot run as configured (unknown callable, command not found). Never retried."""


class SettingsError(ConfigError):
    """A setting (agentflow.toml or an AGENTFLOW_* variable) is invalid; the message names its
    source. Bad input, like an invalid definition: nothing ran."""


class ExpressionError(AgentflowError, ValueError):
    """A `when`/`until`/`assert` expression is malformed or cannot be evaluated."""


class TemplateError(AgentflowError, ValueError):
    """A template does not compile or refers to something that does not exist."""


class StepFailed(AgentflowError):
    """An agent or command ran and reported failure; retried if the step has retries and a
    retry can help (`retryable`: a 4xx answer or a denied tool will not change on retry).
    On an agent step, the fallback ladder takes over once the retries are spent."""

    def __init__(self, message: str, output: str = "", retryable: bool = True):
        self.output = output
        self.retryable = retryable
        super().__init__(message)


class AgentUnavailable(StepFailed):
    """The agent cannot be called here (no API key, no CLI, nothing listening): not retried,
    the ladder goes to the fallback."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message, output, retryable=False)


class AgentNotSetUp(AgentUnavailable):
    """Unavailable because of this machine, not the agent: its SDK or program is not
    installed, its API key is not set. Not held against the agent's circuit breaker."""


class StepTimeout(StepFailed):
    """A step ran longer than its `timeout`; its process group was killed."""


class AssertionFailed(AgentflowError):
    """An `assert` step's condition was false. Never retried."""


class WorkflowFailed(AgentflowError):
    """A run ended with at least one failed step that the workflow could not go on without.

    `result` is the run's `WorkflowResult` (every step's outcome, the failed ones named)."""

    def __init__(self, message: str, result: Any = None):
        self.result = result
        super().__init__(message)


class StateDamaged(AgentflowError):
    """A file agentflow keeps (a run record, a journal, Prefect's database) cannot be read as
    what it should be; the message names the file, what is wrong and what to do."""


# Errors that a retry cannot fix: configuration and definition mistakes.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    ConfigError,
    SpecError,
    ExpressionError,
    TemplateError,
    AssertionFailed,
)

"""agentflow's own configuration: one place, with where each value came from.

`agentflow.toml` at the repository's root (or `[tool.agentflow]` in its pyproject.toml), under
environment variables `AGENTFLOW_<NAME>` (environment > file > default). Nothing of Prefect's
is configured here: Prefect's settings stay Prefect's (its profile, PREFECT_*).

The sources are read and validated one by one, not merged by pydantic-settings, because
`agentflow config show` says for each value which source gave it, and a bad value is named
with its source (the file and line, or the variable).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow.errors import SettingsError

FILE = "agentflow.toml"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    log_file: Path | None = Field(default=None, description="agentflow's JSON-lines log "
                                  "(default: $PREFECT_HOME/agentflow/agentflow.jsonl)")
    audit_file: Path | None = Field(default=None, description="the audit log of agent calls and decisions "
                                    "(default: $PREFECT_HOME/agentflow/audit.jsonl)")
    max_patch_mb: float = Field(default=50, gt=0, le=10_000, description="a step's patch larger than this fails it")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="`agentflow metrics serve`'s port")
    workflows: Path = Field(default=Path("workflows"), description="the folder deployments find workflows in")
    # Defaults of what a workflow may say itself (it wins when it does):
    agents_file: Path | None = Field(default=None, description="the agents file of a workflow with no `agents:` "
                                     "(relative to this settings file)")
    workspace: Literal["worktree", "in-place"] = Field(default="worktree", description="where a workflow's steps "
                                                       "work, unless it says (`workspace:`)")
    deliver: Literal["branch", "apply", "none"] = Field(default="branch", description="what becomes of a run's "
                                                        "work, unless its workflow says (`deliver:`)")
    work_pool: str = Field(default="agentflow", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                           description="the work pool a workflow is deployed to, unless it names one (`work_pool:`)")
    budget_usd: float | None = Field(default=None, gt=0, le=1_000_000, description="what a run may spend on agents, "
                                     "in USD, unless its workflow sets a `budget:`")
    budget_tokens: int | None = Field(default=None, ge=1, description="the tokens a run's agents may use, unless "
                                      "its workflow sets a `budget:`")
    circuit_failures: int = Field(default=5, ge=1, le=1000, description="an agent's circuit breaker opens after "
                                  "this many failed calls in a row, unless the agent says (`circuit_breaker:`)")
    circuit_cooldown_s: float = Field(default=60, gt=0, le=86_400, description="seconds an open circuit breaker "
                                      "waits before it lets a call through again, unless the agent says")


@dataclass(frozen=True)
class Value:
    name: str
    value: Any
    source: str  # "default", "agentflow.toml:3", "pyproject.toml [tool.agentflow]:12", "AGENTFLOW_X"
    description: str


def env_name(field: str) -> str:
    return f"AGENTFLOW_{field.upper()}"


def read(start: Path | None = None, environ: dict[str, str] | None = None) -> list[Value]:
    """Every setting's effective value and its source; SettingsError naming the source of a bad one."""
    environ = dict(os.environ if environ is None else environ)
    file_values, file_label, lines, folder = _file_values(start or Path.cwd())
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in file_values.items():
        if name not in Settings.model_fields:
            raise SettingsError(f"{file_label}:{lines.get(name, '?')}: `{name}` is not an agentflow setting; "
                              f"use one of {', '.join(Settings.model_fields)}")
        if name in _RELATIVE_TO_FILE and isinstance(value, str) and folder is not None:
            value = str(folder / value)
        values[name], sources[name] = value, f"{file_label}:{lines.get(name, '?')}"
    for name in Settings.model_fields:
        if environ.get(env_name(name)):
            values[name], sources[name] = environ[env_name(name)], env_name(name)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        source = sources.get(name, "default")
        shown = f"{source}: {name} = {values.get(name)!r}" if source.startswith(("agentflow", "pyproject")) \
            else f"{source}={values.get(name)!r}"
        raise SettingsError(f"{shown}: {error['msg'].lower()}; the default is "
                          f"{Settings.model_fields[name].default!r} ({Settings.model_fields[name].description})") from None
    return [Value(name, getattr(settings, name), sources.get(name, "default"), field.description or "")
            for name, field in Settings.model_fields.items()]


_current: list[Settings] = []

# Paths a settings file gives relative to itself (a variable's are relative to the directory).
_RELATIVE_TO_FILE = ("agents_file",)


def at(directory: Path) -> Settings:
    """The settings a workflow in `directory` is loaded with (its repository's file, the
    environment); SettingsError naming the source of a bad value."""
    return Settings(**{v.name: v.value for v in read(directory)})


def current() -> Settings:
    """This process's settings, read once."""
    if not _current:
        _current.append(Settings(**{v.name: v.value for v in read()}))
    return _current[0]


def _file_values(start: Path) -> tuple[dict[str, Any], str, dict[str, int], Path | None]:
    """The settings of the nearest agentflow.toml or pyproject.toml `[tool.agentflow]`, going
    up from `start` to the repository's root; with the file's label, each key's line and the
    file's folder."""
    for directory in [start.resolve(), *start.resolve().parents]:
        own = directory / FILE
        if own.is_file():
            text = own.read_text(encoding="utf-8")
            return _parsed(text, own, FILE), FILE, _lines(text, None), directory
        project = directory / "pyproject.toml"
        if project.is_file():
            text = project.read_text(encoding="utf-8")
            table = _parsed(text, project, "pyproject.toml").get("tool", {}).get("agentflow")
            if isinstance(table, dict):
                return table, "pyproject.toml [tool.agentflow]", _lines(text, "tool.agentflow"), directory
        if (directory / ".git").exists():
            break
    return {}, "", {}, None


def _parsed(text: str, path: Path, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}; fix the file (or remove it)") from None


def _lines(text: str, table: str | None) -> dict[str, int]:
    """Each key's line: in the file's top level, or in `[table]`."""
    found: dict[str, int] = {}
    inside = table is None
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            inside = header.group(1).strip() == table
            continue
        key = re.match(r"^\s*([A-Za-z0-9_-]+)\s*=", line)
        if inside and key:
            found.setdefault(key.group(1), number)
    return found

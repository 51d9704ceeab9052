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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow.errors import ConfigError

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


@dataclass(frozen=True)
class Value:
    name: str
    value: Any
    source: str  # "default", "agentflow.toml:3", "pyproject.toml [tool.agentflow]:12", "AGENTFLOW_X"
    description: str


def env_name(field: str) -> str:
    return f"AGENTFLOW_{field.upper()}"


def read(start: Path | None = None, environ: dict[str, str] | None = None) -> list[Value]:
    """Every setting's effective value and its source; ConfigError naming the source of a bad one."""
    environ = dict(os.environ if environ is None else environ)
    file_values, file_label, lines = _file_values(start or Path.cwd())
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in file_values.items():
        if name not in Settings.model_fields:
            raise ConfigError(f"{file_label}:{lines.get(name, '?')}: `{name}` is not an agentflow setting; "
                              f"use one of {', '.join(Settings.model_fields)}")
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
        raise ConfigError(f"{shown}: {error['msg'].lower()}; the default is "
                          f"{Settings.model_fields[name].default!r} ({Settings.model_fields[name].description})") from None
    return [Value(name, getattr(settings, name), sources.get(name, "default"), field.description or "")
            for name, field in Settings.model_fields.items()]


_current: list[Settings] = []


def current() -> Settings:
    """This process's settings, read once."""
    if not _current:
        _current.append(Settings(**{v.name: v.value for v in read()}))
    return _current[0]


def _file_values(start: Path) -> tuple[dict[str, Any], str, dict[str, int]]:
    """The settings of the nearest agentflow.toml or pyproject.toml `[tool.agentflow]`, going
    up from `start` to the repository's root; with the file's label and each key's line."""
    for directory in [start.resolve(), *start.resolve().parents]:
        own = directory / FILE
        if own.is_file():
            text = own.read_text(encoding="utf-8")
            return _parsed(text, own, FILE), FILE, _lines(text, None)
        project = directory / "pyproject.toml"
        if project.is_file():
            text = project.read_text(encoding="utf-8")
            table = _parsed(text, project, "pyproject.toml").get("tool", {}).get("agentflow")
            if isinstance(table, dict):
                return table, "pyproject.toml [tool.agentflow]", _lines(text, "tool.agentflow")
        if (directory / ".git").exists():
            break
    return {}, "", {}


def _parsed(text: str, path: Path, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the file (or remove it)") from None


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

"""A phase's gate (flows/language/phases.py): the files the phase must have produced, in the
run's tree, and a command that must pass. Runs as the `gate_<phase>` step, in the run's tree.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from agentflow.errors import ConfigError, StepFailed
from agentflow.tasks.results import AgentResult

_DEFAULT_TIMEOUT_S = 600.0
_TAIL = 2000


def check_gate(phase: str, files: list[dict[str, Any]] | None = None, command: list[str] | None = None,
               timeout: float | None = None) -> AgentResult:
    """Every file pattern matches a file (whose JSON fits its schema, if one is given), then
    the command exits 0. StepFailed, saying all that was missing, if not."""
    missing, invalid, found = [], [], []
    for required in files or []:
        matches = sorted(p for p in glob.glob(required["path"], recursive=True) if Path(p).is_file())
        if not matches:
            missing.append(required["path"])
            continue
        found += matches
        if required.get("schema") is not None:
            invalid += [f"{path}: {why}" for path in matches for why in _schema_errors(path, required["schema"])]
    problems = ([f"no file matches {', '.join(missing)}"] if missing else []) + invalid
    data: dict[str, Any] = {"phase": phase, "files": found, "missing": missing, "invalid": invalid}
    if not problems and command:
        data["command"] = outcome = _run(command, timeout or _DEFAULT_TIMEOUT_S)
        if outcome["exit"] != 0:
            problems.append(f"`{' '.join(command)}` exited with {outcome['exit']}: {outcome['tail'][-500:]}")
    if problems:
        raise StepFailed(f"the gate of phase `{phase}` does not hold: {'; '.join(problems)}",
                         output=json.dumps(data), retryable=False)
    said = f"{len(found)} file{'s' if len(found) != 1 else ''}" + (", the command passed" if command else "")
    return AgentResult(summary=f"phase `{phase}` done: {said}", data=data)


def _schema_errors(path: str, schema: dict[str, Any]) -> list[str]:
    import jsonschema

    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [f"not JSON ({exc})"]
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"a gate's schema for {path} is not a JSON Schema: {exc.message}") from None
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(document)][:10]


def _run(command: list[str], timeout: float) -> dict[str, Any]:
    # No byte-code files: a gate only checks, and what it leaves would count as changed files.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout, env=env,
                              start_new_session=True)
    except FileNotFoundError:
        raise ConfigError(f"the gate's command `{command[0]}` was not found on PATH") from None
    except subprocess.TimeoutExpired:
        return {"exit": -1, "tail": f"did not finish within {timeout:g} s"}
    return {"exit": done.returncode, "tail": (done.stdout + done.stderr)[-_TAIL:]}

"""Check and convert the inputs of a run against the workflow's declared `inputs`."""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from typing import Any

from agentflow.errors import InputError, format_got
from agentflow.flows.language.spec import INPUT_TYPES, InputSpec, Workflow



MAX_INPUT_CHARS = 1_000_000  # one input value, as text
MAX_DIGITS = 100  # an integer or number given as text
MAX_NESTING = 32  # lists and mappings inside an array or object input


def validate_inputs(spec: Workflow, given: Mapping[str, Any], from_strings: bool = False) -> dict[str, Any]:
    """The complete inputs of a run (defaults filled in); InputError lists every problem.

    `from_strings` converts command-line text (`-i count=3`) to the declared type.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    declared = spec.inputs
    for name in given:
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"declared: {', '.join(declared) or 'none'}"
            problems.append(f"unknown input `{name}`; {hint}")
    for name, input_spec in declared.items():
        if name in given:
            try:
                values[name] = _convert(name, input_spec, given[name], from_strings)
            except InputError as exc:
                problems.append(str(exc))
        elif input_spec.required:
            where = f" or set {secret_env(name)}" if input_spec.secret else ""
            problems.append(f"missing input `{name}` ({input_spec.type}); pass it with -i {name}=VALUE{where}")
        else:
            values[name] = input_spec.default
    if problems:
        raise InputError(f"workflow `{spec.name}` got bad inputs:\n  " + "\n  ".join(problems))
    return values


def secret_marker(name: str) -> str:
    """What stands for a secret input's value wherever a run is written down."""
    return f"<secret:{name}>"


def secret_env(name: str) -> str:
    """The environment variable a secret input is taken from when it is not given."""
    return f"AGENTFLOW_SECRET_{name.upper()}"


def _convert(name: str, spec: InputSpec, value: Any, from_strings: bool) -> Any:
    if spec.secret and hasattr(value, "get_secret_value"):
        value = value.get_secret_value()  # Prefect keeps it masked (SecretStr) as a flow parameter
    if isinstance(value, str):
        _check_text(name, value)
    if from_strings and isinstance(value, str) and spec.type != "string":
        value = parse_text(name, spec.type, value)
    expected = INPUT_TYPES[spec.type]
    wrong_bool = isinstance(value, bool) and spec.type in ("integer", "number")
    if not isinstance(value, expected) or wrong_bool:
        raise InputError(f"input `{name}` must be {spec.type} (got {type(value).__name__} {format_got(value)})")
    if isinstance(value, (list, dict)) and _nesting(value) > MAX_NESTING:
        raise InputError(f"input `{name}` is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"input `{name}` must be a finite number (got {value})")
    if spec.enum is not None and value not in spec.enum:
        raise InputError(f"input `{name}` must be one of {format_got(spec.enum)} (got {format_got(value)})")
    return value


def _nesting(value: Any) -> int:
    """How deeply lists and mappings nest in a value (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return deepest


def _check_text(name: str, text: str) -> None:
    if len(text) > MAX_INPUT_CHARS:
        raise InputError(f"input `{name}` is {len(text):,} characters; at most {MAX_INPUT_CHARS:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"input `{name}` is not valid UTF-8 text (at character {exc.start})") from None


def parse_text(name: str, kind: str, text: str) -> Any:
    """An input given as text (`-i key=value`) as the type it declares; InputError if it is not."""
    if kind in ("integer", "number") and len(text.strip()) > MAX_DIGITS:
        raise InputError(f"input `{name}` must be {kind} of at most {MAX_DIGITS} digits (got {format_got(text)})")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text) if "." in text or "e" in text.lower() else int(text)
        if kind == "boolean":
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(text)
        return json.loads(text)
    except RecursionError:
        raise InputError(f"input `{name}`: the JSON is nested too deeply") from None
    except ValueError:
        raise InputError(f"input `{name}` must be {kind} (got {format_got(text)})") from None

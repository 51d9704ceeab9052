"""Turn pydantic's validation errors into located, actionable `Problem`s."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from agentflow.flows.language.document import Document
from agentflow.errors import Problem, format_got, format_path
from agentflow.flows.language.http_parts import NOT_ECHOED

# What to do about a wrong value, by the name of the field it is in.
_FIXES = {
    "id": "use letters, digits and underscores, starting with a letter (e.g. review_code)",
    "name": "use letters, digits, `-`, `_` or `.`, starting with a letter or digit",
    "pattern": "use sequential, parallel or dag",
    "retries": "use a whole number from 0 to 50",
    "timeout": "write a duration such as 30s, 10m or 2h",
    "ttl": "write a duration such as 30s, 10m, 24h or 7d",
    "max_parallel": "use a whole number of at least 1",
    "run": "write the command as a list of arguments, e.g. [git, log, -n, '5']",
    "command": "write the command as a list of arguments, e.g. [ruff, check, .]",
    "call": "write it as module:function, e.g. agentflow.tasks.builtin:count_tests",
    "callable": "write it as module:function, e.g. agentflow.tasks.builtin:count_tests",
    "kind": "use claude-code, llm, shell, python or http",
    "criticality": "use critical, high, medium or low",
    "type": "use string, integer, number, boolean, array or object",
    "depends_on": "list step ids, e.g. [build, lint]",
    "files": "list glob patterns, e.g. ['src/**/*.py']",
    "cache": "write `cache: false`, or a mapping such as {ttl: 24h}",
    "steps": "list the steps under `steps:`, each a mapping with an `id`",
    "repeat": "write it as {until: <expression>, max: 5}",
    "for_each": "give a list, or an expression such as inputs.targets",
    "deployment": "name the deployment (`NAME` or `FLOW/NAME`), not a template; choose between two with `when:`",
}


def problems_from(exc: ValidationError, model: type[BaseModel], document: Document, source: str) -> list[Problem]:
    located = []
    for error in exc.errors():
        path = _data_path(error["loc"], document.data, error["type"])
        located.append((path, error))
    # A value that matches no branch of a union produces one error per branch; when one of
    # them goes deeper into the value, that is the informative one.
    paths = [p for p, _ in located]
    problems: list[Problem] = []
    seen: set[tuple] = set()
    for path, error in located:
        if any(len(other) > len(path) and other[: len(path)] == path for other in paths):
            continue
        if path in seen:
            continue
        seen.add(path)
        problems.append(_problem(path, error, model, document, source))
    return problems


def _data_path(loc: tuple, data: Any, error_type: str) -> tuple:
    path: list[Any] = []
    current = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, dict) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, dict) and part == "assert_" and "assert" in current:
            path.append("assert")
            current = current["assert"]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif last and error_type == "missing":
            path.append(part)
        # anything else is a union branch tag such as 'CacheSpec' or 'list[str]': not in the data
    return tuple(path)


def _problem(path: tuple, error: dict, model: type[BaseModel], document: Document, source: str) -> Problem:
    kind = error["type"]
    field = next((p for p in reversed(path) if isinstance(p, str)), "")
    where = format_path(path)
    line = document.line_of(path)
    if kind == "extra_forbidden":
        allowed = sorted(_allowed_keys(model, path[:-1], document.data))
        close = difflib.get_close_matches(str(field), allowed, n=1, cutoff=0.6)
        fix = f"did you mean `{close[0]}`?" if close else f"remove it; allowed here: {', '.join(allowed)}"
        return Problem(source, line, where, f"unknown key `{field}`", fix)
    if kind == "missing":
        return Problem(source, line, format_path(path[:-1]) or "(top level)",
                       f"missing required key `{field}`", f"add `{field}:`")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    fix = _FIXES.get(str(field), "")
    if kind == "string_pattern_mismatch" and not fix:
        fix = f"match the pattern {error.get('ctx', {}).get('pattern', '')}"
    message = message[0].lower() + message[1:] if message else message
    value = error.get("input")
    # A whole step or mapping as "got" is noise; a scalar shows exactly what was wrong.
    # A value that holds a credential (NOT_ECHOED) is never repeated.
    got = None if (isinstance(value, (dict, list)) and kind == "value_error") or kind == NOT_ECHOED else (
        format_got(value))
    return Problem(source, line, where, message, fix, got)


def _allowed_keys(model: type[BaseModel], path: tuple, data: Any) -> set[str]:
    target: Any = model
    for part in path:
        target = _child_type(target, part)
        if target is None:
            return set()
    target = _pick_model(target)
    if target is None:
        return set()
    return {f.alias or name for name, f in target.model_fields.items()}


def _child_type(annotation: Any, part: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _child_type(arg, part)
            if found is not None:
                return found
        return None
    if origin is typing.Annotated:
        return _child_type(typing.get_args(annotation)[0], part)
    if isinstance(part, int) and origin is list:
        return typing.get_args(annotation)[0]
    if isinstance(part, str) and origin is dict:
        return typing.get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
    return None


def _pick_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _pick_model(arg)
        if found is not None:
            return found
    return None

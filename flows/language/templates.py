"""Sandboxed Jinja2 templates for prompts, commands and parameters.

The sandbox blocks access to Python internals; StrictUndefined makes a misspelt name an
error rather than an empty string, so a prompt never silently loses a piece.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agentflow.errors import TemplateError

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                     keep_trailing_newline=True)


@dataclass(frozen=True)
class TemplateInfo:
    """What a template refers to: top-level names and the keys used under each."""

    names: frozenset[str]
    keys: dict[str, frozenset[str]]


def is_template(text: Any) -> bool:
    return isinstance(text, str) and ("{{" in text or "{%" in text)


@lru_cache(maxsize=4096)
def inspect(text: str) -> TemplateInfo:
    """Parse `text`; raise TemplateError with the template's own line on a syntax error."""
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template does not compile: {exc.message} (template line {exc.lineno})") from None
    local = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    builtins = set(_ENV.globals) | {"loop", "self", "varargs", "kwargs"}
    names = frozenset(n.name for n in tree.find_all(nodes.Name)
                      if n.ctx == "load" and n.name not in local and n.name not in builtins)
    keys: dict[str, set[str]] = {}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node.node, nodes.Name):
            key = node.attr if isinstance(node, nodes.Getattr) else _const(node.arg)
            if isinstance(key, str):
                keys.setdefault(node.node.name, set()).add(key)
    return TemplateInfo(names=names, keys={k: frozenset(v) for k, v in keys.items()})


def _const(node: nodes.Node) -> Any:
    return node.value if isinstance(node, nodes.Const) else None


@lru_cache(maxsize=4096)
def _compiled(text: str):
    return _ENV.from_string(text)


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render `text` in the sandbox; a missing name or a blocked access is a TemplateError."""
    if not is_template(text):
        return text
    with _as_template_error(text):
        return _compiled(text).render(**context)


@contextmanager
def _as_template_error(text: str) -> Iterator[None]:
    """Jinja's errors, as one TemplateError that quotes the template."""
    try:
        yield
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template does not compile: {exc.message}") from None
    except UndefinedError as exc:
        raise TemplateError(f"template `{_short(text)}` refers to something missing: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"template `{_short(text)}` tried an unsafe operation: {exc}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise TemplateError(f"template `{_short(text)}` failed: {exc}") from None


_SOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.S)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside lists and mappings (the `with:` parameters).

    A string that is one `{{ expression }}` and nothing else keeps the expression's type,
    so `with: {urls: "{{ inputs.urls }}"}` passes a mapping, not its text.
    """
    if isinstance(value, str):
        match = _SOLE_EXPRESSION.match(value)
        if match:
            return _native(match.group("expr"), value, context)
        return render(value, context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def _native(expression: str, text: str, context: Mapping[str, Any]) -> Any:
    with _as_template_error(text):
        value = _compiled_expression(expression.strip())(**context)
    if isinstance(value, Undefined):
        detail = getattr(value, "_undefined_message", "")
        raise TemplateError(f"template `{_short(text)}` refers to something missing: {detail}")
    return value


@lru_cache(maxsize=4096)
def _compiled_expression(expression: str):
    return _ENV.compile_expression(expression, undefined_to_none=False)


def strings_in(value: Any) -> list[str]:
    """All template strings inside a value, for validation."""
    if isinstance(value, str):
        return [value] if is_template(value) else []
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    return []


def _short(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."

"""Sandboxed Jinja2 templates for prompts, commands and parameters.

The sandbox blocks access to Python internals; StrictUndefined makes a misspelt name an
error rather than an empty string, so a prompt never silently loses a piece.

Rendering is bounded, because the values it works on come from inputs (untrusted): `**`
and `*` refuse results larger than `MAX_OUTPUT` (checked before computing them, so
`10 ** (10 ** 10)` fails at once instead of spinning), `range` gives at most `MAX_RANGE`
numbers, filters that pad to a width refuse huge widths, any rendered value is at most
`MAX_OUTPUT` characters, and a template with statements (`{% for %}`...) gets
`TIME_LIMIT_S` seconds. Each is a TemplateError naming the template. `include`, `import`,
`extends` and attributes starting with `_` are refused when the definition is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError

from agentflow.errors import TemplateError
from agentflow.flows.language.sandbox import (TIME_LIMIT_S, BoundedSandbox, TemplateTimeout, join_bounded,
                                             within_time)

_ENV = BoundedSandbox()
# Statements that reach outside the template, and a filter that reaches into objects.
_REFUSED_NODES = {nodes.Include: "{% include %}", nodes.Import: "{% import %}", nodes.FromImport: "{% from ... import %}",
                  nodes.Extends: "{% extends %}"}


@dataclass(frozen=True)
class TemplateInfo:
    """What a template refers to: top-level names and the keys used under each."""

    names: frozenset[str]
    keys: dict[str, frozenset[str]]
    step_fields: frozenset[tuple[str, str]] = frozenset()  # `steps.a.summary` -> ("a", "summary")


def is_template(text: Any) -> bool:
    return isinstance(text, str) and ("{{" in text or "{%" in text)


@lru_cache(maxsize=4096)
def inspect(text: str) -> TemplateInfo:
    """Parse `text`; raise TemplateError with the template's own line on a syntax error."""
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template does not compile: {exc.message} (template line {exc.lineno})") from None
    except RecursionError:
        raise TemplateError("template is nested too deeply") from None
    _refuse_unsafe(tree)
    try:
        _compiled(text)  # unknown filters and tests are found when compiling, not parsing
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template does not compile: {exc.message}") from None
    local = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    builtins = set(_ENV.globals) | {"loop", "self", "varargs", "kwargs"}
    names = frozenset(n.name for n in tree.find_all(nodes.Name)
                      if n.ctx == "load" and n.name not in local and n.name not in builtins)
    keys: dict[str, set[str]] = {}
    fields: set[tuple[str, str]] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        key = node.attr if isinstance(node, nodes.Getattr) else _const(node.arg)
        if not isinstance(key, str):
            continue
        if isinstance(node.node, nodes.Name):
            keys.setdefault(node.node.name, set()).add(key)
        elif isinstance(node.node, (nodes.Getattr, nodes.Getitem)) and _is_steps(node.node.node):
            step = node.node.attr if isinstance(node.node, nodes.Getattr) else _const(node.node.arg)
            if isinstance(step, str):
                fields.add((step, key))
    return TemplateInfo(names=names, keys={k: frozenset(v) for k, v in keys.items()}, step_fields=frozenset(fields))


def _is_steps(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "steps"


def _refuse_unsafe(tree: nodes.Template) -> None:
    """What the sandbox would refuse only at run time, refused when the definition loads."""
    for node_type, what in _REFUSED_NODES.items():
        if next(tree.find_all(node_type), None) is not None:
            raise TemplateError(f"{what} is not allowed: a template sees only inputs, steps, item and iteration")
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Filter):
            if node.name == "attr":
                raise TemplateError("the `attr` filter is not allowed; write `value.name` or `value['name']`")
            continue
        key = node.attr if isinstance(node, nodes.Getattr) else _const(node.arg)
        if isinstance(key, str) and key.startswith("_"):
            raise TemplateError(f"`{key}`: names starting with `_` are not allowed in templates")


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
        template = _compiled(text)
        if "{%" in text:  # statements can loop: bounded in time as well as in size
            return within_time(lambda: join_bounded(template.generate(**context)))
        return join_bounded(template.generate(**context))


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
        raise TemplateError(f"template `{_short(text)}` was stopped: {exc}") from None
    except TemplateTimeout:
        raise TemplateError(f"template `{_short(text)}` was stopped after {TIME_LIMIT_S:g}s") from None
    except RecursionError:
        raise TemplateError(f"template `{_short(text)}` recurses too deeply") from None
    except (TypeError, ValueError, ArithmeticError, MemoryError) as exc:
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

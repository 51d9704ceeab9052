"""Call a Python function named `module:function` (a `call` step or a `python` agent).

The function receives the rendered prompt, the step's files and its `with` parameters as
keyword arguments, and may return an AgentResult, a str (parsed as agent text), a dict or
any JSON-able value (kept as `data`).
"""

from __future__ import annotations

import importlib
import inspect
import time
from typing import Any, Callable

from agentflow.errors import ConfigError, StepFailed
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, from_value


class PythonBackend:
    def call(self, request: AgentRequest) -> AgentResult:
        function = resolve(request.callable or "", request.step)
        kwargs = _arguments(function, request)
        started = time.monotonic()
        try:
            value = function(**kwargs)
        except (ConfigError, StepFailed):
            raise
        except Exception as exc:  # the user's function failed: a step failure, retryable
            raise StepFailed(f"step `{request.step}`: {request.callable} raised "
                             f"{type(exc).__name__}: {exc}") from exc
        result = from_value(value)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        return result.model_copy(update={"metrics": {"duration_ms": elapsed_ms, **result.metrics}})


def resolve(target: str, step: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"step `{step}`: cannot import `{module_name}` for `{target}` ({exc}); "
                          + (_moved(module_name, attribute) or "check the module path and that it is "
                             "importable from the current directory")) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"step `{step}`: `{module_name}` has no function `{attribute}`; "
                          + (_moved(module_name, attribute) or f"fix `{target}`"))
    return function


# Built-in callables were once spelled `tasks.builtin:NAME`; `tasks` is now the user's own
# (agentflow lives under `agentflow.`), so the old spelling finds the user's module, or none.
_OLD_PACKAGES = ("tasks.", "flows.")


def _moved(module_name: str, attribute: str) -> str:
    """The fix when an old spelling of a built-in callable was meant, else ""."""
    if not module_name.startswith(_OLD_PACKAGES):
        return ""
    new = f"agentflow.{module_name}"
    try:
        module = importlib.import_module(new)
    except ImportError:
        return ""
    if not callable(getattr(module, attribute, None)):
        return ""
    return f"agentflow's built-ins moved: write `{new}:{attribute}`"


def _arguments(function: Callable[..., Any], request: AgentRequest) -> dict[str, Any]:
    """Pass what the function accepts: prompt, files, item, iteration, then `with` params."""
    offered = {"prompt": request.prompt, "files": list(request.files), "item": request.item,
               "iteration": request.iteration, **request.params}
    signature = inspect.signature(function)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return offered
    accepted = {name for name, p in signature.parameters.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    unknown = set(request.params) - accepted
    if unknown:
        raise ConfigError(f"step `{request.step}`: {request.callable} does not accept "
                          f"{', '.join(sorted(unknown))}; rename the `with:` keys or add the parameters")
    return {k: v for k, v in offered.items() if k in accepted}

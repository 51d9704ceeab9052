"""Call a Python function named `module:function` (a `call` step or a `python` agent).

The function receives the rendered prompt, the step's files and its `with` parameters as
keyword arguments, and may return an AgentResult, a str (parsed as agent text), a dict or
any JSON-able value (kept as `data`).
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import json
import threading
import time
from typing import Any, Callable

from agentflow.errors import ConfigError, StepFailed, StepTimeout
from agentflow.tasks.kind import AgentKind
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, from_value


class PythonBackend:
    def call(self, request: AgentRequest) -> AgentResult:
        function = resolve(request.callable or "", request.step)
        kwargs = _arguments(function, request)
        started = time.monotonic()
        try:
            value = _bounded(function, kwargs, request)
        except (ConfigError, StepFailed):
            raise
        except Exception as exc:  # the user's function failed: a step failure, retryable
            raise StepFailed(f"step `{request.step}`: {request.callable} raised "
                             f"{type(exc).__name__}: {exc}") from exc
        result = _result(value, request)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        return result.model_copy(update={"metrics": {"duration_ms": elapsed_ms, **result.metrics}})


def _result(value: Any, request: AgentRequest) -> AgentResult:
    """What the function returned as the step's result; a value that cannot be one (not JSON,
    or a dict of AgentResult's fields with a wrong type) is a clear error, not retried."""
    try:
        if not isinstance(value, AgentResult):
            json.dumps(value)  # a result is stored as JSON: a set, a date, an object cannot be
        return from_value(value)
    except (TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        errors = getattr(exc, "errors", None)
        if callable(errors):  # pydantic: name the field
            first = errors()[0]
            reason = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        raise ConfigError(f"step `{request.step}`: {request.callable} returned {type(value).__name__}, which is not "
                          f"a step result ({reason}); return a string, a JSON value (a dict, a list, a number), a "
                          "dict of AgentResult's fields (summary, data, status...) or an AgentResult") from None


def _bounded(function: Callable[..., Any], kwargs: dict[str, Any], request: AgentRequest) -> Any:
    """The function's value, or StepTimeout once the step's timeout has passed.

    Python cannot stop a thread: a function still running at its timeout is left to finish
    in a daemon thread, its value dropped (what Prefect's own task timeout does in a worker
    thread, without its warning per step). A function that may hang belongs in a `run` step,
    whose process is killed."""
    if not request.timeout:
        return function(**kwargs)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function(**kwargs)
        except BaseException as exc:  # handed to the caller's thread as is
            outcome["error"] = exc

    context = contextvars.copy_context()  # the task run's context: its logger, its settings
    thread = threading.Thread(target=context.run, args=(target,), daemon=True,
                              name=f"agentflow-call-{request.step}")
    thread.start()
    thread.join(request.timeout)
    if thread.is_alive():
        raise StepTimeout(f"step `{request.step}`: {request.callable} timed out after {request.timeout:g}s "
                          "(it is left running in the background: Python cannot stop a thread; "
                          "use a `run` step for work that must be killed)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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


def _python_ready(agent: Any, given: Any = None) -> tuple[bool, str]:
    from agentflow.flows.language import callables

    target = agent.callable or ""
    if callables.accepted_parameters(target) is None:
        return False, f"`{target}` cannot be imported here"
    return True, f"{target} imports"


PYTHON = AgentKind(name="python", request_kind="python", backend=PythonBackend(), ready=_python_ready, works_in_tree=True,
                   request_fields=lambda agent, render: {"callable": agent.callable})

"""An `http` agent: the request as JSON to a URL, the response as the step's result.

The earlier engine's webhook step. The body is `{"workflow", "step", "prompt", "with",
"item", "files"}`; headers come from the agent's `headers` (values may name environment
variables as `${NAME}`, so a token never sits in a YAML file, a cache key or a log). A 2xx
answer is read as an AgentResult (JSON with AgentResult's fields, other JSON as `data`,
text as the earlier engine's free-text format). A 4xx is a failure a retry cannot fix (the
request is wrong: go to the fallback); a 5xx, a timeout or a refused connection is retried,
then falls back. No server listening at all makes the agent *unavailable*.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import httpx

from agentflow.errors import AgentNotSetUp, AgentUnavailable, ConfigError, StepFailed, StepTimeout
from agentflow.tasks.kind import AgentKind, reachable
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import MAX_OUTPUT, AgentResult, from_value, parse_text

HEADER_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DEFAULT_TIMEOUT_S = 60.0
_BODY_TAIL = 500


def headers_of(configured: dict[str, str], step: str, given: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's headers with each `${NAME}` replaced by that environment variable (or the
    key a credentials block `given` under that name)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if given and name in given:
            return given[name]
        if name not in os.environ:
            raise AgentNotSetUp(f"step `{step}`: the http agent's header needs the environment variable "
                                   f"{name}, which is not set; set it (e.g. export {name}=...)")
        if "\r" in os.environ[name] or "\n" in os.environ[name]:  # it would end the header, and add its own
            raise AgentNotSetUp(f"step `{step}`: the environment variable {name} holds a line break, which a "
                                f"header cannot; set it to the token alone")
        return os.environ[name]

    return {key: HEADER_VARIABLE.sub(value, text) for key, text in configured.items()}


class HttpBackend:
    def call(self, request: AgentRequest) -> AgentResult:
        config = request.agent_config
        url = config.get("url")
        if not url:
            raise ConfigError(f"step `{request.step}`: the http agent has no url")
        method = config.get("method", "POST")
        headers = {"Content-Type": "application/json", **headers_of(config.get("headers") or {}, request.step, request.secrets)}
        body = {"workflow": request.workflow, "step": request.step, "prompt": request.prompt,
                "with": request.params, "item": request.item, "files": request.files}
        timeout = request.timeout or _DEFAULT_TIMEOUT_S
        started = time.monotonic()
        try:
            response = httpx.request(method, url, json=body if method != "GET" else None, headers=headers,
                                     timeout=timeout, follow_redirects=False)
        except httpx.TimeoutException:
            raise StepTimeout(f"step `{request.step}`: {method} {url} did not answer within {timeout:g}s") from None
        except httpx.ConnectError as exc:
            raise AgentUnavailable(f"step `{request.step}`: cannot reach {url} ({exc})") from None
        except httpx.HTTPError as exc:
            raise StepFailed(f"step `{request.step}`: {method} {url} failed: {exc}") from None
        elapsed_ms = round((time.monotonic() - started) * 1000)
        text = response.text[:MAX_OUTPUT]
        if response.status_code >= 400:
            tail = text.strip()[-_BODY_TAIL:] or "(empty body)"
            message = f"step `{request.step}`: {method} {url} answered {response.status_code}: {tail}"
            # 4xx: the request itself is wrong, so retrying it changes nothing; 429 is the
            # exception (slow down and try again).
            retryable = response.status_code >= 500 or response.status_code == 429
            raise StepFailed(message, output=text, retryable=retryable)
        result = _result_of(response, text)
        metrics = {**result.metrics, "duration_ms": elapsed_ms, "http_status": response.status_code}
        return result.model_copy(update={"metrics": metrics})


def _result_of(response: httpx.Response, text: str) -> AgentResult:
    if "json" in response.headers.get("content-type", ""):
        try:
            value: Any = json.loads(text)
        except ValueError:
            return parse_text(text)
        result = from_value(value)
        return result if result.output else result.model_copy(update={"output": text})
    return parse_text(text)


def header_variables(config: Any) -> tuple[str, ...]:
    """The variables the agent's headers name (`${NAME}`): each holds a credential."""
    headers = config.get("headers") or {}
    return tuple(dict.fromkeys(name for value in headers.values() if isinstance(value, str)
                               for name in HEADER_VARIABLE.findall(value)))


KIND = AgentKind(name="http", request_kind="http", backend=HttpBackend(),
                 ready=lambda agent, given: reachable(agent.url or ""), credential_variables=header_variables)

"""An `llm` agent: one model call through pydantic-ai (the `agentflow[llm]` extra).

`model: provider:name`: `anthropic:` (Messages API), `openai:` (the Responses API),
`openai-chat:` (chat completions: any OpenAI-compatible server, with `base_url`) and
`ollama:` (a local Ollama, chat completions at 127.0.0.1:11434 unless `base_url` says).
API keys come from each provider's usual variable (ANTHROPIC_API_KEY, OPENAI_API_KEY);
without one the agent is unavailable. The vendor clients are made with `max_retries=0`:
their own retries would spend a minute on a 429 before the step's retries and the fallback
ladder could act (pydantic-ai#3267).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time
from typing import Any

from agentflow.errors import AgentNotSetUp, AgentUnavailable, ConfigError, StepFailed, StepTimeout
from agentflow.flows.language.spec import LLM_PROVIDERS
from agentflow.tasks.backends import run_coroutine
from agentflow.tasks.kind import AgentKind, Given, reachable
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, confidence_of, parse_text

PROVIDER_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "openai-chat": "OPENAI_API_KEY"}
_BASE_URLS = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL", "openai-chat": "OPENAI_BASE_URL"}
_OLLAMA = "http://127.0.0.1:11434/v1"
_DEFAULT_TIMEOUT_S = 10 * 60.0


def missing_key(model: str, given: Given = None) -> str | None:
    """The environment variable the model's provider needs and that is not set (nor `given`
    by a credentials block), if any."""
    provider = model.split(":", 1)[0]
    variable = PROVIDER_KEYS.get(provider)
    return variable if variable and not (given or {}).get(variable) and not os.environ.get(variable) else None


def not_set_up(config: Any, given: Given = None) -> str | None:
    """Why the model cannot be called here (pydantic-ai, the provider's key), or None."""
    if importlib.util.find_spec("pydantic_ai") is None:
        return "needs pydantic-ai, which is not installed: pip install 'agentflow[llm]'"
    model = config.get("model") or ""
    variable = missing_key(model, given)
    return f"({model}) needs an API key: set {variable}" if variable else None


def ready(agent: Any, given: Given = None) -> tuple[bool, str]:
    """Set up, and for a model on a server of the user's (a base_url, Ollama) that it answers."""
    why = not_set_up({"model": agent.model}, given)
    if why is not None:
        return False, why.removeprefix(f"({agent.model}) ")
    if agent.base_url or (agent.model or "").startswith("ollama:"):
        return reachable(agent.base_url or _OLLAMA)
    from_block = any((given or {}).values())
    return True, "API key from a credentials block" if from_block else "API key set"


def key_variables(config: Any) -> tuple[str, ...]:
    provider = str(config.get("model") or "").split(":", 1)[0]
    return (PROVIDER_KEYS[provider],) if provider in PROVIDER_KEYS else ()


class LlmBackend:
    def call(self, request: AgentRequest) -> AgentResult:
        why = not_set_up(request.agent_config, request.secrets)
        if why is not None:
            raise AgentNotSetUp(f"step `{request.step}`: agent `{request.agent}` {why}")
        return run_coroutine(lambda: _call(request))


KIND = AgentKind(name="llm", request_kind="llm", backend=LlmBackend(), ready=ready, not_set_up=not_set_up,
                 credential_variables=key_variables)


def _model(config: dict[str, Any], step: str, given: dict[str, str]) -> Any:
    provider, _, name = (config.get("model") or "").partition(":")

    def key(variable: str) -> str | None:
        return given.get(variable) or os.environ.get(variable)

    base_url = config.get("base_url") or os.environ.get(_BASE_URLS.get(provider, ""), "") or None
    if provider == "anthropic":
        from anthropic import AsyncAnthropic
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        client = AsyncAnthropic(api_key=key("ANTHROPIC_API_KEY"), base_url=base_url, max_retries=0)
        return AnthropicModel(name, provider=AnthropicProvider(anthropic_client=client))
    if provider in ("openai", "openai-chat", "ollama"):
        from openai import AsyncOpenAI
        from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
        from pydantic_ai.providers.openai import OpenAIProvider

        client = AsyncOpenAI(api_key=key("OPENAI_API_KEY") or "ollama", base_url=base_url or (_OLLAMA if provider == "ollama" else None),
                             max_retries=0)
        model_class = OpenAIResponsesModel if provider == "openai" else OpenAIChatModel
        return model_class(name, provider=OpenAIProvider(openai_client=client))
    raise ConfigError(f"step `{step}`: unknown model provider `{provider}`; use one of {', '.join(LLM_PROVIDERS)}")


async def _call(request: AgentRequest) -> AgentResult:
    from pydantic_ai import Agent
    from pydantic_ai.exceptions import (ModelAPIError, ModelAuthenticationError, ModelConnectionError,
                                        ModelHTTPError, UnexpectedModelBehavior)
    from pydantic_ai.output import StructuredDict

    config = request.agent_config
    schema = config.get("output_schema")
    output_type: Any = StructuredDict(schema, name="result") if schema else str
    settings: dict[str, Any] = {k: config[k] for k in ("temperature", "max_tokens") if config.get(k) is not None}
    agent = Agent(_model(config, request.step, request.secrets), output_type=output_type, system_prompt=config.get("system") or (),
                  model_settings=settings or None, retries=1)
    timeout = request.timeout or _DEFAULT_TIMEOUT_S
    what = f"step `{request.step}`: agent `{request.agent}` ({config.get('model')})"
    started = time.monotonic()
    try:
        run = await asyncio.wait_for(agent.run(request.agent_prompt()), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise StepTimeout(f"{what} did not answer within {timeout:g}s") from None
    except ModelAuthenticationError as exc:
        raise AgentUnavailable(f"{what}: the API key was refused ({exc})") from None
    except ModelConnectionError as exc:
        raise AgentUnavailable(f"{what}: cannot reach the model's API ({exc})") from None
    except ModelHTTPError as exc:
        retryable = exc.status_code >= 500 or exc.status_code in (408, 429)
        raise StepFailed(f"{what}: HTTP {exc.status_code}: {str(exc)[:300]}", retryable=retryable) from None
    except ModelAPIError as exc:  # rate limited, overloaded, server errors: worth a retry
        status = getattr(exc, "status_code", None)
        raise StepFailed(f"{what}: {type(exc).__name__}{f' {status}' if status else ''}: {str(exc)[:300]}") from None
    except UnexpectedModelBehavior as exc:
        raise StepFailed(f"{what}: the model did not answer as asked: {str(exc)[:300]}") from None
    usage = run.usage
    metrics: dict[str, Any] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                               "tokens": usage.input_tokens + usage.output_tokens, "requests": usage.requests,
                               "duration_ms": round((time.monotonic() - started) * 1000)}
    cost = getattr(usage, "cost", None)
    if cost is not None:
        metrics["cost_usd"] = float(cost)
    if schema:
        data = run.output
        summary = data.get("summary") if isinstance(data, dict) and isinstance(data.get("summary"), str) else ""
        return AgentResult(summary=summary or "structured answer", output=json.dumps(data), data=data, metrics=metrics,
                           confidence=confidence_of("", data, metrics))
    result = parse_text(str(run.output))
    return result.model_copy(update={"metrics": {**result.metrics, **metrics}})

"""A `claude-code` agent: Claude Code, headless, in the step's repository, through its SDK.

The official SDK (`claude-agent-sdk`, the `agentflow[claude]` extra) bundles a pinned
Claude Code CLI and streams typed messages. What ../shared/CLAUDE_CODE_NOTES.md measured
shapes this module:
- The CLI's own retries are lowered (CLAUDE_CODE_MAX_RETRIES=1: one 500 otherwise takes
  ~95 s to surface) so that the step's Prefect retries and the fallback ladder act, and
  every call is bounded by the step's timeout (headless runs can hang before answering).
- The whole stream is consumed: an API error arrives as a ResultMessage with is_error (even
  with subtype success) and then ResultError is raised; a background subagent gives a
  second ResultMessage. The last one is the answer.
- Soft failures are failures: a denied tool still ends `success` with permission_denials;
  is_error, an `error_*` subtype, a terminal_reason other than `completed`, and a missing
  structured_output when a schema was asked all fail the call, each saying whether a retry
  can help (429/5xx/529 yes; a denial or a turn limit no: the ladder goes to the fallback).
- A subagent runs as the session's main agent (the CLI's `--agent`), so its prompt is the
  system prompt and its tools the tools; otherwise Claude Code's own system prompt is used,
  with the agent's `system` appended.
- The user's own settings (~/.claude) are not read unless the agent asks (setting_sources),
  so that one person's configuration does not change a run's answer.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from agentflow.errors import AgentNotSetUp, AgentUnavailable, StepFailed, StepTimeout
from agentflow.events import StepEvent, emit
from agentflow.tasks.backends.process import children_running, track
from agentflow.tasks.backends import run_coroutine
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, confidence_of, parse_text, scrub

# Environment the CLI gets unless the user's environment already says otherwise.
_CLI_DEFAULTS = {"CLAUDE_CODE_MAX_RETRIES": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
_KEY_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
                  "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")
_DEFAULT_TIMEOUT_S = 30 * 60.0
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
_LOG_CHARS = 500


def credentials(given: dict[str, str] | None = None) -> str | None:
    """Where Claude Code would find credentials here (or `given` by a credentials block), or None."""
    for name in _KEY_VARIABLES:
        if (given or {}).get(name):
            return f"{name} from a credentials block"
        if os.environ.get(name):
            return f"${name}"
    config = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    if (config / ".credentials.json").is_file():
        return f"a Claude Code login ({config / '.credentials.json'})"
    return None


def verdict(message: Any, schema_asked: bool) -> tuple[str, bool] | None:
    """Why a final ResultMessage is a failure, and whether a retry can help; None if it is
    a success."""
    status = getattr(message, "api_error_status", None)
    if message.is_error:
        text = (message.result or "").strip().splitlines()[0] if (message.result or "").strip() else ""
        reason = f"API error {status}: {text}" if status else f"error result: {text or message.subtype}"
        return reason, status in _RETRYABLE_STATUS
    if message.subtype and message.subtype.startswith("error"):
        details = "; ".join(str(e) for e in (message.errors or []))[:300]
        return f"ended with {message.subtype}{': ' + details if details else ''}", False
    if message.permission_denials:
        tools = ", ".join(sorted({d.get("tool_name", "?") for d in message.permission_denials}))
        return (f"a tool was denied ({tools}): the agent could not do what it set out to "
                "(allow the tool or give the step a fallback)", False)
    reason = getattr(message, "terminal_reason", None)
    if reason not in (None, "completed"):
        return f"stopped: {reason}", reason in ("api_error",)
    if schema_asked and message.structured_output is None:
        return "no structured output although output_schema asked for one", True
    return None


class ClaudeCodeBackend:
    def call(self, request: AgentRequest) -> AgentResult:
        try:
            import claude_agent_sdk  # noqa: F401
        except ImportError:
            raise AgentNotSetUp(f"step `{request.step}`: agent `{request.agent}` needs Claude Code's SDK, "
                                   "which is not installed: pip install 'agentflow[claude]'") from None
        found = credentials(request.secrets)
        if found is None:
            raise AgentNotSetUp(f"step `{request.step}`: agent `{request.agent}` has no Claude credentials here: "
                                   "set ANTHROPIC_API_KEY or log in with `claude login`")
        return run_coroutine(lambda: _call(request))


def _options(request: AgentRequest, stderr: list[str]) -> Any:
    from claude_agent_sdk import AgentDefinition, ClaudeAgentOptions

    config = request.agent_config
    env = {name: value for name, value in _CLI_DEFAULTS.items() if name not in os.environ}
    env.update(request.secrets)  # like a command: secrets in the environment, not the prompt's argv
    options: dict[str, Any] = dict(
        cwd=os.getcwd(),
        permission_mode=config.get("permission_mode", "dontAsk"),
        allowed_tools=list(config.get("allowed_tools") or []),
        disallowed_tools=list(config.get("disallowed_tools") or []),
        setting_sources=list(config.get("setting_sources") or []),
        env=env,
        stderr=lambda line: stderr.append(line) if len(stderr) < 200 else None,
    )
    for name in ("model", "max_turns", "max_budget_usd"):
        if config.get(name) is not None:
            options[name] = config[name]
    if config.get("output_schema"):
        options["output_format"] = {"type": "json_schema", "schema": config["output_schema"]}
    subagent = config.get("subagent_definition")
    if subagent:
        options["agents"] = {subagent["name"]: AgentDefinition(
            description=subagent.get("description") or subagent["name"], prompt=subagent.get("prompt") or "",
            tools=subagent.get("tools") or None, model=subagent.get("model") or None)}
        options["extra_args"] = {"agent": subagent["name"]}  # the session runs as the subagent
        if config.get("system"):
            options["system_prompt"] = {"type": "preset", "preset": "claude_code", "append": config["system"]}
    else:
        options["system_prompt"] = ({"type": "preset", "preset": "claude_code", "append": config["system"]}
                                    if config.get("system") else {"type": "preset", "preset": "claude_code"})
    return ClaudeAgentOptions(**options)


async def _call(request: AgentRequest) -> AgentResult:
    from claude_agent_sdk import CLIConnectionError, ClaudeSDKError, ResultError

    stderr: list[str] = []
    options = _options(request, stderr)
    timeout = request.timeout or _DEFAULT_TIMEOUT_S
    started = time.monotonic()
    final: list[Any] = []
    activity: dict[str, int] = {"tool_calls": 0}
    try:
        await asyncio.wait_for(_consume(request, options, final, activity), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise StepTimeout(f"step `{request.step}`: agent `{request.agent}` (claude-code) did not finish within "
                          f"{timeout:g}s; it was stopped") from None
    except ResultError:
        if not final:
            raise StepFailed(f"step `{request.step}`: agent `{request.agent}` (claude-code) failed with no result") from None
        # the ResultMessage before it says what went wrong: judged below
    except CLIConnectionError as exc:  # includes CLINotFoundError
        raise AgentUnavailable(f"step `{request.step}`: agent `{request.agent}`: Claude Code could not be "
                               f"started: {exc}") from None
    except ClaudeSDKError as exc:
        tail = scrub("".join(stderr)[-500:], request.redact)
        raise StepFailed(f"step `{request.step}`: agent `{request.agent}` (claude-code) failed: {exc} {tail}".strip()) from None
    if not final:
        raise StepFailed(f"step `{request.step}`: agent `{request.agent}` (claude-code) ended without a result")
    message = final[-1]
    metrics = _metrics(message, activity, time.monotonic() - started)
    problem = verdict(message, bool(request.agent_config.get("output_schema")))
    if problem is not None:
        reason, retryable = problem
        raise StepFailed(f"step `{request.step}`: agent `{request.agent}` (claude-code): {reason}",
                         output=message.result or "", retryable=retryable)
    result = parse_text(message.result or "")
    data = message.structured_output if message.structured_output is not None else result.data
    confidence = confidence_of("", data, {}) if message.structured_output is not None else None
    return result.model_copy(update={"data": data, "metrics": {**result.metrics, **metrics},
                                     "confidence": result.confidence if confidence is None else confidence})


async def _consume(request: AgentRequest, options: Any, final: list[Any], activity: dict[str, int]) -> None:
    """Read every message to the end; tell the run's log (and the CLI) what the agent does."""
    from claude_agent_sdk import query

    logger = _run_logger()
    before = children_running("claude")
    tracked: list = []
    try:
        async for message in query(prompt=request.agent_prompt(), options=options):
            if not tracked:
                # The CLI runs now (it answered): noted for the run's watchdog, which stops it
                # if the run is killed while a request is in flight (it would not see its
                # input close until the model answered).
                tracked.extend(track(pid) for pid in children_running("claude") - before)
                tracked.append(lambda: None)
            _read(request, logger, message, final, activity)
    finally:
        for ended in tracked:
            ended()


def _read(request: AgentRequest, logger: Any, message: Any, final: list[Any], activity: dict[str, int]) -> None:
    from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock, ToolUseBlock

    if isinstance(message, ResultMessage):
        final.append(message)
    elif isinstance(message, AssistantMessage):
        for block in message.content:
            if isinstance(block, TextBlock) and block.text.strip():
                _tell(request, logger, block.text.strip())
            elif isinstance(block, ToolUseBlock):
                activity["tool_calls"] += 1
                _tell(request, logger, f"uses {block.name} {_brief(block.input)}")


def _tell(request: AgentRequest, logger: Any, text: str) -> None:
    line = scrub(text, request.redact)[:_LOG_CHARS]
    if logger is not None:
        logger.info("%s: %s", request.agent, line)
    emit(StepEvent(kind="activity", step=request.step, label=request.label, agent=request.agent, summary=line))


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("command", "file_path", "path", "pattern", "url", "description"):
            if key in value:
                return str(value[key])[:200]
    return str(value)[:200]


def _run_logger() -> Any:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a task run (a direct call): no run log
        return None


def _metrics(message: Any, activity: dict[str, int], elapsed_s: float) -> dict[str, Any]:
    usage = message.usage or {}
    metrics: dict[str, Any] = {
        "cost_usd": message.total_cost_usd or 0.0,
        "input_tokens": int(usage.get("input_tokens") or 0) + int(usage.get("cache_read_input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "num_turns": message.num_turns,
        "tool_calls": activity["tool_calls"],
        "duration_ms": message.duration_ms or round(elapsed_s * 1000),
        "session_id": message.session_id,
    }
    metrics["tokens"] = metrics["input_tokens"] + metrics["output_tokens"]
    return metrics

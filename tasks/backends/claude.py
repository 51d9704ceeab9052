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
- A tool the agent asked for but does not have (not among a subagent's `tools:`, or in
  `disallowed_tools`) ends `success` too, with no permission_denials: only its tool result
  says so (`No such tool available`). The stream's tool results are watched, and such a
  call fails (not retried) naming the tools. The tools a call could not use are carried out
  (`metrics["tools_denied"]`, or the StepFailed's `tools_denied`) for the audit log.
- Each tool use is a line of agentflow's log (`agentflow logs RUN`): the tool, its target,
  and how its result came back (ok, error, denied, unavailable).
- A step's `writes:` is enforced when the agent uses a file tool, not only on the patch
  afterwards (tasks/workspace.py): a PreToolUse hook denies a Write, Edit, MultiEdit or
  NotebookEdit aimed outside the globs or outside the worktree, so the file is never touched
  (a path outside the worktree is in no patch: only this catches it). A hook, not the
  `can_use_tool` callback: the CLI never consults that callback for a tool that
  `allowed_tools` names (the SDK warns so), and a hook that answers nothing leaves the
  permission mode's decision as it was. The CLI reports the denial in permission_denials,
  so the call fails like any denied tool, naming the path. Bash is not bounded here: what it
  wrote is caught on the patch.
- A subagent runs as the session's main agent (the CLI's `--agent`), so its prompt is the
  system prompt and its tools the tools; otherwise Claude Code's own system prompt is used,
  with the agent's `system` appended.
- The user's own settings (~/.claude) are not read unless the agent asks (setting_sources),
  so that one person's configuration does not change a run's answer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from agentflow import log, prefect_compat
from agentflow.errors import AgentNotSetUp, AgentUnavailable, StepFailed, StepTimeout
from agentflow.events import StepEvent, emit
from agentflow.tasks.backends.process import children_running, track
from agentflow.tasks.backends import run_coroutine
from agentflow.tasks.backends.claude_tools import (DENIED, UNAVAILABLE, Activity, bounded, bounds, globs_text,
                                                   missing_tools, outside_writes)
from agentflow.tasks.kind import AgentKind, Given
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult, confidence_of, parse_text, scrub

# Environment the CLI gets unless the user's environment already says otherwise.
_CLI_DEFAULTS = {"CLAUDE_CODE_MAX_RETRIES": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
CLAUDE_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
_KEY_VARIABLES = (*CLAUDE_KEYS, "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")
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


def not_set_up(config: Any = None, given: Given = None) -> str | None:
    """Why Claude Code cannot be called here (its SDK, credentials), or None."""
    if importlib.util.find_spec("claude_agent_sdk") is None:
        return "needs Claude Code's SDK, which is not installed: pip install 'agentflow[claude]'"
    if credentials(dict(given or {})) is None:
        return "has no Claude credentials here: set ANTHROPIC_API_KEY or log in with `claude login`"
    return None


def ready(agent: Any, given: Given = None) -> tuple[bool, str]:
    """Which Claude Code CLI a call would start, and where its credentials come from."""
    bundled = prefect_compat.claude_bundled_dir()
    if bundled is None:
        return False, "the SDK is not installed: pip install 'agentflow[claude]'"
    version_file = bundled / "claude.version"
    words = version_file.read_text().split() if version_file.is_file() else []
    cli = f"Claude Code {words[0]} (bundled)" if words else (
        f"Claude Code at {shutil.which('claude')}" if shutil.which("claude") else None)
    if cli is None:
        return False, "no Claude Code CLI: reinstall 'agentflow[claude]'"
    found = credentials(dict(given or {}))
    if found is None:
        return False, f"{cli}; no credentials: set ANTHROPIC_API_KEY or run `claude login`"
    return True, f"{cli}; credentials from {found}"


class ClaudeCodeBackend:
    def call(self, request: AgentRequest) -> AgentResult:
        why = not_set_up(request.agent_config, request.secrets)
        if why is not None:
            raise AgentNotSetUp(f"step `{request.step}`: agent `{request.agent}` {why}")
        return run_coroutine(lambda: _call(request))


KIND = AgentKind(name="claude-code", request_kind="claude-code", backend=ClaudeCodeBackend(), ready=ready, works_in_tree=True,
                 not_set_up=not_set_up, credential_variables=lambda config: CLAUDE_KEYS)


def _options(request: AgentRequest, stderr: list[str], activity: Activity) -> Any:
    from claude_agent_sdk import AgentDefinition, ClaudeAgentOptions

    config = request.agent_config
    env = {name: value for name, value in _CLI_DEFAULTS.items() if name not in os.environ}
    env.update(request.secrets)  # like a command: secrets in the environment, not the prompt's argv
    options: dict[str, Any] = dict(
        cwd=request.workdir(),
        permission_mode=config.get("permission_mode", "dontAsk"),
        allowed_tools=list(config.get("allowed_tools") or []),
        disallowed_tools=list(config.get("disallowed_tools") or []),
        setting_sources=list(config.get("setting_sources") or []),
        env=env,
        stderr=lambda line: stderr.append(line) if len(stderr) < 200 else None,
    )
    if request.writes is not None or request.workspace is not None:
        options["hooks"] = bounded(request, activity)
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
    timeout = request.timeout or _DEFAULT_TIMEOUT_S
    started = time.monotonic()
    activity = Activity()
    try:
        return _answer(request, await _finished(request, activity, timeout), activity, time.monotonic() - started)
    except StepFailed as exc:
        if activity.refused():
            exc.tools_denied = activity.refused()  # read by the audit (tasks/audit.py)
        raise


async def _finished(request: AgentRequest, activity: Activity, timeout: float) -> Any:
    """The call's last ResultMessage, once the stream has ended; StepFailed if there is none."""
    from claude_agent_sdk import CLIConnectionError, ClaudeSDKError, ResultError

    stderr: list[str] = []
    final: list[Any] = []
    try:
        await asyncio.wait_for(_consume(request, _options(request, stderr, activity), final, activity), timeout)
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
    return final[-1]


def _answer(request: AgentRequest, message: Any, activity: Activity, elapsed_s: float) -> AgentResult:
    """The call's result from its last ResultMessage, or StepFailed saying why it is none."""
    activity.denied |= {d.get("tool_name", "?") for d in message.permission_denials or []}
    metrics = _metrics(message, activity, elapsed_s)
    problem = (outside_writes(message, activity, bounds(request))
               or verdict(message, bool(request.agent_config.get("output_schema")))
               or missing_tools(activity.unavailable, request.agent_config))
    if problem is not None:
        reason, retryable = problem
        raise StepFailed(f"step `{request.step}`: agent `{request.agent}` (claude-code): {reason}",
                         output=message.result or "", retryable=retryable)
    result = parse_text(message.result or "")
    data = message.structured_output if message.structured_output is not None else result.data
    confidence = confidence_of("", data, {}) if message.structured_output is not None else None
    return result.model_copy(update={"data": data, "metrics": {**result.metrics, **metrics},
                                     "confidence": result.confidence if confidence is None else confidence})


async def _consume(request: AgentRequest, options: Any, final: list[Any], activity: Activity) -> None:
    """Read every message to the end; tell the run's logs (and the CLI) what the agent does."""
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
        for tool, target in activity.pending.values():  # stopped (a timeout) before these came back
            _log_use(request, tool, target, "no result")
        activity.pending.clear()


def _read(request: AgentRequest, logger: Any, message: Any, final: list[Any], activity: Activity) -> None:
    from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock, ToolResultBlock, ToolUseBlock, UserMessage

    if isinstance(message, ResultMessage):
        final.append(message)
    elif isinstance(message, AssistantMessage):
        for block in message.content:
            if isinstance(block, TextBlock) and block.text.strip():
                _tell(request, logger, block.text.strip())
            elif isinstance(block, ToolUseBlock):
                activity.tool_calls += 1
                activity.pending[block.id] = (block.name, _brief(block.input))
                _tell(request, logger, f"uses {block.name} {_brief(block.input)}")
    elif isinstance(message, UserMessage) and isinstance(message.content, list):
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                _returned(request, logger, block, activity)


def _returned(request: AgentRequest, logger: Any, block: Any, activity: Activity) -> None:
    """A tool's result came back: note whether the tool could be used at all."""
    tool, target = activity.pending.pop(block.tool_use_id, ("?", ""))
    text = _text(block.content) if block.is_error else ""
    unavailable, denied = UNAVAILABLE.search(text), DENIED.search(text)
    why = ""
    if block.tool_use_id in activity.outside:  # refused by the `writes:` hook (bounded)
        tool, target = activity.outside[block.tool_use_id]
        why = f"outside writes: {globs_text(bounds(request))}"
        outcome = "denied"
    elif unavailable:
        tool = tool if tool != "?" else unavailable.group(1)
        activity.unavailable.setdefault(tool, unavailable.group(2).strip())
        outcome = "unavailable"
    elif denied:
        tool = tool if tool != "?" else denied.group(1)
        activity.denied.add(tool)
        outcome = "denied"
    else:
        outcome = "error" if block.is_error else "ok"
    _log_use(request, tool, target, outcome, why)
    if outcome in ("unavailable", "denied"):
        _tell(request, logger, f"could not use {tool} {target} ({why})" if why else f"could not use {tool} ({outcome})")


def _text(content: Any) -> str:
    """A tool result's text: a string, or a list of content blocks."""
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _log_use(request: AgentRequest, tool: str, target: str, outcome: str, why: str = "") -> None:
    """One line of agentflow's log per tool use, bound to the run (agentflow/log.py). Not sent
    to the run's UI log again: `_tell` put the use there, in the task run's log."""
    refused = outcome in ("unavailable", "denied")
    target = scrub(target, request.redact)
    use = f"{tool} {target}" if target else tool
    said = f"{outcome} ({why})" if why else outcome
    log.logger(component="claude-code", step=request.label, agent=request.agent).log(
        logging.WARNING if refused else logging.INFO, f"agent {request.agent}: {use}: {said}",
        tool=tool, target=target or None, outcome=outcome, refused=refused, ui=False)


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


def _metrics(message: Any, activity: Activity, elapsed_s: float) -> dict[str, Any]:
    usage = message.usage or {}
    metrics: dict[str, Any] = {
        "cost_usd": message.total_cost_usd or 0.0,
        "input_tokens": int(usage.get("input_tokens") or 0) + int(usage.get("cache_read_input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "num_turns": message.num_turns,
        "tool_calls": activity.tool_calls,
        "duration_ms": message.duration_ms or round(elapsed_s * 1000),
        "session_id": message.session_id,
    }
    metrics["tokens"] = metrics["input_tokens"] + metrics["output_tokens"]
    if activity.refused():
        metrics["tools_denied"] = activity.refused()  # the audit's (tasks/audit.py)
    return metrics

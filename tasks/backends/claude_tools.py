"""What a claude-code agent does with its tools (tasks/backends/claude.py calls the CLI):
watched as the stream tells it (`Activity`), judged when the call ends (a tool it could not
use, a write outside its bounds), and its file tools kept within the step's `writes:` (or the
run's worktree) by a PreToolUse hook before anything is written.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.tasks.request import AgentRequest

# How the CLI's tool results say a tool could not be used (CLAUDE_CODE_NOTES.md, CLI 2.1.332):
# a tool the session does not have, and a use its permission mode refused.
UNAVAILABLE = re.compile(r"No such tool available: ([\w.-]+)\.?\s*(.*?)\s*(?:</tool_use_error>|$)", re.S)
DENIED = re.compile(r"Permission to use ([\w.-]+) has been denied")
# The tools that write a file the input names, and the input's key for it: what `writes:` bounds.
FILE_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path"}


@dataclass
class Activity:
    """What the agent did with its tools in one call, as the stream told it."""

    tool_calls: int = 0
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)  # tool_use id -> (tool, target)
    unavailable: dict[str, str] = field(default_factory=dict)  # tool -> what the CLI said of it
    denied: set[str] = field(default_factory=set)
    outside: dict[str, tuple[str, str]] = field(default_factory=dict)  # tool_use id -> (tool, path) `writes:` refused

    def refused(self) -> list[str]:
        """The tools this call could not use: denied, or not among its tools."""
        return sorted(self.denied | set(self.unavailable))


def missing_tools(unavailable: dict[str, str], config: dict[str, Any]) -> tuple[str, bool] | None:
    """Why a call whose agent asked for tools it does not have is a failure (never worth a
    retry: it would ask again); None if it asked for none."""
    if not unavailable:
        return None
    names = sorted(unavailable)
    asked = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    own = (config.get("subagent_definition") or {}).get("tools")
    disallowed = [name for name in names if name in (config.get("disallowed_tools") or [])]
    if own:
        why = f"its tools: {', '.join(own)}"
    elif disallowed:
        why = f"the agent's disallowed_tools: {', '.join(config['disallowed_tools'])}"
    else:
        why = unavailable[names[0]] or "Claude Code did not offer it"
    return (f"the agent asked for {asked}, which it does not have ({why}): it could not do what it set out "
            "to (give the agent the tool, or the step a fallback)", False)


def outside_writes(message: Any, activity: Activity, writes: list[str] | None) -> tuple[str, bool] | None:
    """Why a call that tried to write outside its `writes:` is a failure (never worth a retry:
    it would try again); None if it did not, or if an API error says more (and may be retried)."""
    if not activity.outside or message.is_error:
        return None
    tried = ", ".join(f"{tool} {path}" for tool, path in activity.outside.values())
    others = sorted({d.get("tool_name", "?") for d in message.permission_denials or []
                     if d.get("tool_use_id") not in activity.outside})
    also = f"; {', '.join(others)} denied too" if others else ""
    return (f"it tried to write outside its `writes:` ({globs_text(writes)}): {tried}, refused before anything was "
            f"written{also} (tell the agent where it may write, widen `writes:`, or give the step a fallback)", False)


def bounded(request: AgentRequest, activity: Activity) -> dict[str, list[Any]]:
    """The PreToolUse hook that keeps the agent's file tools within the step's `writes:`."""
    from claude_agent_sdk import HookMatcher

    async def check(data: Any, tool_use_id: str | None, context: Any) -> dict[str, Any]:
        tool = data.get("tool_name", "?")
        if tool not in FILE_TOOLS:  # the matcher is a pattern: another tool's name may contain one of these
            return {}
        try:
            path, allowed = placed(request, str((data.get("tool_input") or {}).get(FILE_TOOLS[tool], "")))
        except Exception as exc:  # noqa: BLE001 - a path it cannot judge is refused, never let through
            path, allowed = f"(a path agentflow could not check: {exc})", False
        if allowed:
            return {}  # no opinion: the permission mode and allowed_tools decide, as without `writes:`
        activity.outside[tool_use_id or f"?{len(activity.outside)}"] = (tool, path)
        activity.denied.add(tool)
        return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                       "permissionDecisionReason": refusal(request, path)}}

    # on_failure "block": should the hook itself fail, the CLI refuses the use rather than allow it.
    return {"PreToolUse": [HookMatcher(matcher="|".join(FILE_TOOLS), hooks=[check], on_failure="block")]}


def placed(request: AgentRequest, given: str) -> tuple[str, bool]:
    """Where a file tool would write (relative to the worktree's top, or absolute when outside
    it), and whether the step's `writes:` lets it. Symbolic links are followed, as the write
    would; a relative path is the agent's working directory's, as the CLI takes it."""
    if not given:
        return "(no path)", False
    top = Path(request.workspace.dir if request.workspace is not None else request.workdir()).resolve()
    target = (Path(request.workdir()) / given).resolve()
    try:
        relative = target.relative_to(top).as_posix()
    except ValueError:
        return str(target), False  # out of the worktree: in no patch, so only refusing it here keeps it out
    return relative, any(fnmatch.fnmatchcase(relative, glob) for glob in bounds(request))


def refusal(request: AgentRequest, path: str) -> str:
    """What the model reads when a write is refused: where it may write instead."""
    top = request.workspace.dir if request.workspace is not None else request.workdir()
    if not bounds(request):
        return f"agentflow refused this: step `{request.step}` may not change any file ({path} included)."
    return (f"agentflow refused this: step `{request.step}` may only change files matching {globs_text(bounds(request))} "
            f"(paths from the repository top, {top}); {path} is not one of them. Write only there; "
            "if the task needs another file, say so in your answer.")


def bounds(request: AgentRequest) -> list[str]:
    """Where the agent may write: its step's `writes:`, else anywhere in its workspace (a file
    written outside it, by an absolute path, would be in no patch: in the user's tree, or in
    another run's)."""
    return list(request.writes) if request.writes is not None else ["*"]


def globs_text(writes: list[str] | None) -> str:
    return ", ".join(writes or []) or "no file"

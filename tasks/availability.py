"""Whether an agent can be called from this machine now, and why not: what `agentflow agents`
shows. The same checks the backends make before a call (SDK installed, credentials, the
program on PATH), plus a short TCP connect for agents that call a server."""

from __future__ import annotations

import shutil
import socket
from urllib.parse import urlsplit

from agentflow import prefect_compat
from agentflow.flows.language.spec import AgentSpec

_CONNECT_TIMEOUT_S = 1.0


def check(agent: AgentSpec, given: dict[str, str] | None = None) -> tuple[bool, str]:
    """(available, the reason in a few words). `given`: keys a credentials block gives it."""
    if agent.kind == "claude-code":
        return _claude_code(given)
    if agent.kind == "llm":
        return _llm(agent, given)
    if agent.kind == "http":
        return _reachable(agent.url or "")
    if agent.kind == "shell":
        program = (agent.command or [""])[0]
        if "{{" in program:
            return True, "its program is chosen at run time"
        found = shutil.which(program)
        return (True, f"{program} at {found}") if found else (False, f"`{program}` is not on PATH")
    return _python(agent.callable or "")


def _claude_code(given: dict[str, str] | None) -> tuple[bool, str]:
    from agentflow.tasks.backends.claude import credentials

    bundled = prefect_compat.claude_bundled_dir()
    if bundled is None:
        return False, "the SDK is not installed: pip install 'agentflow[claude]'"
    version_file = bundled / "claude.version"
    version = version_file.read_text().split()[0] if version_file.is_file() and version_file.read_text().split() else None
    cli = f"Claude Code {version} (bundled)" if version else (
        f"Claude Code at {shutil.which('claude')}" if shutil.which("claude") else None)
    if cli is None:
        return False, "no Claude Code CLI: reinstall 'agentflow[claude]'"
    found = credentials(given)
    if found is None:
        return False, f"{cli}; no credentials: set ANTHROPIC_API_KEY or run `claude login`"
    return True, f"{cli}; credentials from {found}"


def _llm(agent: AgentSpec, given: dict[str, str] | None) -> tuple[bool, str]:
    from agentflow.tasks.backends.llm import missing_key

    try:
        import pydantic_ai  # noqa: F401
    except ImportError:
        return False, "pydantic-ai is not installed: pip install 'agentflow[llm]'"
    variable = missing_key(agent.model or "", given)
    if variable:
        return False, f"no API key: set {variable}"
    provider = (agent.model or "").partition(":")[0]
    if agent.base_url or provider == "ollama":
        return _reachable(agent.base_url or "http://127.0.0.1:11434/v1")
    from_block = any((given or {}).values())
    return True, "API key from a credentials block" if from_block else "API key set"


def _reachable(url: str) -> tuple[bool, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            return True, f"{host}:{port} answers"
    except OSError as exc:
        return False, f"{host}:{port} cannot be reached ({exc.strerror or type(exc).__name__})"


def _python(target: str) -> tuple[bool, str]:
    from agentflow.flows.language import callables

    if callables.accepted_parameters(target) is None:
        return False, f"`{target}` cannot be imported here"
    return True, f"{target} imports"

"""The one way agentflow runs git: an argv list, in a given repository, bounded in time."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agentflow.errors import ConfigError, StepFailed

TIMEOUT_S = 120


def git(repo: str | Path, *args: str, env: dict[str, str] | None = None,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`git -C repo ARGS...`, output captured as bytes. ConfigError if git is not installed,
    StepFailed if it does not answer in time; a non-zero exit is the caller's to judge.
    `env`: variables added to this process's environment (GIT_INDEX_FILE, an author)."""
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=TIMEOUT_S,
                              env={**os.environ, **env} if env else None, input=input)
    except FileNotFoundError:
        raise ConfigError("git is not installed; install git (agentflow reads the repository with it)") from None
    except subprocess.TimeoutExpired:
        raise StepFailed(f"git {' '.join(args)} did not answer within {TIMEOUT_S} s in {repo}") from None

"""The credentials an agent reads from the environment, named so that a run can mask them.

A value an agent takes from the environment is a secret by nature: that is why it is in the
environment and not in a YAML file. An http agent's `${NAME}` header values, a model
provider's API key, Claude Code's key or token: a service that echoes one back (in an error,
an answer, a log line) would otherwise have it written wherever agentflow writes. The engine
gives these values to the call as it gives secret inputs (`AgentRequest.secrets`), so the
result, the error, the audit line and the run's log lines have them replaced by [secret].
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from agentflow.tasks.kinds import KINDS

# No credential anyone issues is this short; masking a value like "1" or "yes" would rewrite
# every text a run writes.
MIN_CHARS = 8


def variables(kind: str, config: Mapping[str, Any]) -> tuple[str, ...]:
    """The environment variables an agent of `kind` configured as `config` reads a credential
    from (each kind says: tasks/kinds.py)."""
    return KINDS[kind].credential_variables(config) if kind in KINDS else ()


def from_environment(kind: str, config: Mapping[str, Any]) -> dict[str, str]:
    """The credentials the agent would read from this process's environment, by variable."""
    found = {name: os.environ.get(name, "") for name in variables(kind, config)}
    return {name: value for name, value in found.items() if len(value) >= MIN_CHARS}

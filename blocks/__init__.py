"""Prefect Block types for agents and their credentials, editable in the Prefect UI.

    prefect block register -m agentflow.blocks

A step names a saved agent as `agent: block:NAME`: the run loads the `AgentConfig` block
NAME (its fields are an agent's, as in an agents file) and, if it has `credentials`, gives
the agent the key in the environment variable they name. The key is a SecretStr: Prefect
shows it masked, and agentflow passes it only to the agent's process or client, never to a
cache key, a log line or a stored result (it is redacted from results like a secret input).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from agentflow.flows.language.spec import AGENT_KINDS, AgentSpec


class AgentCredentials(Block):
    """An API key for an agent, and the environment variable the agent reads it from."""

    _block_type_name = "agentflow Agent Credentials"
    _block_type_slug = "agentflow-agent-credentials"
    _description = "An API key an agentflow agent receives in an environment variable; never logged or cached."

    api_key: SecretStr = Field(description="The key (shown masked).")
    variable: str = Field(default="ANTHROPIC_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$",
                          description="The environment variable the agent reads it from, e.g. OPENAI_API_KEY.")


class AgentConfig(Block):
    """An agentflow agent: the fields of an agent in an agents file (DESIGN §3)."""

    _block_type_name = "agentflow Agent"
    _block_type_slug = "agentflow-agent"
    _description = "An agent for agentflow workflows, used as `agent: block:NAME`."

    kind: Literal[AGENT_KINDS]
    description: str = ""
    model: Optional[str] = None
    system: Optional[str] = None
    subagent: Optional[str] = None
    allowed_tools: list[str] = Field(default_factory=list)
    disallowed_tools: list[str] = Field(default_factory=list)
    permission_mode: Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk"] = "dontAsk"
    max_turns: Optional[int] = None
    max_budget_usd: Optional[float] = None
    output_schema: Optional[dict[str, Any]] = None
    base_url: Optional[str] = None
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    command: Optional[list[str]] = None
    callable: Optional[str] = None
    url: Optional[str] = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Optional[str] = Field(default=None, description="e.g. 30s, 10m")
    retries: Optional[int] = None
    criticality: Literal["critical", "high", "medium", "low"] = "high"
    fallback: Optional[str] = None
    fallback_prompt_suffix: str = ""
    skip_if_unavailable: bool = False
    concurrency: Optional[int] = None
    credentials: Optional[AgentCredentials] = None

    def spec(self) -> AgentSpec:
        """The agent as agentflow runs it (validated like an agents file's entry)."""
        fields = self.model_dump(exclude={"credentials", "block_type_slug"}, exclude_none=True)
        fields = {k: v for k, v in fields.items() if k in AgentSpec.model_fields}
        return AgentSpec.model_validate(fields)

    def environment(self) -> dict[str, str]:
        """The key as the agent's environment, if the agent has credentials."""
        if self.credentials is None:
            return {}
        return {self.credentials.variable: self.credentials.api_key.get_secret_value()}

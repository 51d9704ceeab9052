"""The JSON Schema of the workflow language, for editors (yaml-language-server) and tools."""

from __future__ import annotations

from typing import Any

from agentflow.flows.language.spec import Workflow

SCHEMA_ID = "https://agentflow.dev/schema/workflow.json"


def workflow_schema() -> dict[str, Any]:
    schema = Workflow.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "agentflow workflow"
    return schema

"""A deployed run's `WorkflowResult`, kept in result storage for whoever started the run.

A deployment's flow persists what it returns (or the WorkflowFailed it raises) with
`WorkflowResultSerializer`: JSON of agentflow's own models, nothing that names code to run.
`read_run_result` reads it back from a finished run's state, always with this serializer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect.serializers import Serializer
from pydantic import Field

from agentflow import prefect_compat
from agentflow.errors import AgentflowError, WorkflowFailed
from agentflow.flows.durability.results import ForeignRecord
from agentflow.flows.engine.result import WorkflowResult

WORKFLOW_RESULT_TYPE = "agentflow-workflow-result"


class StoredError(AgentflowError):
    """An error a deployed run ended with, as it was stored (its type and message)."""


class WorkflowResultSerializer(Serializer):
    type: str = Field(default=WORKFLOW_RESULT_TYPE, frozen=True)

    def dumps(self, obj: Any) -> bytes:
        if isinstance(obj, WorkflowResult):
            document: dict[str, Any] = {"kind": "result", "result": obj.model_dump(mode="json")}
        elif isinstance(obj, WorkflowFailed):
            result = obj.result.model_dump(mode="json") if isinstance(obj.result, WorkflowResult) else None
            document = {"kind": "failed", "message": str(obj), "result": result}
        elif isinstance(obj, BaseException):
            document = {"kind": "error", "type": type(obj).__name__, "message": str(obj)[:2000]}
        else:
            document = {"kind": "value", "value": json.loads(json.dumps(obj, default=str))}
        return json.dumps(document).encode()

    def loads(self, blob: bytes) -> Any:
        document = json.loads(blob)
        kind = document.get("kind")
        if kind == "result":
            return WorkflowResult.model_validate(document["result"])
        if kind == "failed":
            result = document.get("result")
            return WorkflowFailed(document["message"], WorkflowResult.model_validate(result) if result else None)
        if kind == "error":
            return StoredError(f"{document.get('type')}: {document.get('message')}")
        return document.get("value")


def read_run_result(state: Any) -> Any:
    """What a finished flow run returned or raised, decoded by `WorkflowResultSerializer`
    whatever the stored bytes or metadata say (JSON into agentflow's models: nothing stored
    can name the code that reads it). ForeignRecord if the run's metadata names another
    serializer: not a run of a deployed workflow, not read."""
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultRecordMetadata

    metadata = prefect_compat.state_data(state)
    if not isinstance(metadata, ResultRecordMetadata) or metadata.storage_key is None:
        return None  # nothing was persisted (a run that crashed before it returned)
    if getattr(metadata.serializer, "type", None) != WORKFLOW_RESULT_TYPE:
        raise ForeignRecord(f"the run's result was not stored by agentflow (serializer "
                            f"{getattr(metadata.serializer, 'type', '?')}); it is not read")
    key = metadata.storage_key
    if metadata.storage_block_id is not None:
        storage = prefect_compat.result_storage(metadata.storage_block_id)
    elif Path(key).is_absolute():
        storage, key = LocalFileSystem(basepath=str(Path(key).parent)), Path(key).name
    else:
        storage = prefect_compat.default_result_storage()
    content = prefect_compat.read_path(storage, key)
    try:  # a whole record (result and metadata in one file), or the result alone
        document = json.loads(content)
        if isinstance(document, dict) and "metadata" in document and "result" in document:
            content = document["result"].encode() if isinstance(document["result"], str) else json.dumps(
                document["result"]).encode()
    except ValueError:
        raise ForeignRecord(f"the run's stored result {key} is not JSON; it is not read") from None
    return WorkflowResultSerializer().loads(content)

"""Step results in Prefect's result storage: written as JSON, and read only if agentflow wrote them.

Prefect's default serializer is pickle, and a stored record names the serializer (even the
JSON one names the functions that decode it) that Prefect then uses to read it: a crafted
record in shared storage would run code on the next cache hit. Cached steps are written
with `AgentResultSerializer` (an `AgentResult` as JSON, nothing else), and before a cached
call, `trusted` reads the stored record's metadata as plain JSON: a record written any
other way is not read but recomputed and overwritten (the run says so).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prefect.serializers import Serializer
from pydantic import Field

from agentflow.tasks.results import AgentResult

SERIALIZER_TYPE = "agentflow-result"
_log = logging.getLogger("agentflow")


class AgentResultSerializer(Serializer):
    type: str = Field(default=SERIALIZER_TYPE, frozen=True)

    def dumps(self, obj: AgentResult) -> bytes:
        return AgentResult.model_validate(obj).model_dump_json().encode()

    def loads(self, blob: bytes) -> AgentResult:
        return AgentResult.model_validate_json(blob)


def trusted(key: str) -> bool:
    """False if a record stored under `key` was not written by AgentResultSerializer (reading
    it could run code). Checked for local result storage; a storage block is not read twice."""
    path = _local_path(key)
    if path is None:
        return True
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        serializer = json.loads(content)["metadata"]["serializer"]
    except (ValueError, KeyError, TypeError):
        serializer = None
    if serializer == {"type": SERIALIZER_TYPE}:
        return True
    _log.warning("agentflow: the cached result %s was not written by agentflow; it is not read, "
                 "the step runs again and replaces it", path)
    return False


def _local_path(key: str) -> Path | None:
    from prefect.filesystems import LocalFileSystem
    from prefect.results import get_result_store

    storage: Any = get_result_store().result_storage
    if storage is None:
        from agentflow.flows.durability import storage as paths

        return paths.root() / key
    if isinstance(storage, LocalFileSystem):
        return Path(storage.basepath or ".").expanduser() / key
    return None

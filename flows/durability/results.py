"""Step results in Prefect's result storage: written as JSON, and read only if agentflow wrote them.

Prefect's default serializer is pickle, and a stored record names the serializer (even the
JSON one names the functions that decode it) that Prefect then uses to read it: a crafted
record in shared storage would run code on the next cache hit. Cached steps are written
with `AgentResultSerializer` (an `AgentResult` as JSON, nothing else) into
`TrustedStorage`, which wraps whatever storage Prefect would use (local files or any
storage block) and hands Prefect a record only after checking, on the very bytes it hands
over, that agentflow's serializer wrote it. Prefect takes a refused read for a cache miss:
the step runs again and its record replaces the foreign one (the run's log says so).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.serializers import Serializer
from pydantic import Field, PrivateAttr

from agentflow import prefect_compat
from agentflow.tasks.results import AgentResult

SERIALIZER_TYPE = "agentflow-result"
_log = logging.getLogger("agentflow")
_warned: set[str] = set()


class AgentResultSerializer(Serializer):
    type: str = Field(default=SERIALIZER_TYPE, frozen=True)

    def dumps(self, obj: AgentResult) -> bytes:
        return AgentResult.model_validate(obj).model_dump_json().encode()

    def loads(self, blob: bytes) -> AgentResult:
        return AgentResult.model_validate_json(blob)


class ForeignRecord(ValueError):
    """A stored record agentflow did not write: reading it could run code."""


def check(content: bytes, path: str) -> bytes:
    """`content` if agentflow's serializer wrote this record, else ForeignRecord."""
    try:
        serializer = json.loads(content)["metadata"]["serializer"]
    except (ValueError, KeyError, TypeError):
        serializer = None
    if serializer == {"type": SERIALIZER_TYPE}:
        return content
    if path not in _warned:
        _warned.add(path)
        _log.warning("agentflow: the cached result %s was not written by agentflow; it is not read, "
                     "the step runs again and replaces it", path)
    raise ForeignRecord(f"the cached result {path} was not written by agentflow")


class TrustedStorage(WritableFileSystem):
    """Result storage that reads only records agentflow wrote (see the module's docstring).

    `inner` is the storage it stores in; None means Prefect's default result storage (local
    files, or the block named by PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK), found at first use.
    """

    _block_type_name = "agentflow trusted result storage"
    inner: Any = None
    _base: Optional[Path] = PrivateAttr(default=None)  # the local storage's resolved base path

    def _storage(self) -> Any:
        if self.inner is None:
            self.inner = prefect_compat.default_result_storage()
        return self.inner

    def _resolve_path(self, path: str) -> Any:
        # Prefect asks local storage where a key lives, to file records under their full path,
        # twice for every task run (even one whose result is not kept). Resolving the base
        # once and joining a plain key to it avoids a realpath (a dozen lstat calls) each time.
        storage = self._storage()
        resolve = prefect_compat.path_resolver(storage)
        if resolve is None:
            return None
        if isinstance(storage, LocalFileSystem) and path and "/" not in path and path not in (".", ".."):
            if self._base is None:
                self._base = resolve("")
            return self._base / path
        return resolve(path)

    def read_path(self, path: str, _sync: bool | None = None) -> bytes:
        return check(prefect_compat.read_path(self._storage(), path), path)

    async def aread_path(self, path: str) -> bytes:
        return check(await prefect_compat.aread_path(self._storage(), path), path)

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> Any:
        return prefect_compat.write_path(self._storage(), path, content)

    async def awrite_path(self, path: str, content: bytes) -> Any:
        return await prefect_compat.awrite_path(self._storage(), path, content)


def read_only_our_records() -> None:
    """Make the running flow's tasks keep their results in `TrustedStorage` around the storage
    Prefect chose. Prefect takes a storage block on a task only once it is saved on the server
    (an API call, and a block document per machine); the flow run's result store, which every
    task run of the flow starts from, takes it as it is."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or isinstance(context.result_store.result_storage, TrustedStorage):
        return
    storage = TrustedStorage(inner=context.result_store.result_storage)
    context.result_store = context.result_store.model_copy(update={"result_storage": storage})

"""The shared store's two kinds, held to one contract: a directory, and a storage block
(here a remote-file-system block on fsspec's in-memory filesystem; S3 itself is in
tests/test_shared_storage.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prefect.filesystems import RemoteFileSystem, WritableFileSystem

from agentflow.errors import ConfigError
from agentflow.flows.durability.store import BlockStore, LocalStore

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`


def _store(tmp_path: Path, kind: int):
    if kind == 0:
        return LocalStore(tmp_path / "dir")
    if kind == 1:
        return BlockStore(RemoteFileSystem(basepath=f"memory://agentflow-{uuid.uuid4().hex}"), "remote-file-system/m")
    # fsspec's local files, named relative to the working directory (as test_faults.py's block)
    return BlockStore(RemoteFileSystem(basepath="local://block/"), "remote-file-system/f")


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["directory", "memory-block", "file-block"])
def test_whole_objects_listed_read_together_and_deleted(tmp_path, kind, monkeypatch):
    """Write, read, list (deep and shallow, with sizes), read several at once, delete; a missing
    object is FileNotFoundError on read and nothing on delete."""
    monkeypatch.chdir(tmp_path)
    store = _store(tmp_path, kind)
    store.write("top.json", b"{}")
    store.write("runs/r1/run.json", b'{"a": 1}')
    store.write("runs/r1/steps/0002.json", b"two")
    store.write("runs/r1/steps/0001.json", b"one!")
    assert store.read("runs/r1/run.json") == b'{"a": 1}'
    assert store.list("runs/r1/steps") == {"runs/r1/steps/0001.json": 4, "runs/r1/steps/0002.json": 3}
    assert store.list("", deep=False) == {"top.json": 2}
    assert set(store.list("runs")) == {"runs/r1/run.json", "runs/r1/steps/0001.json", "runs/r1/steps/0002.json"}
    assert store.list("nothing-here") == {}
    assert store.read_many(["runs/r1/steps/0001.json", "runs/r1/steps/0002.json", "runs/r1/missing"]) == {
        "runs/r1/steps/0001.json": b"one!", "runs/r1/steps/0002.json": b"two"}
    store.write("runs/r1/run.json", b"{}")  # overwritten whole
    assert store.read("runs/r1/run.json") == b"{}"
    store.delete("runs/r1/steps/0001.json")
    store.delete("runs/r1/steps/0001.json")
    assert list(store.list("runs/r1/steps")) == ["runs/r1/steps/0002.json"]
    with pytest.raises(FileNotFoundError):
        store.read("runs/r1/steps/0001.json")


def test_a_block_that_cannot_list_is_refused_with_the_fix():
    """A storage block with read and write but no way to list or delete (what agentflow needs
    for journals and `cache clear`) is refused when the store is made, naming what works."""

    class Bare(WritableFileSystem):
        _block_type_name = "agentflow test bare storage"

        def read_path(self, path: str) -> bytes:
            return b""

        def write_path(self, path: str, content: bytes) -> None:
            return None

    with pytest.raises(ConfigError, match="offers no way to list or delete .* use a remote-file-system block"):
        BlockStore(Bare(), "bare/b")

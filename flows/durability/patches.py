"""The patches of steps' work in the shared store, so that another machine can replay them.

A step's changes are captured on the machine that ran it into a local patch directory
(`<local root>/agentflow-patches/<sha256>.patch`, tasks/workspace.py). Where the shared store
is that same directory there is nothing more to do; where it is an object store, a patch is
copied there before the call that made it is journaled or indexed (`share`), and copied back
into the local directory before it is applied on another machine (`bring`). A patch is named
by its digest, and is checked against it when read, so a copy never needs updating.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agentflow.errors import StateDamaged
from agentflow.flows.durability import storage
from agentflow.flows.durability.store import atomic_write_bytes

FOLDER = "agentflow-patches"
_shared: set[str] = set()  # digests this process knows to be in the shared store


def local_dir() -> Path:
    return storage.root() / FOLDER


def share(digest: str) -> None:
    """Copy the local patch `digest` to the shared store (once per process)."""
    store = storage.shared()
    if not digest or store.local is not None or digest in _shared:
        return
    key = f"{FOLDER}/{digest}.patch"
    store.write(key, (local_dir() / f"{digest}.patch").read_bytes())
    _shared.add(digest)


def bring(digest: str) -> None:
    """Make sure the patch `digest` is in the local directory, copied from the shared store."""
    store = storage.shared()
    path = local_dir() / f"{digest}.patch"
    if not digest or store.local is not None or path.exists():
        return
    try:
        data = store.read(f"{FOLDER}/{digest}.patch")
    except FileNotFoundError:
        return  # the reader then says which patch is missing, and where it looked
    if hashlib.sha256(data).hexdigest() != digest:
        raise StateDamaged(f"the patch {digest[:12]} in the shared storage {store.where} does not match its "
                           "digest (damaged); the step whose work it is must run again: "
                           "`agentflow rerun RUN --from STEP`")
    atomic_write_bytes(path, data)
    _shared.add(digest)

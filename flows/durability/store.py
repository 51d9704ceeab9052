"""The shared store: where agentflow keeps what every machine of a setup must see.

Run records, run journals, the cache index, the pinned workspace of a run and the patches of
its steps are kept beside the step results, in Prefect's default result storage, through one
small interface (`Store`): a local directory, a shared mount, or any storage block (S3, GCS,
Azure through `remote-file-system` and fsspec, or prefect-aws's `S3Bucket`). Object stores
cannot append or rename, so every record is a whole object written once (or overwritten
whole by the one process that owns it), never a read-modify-write.

What only the machine that runs a step can use (its worktrees, the notes of the processes it
started, the flock locks of the single-machine setup) stays in a local directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from agentflow import prefect_compat
from agentflow.errors import AgentflowError, ConfigError


class StoreUnavailable(AgentflowError):
    """The shared store could not be read or written (unreachable, refused, misconfigured)."""


class Store(Protocol):
    """Whole objects under `/`-separated keys (`agentflow-runs/<id>/run.json`)."""

    where: str  # for messages: a directory, or `s3://bucket/prefix (remote-file-system/NAME)`
    local: Path | None  # the directory, when the store is one (the fast paths use it)

    def read(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if there is none."""

    def read_many(self, keys: list[str]) -> dict[str, bytes]:
        """Several objects at once (an object store fetches them side by side); missing ones left out."""

    def write(self, key: str, data: bytes) -> None:
        """The object, whole: a reader never sees part of it."""

    def list(self, prefix: str, deep: bool = True) -> dict[str, int]:
        """Every key under `prefix` (a folder; "" the store's top), with its size; `deep=False`:
        only those directly in it."""

    def delete(self, key: str) -> None:
        """Remove the object; no error if there is none."""


class LocalStore:
    """A directory: this machine's, or a mount every machine reaches."""

    def __init__(self, root: Path) -> None:
        self.local = root
        self.where = str(root)

    def read(self, key: str) -> bytes:
        return (self.local / key).read_bytes()

    def read_many(self, keys: list[str]) -> dict[str, bytes]:
        return _one_by_one(self, keys)

    def write(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self.local / key, data)

    def list(self, prefix: str, deep: bool = True) -> dict[str, int]:
        folder = self.local / prefix
        if not folder.is_dir():
            return {}
        found = {}
        for path in folder.rglob("*") if deep else folder.iterdir():
            if path.is_file() and not path.name.endswith(".tmp"):
                try:
                    found[path.relative_to(self.local).as_posix()] = path.stat().st_size
                except FileNotFoundError:  # removed while listed
                    continue
        return found

    def delete(self, key: str) -> None:
        (self.local / key).unlink(missing_ok=True)


class BlockStore:
    """A Prefect storage block. Reads and writes go through the block's own `read_path` and
    `write_path` (its credentials, its base path); listing and deleting, which
    `WritableFileSystem` does not offer, through the block's fsspec filesystem
    (`remote-file-system`) or its object listing (`S3Bucket`)."""

    def __init__(self, block: Any, slug: str) -> None:
        self.block = block
        self.local = None
        self.where = f"{_base_of(block)} ({slug})"
        self._fs = getattr(block, "filesystem", None)  # RemoteFileSystem: an fsspec filesystem
        if self._fs is None and not hasattr(block, "list_objects"):
            raise ConfigError(f"the storage block {slug} ({type(block).__name__}) offers no way to list or delete "
                              "what agentflow keeps in it; use a remote-file-system block (s3://, gs://, az:// "
                              "through fsspec), an S3Bucket block, or a directory")

    def _fail(self, doing: str, key: str, exc: BaseException) -> StoreUnavailable:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        return StoreUnavailable(f"could not {doing} {key} in the shared storage {self.where} ({reason}); check that "
                                "it is reachable and its credentials, then resume the run")

    def read(self, key: str) -> bytes:
        try:
            return prefect_compat.read_path(self.block, key)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - each block raises its own errors; a missing object is told apart below
            if _missing(exc):
                raise FileNotFoundError(key) from None
            raise self._fail("read", key, exc) from None

    def read_many(self, keys: list[str]) -> dict[str, bytes]:
        if self._fs is None or not keys:
            return _one_by_one(self, keys)
        paths = {self._path(key): key for key in keys}
        try:
            got = self._fs.cat(list(paths), on_error="omit")  # fetched side by side by s3fs, gcsfs, adlfs
        except Exception as exc:  # noqa: BLE001
            raise self._fail("read", f"{len(keys)} objects under {keys[0].rsplit('/', 1)[0]}", exc) from None
        return {paths[self._norm(path)]: data for path, data in got.items()
                if self._norm(path) in paths and not isinstance(data, Exception)}

    def write(self, key: str, data: bytes) -> None:
        try:
            prefect_compat.write_path(self.block, key, data)
        except Exception as exc:  # noqa: BLE001
            raise self._fail("write", key, exc) from None

    def list(self, prefix: str, deep: bool = True) -> dict[str, int]:
        prefix = prefix.rstrip("/")
        try:
            if self._fs is not None:
                base = self._path("")
                if deep:
                    found = self._fs.find(self._path(prefix), detail=True)
                else:
                    found = {item["name"]: item for item in self._fs.ls(self._path(prefix), detail=True)}
                named = {self._norm(path): info for path, info in found.items()}
                return {path[len(base):].lstrip("/"): int(info.get("size") or 0) for path, info in named.items()
                        if info.get("type", "file") == "file" and path.startswith(base)}
            objects = self.block.list_objects(folder=prefix, **({} if deep else {"delimiter": "/"}))
            folder = str(getattr(self.block, "bucket_folder", "") or "").strip("/")
            return {_relative(item["Key"], folder): int(item.get("Size", 0)) for item in objects}
        except FileNotFoundError:
            return {}
        except Exception as exc:  # noqa: BLE001
            raise self._fail("list", prefix + "/", exc) from None

    def delete(self, key: str) -> None:
        try:
            if self._fs is not None:
                self._fs.rm_file(self._path(key))
            else:
                client = self.block.credentials.get_s3_client()
                folder = str(getattr(self.block, "bucket_folder", "") or "").strip("/")
                client.delete_object(Bucket=self.block.bucket_name, Key=f"{folder}/{key}" if folder else key)
        except FileNotFoundError:
            return
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return
            raise self._fail("delete", key, exc) from None

    def _path(self, key: str) -> str:
        """The fsspec path of a key: the block's base path and the key, as the filesystem names
        paths (without its protocol: `bucket/prefix/key`, or absolute for local files)."""
        return self._norm(self.block.basepath.rstrip("/") + ("/" + key if key else ""))

    def _norm(self, path: str) -> str:
        return self._fs._strip_protocol(path).rstrip("/")


def _one_by_one(store: Store, keys: list[str]) -> dict[str, bytes]:
    found = {}
    for key in keys:
        try:
            found[key] = store.read(key)
        except FileNotFoundError:
            continue
    return found


def _base_of(block: Any) -> str:
    if hasattr(block, "bucket_name"):
        folder = str(getattr(block, "bucket_folder", "") or "").strip("/")
        return f"s3://{block.bucket_name}/{folder}".rstrip("/")
    return str(getattr(block, "basepath", "?"))


def _relative(key: str, folder: str) -> str:
    return key[len(folder) + 1:] if folder and key.startswith(folder + "/") else key


def _missing(exc: BaseException) -> bool:
    """A block's way of saying that an object does not exist (botocore's NoSuchKey, a 404)."""
    text = f"{type(exc).__name__} {exc}"
    return any(word in text for word in ("NoSuchKey", "Not Found", "404", "FileNotFoundError", "does not exist"))


def atomic_write_bytes(path: Path, content: bytes) -> None:
    """Write `path` whole or not at all: a reader (or a crash) never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)

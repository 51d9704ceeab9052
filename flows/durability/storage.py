"""Where agentflow keeps its records, and how it writes them.

What every machine of a setup must see (run records, journals, the cache index, the patches
of steps' work: durability/store.py) lives in Prefect's default result storage as Prefect
resolves it (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, else the server's default, set with
`agentflow storage set` (`share` below), else `results.local_storage_path`,
`~/.prefect/storage`), beside the step results: sharing the results shares them, whatever
the storage is (a directory, a shared mount, an object store through its block). A run that
crashed on one worker is then resumed by another, and workers share one cache.

What only this machine can use (worktrees, notes of the processes a run started, the flock
locks of the single-machine setup) stays in a local directory: the storage itself when it
is a directory, else `results.local_storage_path`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow import prefect_compat
from agentflow.errors import ConfigError
from agentflow.flows.durability.store import BlockStore, LocalStore, Store, atomic_write_bytes

CONFIG_KEY = "agentflow-config.json"  # settings every machine sharing the store reads (`locks`)


@dataclass(frozen=True)
class Located:
    store: Store  # shared with every machine using the same storage
    local: Path  # this machine's directory (the store's own when it is a directory)
    source: str  # what chose the storage, for `agentflow storage show`


_located: dict[tuple[str, ...], Located] = {}
_config: dict[str, dict[str, Any]] = {}


def root() -> Path:
    """This machine's directory for agentflow's files (the storage's own when it is one)."""
    return where().local


def shared() -> Store:
    """The store every machine using the same result storage shares."""
    return where().store


def where() -> Located:
    """The storage as configured now, and what chose it (see above)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    # Resolving the server's default costs an API call: once per process and configuration.
    key = (str(settings.results.default_storage_block), str(settings.results.local_storage_path),
           str(settings.api.url))
    if key not in _located:
        _located[key] = _resolve(settings)
    return _located[key]


def config() -> dict[str, Any]:
    """The settings kept in the shared store (`agentflow storage set --locks`): read once per
    process and store."""
    store = shared()
    if store.where not in _config:
        try:
            _config[store.where] = json.loads(store.read(CONFIG_KEY))
        except FileNotFoundError:
            _config[store.where] = {}
        except ValueError:
            raise ConfigError(f"{CONFIG_KEY} in the shared storage {store.where} is not JSON; set it again with "
                              "`agentflow storage set`") from None
    return _config[store.where]


def save_config(**values: Any) -> dict[str, Any]:
    """Merge `values` into the shared settings (None removes one)."""
    current = dict(config())
    current.update(values)
    current = {k: v for k, v in current.items() if v is not None}
    shared().write(CONFIG_KEY, json.dumps(current, indent=1, sort_keys=True).encode())
    _config[shared().where] = current
    return current


def _resolve(settings: Any) -> Located:
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem

    local = Path(settings.results.local_storage_path).expanduser()
    named = settings.results.default_storage_block
    if named is None and settings.api.url is None:
        # The embedded server: asking it for its default would start it, for commands
        # (`plan`, `cache stats`) that need no server at all.
        return Located(LocalStore(local), local, "results.local_storage_path")
    try:
        storage = prefect_compat.default_result_storage()
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"Prefect's default result storage cannot be loaded ({exc}); create the block it "
                          "names, or unset PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK") from None
    source = f"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK={named}" if named else "the server's default result storage"
    directory = None
    if isinstance(storage, LocalFileSystem) and storage.basepath:
        directory = Path(storage.basepath).expanduser().resolve()
    elif isinstance(storage, RemoteFileSystem) and storage.basepath.startswith("file://"):
        directory = Path(storage.basepath.removeprefix("file://")).expanduser().resolve()
    elif isinstance(storage, LocalFileSystem):  # Prefect's own default: no block configured
        return Located(LocalStore(local), local, "results.local_storage_path")
    if directory is not None:
        return Located(LocalStore(directory), directory, source)
    slug = str(named) if named else _slug(storage)
    return Located(BlockStore(storage, slug), local, source)


def _slug(block: Any) -> str:
    name = getattr(block, "_block_document_name", None)
    kind = getattr(block, "get_block_type_slug", lambda: type(block).__name__)()
    return f"{kind}/{name}" if name else kind


def share(directory: Path | None = None, block: str | None = None, name: str = "agentflow-results") -> str:
    """Make a directory (saved as the block local-file-system/NAME) or an existing block the
    server's default result storage: every worker and command using that server then keeps
    results, the cache and run journals there. The block's slug."""
    from prefect.client.orchestration import get_client
    from prefect.filesystems import LocalFileSystem

    if directory is not None:
        storage = LocalFileSystem(basepath=str(directory.expanduser().resolve()))
        block_id = storage.save(name, overwrite=True)
        slug = f"local-file-system/{name}"
    else:
        try:
            block_id = prefect_compat.block_document_id(block)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"no storage block {block!r} on the server ({exc}); `prefect block ls` lists "
                              "them, or give a directory with --path") from None
        slug = str(block)
    with get_client(sync_client=True) as client:
        client.update_server_default_result_storage(block_id)
    _located.clear()
    return slug


def atomic_write(path: Path, content: str) -> None:
    """Write `path` whole or not at all: a reader (or a crash) never sees half of it."""
    atomic_write_bytes(path, content.encode("utf-8"))

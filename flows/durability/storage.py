"""Where agentflow keeps its files, and how it writes them.

Everything lives beside the step results, in the directory of Prefect's default result
storage as Prefect resolves it (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, else the server's
default, set with `agentflow storage set` (`share` below), else `results.local_storage_path`,
`~/.prefect/storage`), so that sharing the results shares agentflow's run journals, records,
locks and cache index with them: a run that crashed on one worker is resumed by another,
and two workers share one cache. That needs a directory: a `local-file-system` block (or a
`file://` remote one) on a path every worker reaches. With an object store (S3, GCS) as the
default, step results are shared and agentflow's own files stay on each machine, in
`results.local_storage_path`: a crashed run is then resumed on the machine that ran it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentflow.errors import ConfigError

_roots: dict[tuple[str, ...], tuple[Path, str]] = {}


def root() -> Path:
    """The directory of Prefect's default result storage, as configured now (see above)."""
    return where()[0]


def where() -> tuple[Path, str]:
    """The storage root, and what chose it (for `agentflow storage`)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    # Resolving the server's default costs an API call: once per process and configuration.
    key = (str(settings.results.default_storage_block), str(settings.results.local_storage_path),
           str(settings.api.url))
    if key not in _roots:
        _roots[key] = _resolve(settings)
    return _roots[key]


def _resolve(settings: Any) -> tuple[Path, str]:
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem
    from prefect.results import get_default_result_storage

    local = Path(settings.results.local_storage_path).expanduser()
    named = settings.results.default_storage_block
    if named is None and settings.api.url is None:
        # The embedded server: asking it for its default would start it, for commands
        # (`plan`, `cache stats`) that need no server at all.
        return local, "results.local_storage_path"
    try:
        storage = get_default_result_storage(_sync=True)
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"Prefect's default result storage cannot be loaded ({exc}); create the block it "
                          "names, or unset PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK") from None
    source = f"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK={named}" if named else "the server's default result storage"
    if isinstance(storage, LocalFileSystem) and storage.basepath:
        return Path(storage.basepath).expanduser().resolve(), source
    if isinstance(storage, RemoteFileSystem) and storage.basepath.startswith("file://"):
        return Path(storage.basepath.removeprefix("file://")).expanduser().resolve(), source
    if isinstance(storage, LocalFileSystem):  # Prefect's own default: no block configured
        return local, "results.local_storage_path"
    return local, (f"results.local_storage_path (step results go to {source}, a {type(storage).__name__}: "
                   "not a directory agentflow can keep journals in)")


def share(directory: Path | None = None, block: str | None = None, name: str = "agentflow-results") -> str:
    """Make a directory (saved as the block local-file-system/NAME) or an existing block the
    server's default result storage: every worker and command using that server then keeps
    results, the cache and run journals there. The block's slug."""
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client
    from prefect.filesystems import LocalFileSystem

    if directory is not None:
        storage = LocalFileSystem(basepath=str(directory.expanduser().resolve()))
        block_id = storage.save(name, overwrite=True)
        slug = f"local-file-system/{name}"
    else:
        try:
            block_id = Block.load(block, _sync=True)._block_document_id
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"no storage block {block!r} on the server ({exc}); `prefect block ls` lists "
                              "them, or give a directory with --path") from None
        slug = str(block)
    with get_client(sync_client=True) as client:
        client.update_server_default_result_storage(block_id)
    _roots.clear()
    return slug


def atomic_write(path: Path, content: str) -> None:
    """Write `path` whole or not at all: a reader (or a crash) never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(content, encoding="utf-8")
    os.replace(temporary, path)

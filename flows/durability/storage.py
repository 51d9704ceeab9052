"""Where agentflow keeps its files, and how it writes them.

Everything lives beside Prefect's local result records (`results.local_storage_path`,
`~/.prefect/storage` by default), so that moving or sharing that directory moves or shares
agentflow's run journals, locks and cache index with the results they describe.
"""

from __future__ import annotations

import os
from pathlib import Path


def root() -> Path:
    """Prefect's local result storage directory, as configured now."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path).expanduser()


def atomic_write(path: Path, content: str) -> None:
    """Write `path` whole or not at all: a reader (or a crash) never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(content, encoding="utf-8")
    os.replace(temporary, path)

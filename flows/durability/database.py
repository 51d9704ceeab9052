"""A damaged local Prefect database is said, not met with a 24-second connection timeout.

The embedded server keeps run history in SQLite under the Prefect home. A file that is not
a database, or one cut short, makes that server fail to start, and Prefect then reports
only that it could not connect. Checked before the server starts, cheaply: the header and
schema are read, and the pages the file says it has must all be there.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agentflow.errors import StateDamaged


def local_database() -> Path | None:
    """The SQLite file the embedded server would use, or None (a started server, PostgreSQL)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return None
    url = settings.server.database.connection_url
    url = url.get_secret_value() if url is not None and hasattr(url, "get_secret_value") else url
    if not url or not str(url).startswith("sqlite") or ":memory:" in str(url):
        return None
    return Path(str(url).split(":///", 1)[1]).expanduser()


def check_local_database() -> None:
    """StateDamaged naming the file if the embedded server's database cannot be used."""
    path = local_database()
    if path is None or not path.exists():
        return  # no history yet: the server creates it
    if path.is_dir():
        raise _damaged(path, "is a directory")
    try:
        size = path.stat().st_size
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return  # in use by a running server: not damaged
        raise _damaged(path, f"cannot be read ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, f"is not a usable database ({exc})") from None
    except OSError as exc:
        raise _damaged(path, f"cannot be read ({exc.strerror})") from None
    wal = path.with_name(path.name + "-wal")
    pending = wal.stat().st_size if wal.exists() else 0  # pages not yet copied back from the write-ahead log
    if size and not pending and size < page_size * pages:
        raise _damaged(path, f"is cut short ({size:,} of {page_size * pages:,} bytes)")


def _damaged(path: Path, what: str) -> StateDamaged:
    return StateDamaged(f"Prefect's database {path} {what}; move it aside (mv {path} {path}.damaged) and "
                        "agentflow starts a new, empty run history there, or point PREFECT_API_URL at a server")

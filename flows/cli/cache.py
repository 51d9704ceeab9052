"""The step cache: `cache stats` and `cache clear`."""

from __future__ import annotations

import time
from typing import Optional

import typer

from agentflow.flows.cli._app import EXIT_INVALID, app, err, out

cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear cached step results.")
app.add_typer(cache_app, name="cache")


@cache_app.command("stats")
def cache_stats() -> None:
    """Entries, size, and hit/miss counts per agent."""
    from rich.table import Table

    from agentflow.flows.durability import cache_index

    from agentflow.flows.durability import storage

    now = time.time()
    sizes = storage.shared().list("", deep=False)  # the result records, beside agentflow's folders
    rows: dict[str, dict[str, float]] = {}
    for entry in cache_index.entries():
        row = rows.setdefault(entry.agent or f"({entry.step})", {"entries": 0, "live": 0, "bytes": 0})
        row["entries"] += 1
        row["live"] += entry.expires > now
        row["bytes"] += sizes.get(entry.key, 0)
    counts = cache_index.outcomes()
    table = Table()
    for column in ("agent", "entries", "live", "size", "hits", "misses", "hit rate"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for agent in sorted(set(rows) | set(counts)):
        row = rows.get(agent, {"entries": 0, "live": 0, "bytes": 0})
        hits, misses = counts.get(agent, {}).get("hits", 0), counts.get(agent, {}).get("misses", 0)
        rate = f"{hits / (hits + misses):.0%}" if hits + misses else "-"
        table.add_row(agent, str(int(row["entries"])), str(int(row["live"])), f"{row['bytes'] / 1024:.1f} KiB",
                      str(hits), str(misses), rate)
    out.print(table)
    out.print(f"index: {cache_index.where()}", markup=False)


@cache_app.command("clear")
def cache_clear(
    agent: Optional[str] = typer.Option(None, "--agent", help="Only this agent's entries."),
    older_than: Optional[str] = typer.Option(None, "--older-than", help="Only entries older than this, e.g. 7d."),
) -> None:
    """Delete cached step results (all, one agent's, or old ones)."""
    from agentflow.flows.language.spec import parse_duration
    from agentflow.flows.durability import cache_index

    try:
        min_age = parse_duration(older_than) if older_than else 0.0
    except ValueError as exc:
        err.print(f"--older-than: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    from agentflow.flows.durability import storage

    now = time.time()
    store = storage.shared()
    removed = 0
    for entry in cache_index.entries():
        if agent is not None and entry.agent != agent:
            continue
        if now - entry.created < min_age:
            continue
        store.delete(entry.key)
        cache_index.forget(entry)
        removed += 1
    out.print(f"removed {removed} cached step result(s) from {store.where}", markup=False)

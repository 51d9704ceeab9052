"""`agentflow storage`: where results, the cache and run journals live, and sharing them
between workers (flows/durability/storage.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from agentflow.flows.cli._app import EXIT_INVALID, app, err, out

storage_app = typer.Typer(no_args_is_help=True, help="Where step results, the cache and run journals live.")
app.add_typer(storage_app, name="storage")


@storage_app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="As JSON.")) -> None:
    """Where each kind of record lives, and what chose it."""
    from agentflow.flows.durability import storage

    places = _places(storage)
    if as_json:
        out.print_json(json.dumps(places))
        return
    _print(places)


@storage_app.command("set")
def set_default(
    path: Optional[Path] = typer.Option(None, "--path", help="A directory every worker reaches (saved as the "
                                        "block local-file-system/NAME)."),
    block: Optional[str] = typer.Option(None, "--block", help="An existing storage block, TYPE/NAME "
                                        "(remote-file-system/NAME for s3://, gs://, az://; s3-bucket/NAME)."),
    name: str = typer.Option("agentflow-results", "--name", help="The block's name, with --path."),
    locks: Optional[str] = typer.Option(None, "--locks", help="A Redis every machine reaches, redis://HOST:PORT/DB, "
                                        "for one call of a cached step at a time across machines; `none`: per "
                                        "machine."),
) -> None:
    """Make it the server's default result storage: every worker and command using the
    server then shares results, run records and journals, the cache index and the steps'
    patches (a crashed run is finished by any worker)."""
    from agentflow import _prefect_env
    from agentflow.flows.durability import storage
    from agentflow.flows.durability.leases import RedisLeases

    if path is not None and block is not None or (path is None and block is None and locks is None):
        err.print("give the storage: --path DIR or --block TYPE/NAME (and --locks redis://... to share locks)",
                  markup=False)
        raise typer.Exit(EXIT_INVALID)
    if not _prefect_env.configured_api_url():
        err.print("the default result storage is a setting of a Prefect server that stays up: "
                  "`agentflow server start`, or set PREFECT_API_URL", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if locks is not None and locks != "none":
        leases = RedisLeases(locks)  # a bad URL or an unreachable Redis is said now, not at the first step
        leases.is_locked("agentflow-storage-set-probe")
    if path is not None or block is not None:
        slug = storage.share(directory=path, block=block, name=name)
        out.print(f"the server's default result storage is now {slug}", markup=False)
    if locks is not None:
        storage.save_config(locks=None if locks == "none" else locks)
    _print(_places(storage))


def _places(storage) -> dict:
    from agentflow.flows.durability.leases import redacted
    from agentflow.flows.durability.worktrees import worktrees_root

    located = storage.where()
    shared = located.store.where
    locks = storage.config().get("locks")
    if locks:
        lock_place = f"Redis leases at {redacted(locks)} (shared by every machine that shares the storage)"
    elif located.store.local is None:
        lock_place = (f"flock in {located.local / 'agentflow-locks'}: per machine, so two machines may run the "
                      "same cached call at once; `agentflow storage set --locks redis://HOST:PORT/DB` shares them")
    else:
        lock_place = (f"flock in {located.local / 'agentflow-locks'} (one machine, or every machine mounting "
                      "this directory with working flock)")
    return {"shared": shared, "source": located.source, "local": str(located.local),
            "directory": str(located.store.local) if located.store.local is not None else None,
            "kept_shared": ["step results", "run records and journals", "the cache index", "steps' patches"],
            "kept_local": {"worktrees": str(worktrees_root()),
                           "notes of the commands a run started": str(located.local / "agentflow-runs")},
            "locks": lock_place}


def _print(places: dict) -> None:
    out.print(f"{places['shared']}  ({places['source']})", markup=False)
    out.print(f"  shared by every machine using it: {', '.join(places['kept_shared'])}", markup=False)
    out.print("  on this machine only: " + ", ".join(f"{what} ({where})" for what, where in places["kept_local"].items()),
              markup=False)
    out.print(f"  locks: {places['locks']}", markup=False)

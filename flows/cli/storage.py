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
    """The directory agentflow keeps run journals and records in, and what chose it."""
    from agentflow.flows.durability import storage

    directory, source = storage.where()
    if as_json:
        out.print_json(json.dumps({"directory": str(directory), "source": source}))
        return
    out.print(f"{directory}  ({source})", markup=False)


@storage_app.command("set")
def set_default(
    path: Optional[Path] = typer.Option(None, "--path", help="A directory every worker reaches (saved as the "
                                        "block local-file-system/NAME)."),
    block: Optional[str] = typer.Option(None, "--block", help="An existing storage block, TYPE/NAME."),
    name: str = typer.Option("agentflow-results", "--name", help="The block's name, with --path."),
) -> None:
    """Make it the server's default result storage: every worker and command using the
    server then shares results, the cache and run journals (a crashed run is finished by
    any worker)."""
    from agentflow import _prefect_env
    from agentflow.flows.durability import storage

    if (path is None) == (block is None):
        err.print("give the storage: --path DIR or --block TYPE/NAME", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if not _prefect_env.configured_api_url():
        err.print("the default result storage is a setting of a Prefect server that stays up: "
                  "`agentflow server start`, or set PREFECT_API_URL", markup=False)
        raise typer.Exit(EXIT_INVALID)
    slug = storage.share(directory=path, block=block, name=name)
    directory, _ = storage.where()
    out.print(f"the server's default result storage is now {slug} ({directory}): workers and commands "
              "using it keep results, the cache and run journals there", markup=False)

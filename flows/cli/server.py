"""`agentflow server start|stop|status`: a local Prefect server, with the UI, that later
commands use (flows/durability/local_server.py)."""

from __future__ import annotations

import json
import sys
from typing import Optional
from urllib.parse import urlsplit

import typer

from agentflow.flows.cli._app import EXIT_FAILED, EXIT_INTERNAL, app, err, out

server_app = typer.Typer(no_args_is_help=True, help="A local Prefect server with the UI that later commands use.")
app.add_typer(server_app, name="server")


@server_app.command("start")
def start(
    port: Optional[int] = typer.Option(None, "--port", help="The port to serve the API and the UI on (4200)."),
    host: Optional[str] = typer.Option(None, "--host", help="The address to listen on (127.0.0.1; other "
                                       "machines: 0.0.0.0)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for it to answer."),
) -> None:
    """Start the server in the background (or say where it already runs)."""
    from agentflow import _prefect_env
    from agentflow.flows.durability import local_server

    configured = _prefect_env.configured_api_url()
    if configured:
        err.print(f"note: PREFECT_API_URL is set ({configured}): agentflow commands use that server, "
                  "not this one, until it is unset", markup=False)
    try:
        current, started = local_server.start(host=host or "127.0.0.1", port=port or 4200, timeout=timeout)
    except local_server.ServerError as exc:
        err.print(f"agentflow: {exc}", markup=False)
        raise typer.Exit(EXIT_INTERNAL) from None
    what = "started" if started else "already running"
    out.print(f"Prefect server {what} at {current.url} (pid {current.pid}); the UI is there, the API at "
              f"{current.url}/api; database {current.database}; log {current.log}", markup=False)
    at = urlsplit(current.url or "")
    if not started and ((port is not None and port != at.port) or (host is not None and host != current.host)):
        asked = " ".join(f"--{name} {value}" for name, value in (("host", host), ("port", port)) if value is not None)
        err.print(f"{asked} was not used: a server already runs at {current.url}; `agentflow server stop` first "
                  "to start it elsewhere", markup=False)
        raise typer.Exit(EXIT_FAILED)
    if current.profile is not None:
        out.print(f"agentflow commands and Prefect's own (prefect deploy, prefect worker start, Python code) use it: "
                  f"Prefect's profile `{current.profile}` says PREFECT_API_URL={current.url}/api, which "
                  "`agentflow server stop` removes", markup=False)
    elif started and not configured:
        out.print("agentflow commands now use it; `agentflow server stop` stops it", markup=False)


@server_app.command("stop")
def stop() -> None:
    """Stop the server `agentflow server start` started."""
    from agentflow.flows.durability import local_server

    stopped = local_server.stop()
    if stopped is None:
        out.print("no local Prefect server is running", markup=False)
        return
    undone = (f"; Prefect's profile `{stopped.profile}` no longer names it" if stopped.profile else "")
    out.print(f"stopped the Prefect server at {stopped.url} (pid {stopped.pid}){undone}", markup=False)


@server_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Whether the local server runs, where, and whether its API answers; exit 1 if it does not run."""
    from agentflow.flows.durability import local_server

    current = local_server.status()
    if as_json:
        sys.stdout.write(json.dumps(current.view(), indent=2) + "\n")
    elif current.running:
        health = "answers" if current.healthy else "does not answer"
        out.print(f"running at {current.url} (pid {current.pid}); its API {health}; database {current.database}; "
                  f"log {current.log}", markup=False)
    else:
        out.print("not running: agentflow commands start an embedded server each time; "
                  "`agentflow server start` keeps one running", markup=False)
    if not current.running:
        raise typer.Exit(EXIT_FAILED)

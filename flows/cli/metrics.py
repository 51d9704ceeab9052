"""`agentflow metrics serve`: the Prometheus exporter (flows/observe/exporter.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Optional

import typer

from agentflow.flows.cli._app import EXIT_INTERNAL, EXIT_INVALID, app, err, out

metrics_app = typer.Typer(no_args_is_help=True, help="Prometheus metrics of every worker's runs, from the "
                                                     "Prefect server.")
app.add_typer(metrics_app, name="metrics")


@metrics_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on (Prometheus elsewhere: 0.0.0.0)."),
    port: Optional[int] = typer.Option(None, "--port", help="The port to serve /metrics and /health on (0: any "
                                       "free one; default: the `metrics_port` setting, 9090)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="AGENTFLOW_METRICS_TOKEN", show_envvar=True,
                                        help="Require `Authorization: Bearer TOKEN` (better given by the "
                                             "environment variable: a command line is visible to every user)."),
    every: float = typer.Option(5.0, "--every", help="Seconds between reads of the Prefect server."),
    settle: float = typer.Option(20.0, "--settle", help="Seconds after it occurred that an event is counted: "
                                 "events reach the server's database a little after (and workers' clocks differ)."),
    state: Optional[Path] = typer.Option(None, "--state", help="The file the totals are kept in between restarts "
                                         "(default: $PREFECT_HOME/agentflow/metrics-<server>.json)."),
) -> None:
    """Serve /metrics and /health until stopped (Ctrl-C or SIGTERM)."""
    from agentflow import _prefect_env, config, log
    from agentflow.flows.durability import storage
    from agentflow.flows.observe import exporter, health

    port = config.current().metrics_port if port is None else port

    api_url = os.environ.get("PREFECT_API_URL") or _prefect_env.configured_api_url()
    if not api_url:
        err.print("agentflow metrics serve reads a Prefect server that stays up, and none is configured: "
                  "start one with `agentflow server start`, or set PREFECT_API_URL", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if every <= 0:
        err.print(f"--every {every}: give a number of seconds above 0", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if settle < 0:
        err.print(f"--settle {settle}: give a number of seconds, 0 or more", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if token is not None and not token.strip():
        err.print("--token is empty: give a token, or leave it out to serve without one", markup=False)
        raise typer.Exit(EXIT_INVALID)
    record = _prefect_env.local_server()
    local = record is not None and record.get("api_url") == api_url
    log.configure("info")
    figures = exporter.Figures(state or exporter.state_file(api_url))

    def reader() -> tuple[float, str | None]:
        with figures.lock:
            return figures.refresh_ok, figures.last_error

    def checks():
        return health.check(api_url, local, storage.shared, reader)

    try:
        server = exporter.Exporter(figures, host, port, every, checks, token, settle)
    except OSError as exc:
        err.print(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another with --port", markup=False)
        raise typer.Exit(EXIT_INTERNAL) from None
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    out.print(f"serving http://{shown}:{server.port}/metrics and /health, from the Prefect API at {api_url}; "
              f"totals kept in {figures.path}", markup=False)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass

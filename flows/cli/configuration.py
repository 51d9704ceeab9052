"""`agentflow config show`: each of agentflow's settings, its value and where it came from."""

from __future__ import annotations

import json
import sys

import typer

from agentflow.flows.cli._app import EXIT_INVALID, app, err, out

config_app = typer.Typer(no_args_is_help=True, help="agentflow's settings: agentflow.toml, [tool.agentflow], "
                         "AGENTFLOW_* variables.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print them as JSON.")) -> None:
    """Each setting's effective value and its source: an AGENTFLOW_* variable, agentflow.toml
    (or pyproject.toml's [tool.agentflow]) at the repository's root, or the default."""
    from agentflow import config
    from agentflow.errors import ConfigError

    try:
        values = config.read()
    except ConfigError as exc:  # said with its source: the file and line, or the variable
        err.print(f"agentflow: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        sys.stdout.write(json.dumps({v.name: {"value": None if v.value is None else
                                              (str(v.value) if not isinstance(v.value, (int, float)) else v.value),
                                              "source": v.source} for v in values}, indent=2) + "\n")
        return
    width = max(len(v.name) for v in values)
    for v in values:
        shown = "(default: under $PREFECT_HOME/agentflow)" if v.value is None else str(v.value)
        out.print(f"{v.name:<{width}}  {shown:<28} {v.source:<34} {v.description}", markup=False, highlight=False)

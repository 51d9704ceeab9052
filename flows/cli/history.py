"""Looking at runs: `runs` and `status` (from the Prefect server, crashes found on the way)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import typer
from rich.markup import escape as _markup_escape

from agentflow.flows.cli._app import EXIT_FAILED, EXIT_INVALID, app, err, need_api, out
from agentflow.printable import one_line


def escape(text: str) -> str:
    """A name from the server (a step's label may hold an input) for rich: markup escaped,
    control characters shown (agentflow/printable.py)."""
    return _markup_escape(one_line(text))

@app.command()
def runs(
    limit: int = typer.Option(20, "--limit", "-n", help="How many of the most recent runs."),
    workflow: Optional[str] = typer.Option(None, "--workflow", "-w", help="Only this workflow's runs."),
    scheduled: bool = typer.Option(False, "--scheduled", help="The runs scheduled for later instead, soonest first."),
) -> None:
    """Recent runs, newest first, as the Prefect server records them (runs a schedule made for
    later: --scheduled). Each is shown by the shortest start of its id no other run shares;
    `status` shows its name too, which commands also accept."""
    from rich.table import Table

    from agentflow.flows.durability.history import list_runs, short_ids

    need_api()
    rows = list_runs(limit, workflow, scheduled)
    shown = short_ids([row.id for row in rows])
    table = Table()
    table.add_column("run", no_wrap=True)  # whole: what `status`, `resume`, `approve` take
    for column in ("workflow", "state"):
        table.add_column(column)
    table.add_column("scheduled for" if scheduled else "started", no_wrap=True)
    for column in ("time", "version"):
        table.add_column(column)
    for row in rows:
        row = replace(row, state=row.label(_checked(row)))
        when = row.expected if scheduled else row.started
        started = when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"
        took = f"{row.duration_s:.1f}s" if row.duration_s is not None else "-"
        took += " (resumed)" if row.resumed and row.duration_s is not None else ""
        table.add_row(shown[row.id], row.workflow, row.state, started, took, row.version or "-")
    out.print(table)
    if not rows:
        out.print("no runs scheduled for later" if scheduled else "no runs yet", markup=False)


@app.command()
def status(run_id: str = typer.Argument(..., help="A run id, a unique prefix of it, or its name.")) -> None:
    """One run's state and each of its steps (task runs). Exit 0 if it completed, 1 if not."""
    from rich.table import Table

    from agentflow.flows.durability.history import RunNotFound, find_run, run_steps

    need_api()
    try:
        run = find_run(run_id)
    except RunNotFound as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    run = replace(run, state=run.label(_checked(run)))
    took = f" in {run.duration_s:.1f}s" if run.duration_s is not None else ""
    took += " (its last run, resumed)" if run.resumed and took else ""
    named = f" ({run.name})" if run.name else ""
    out.print(one_line(f"run {run.id}{named}  {run.workflow} (version {run.version or '-'})  {run.state}{took}"),
              markup=False)
    table = Table()
    found = run_steps(run)
    steps = found.rows
    resumed = any(step.earlier for step in steps)
    for column in ("step", "state", "time", "tries") + (("before the resume",) if resumed else ()):
        table.add_column(column)
    for step in steps:
        row = [escape(step.name), step.state, f"{step.duration_s:.1f}s" if step.duration_s is not None else "-",
               str(step.tries)]
        table.add_row(*row, *((escape(" → ".join(step.earlier)) or "-",) if resumed else ()))
    out.print(table)
    if not found.complete:
        err.print(f"warning: the server shows {found.recorded} of the {found.expected} task runs this run ended: it "
                  "records them from the events the run's process sent, and has not recorded the others yet (or "
                  f"lost them); `agentflow status {run.id[:8]}` again shows them once it has", markup=False)
    raise typer.Exit(0 if run.state in ("Completed", "Cached") else EXIT_FAILED)


def _checked(row: Any) -> str:
    """The run's state once its process is checked; a damaged record is said, not fatal."""
    from agentflow.errors import StateDamaged
    from agentflow.flows.durability import crash

    try:
        return crash.check(row.id, row.state)
    except StateDamaged as exc:
        err.print(f"warning: {exc}", markup=False)
        return row.state

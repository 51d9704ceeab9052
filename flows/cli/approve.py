"""`agentflow approve RUN [STEP]`: answer an approval step a run waits at (engine/approvals.py)."""

from __future__ import annotations

import getpass
import json
import socket
import time
from typing import Optional

import typer

from agentflow.flows.cli._app import EXIT_INVALID, app, err, out

_PAUSING_S = 10.0  # a run that has just paused saves its form a moment after its state


@app.command()
def approve(
    run_id: str = typer.Argument(..., help="The run that waits (its id, or a unique prefix of it)."),
    step: Optional[str] = typer.Argument(None, help="The approval step it waits at (checked if given)."),
    reject: bool = typer.Option(False, "--reject", help="Reject instead of approving."),
    comment: str = typer.Option("", "--comment", "-m", help="Why: shown to later steps and in the run's result."),
    fields: list[str] = typer.Option([], "--field", "-f", help="A field the step asks for: NAME=VALUE (VALUE read "
                                     "as JSON if it is JSON: 3, true, [1,2]; else as text). Repeatable."),
) -> None:
    """Approve (or --reject) the step a run waits at; the run goes on. From any machine that
    reaches the Prefect server; the same as answering the form on the run's page in the UI."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from agentflow.flows.durability.history import RunNotFound, find_run
    from agentflow.flows.engine.approvals import PAUSE_PREFIX, pause_key

    values = {}
    for given in fields:
        name, sep, text = given.partition("=")
        if not sep or not name.strip():
            err.print(f"-f {given!r}: write NAME=VALUE, e.g. -f risk=low", markup=False)
            raise typer.Exit(EXIT_INVALID)
        try:
            values[name.strip()] = json.loads(text)
        except ValueError:
            values[name.strip()] = text
    try:
        run = find_run(run_id)
    except RunNotFound as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    waiting_at = str(state.state_details.pause_key or "") if state is not None and state.is_paused() else ""
    if not waiting_at.startswith(PAUSE_PREFIX):
        now = state.name if state is not None else "unknown"
        err.print(f"run {run.id[:8]} is not waiting for an approval (it is {now}); `agentflow runs` shows the runs "
                  "that are (Awaiting approval)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if step is not None and not waiting_at.startswith(pause_key(step) + "-"):
        at = waiting_at.removeprefix(PAUSE_PREFIX).rsplit("-", 2)[0]
        err.print(f"run {run.id[:8]} waits at another approval step ({at}), not `{step}`; leave STEP out to answer "
                  "the one it waits at", markup=False)
        raise typer.Exit(EXIT_INVALID)
    answer = {"approve": not reject, "comment": comment, "decided_by": f"{getpass.getuser()}@{socket.gethostname()}",
              **values}
    deadline = time.monotonic() + _PAUSING_S
    while True:
        try:
            resume_flow_run(run.id, run_input=answer)
            break
        except Exception as exc:  # noqa: BLE001 - the server refused the answer: say why, the run still waits
            reason = str(exc).removeprefix("Cannot resume this run: ")
            if "schema not found" in reason and time.monotonic() < deadline:
                time.sleep(0.5)  # the run is pausing: its form is saved right after its state
                continue
            err.print(f"the answer was refused, and run {run.id[:8]} still waits: {reason}", markup=False)
            raise typer.Exit(EXIT_INVALID) from None
    what = "rejected" if reject else "approved"
    out.print(f"{what} run {run.id[:8]} ({run.workflow}) as {answer['decided_by']}; it goes on", markup=False)

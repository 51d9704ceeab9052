"""`agentflow approve RUN [STEP]`: answer an approval step a run waits at (engine/approvals.py)."""

from __future__ import annotations

import getpass
import json
import socket
import time
from typing import Optional

import typer

from agentflow.flows.cli._app import EXIT_INVALID, app, err, need_api, out

_PAUSING_S = 10.0  # a run that has just paused saves its form a moment after its state
_MAX_VALUE_BYTES = 64 * 1024  # a field's value as given with -f
_MAX_DEPTH = 32  # how deeply a JSON value given with -f may nest


def _field_value(given: str) -> tuple[str, object]:
    """NAME and VALUE of `-f NAME=VALUE` (VALUE as JSON if it is JSON, else text); exit 2 with
    the rule broken. The form's own fields (approve, comment, decided_by) are not fields a
    caller sets: --reject, --comment, and who runs this command say those."""
    from agentflow.flows.language.step_parts import APPROVAL_FORM_FIELDS

    name, sep, text = given.partition("=")
    shown = given if len(given) <= 80 else given[:77] + "..."
    if not sep or not name.strip():
        err.print(f"-f {shown!r}: write NAME=VALUE, e.g. -f risk=low", markup=False)
        raise typer.Exit(EXIT_INVALID)
    name = name.strip()
    if name in APPROVAL_FORM_FIELDS:
        err.print(f"-f {name}=...: `{name}` is the form's own, not a field of the step: approve or --reject "
                  "decides, --comment says why, and who decides is who runs this command", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if len(text.encode()) > _MAX_VALUE_BYTES:
        err.print(f"-f {name}=...: the value is {len(text.encode()):,} bytes; at most {_MAX_VALUE_BYTES:,}",
                  markup=False)
        raise typer.Exit(EXIT_INVALID)
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    except ValueError:
        return name, text
    if value is None and text.strip() != "null" or _depth(value) > _MAX_DEPTH:
        err.print(f"-f {name}=...: the value nests deeper than {_MAX_DEPTH} levels; give a flatter value",
                  markup=False)
        raise typer.Exit(EXIT_INVALID)
    return name, value


def _say_who(run_id: str, key: str, who: str) -> None:
    """Who decides, kept as a flow-run input of its own beside the answer: not a field of the
    form, so neither -f nor the UI's form can set it (the step reads it: engine/approvals.py)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        try:
            client.create_flow_run_input(run_id, key, who)
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 409:
                raise
            client.delete_flow_run_input(run_id, key)  # an earlier answer was refused: this one decides
            client.create_flow_run_input(run_id, key, who)


def _depth(value: object) -> int:
    """How deeply a JSON value nests (iteratively: a deep value must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if depth <= _MAX_DEPTH:
                stack += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest


@app.command()
def approve(
    run_id: str = typer.Argument(..., help="The run that waits (its id, a unique prefix of it, or its name)."),
    step: Optional[str] = typer.Argument(None, help="The approval step it waits at (checked if given)."),
    reject: bool = typer.Option(False, "--reject", help="Reject instead of approving."),
    comment: str = typer.Option("", "--comment", "-m", help="Why: shown to later steps and in the run's result."),
    fields: list[str] = typer.Option([], "--field", "-f", help="A field the step asks for: NAME=VALUE (VALUE read "
                                     "as JSON if it is JSON: 3, true, [1,2]; else as text). Repeatable."),
) -> None:
    """Approve (or --reject) the step a run waits at; the run goes on. From any machine that
    reaches the Prefect server; the same as answering the form on the run's page in the UI."""
    values = dict(_field_value(given) for given in fields)
    need_api()
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from agentflow.flows.durability.history import RunNotFound, find_run
    from agentflow.flows.engine.approval_form import PAUSE_PREFIX, decided_by_key, pause_key

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
    answer = {**values, "approve": not reject, "comment": comment}
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    _say_who(run.id, decided_by_key(waiting_at), who)
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
    if reject:
        out.print(f"rejected run {run.id[:8]} ({run.workflow}) as {who}: the step fails and the run with it, "
                  "unless the step says `on_reject: skip` (then it and the steps after it are skipped)", markup=False)
    else:
        out.print(f"approved run {run.id[:8]} ({run.workflow}) as {who}; it goes on", markup=False)

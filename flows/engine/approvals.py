"""Approval steps: the waiting. The run waits for a person, with a form in the Prefect UI
(its form and what the answer makes of the step: engine/approval_form.py; a result held
back by a confidence gate: engine/approval_gates.py).

A deployed run is suspended (Prefect's `suspend_flow_run`): its process ends and gives its
worker slot back, and once answered the run is scheduled again and a worker runs it from the
top, its journal answering every step done, this one from the answer kept on the server; a
`timeout` is kept by the server (engine/approval_timer.py). A run started here pauses in
place (`pause_flow_run`: the process waits). A person answers in the UI ("Resume" on the
run's page) or with `agentflow approve RUN [STEP]`, from any machine that reaches the server
(Prefect's `resume_flow_run` with the form's values: the server checks them against the
form's schema; a bad value is refused and the run keeps waiting). With `timeout`, no answer
in time decides `default` (approve, reject, or fail).
"""

from __future__ import annotations

import contextvars
import secrets
import threading
import time
from typing import Any


from agentflow import prefect_compat
from agentflow import log
from agentflow.events import StepEvent, emit
from agentflow.flows.engine import approval_timer
from agentflow.flows.engine.approval_form import decided_by_key, description, form, pause_key
from agentflow.flows.language.spec import Approval
from agentflow.tasks import recording

_FOREVER_S = 365 * 24 * 3600  # no `timeout`: wait (Prefect's pause needs a number)
_POLL_S = 2  # how often the paused run asks whether it was answered
_ANNOUNCE_WITHIN_S = 30.0


def ask(step: str, approval: Approval, context: dict[str, Any], run_id: str | None, why: str = "") -> dict[str, Any]:
    """Pause the run until a person answers (or the timeout decides); the decision. A test or
    a replayed recording answers instead of a person; a recorded run keeps the decision."""
    replaying = recording.REPLAYING.get()
    given = replaying.approval(step) if replaying is not None else None
    if given is not None:  # nobody is asked
        return {"approved": given.approve, "decided_by": given.by, "decided_at": _now(), "comment": given.comment,
                "fields": {name: given.fields.get(name) for name in approval.fields}, "timed_out": False}
    decision = _asked(step, approval, context, run_id, why)
    recorder = recording.RECORDING.get()
    if recorder is not None:
        recorder.decided(step, decision)
    return decision


def _asked(step: str, approval: Approval, context: dict[str, Any], run_id: str | None, why: str) -> dict[str, Any]:
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    model = form(approval)
    deployed = _deployed()
    answer, expired = _asked_before(step, model, deployed)
    if answer is not None:  # a suspended run, answered and run again by a worker
        return _decision(approval, *answer)
    if expired:  # a suspended run, woken by its timer (engine/approval_timer.py)
        return _timed_out(approval)
    text = description(step, approval, context)
    timeout = int(approval.timeout) if approval.timeout else _FOREVER_S
    within = f" within {approval.timeout:g}s (then: {approval.default})" if approval.timeout else ""
    how = (f"{why + '; ' if why else ''}waiting for a person{within}: answer in the UI (Resume), or "
           f"`agentflow approve {(run_id or 'RUN')[:8]} {step} [--reject] [--comment TEXT]`")
    # A key of its own for each time it is asked: Prefect takes a pause whose key it has seen in
    # this flow run as answered already (a run resumed after a crash would go on unasked).
    key = f"{pause_key(step)}-{secrets.token_hex(3)}"
    shown = model.with_initial_data(description=text, approve=True)
    if deployed and (approval.timeout is None or approval_timer.arm(_flow_run_id(), key, approval.timeout, step)):
        _suspend(step, shown, key, how)  # raises: the process ends, the worker's slot is free
    _announce_when_asked(step, key, how)
    try:
        answer = pause_flow_run(wait_for_input=shown, timeout=timeout, poll_interval=_POLL_S, key=key)
    except FlowPauseTimeout:
        _running_again()
        return _timed_out(approval)
    return _decision(approval, answer, key)


def _decision(approval: Approval, answer: Any, key: str) -> dict[str, Any]:
    fields = {name: getattr(answer, name) for name in approval.fields}
    return {"approved": bool(answer.approve), "decided_by": _who(key), "decided_at": _now(),
            "comment": answer.comment, "fields": fields, "timed_out": False}


def _who(key: str) -> str:
    """Who answered the ask `key`: what `agentflow approve` noted, else the UI (which knows no users)."""
    from prefect.client.orchestration import get_client

    run_id = _flow_run_id()
    if run_id is None:
        return "the Prefect UI"
    with get_client(sync_client=True) as client:
        noted = [found for found in client.filter_flow_run_input(run_id, decided_by_key(key), 5, set())
                 if found.key == decided_by_key(key)]
    return str(noted[0].value)[:200] if noted and noted[0].value else "the Prefect UI"


def _flow_run_id() -> Any:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context.flow_run.id if context is not None and context.flow_run is not None else None


def _deployed() -> bool:
    """A deployment's run (suspending needs a deployment to run it again)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return bool(context is not None and context.flow_run is not None and context.flow_run.deployment_id)


def _asked_before(step: str, model: Any, deployed: bool) -> tuple[Any, bool]:
    """(the answer a person already gave to `step` in this flow run, or None; whether a timer
    woke it). A suspended run is run again from the top once answered, or once its timer
    fires: the answer is on the server, as the flow run's input `suspended-KEY-response`
    (`paused-` for a pause in place: a run that crashed after the answer came, before the
    step's decision was journaled); the deadline too (engine/approval_timer.py)."""
    from prefect.client.orchestration import get_client

    run_id = _flow_run_id()
    if run_id is None:
        return None, False
    prefix = pause_key(step) + "-"
    with get_client(sync_client=True) as client:
        given = [found for under in prefect_compat.pause_response_prefixes(prefix)
                 for found in client.filter_flow_run_input(run_id, under, 100, set())
                 if prefect_compat.is_response_key(found.key)]
        expired = not given and deployed and approval_timer.expired(client, run_id, prefix)
        if deployed and (given or expired):
            approval_timer.disarm(client, run_id)
    if not given:
        return None, expired
    latest = max(given, key=lambda found: found.created)
    key = prefect_compat.pause_key_of_response(latest.key)
    return (model.load_from_flow_run_input(latest), key), False


def _suspend(step: str, shown: Any, key: str, how: str) -> None:
    """Suspend this deployed run at `step`: Prefect saves the form and raises Pause, which ends
    the flow run's process; it is said once the run is Suspended, so an answer is taken."""
    from prefect.exceptions import Pause
    from prefect.flow_runs import suspend_flow_run

    try:
        suspend_flow_run(wait_for_input=shown, key=key)
    except Pause:
        how = f"{how}; suspended: its worker is free until then"
        emit(StepEvent(kind="approval", step=step, label=step, summary=how))
        log.logger(component="engine").info(f"step {step}: {how}", step=step)
        raise
    raise RuntimeError(f"step `{step}`: Prefect did not suspend the run")  # it answers Pause or an error


def _announce_when_asked(step: str, key: str, how: str) -> None:
    """Say that the run waits for a person once it does: its state Paused and its form saved
    on the server (Prefect saves the form just after the state), so that an answer given on
    reading the line is taken. A thread: the run's own thread is in Prefect's pause."""
    run_id = _flow_run_id()

    def announce() -> None:
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + _ANNOUNCE_WITHIN_S
        with get_client(sync_client=True) as client:
            while run_id is not None and time.monotonic() < deadline:
                form_key = prefect_compat.paused_form_key(client.read_flow_run(run_id).state)
                if form_key is not None:
                    try:
                        client.read_flow_run_input(run_id, form_key)
                        break
                    except Exception:  # noqa: BLE001 - not saved yet
                        pass
                time.sleep(0.2)
        emit(StepEvent(kind="approval", step=step, label=step, summary=how))
        log.logger(component="engine").info(f"step {step}: {how}", step=step)

    threading.Thread(target=contextvars.copy_context().run, args=(announce,), name="agentflow-approval",
                     daemon=True).start()


def _timed_out(approval: Approval) -> dict[str, Any]:
    fields = {name: spec.default for name, spec in approval.fields.items()}
    decision = {"approved": approval.default == "approve", "decided_by": f"timeout ({approval.default})",
                "decided_at": _now(), "comment": f"no answer within {approval.timeout:g}s", "fields": fields,
                "timed_out": True}
    if approval.default == "fail":
        decision["fail"] = True
    return decision


def _running_again() -> None:
    """A pause that timed out leaves the run Paused (or the server's pause expiration marks it
    Failed); the run goes on with the default decision, so it is set Running again."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    run_id = _flow_run_id()
    if run_id is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Running(), force=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

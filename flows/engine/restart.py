"""Running a run again: finishing it (`agentflow resume`) or part of it (`agentflow rerun`).

What may be done, and with which definition, is decided first (durability/resume.py).
Resume starts the same Prefect flow run again (its state forced back to Scheduled, then
`run_flow` with that flow run): the body takes every completed call from the run's journal,
so only what had not completed runs, and the UI keeps one run whose history shows the crash
and the resume. Rerun starts a new flow run whose journal is seeded with the old run's
calls outside the steps to run again; those are computed again (cache entries refreshed).
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import SecretStr

from agentflow import prefect_compat
from agentflow.flows.durability import crash, worktrees
from agentflow.flows.durability.journal import Journal
from agentflow.flows.durability.resume import Prepared
from agentflow.flows.engine.compile import build_flow, own_heartbeat


def resume(prepared: Prepared, secrets: dict[str, str] | None = None) -> Any:
    """Start the run's flow run again; return its final state. Call from the run's directory.
    `secrets`: the run's secret inputs, which its record holds by name only."""
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    flow = build_flow(prepared.workflow, cache=prepared.record.cache)
    crash.crash_orphaned_tasks(prepared.run_id)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(prepared.run_id), Scheduled(message="resumed by agentflow"), force=True)
        flow_run = client.read_flow_run(uuid.UUID(prepared.run_id))
    parameters = {**prepared.record.inputs, **{k: SecretStr(v) for k, v in (secrets or {}).items()}}
    with own_heartbeat():
        return prefect_compat.run_flow_again(flow, flow_run, parameters)


def rerun(prepared: Prepared, again: set[str], secrets: dict[str, str] | None = None) -> Any:
    """A new flow run: the old run's calls outside `again` are reused, the rest computed."""
    from prefect.client.orchestration import get_client

    flow = build_flow(prepared.workflow, cache=prepared.record.cache, refresh=frozenset(again))
    old = Journal(prepared.run_id)
    kept = {label: done for label, done in old.done.items() if done.step not in again}
    with get_client(sync_client=True) as client:
        parameters = {**prepared.record.inputs, **{k: SecretStr(v) for k, v in (secrets or {}).items()}}
        flow_run = client.create_flow_run(flow, parameters=parameters,
                                          tags=[crash.RUN_TAG, f"rerun-of:{prepared.run_id[:8]}"])
    new = Journal(str(flow_run.id))
    new.seed(kept)
    new.close()
    base = worktrees.read_base(prepared.run_id)
    if base is not None:  # the same tree to start from, so that the kept steps' patches apply
        worktrees.save_base(str(flow_run.id), base)
    with own_heartbeat():
        return prefect_compat.run_flow_again(flow, flow_run, parameters)

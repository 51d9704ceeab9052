"""`agentflow audit`: every agent call, from the audit log (tasks/audit.py)."""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

import typer

from agentflow.flows.cli._app import EXIT_INVALID, app, err


@app.command()
def audit(
    run_id: Optional[str] = typer.Option(None, "--run", help="Only this run's calls (its id, or a prefix of it)."),
    agent: Optional[str] = typer.Option(None, "--agent", help="Only this agent's calls."),
    since: Optional[str] = typer.Option(None, "--since", help="Only calls this recent: 30m, 24h, 7d."),
    as_json: bool = typer.Option(False, "--json", help="The lines as they are stored: one JSON object each."),
) -> None:
    """Every agent call made on this machine: when, which run and step, the agent, a digest of
    the request, the tools it was allowed and denied, the outcome, time, tokens and cost."""
    from agentflow import log, log_query
    from agentflow.flows.language.durations import parse_duration
    from agentflow.tasks.audit import audit_file

    try:
        cutoff = None if since is None else time.time() - parse_duration(since)
    except ValueError as exc:
        err.print(f"--since {since!r}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    path = audit_file()
    query = log_query.Query(run=run_id.strip().lower() if run_id else None, agent=agent, since=cutoff)
    calls = log_query.read(log.files(path), query)
    if not calls:
        err.print(f"no agent calls match in {path}" if path.exists() else f"no audit log at {path} yet", markup=False)
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write("".join(json.dumps(call, ensure_ascii=False) + "\n" for call in calls))
        return
    for call in calls:  # one line each: grep-able, never wrapped
        cost = call.get("cost_usd")
        tokens = call.get("tokens")
        sys.stdout.write(" ".join([
            str(call.get("timestamp", ""))[:19].replace("T", " "), str(call.get("run_id") or "-")[:8],
            str(call.get("workflow")), str(call.get("step")), f"agent={call.get('agent')}", f"({call.get('kind')})",
            str(call.get("outcome")), f"{call.get('duration_s', 0):.2f}s",
            *([f"{tokens} tokens"] if isinstance(tokens, int) else []),
            *([f"${cost:.4f}"] if isinstance(cost, (int, float)) else []), str(call.get("request", ""))]) + "\n")

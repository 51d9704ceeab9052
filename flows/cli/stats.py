"""`agentflow stats`: how workflows and agents did over a period (flows/observe/stats.py)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from agentflow.flows.cli._app import EXIT_INVALID, app, err, need_api, out


@app.command()
def stats(
    since: str = typer.Option("7d", "--since", help="The period: 24h, 7d, 30d."),
    workflow: Optional[str] = typer.Option(None, "--workflow", help="Only this workflow's runs and steps."),
    as_json: bool = typer.Option(False, "--json", help="The figures as JSON, with the counts behind each rate."),
) -> None:
    """Runs, success rates, step times (p50/p95), cache hit rate, degraded and skipped rates, retries,
    tokens and cost, per workflow and per agent; A/B variants side by side. From the Prefect server's
    events: every worker's runs."""
    from agentflow.flows.language.durations import parse_duration

    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        err.print(f"--since {since!r}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    start = datetime.fromtimestamp(time.time() - seconds, tz=timezone.utc)
    need_api()
    from prefect.client.orchestration import get_client

    from agentflow.flows.observe import stats as figures

    with get_client(sync_client=True) as client:
        document = figures.compute(figures.read(client, start), workflow)
    document = {"since": start.isoformat(timespec="seconds"), "workflow": workflow, **document}
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    if not document["workflows"]:
        what = f"workflow {workflow!r}" if workflow else "any workflow"
        out.print(f"no runs of {what} ended since {document['since']}", markup=False)
        return
    # Twelve columns: piped or redirected, the tables are not squeezed to 80 characters.
    console = out if out.is_terminal else Console(width=170, highlight=False)
    console.print(_workflows(document["workflows"]))
    if document["agents"]:
        console.print(_agents("agents", document["agents"]))
    if document["variants"]:
        console.print(_agents("A/B variants", document["variants"]))


def _workflows(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="workflows", title_justify="left")
    for column in ("workflow", "runs", "success", "steps", "p50", "p95", "cache hits", "degraded", "skipped",
                   "retries", "tokens", "cost"):
        table.add_column(column, justify="left" if column == "workflow" else "right")
    for r in rows:
        table.add_row(r["workflow"], str(r["runs"]), _rate(r["run_success_rate"], r["runs_completed"], r["runs"]),
                      str(r["steps"]), _seconds(r["p50_s"]), _seconds(r["p95_s"]),
                      _rate(r["cache_hit_rate"], r["cache_hits"], r["cache_hits"] + r["cache_misses"]),
                      _rate(r["degraded_rate"], r["degraded"], r["called"]),
                      _rate(r["skipped_rate"], r["skipped"], r["steps"]),
                      str(r["retries"]), str(r["tokens"]), f"${r['cost_usd']:.4f}")
    return table


def _agents(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    columns = ("agent", "variant") if title.startswith("A/B") else ("agent",)
    for column in (*columns, "calls", "success", "p50", "p95", "cache hits", "degraded", "skipped",
                   "retries", "tokens", "cost"):
        table.add_column(column, justify="left" if column in ("agent", "variant") else "right")
    for r in rows:
        names = (r["agent"], r["variant"]) if title.startswith("A/B") else (r["agent"],)
        table.add_row(*names, str(r["called"]),
                      _rate(r["success_rate"], r["succeeded"], r["called"]), _seconds(r["p50_s"]),
                      _seconds(r["p95_s"]),
                      _rate(r["cache_hit_rate"], r["cache_hits"], r["cache_hits"] + r["cache_misses"]),
                      _rate(r["degraded_rate"], r["degraded"], r["called"]),
                      _rate(r["skipped_rate"], r["skipped"], r["steps"]),
                      str(r["retries"]), str(r["tokens"]), f"${r['cost_usd']:.4f}")
    return table


def _rate(rate: float | None, part: int, whole: int) -> str:
    return "-" if rate is None else f"{rate:.0%} ({part}/{whole})"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"

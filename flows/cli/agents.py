"""`agentflow agents`: every agent the workflows can use, and whether it can serve here now."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from agentflow.flows.cli._app import app, err, need_api, out, print_problems
from agentflow.errors import SpecError


@app.command()
def agents(
    workflows: list[Path] = typer.Argument(None, help="Workflow files (default: workflows/*.yaml here)."),
    as_json: bool = typer.Option(False, "--json", help="Print the agents as JSON."),
) -> None:
    """List the agents: where each is defined, its kind and model, its fallback chain, its
    circuit, and whether it is available here (CLI and version, key, server reachable)."""
    from agentflow.flows.engine import agent_blocks, ladder
    from agentflow.flows.language.loader import is_agents_file, load_workflow
    from agentflow.tasks import circuit
    from agentflow.tasks.kinds import KINDS

    paths = list(workflows or sorted(Path("workflows").glob("*.yaml")))
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        if is_agents_file(path):
            continue
        try:
            resolved = load_workflow(path)
        except SpecError as exc:
            print_problems(exc)
            raise typer.Exit(2) from None
        need_api()
        base = path.parent
        for name, spec in sorted(resolved.agents.items()):
            entry = found.setdefault(name, {"agent": name, "used_by": []})
            entry["used_by"].append(resolved.spec.name)
            if "kind" in entry:
                continue
            subagent = resolved.subagents.get(spec.subagent) if spec.subagent else None
            if isinstance(resolved.spec.agents, str):
                defined = str(base / resolved.spec.agents)
            elif name in (resolved.spec.agents or {}):
                defined = str(path)
            else:
                defined = subagent.path if subagent else str(path)
            ok, why = KINDS[spec.kind].ready(spec, None)
            entry.update(kind=spec.kind, model=spec.model or (subagent.model if subagent else None),
                         defined_in=defined, subagent=subagent.path if subagent else None,
                         fallbacks=ladder.chain(name, resolved.agents, None, resolved.degraded.max_fallback_retries),
                         criticality=spec.criticality, skip_if_unavailable=spec.skip_if_unavailable,
                         concurrency=spec.concurrency, available=ok, why=why,
                         circuit=circuit.read(name).view() if spec.breaker is not None else None)
        for reference in agent_blocks.references(resolved):
            entry = found.setdefault(reference, {"agent": reference, "used_by": []})
            entry["used_by"].append(resolved.spec.name)
            if "kind" not in entry:
                entry.update(_block_agent(reference))
    rows = [found[name] for name in sorted(found)]
    _show(rows, as_json)


def _block_agent(reference: str) -> dict[str, Any]:
    """An `agent: block:NAME` as the Prefect server holds it (or why it cannot be used)."""
    from agentflow.flows.engine import agent_blocks
    from agentflow.tasks import circuit
    from agentflow.tasks.kinds import KINDS

    defined = f"Prefect block {reference.split(':', 1)[1]}"
    try:
        spec, keys = agent_blocks.load(reference)
    except ValueError as exc:
        return dict(kind="?", model=None, defined_in=defined, subagent=None, fallbacks=[], criticality=None,
                    skip_if_unavailable=None, concurrency=None, available=False,
                    why=f"{exc}; {agent_blocks.FIX}", circuit=None)
    ok, why = KINDS[spec.kind].ready(spec, keys)
    return dict(kind=spec.kind, model=spec.model, defined_in=defined, subagent=spec.subagent,
                fallbacks=[spec.fallback] if spec.fallback else [], criticality=spec.criticality,
                skip_if_unavailable=spec.skip_if_unavailable, concurrency=spec.concurrency, available=ok, why=why,
                circuit=circuit.read(reference).view() if spec.breaker is not None else None)


def _show(rows: list[dict[str, Any]], as_json: bool) -> None:
    from rich.table import Table

    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        err.print("no agents: no workflow here names one (give workflow files as arguments)", markup=False)
        return
    table = Table()
    for column in ("agent", "kind", "model", "fallbacks", "circuit", "available here", "defined in"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = (row["circuit"] or {}).get("state", "-")
        style = {"open": "red", "half_open": "yellow"}.get(state, "white")
        available = f"[green]yes[/] {escape(row['why'])}" if row["available"] else f"[red]no[/] {escape(row['why'])}"
        table.add_row(escape(row["agent"]), row["kind"], escape(row["model"] or "-"),
                      escape(" → ".join(row["fallbacks"]) or "-"), f"[{style}]{state}[/]", available,
                      escape(row["defined_in"]))
    out.print(table)

"""`agentflow logs`: agentflow's log lines (agentflow/log.py), filtered, followed or summed up."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from agentflow.flows.cli._app import EXIT_INVALID, app, err, out


@app.command()
def logs(
    run_id: Optional[str] = typer.Argument(None, help="Only this run's lines (its id, or a prefix of it)."),
    level: str = typer.Option("info", "--level", help="The lowest level shown: debug, info, warning, error."),
    step: Optional[str] = typer.Option(None, "--step", help="Only this step's lines."),
    since: Optional[str] = typer.Option(None, "--since", help="Only lines this recent: 30m, 24h, 7d."),
    as_json: bool = typer.Option(False, "--json", help="The lines as they are stored: one JSON object each."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Then wait for new lines (Ctrl-C stops)."),
    analyze: bool = typer.Option(False, "--analyze", help="Counts by level, component and step; the slowest "
                                 "steps; the most frequent warnings and errors."),
    file: Optional[Path] = typer.Option(None, "--file", help="The log file (default: AGENTFLOW_LOG_FILE, else "
                                        "$PREFECT_HOME/agentflow/agentflow.jsonl)."),
) -> None:
    """agentflow's log: each step's start and end, what failed and why, on this machine."""
    from agentflow import log, log_query
    from agentflow.flows.language.durations import parse_duration

    if level not in log.LEVELS or level == "off":
        err.print(f"--level {level!r}: use one of debug, info, warning, error, critical", markup=False)
        raise typer.Exit(EXIT_INVALID)
    try:
        cutoff = None if since is None else time.time() - parse_duration(since)
    except ValueError as exc:
        err.print(f"--since {since!r}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    path = file or log.default_file()
    query = log_query.Query(run=run_id.strip().lower() if run_id else None, level=level, step=step, since=cutoff)
    lines = log_query.read(log.files(path), query)
    if analyze:
        _print_analysis(log_query.analyze(lines), as_json)
        return
    if not lines and run_id and not follow and not file:
        lines = _from_the_server(run_id, query)
    if not lines and not follow:
        err.print(f"no log lines match in {path}" if path.exists() else f"no log at {path} yet", markup=False)
        raise typer.Exit(1)
    for line in lines:
        _print(line, as_json)
    if follow:
        _follow(path, query, as_json)


def _from_the_server(run_id: str, query) -> list[dict]:
    """The run's lines from the Prefect server's log of it, when this machine has none (another
    worker ran it); nothing if no server that stays up is configured (the embedded one holds
    only this machine's runs, whose lines are in its file)."""
    import os

    from agentflow import _prefect_env
    from agentflow.flows.durability.history import RunNotFound
    from agentflow.flows.observe import run_log

    if not (os.environ.get("PREFECT_API_URL") or _prefect_env.configured_api_url()):
        return []
    try:
        whole, lines = run_log.read(run_id)
    except RunNotFound:
        return []
    found = [line for line in lines if query.matches({**line, "run_id": whole})]
    if found:
        err.print(f"(this machine's log has no line of run {whole[:8]}: its log on the Prefect server)", markup=False)
    return found


def _print(line: dict, as_json: bool) -> None:
    from agentflow import log_query

    sys.stdout.write((json.dumps(line, ensure_ascii=False) if as_json else log_query.render(line)) + "\n")


def _follow(path: Path, query, as_json: bool) -> None:
    """New lines as they are written (the file reopened when it is rotated)."""
    from agentflow import log_query

    position = path.stat().st_size if path.exists() else 0
    inode = path.stat().st_ino if path.exists() else None
    try:
        while True:
            sys.stdout.flush()
            time.sleep(0.5)  # a tail: nothing to wait on but the file
            if not path.exists():
                continue
            stat = path.stat()
            if stat.st_ino != inode or stat.st_size < position:
                position, inode = 0, stat.st_ino
            if stat.st_size == position:
                continue
            with path.open(encoding="utf-8", errors="replace") as handle:
                handle.seek(position)
                text = handle.read()
            complete, _, _ = text.rpartition("\n")  # a line being written waits for its end
            position += len(complete.encode()) + (1 if complete else 0)
            for line in log_query.parse(complete.splitlines()):
                if query.matches(line):
                    _print(line, as_json)
    except KeyboardInterrupt:
        return


def _print_analysis(summary: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    out.print(f"{summary['lines']} lines, {summary['runs']} runs", markup=False)
    for title, counts in (("level", summary["by_level"]), ("component", summary["by_component"]),
                          ("step", summary["by_step"])):
        table = Table(title=f"by {title}")
        table.add_column(title)
        table.add_column("lines", justify="right")
        for name, count in counts.items():
            table.add_row(str(name), str(count))
        out.print(table)
    slow = Table(title="slowest steps")
    for column in ("step", "workflow", "run", "agent", "seconds", "outcome"):
        slow.add_column(column)
    for row in summary["slowest"]:
        slow.add_row(str(row["step"]), str(row["workflow"]), str(row["run_id"] or "")[:8], str(row["agent"] or "-"),
                     f"{row['duration_s']:.2f}", str(row["outcome"]))
    out.print(slow)
    errors = Table(title="most frequent warnings and errors")
    for column in ("count", "step", "message"):
        errors.add_column(column)
    for row in summary["errors"]:
        errors.add_row(str(row["count"]), row["step"], row["message"])
    out.print(errors)

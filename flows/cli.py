"""The `agentflow` command.

Exit codes: 0 success; 1 the workflow failed, or `validate` found problems; 2 the
definition or the inputs given are invalid (nothing ran); 130 interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from flows import _prefect_env

_prefect_env.apply(_prefect_env.QUIET)
_prefect_env.apply(_prefect_env.RELIABLE)

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

from flows.errors import InputError, SpecError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Durable AI-agent workflows in YAML, run on Prefect.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 1, 2, 130


def _load(path: Path):
    from flows.loader import load_workflow

    try:
        return load_workflow(path)
    except SpecError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        err.print(f"{len(exc.problems)} problem(s); nothing was run.", markup=False)
        raise typer.Exit(EXIT_INVALID) from None


def _parse_inputs(pairs: list[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            err.print(f"-i {pair!r}: write inputs as key=value, e.g. -i feature='VAT invoice'", markup=False)
            raise typer.Exit(EXIT_INVALID)
        given[key.strip()] = value
    return given


def _prepare(workflow: Path, inputs: list[str]) -> tuple[Any, dict[str, Any]]:
    """The loaded workflow and its checked inputs, or exit 2 saying what is wrong."""
    from flows.inputs import validate_inputs

    resolved = _load(workflow)
    try:
        values = validate_inputs(resolved.spec, _parse_inputs(inputs), from_strings=True)
    except InputError as exc:
        err.print(f"{workflow}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    # Like `python -m`: `call: mymodule:fn` finds modules in the directory the user runs from.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return resolved, values


@app.command()
def run(
    workflow: Path = typer.Argument(..., help="The workflow YAML file."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="An input as key=value; repeat for more."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON on stdout."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write cached step results."),
    refresh: bool = typer.Option(False, "--refresh", help="Recompute cached steps and overwrite their entries."),
) -> None:
    """Run a workflow now, showing each step as it starts and ends."""
    from flows.compile import build_flow

    resolved, values = _prepare(workflow, inputs)
    if no_cache and refresh:
        err.print("--no-cache and --refresh contradict each other; pick one", markup=False)
        raise typer.Exit(EXIT_INVALID)
    flow = build_flow(resolved, cache="off" if no_cache else "refresh" if refresh else "use")
    raise typer.Exit(_run(resolved, as_json, lambda: flow(**values, return_state=True)))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run(resolved: Any, as_json: bool, invoke: Callable[[], Any], doing: str = "") -> int:
    """Run `invoke` (which returns the flow run's final state) showing each step; the exit code."""
    from flows._progress import ProgressView
    from flows.observe import listening

    console = err if as_json else out
    spec = resolved.spec
    view = ProgressView(console, [s.id for s in spec.steps])
    console.print(f"[bold]{spec.name}[/] ({len(spec.steps)} steps, {spec.pattern}) version {resolved.spec_hash}"
                  f"{doing}")
    started = time.monotonic()
    # SIGTERM (a cancelled CI job, `kill`) ends the run like Ctrl-C: the flow's scheduler
    # stops the running commands (flows/runtime.py), then this reports it and exits 130.
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}
    try:
        with listening(view):
            state = invoke()
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: running commands were stopped")
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    elapsed = time.monotonic() - started
    console.print(view.table())
    run_id = str(state.state_details.flow_run_id) if state.state_details else "?"
    ok = state.is_completed()
    verdict = "[green]completed[/]" if ok else f"[red]{state.name.lower()}[/]"
    console.print(f"run {run_id} {verdict} in {elapsed:.1f}s")
    if not ok:
        failed = [step for step, row in view.rows.items() if row.status == "failed"]
        console.print(f"[red]failed steps: {', '.join(failed) or state.message}[/]")
    if as_json:
        document = {
            "workflow": spec.name, "version": resolved.spec_hash, "run_id": run_id, "state": state.name,
            "steps": {step: {"status": row.status, "duration_s": row.duration_s, "cached": row.cached,
                             "reused": row.reused,
                             **({"result": row.result.context()} if row.result is not None else {})}
                      for step, row in view.rows.items()},
        }
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    return 0 if ok else EXIT_FAILED


@app.command()
def plan(
    workflow: Path = typer.Argument(..., help="The workflow YAML file."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="An input as key=value; repeat for more."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
) -> None:
    """Dry run: which steps would be answered from the cache now, and why not. Calls no agent."""
    from rich.table import Table

    from flows.plan import plan_workflow

    resolved, values = _prepare(workflow, inputs)
    verdicts = plan_workflow(resolved, values)
    if as_json:
        sys.stdout.write(json.dumps([v.__dict__ for v in verdicts], indent=2) + "\n")
        return
    table = Table()
    for column in ("step", "would", "why"):
        table.add_column(column)
    styles = {"hit": "blue", "miss": "yellow", "runs": "white", "skipped": "yellow", "unknown": "dim"}
    for verdict in verdicts:
        table.add_row(verdict.step, f"[{styles.get(verdict.outcome, 'white')}]{verdict.outcome}[/]",
                      escape(verdict.reason))
    out.print(table)
    hits = sum(v.outcome == "hit" for v in verdicts)
    out.print(f"{hits} of {len(verdicts)} steps would come from the cache", markup=False)


@app.command()
def runs(
    limit: int = typer.Option(20, "--limit", "-n", help="How many of the most recent runs."),
    workflow: Optional[str] = typer.Option(None, "--workflow", "-w", help="Only this workflow's runs."),
) -> None:
    """Recent runs, newest first, as the Prefect server records them."""
    from rich.table import Table

    from flows import crash
    from flows.history import list_runs

    table = Table()
    for column in ("run", "workflow", "state", "started", "time", "version"):
        table.add_column(column)
    for row in list_runs(limit, workflow):
        row = replace(row, state=crash.check(row.id, row.state))
        started = row.started.strftime("%Y-%m-%d %H:%M:%S") if row.started else "-"
        took = f"{row.duration_s:.1f}s" if row.duration_s is not None else "-"
        table.add_row(row.id[:8], row.workflow, row.state, started, took, row.version or "-")
    out.print(table)


@app.command()
def status(run_id: str = typer.Argument(..., help="A run id, or a unique prefix of it.")) -> None:
    """One run's state and each of its steps (task runs). Exit 0 if it completed, 1 if not."""
    from rich.table import Table

    from flows.history import RunNotFound, find_run, run_steps

    from flows import crash

    try:
        run = find_run(run_id)
    except RunNotFound as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    run = replace(run, state=crash.check(run.id, run.state))
    took = f" in {run.duration_s:.1f}s" if run.duration_s is not None else ""
    out.print(f"run {run.id}  {run.workflow} (version {run.version or '-'})  {run.state}{took}", markup=False)
    table = Table()
    for column in ("step", "state", "time", "tries"):
        table.add_column(column)
    for step in run_steps(run.id):
        table.add_row(escape(step.name), step.state,
                      f"{step.duration_s:.1f}s" if step.duration_s is not None else "-", str(step.tries))
    out.print(table)
    raise typer.Exit(0 if run.state in ("Completed", "Cached") else EXIT_FAILED)


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="A run id, or a unique prefix of it."),
    force: bool = typer.Option(False, "--force", help="Go on even if the definition changed since the run started."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON on stdout."),
) -> None:
    """Finish a crashed, failed or cancelled run; steps it completed are not run again."""
    from flows import journal
    from flows import resume as resume_

    prepared = _resolve_run(lambda: resume_.prepare_resume(run_id, force))
    for change in prepared.changes:
        err.print(f"note: {change}", markup=False)
    _enter(prepared)
    done = len(journal.Journal(prepared.run_id).done)
    doing = f"\nresuming run {prepared.run_id} ({prepared.state}; {done} step call(s) done before)"
    raise typer.Exit(_run(prepared.workflow, as_json, lambda: resume_.resume(prepared), doing))


@app.command()
def rerun(
    run_id: str = typer.Argument(..., help="A run id, or a unique prefix of it."),
    from_step: str = typer.Option(..., "--from", help="The step to run again, with everything downstream of it."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON on stdout."),
) -> None:
    """Run a step and everything downstream of it again, as a new run; reuse the rest."""
    from flows import resume as resume_

    prepared, again = _resolve_run(lambda: resume_.prepare_rerun(run_id, from_step))
    for change in prepared.changes:
        err.print(f"note: the definition changed since run {prepared.run_id[:8]}: {change}", markup=False)
    _enter(prepared)
    order = [s.id for s in prepared.workflow.spec.steps if s.id in again]
    doing = f"\nrerun of {prepared.run_id} from `{from_step}`: running again {', '.join(order)}"
    raise typer.Exit(_run(prepared.workflow, as_json, lambda: resume_.rerun(prepared, again), doing))


def _resolve_run(prepare: Callable[[], Any]) -> Any:
    """The prepared run, or exit: 0 if there is nothing to do, 2 if it cannot be done."""
    from flows.history import RunNotFound
    from flows.resume import NothingToResume, ResumeRefused

    try:
        return prepare()
    except NothingToResume as exc:
        out.print(str(exc), markup=False)
        raise typer.Exit(0) from None
    except (RunNotFound, ResumeRefused) as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    except SpecError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        err.print(f"{len(exc.problems)} problem(s) in the run's definition; nothing was run.", markup=False)
        raise typer.Exit(EXIT_INVALID) from None


def _enter(prepared: Any) -> None:
    """Work where the run worked: its steps' relative paths and repository are there."""
    for note in prepared.notes:
        err.print(f"note: {note}", markup=False)
    os.chdir(prepared.record.cwd)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear cached step results.")
app.add_typer(cache_app, name="cache")


@cache_app.command("stats")
def cache_stats() -> None:
    """Entries, size, and hit/miss counts per agent."""
    from rich.table import Table

    from tasks import cache_index

    now = time.time()
    storage = cache_index.index_dir().parent
    rows: dict[str, dict[str, float]] = {}
    for entry in cache_index.entries():
        row = rows.setdefault(entry.agent or f"({entry.step})", {"entries": 0, "live": 0, "bytes": 0})
        row["entries"] += 1
        row["live"] += entry.expires > now
        record = storage / entry.key
        row["bytes"] += record.stat().st_size if record.exists() else 0
    counts = cache_index.outcomes()
    table = Table()
    for column in ("agent", "entries", "live", "size", "hits", "misses", "hit rate"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for agent in sorted(set(rows) | set(counts)):
        row = rows.get(agent, {"entries": 0, "live": 0, "bytes": 0})
        hits, misses = counts.get(agent, {}).get("hits", 0), counts.get(agent, {}).get("misses", 0)
        rate = f"{hits / (hits + misses):.0%}" if hits + misses else "-"
        table.add_row(agent, str(int(row["entries"])), str(int(row["live"])), f"{row['bytes'] / 1024:.1f} KiB",
                      str(hits), str(misses), rate)
    out.print(table)
    out.print(f"index: {cache_index.index_dir()}", markup=False)


@cache_app.command("clear")
def cache_clear(
    agent: Optional[str] = typer.Option(None, "--agent", help="Only this agent's entries."),
    older_than: Optional[str] = typer.Option(None, "--older-than", help="Only entries older than this, e.g. 7d."),
) -> None:
    """Delete cached step results (all, one agent's, or old ones)."""
    from flows.spec import parse_duration
    from tasks import cache_index

    try:
        min_age = parse_duration(older_than) if older_than else 0.0
    except ValueError as exc:
        err.print(f"--older-than: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    now = time.time()
    storage = cache_index.index_dir().parent
    removed = 0
    for entry in cache_index.entries():
        if agent is not None and entry.agent != agent:
            continue
        if now - entry.created < min_age:
            continue
        (storage / entry.key).unlink(missing_ok=True)
        cache_index.forget(entry)
        removed += 1
    out.print(f"removed {removed} cached step result(s)", markup=False)


@app.command()
def validate(workflows: list[Path] = typer.Argument(..., help="Workflow YAML files.")) -> None:
    """Check definitions; print every problem as file:line: where: what; fix."""
    from flows.loader import is_agents_file, load_agents_file, load_workflow

    failed = 0
    for path in workflows:
        try:
            if is_agents_file(path):
                agents = load_agents_file(path)
                out.print(f"{path}: ok (agents file, {len(agents)} agents)", markup=False)
                continue
            resolved = load_workflow(path)
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                out.print(str(problem), markup=False)
            continue
        out.print(f"{path}: ok ({len(resolved.spec.steps)} steps, version {resolved.spec_hash})", markup=False)
    if failed:
        err.print(f"{failed} of {len(workflows)} file(s) have problems", markup=False)
        raise typer.Exit(EXIT_FAILED)


@app.command()
def graph(
    workflow: Path = typer.Argument(..., help="The workflow YAML file."),
    mermaid: bool = typer.Option(False, "--mermaid", help="Print a mermaid flowchart."),
) -> None:
    """Print the step graph: which steps run together and what each waits for."""
    from flows import graph as graph_

    resolved = _load(workflow)
    deps = resolved.dependencies
    labels = {s.id: _label(s, resolved.agents) for s in resolved.spec.steps}
    text = graph_.render_mermaid(deps, labels) if mermaid else graph_.render_text(deps, labels)
    out.print(text, markup=False)


def _label(step: Any, agents: dict) -> str:
    extra = ""
    if step.for_each is not None:
        extra += " for_each"
    if step.repeat is not None:
        extra += f" repeat<={step.repeat.max}"
    if step.when:
        extra += " when"
    if step.agent:
        return f"agent {step.agent} ({agents[step.agent].kind}){extra}"
    if step.run:
        return f"run {step.run[0]}{extra}"
    return f"{step.kind}{extra}"


@app.command()
def schema() -> None:
    """Print the JSON Schema of the workflow language (for editor completion)."""
    from flows.schema import workflow_schema

    sys.stdout.write(json.dumps(workflow_schema(), indent=2) + "\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

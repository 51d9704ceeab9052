"""Running workflows: `run`, `resume`, `rerun`, and the live view they share."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from agentflow.flows.cli import recordings
from agentflow.flows.cli.progress import escape

from agentflow.errors import SpecError, StateDamaged
from agentflow.printable import counted
from agentflow.flows.cli._app import (EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_INVALID, _prepare, app,
                                      err, need_api, out, print_problems)
from agentflow.flows.engine.result import result_of

@app.command()
def run(
    workflow: Optional[Path] = typer.Argument(None, help="The workflow YAML file (or give --deployment)."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="An input as key=value, or key=@FILE to read it from a file; repeat for more."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON on stdout."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write cached step results."),
    refresh: bool = typer.Option(False, "--refresh", help="Recompute cached steps and overwrite their entries."),
    inputs_file: Optional[Path] = typer.Option(None, "--inputs-file", help="Input values from a JSON object file."),
    deployment: Optional[str] = typer.Option(None, "--deployment", help="Run this deployed workflow on a worker "
                                             "instead (its name, or flow/deployment), and wait for it."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="With --deployment: seconds to wait."),
    workspace: Optional[str] = typer.Option(None, "--workspace", help="Where the steps work, whatever the "
                                            "workflow says: `worktree` (a git worktree of the run's own) or "
                                            "`in-place` (your tree; sequential steps only)."),
    record: Optional[Path] = typer.Option(None, "--record", help="Keep every agent call of the run (what it "
                                          "was asked, its answer, the files it changed) in FILE, to replay."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="Answer every agent call from FILE (a "
                                          "--record'ed run): no agent is called; commands still run."),
) -> None:
    """Run a workflow now, showing each step as it starts and ends."""
    if deployment is not None:
        if workflow is not None:
            err.print("give a workflow file or --deployment, not both", markup=False)
            raise typer.Exit(EXIT_INVALID)
        from agentflow.flows.cli.remote import run_deployment

        need_api()
        raise typer.Exit(run_deployment(deployment, inputs, inputs_file, as_json, timeout))
    if workflow is None:
        err.print("give the workflow file to run (or --deployment NAME)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    resolved, values = _prepare(workflow, inputs, inputs_file)
    if workspace is not None:
        resolved = _with_workspace(resolved, workspace)
    if no_cache and refresh:
        err.print("--no-cache and --refresh contradict each other; pick one", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if record is not None and replay is not None:
        err.print("--record and --replay contradict each other; pick one", markup=False)
        raise typer.Exit(EXIT_INVALID)
    replayer = recordings.replayer_for(replay, resolved) if replay is not None else None
    # A replayed answer never enters the cache (a later real run would get it), and a call
    # answered from the cache would be missing from a recording.
    cache = "off" if no_cache or replay is not None else "refresh" if refresh or record is not None else "use"
    # Said before Prefect is imported (a second) and any server starts: the run is under way.
    _announce(resolved, as_json)
    # git checks the run's tree out while Prefect is imported and the server names the run.
    from agentflow.flows.durability import early_tree

    early_tree.begin(os.getcwd(), resolved.spec.workspace)
    try:
        need_api()
        from agentflow.flows.engine.compile import build_flow

        flow = build_flow(resolved, cache=cache)
        with recordings.answering(record, replayer, resolved):
            code = _run(resolved, as_json, lambda: flow(**values, return_state=True), announced=True)
    finally:
        early_tree.abandon()
    raise typer.Exit(code)


def _with_workspace(resolved: Any, mode: str) -> Any:
    """The workflow with its `workspace:` set from the command line (its version unchanged: a
    resume goes on in the workspace the run pinned); exit 2, saying why, if it cannot be."""
    from agentflow.flows.language import graph

    if mode not in ("worktree", "in-place"):
        err.print(f"--workspace {mode!r}: use worktree or in-place", markup=False)
        raise typer.Exit(EXIT_INVALID)
    spec = resolved.spec
    together = graph.writers_side_by_side(spec.steps, resolved.dependencies, spec.max_parallel)
    if mode == "in-place" and together:
        err.print(f"--workspace in-place: steps {', '.join(together[:5])} may run at the same time, and in place "
                  "their changes to your tree could not be told apart; leave the worktree, or run them one after "
                  "another (pattern: sequential, depends_on, or max_parallel: 1)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    return resolved.model_copy(update={"spec": spec.model_copy(update={"workspace": mode})})


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _announce(resolved: Any, as_json: bool, doing: str = "") -> None:
    """The run's first line: the workflow, its size and shape, its version, what is done."""
    spec = resolved.spec
    console = err if as_json else out
    console.print(f"[bold]{escape(spec.name)}[/] ({counted(len(spec.steps), 'step')}, {spec.pattern}) version "
                  f"{resolved.spec_hash}{doing}")


def _run(resolved: Any, as_json: bool, invoke: Callable[[], Any], doing: str = "", announced: bool = False) -> int:
    """Run `invoke` (which returns the flow run's final state) showing each step; the exit code.
    `announced`: the run's first line was printed already."""
    from agentflow.events import listening
    from agentflow.flows.cli import progress
    from agentflow.flows.cli.progress import ProgressView
    from agentflow.flows.durability.crash import ensure_crash_automation

    console = err if as_json else out
    spec = resolved.spec
    ui = None
    from prefect.settings import get_current_settings

    from agentflow import startup

    startup.collect_now()  # what the run needs is imported: the collector runs again (agentflow/startup.py)
    installing = None
    if get_current_settings().api.url:  # a started server (the environment or the profile names it)
        # Let it find this run Crashed if this process is killed: asked of the server while
        # the run starts (it is there long before a heartbeat is missed).
        installing = threading.Thread(target=ensure_crash_automation, name="agentflow-crash-automation", daemon=True)
        installing.start()
        ui = get_current_settings().ui_url
    view = ProgressView(console, ui)
    if not announced:
        _announce(resolved, as_json, doing)
    started = time.monotonic()
    # SIGTERM (a cancelled CI job, `kill`) ends the run like Ctrl-C: the flow's scheduler
    # stops the running commands (engine/scheduler.py), then this reports it and exits 130.
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
        if installing is not None:
            installing.join()
    elapsed = time.monotonic() - started
    result = result_of(state)
    run_id = str(state.state_details.flow_run_id) if state.state_details else "?"
    ok = state.is_completed()
    if result is not None:
        console.print(progress.table(result))
    verdict = "[green]completed[/]" if ok else f"[red]{state.name.lower()}[/]"
    spent = progress.degraded_text(result) + progress.spend_text(result.spend) if result is not None else ""
    console.print(f"run {run_id} {verdict} in {elapsed:.1f}s{spent}")
    worked = progress.work_text(result) if result is not None else ""
    if worked:
        console.print(worked)
    if not ok:
        failed = ", ".join(result.failed_steps) if result is not None else ""
        console.print(f"[red]failed steps: {escape(failed or state.message or state.name)}[/]")
    if as_json:
        document = (progress.as_json(result, state.name) if result is not None else
                    {"workflow": spec.name, "version": resolved.spec_hash, "run_id": run_id, "state": state.name,
                     "error": state.message, "steps": {}})
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    return 0 if ok else EXIT_FAILED


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="A run id, a unique prefix of it, or its name."),
    force: bool = typer.Option(False, "--force", help="Go on even if the definition changed since the run started."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON on stdout."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="A secret input again, as key=value (the run "
                                     "kept only its name); or set AGENTFLOW_SECRET_<NAME>."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="A deployed run: seconds to wait for its "
                                            "worker to finish it."),
) -> None:
    """Finish a crashed, failed or cancelled run; steps it completed are not run again. A
    deployed run goes back to its work pool, and a worker finishes it."""
    from agentflow.flows.durability import resume as resume_
    from agentflow.flows.durability.history import find_run
    from agentflow.flows.durability.journal import Journal
    from agentflow.flows.engine import restart

    row = _resolve_run(lambda: find_run(run_id))
    if row.deployment_id is not None:
        if inputs:
            err.print("a deployed run takes its secret inputs from its worker's environment "
                      "(AGENTFLOW_SECRET_<NAME>), not from -i", markup=False)
            raise typer.Exit(EXIT_INVALID)
        from agentflow.flows.cli.remote import resume_deployed

        state, recorded = _resolve_run(lambda: resume_.prepare_worker_resume(row, force))
        raise typer.Exit(resume_deployed(row.id, state, as_json, timeout, recorded))
    prepared = _resolve_run(lambda: resume_.prepare_resume(row, force))
    for change in prepared.changes:
        err.print(f"note: {change}", markup=False)
    secrets = _secrets_again(prepared, inputs)
    _enter(prepared)
    done = len(Journal(prepared.run_id).done)
    doing = f"\nresuming run {prepared.run_id} ({prepared.state}; {done} step call(s) done before)"
    raise typer.Exit(_run(prepared.workflow, as_json, lambda: restart.resume(prepared, secrets), doing))


@app.command()
def rerun(
    run_id: str = typer.Argument(..., help="A run id, a unique prefix of it, or its name."),
    from_step: str = typer.Option(..., "--from", help="The step to run again, with everything downstream of it."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON on stdout."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="A secret input again, as key=value; or set "
                                     "AGENTFLOW_SECRET_<NAME>."),
) -> None:
    """Run a step and everything downstream of it again, as a new run; reuse the rest."""
    from agentflow.flows.durability import resume as resume_
    from agentflow.flows.engine import restart

    prepared, again = _resolve_run(lambda: resume_.prepare_rerun(run_id, from_step))
    for change in prepared.changes:
        err.print(f"note: the definition changed since run {prepared.run_id[:8]}: {change}", markup=False)
    secrets = _secrets_again(prepared, inputs)
    _enter(prepared)
    order = [s.id for s in prepared.workflow.spec.steps if s.id in again]
    doing = f"\nrerun of {prepared.run_id} from `{from_step}`: running again {', '.join(order)}"
    raise typer.Exit(_run(prepared.workflow, as_json, lambda: restart.rerun(prepared, again, secrets), doing))


def _resolve_run(prepare: Callable[[], Any]) -> Any:
    """The prepared run, or exit: 0 if there is nothing to do, 2 if it cannot be done."""
    from agentflow.flows.durability.history import RunNotFound
    from agentflow.flows.durability.resume import NothingToResume, ResumeRefused

    need_api()
    try:
        return prepare()
    except NothingToResume as exc:
        out.print(str(exc), markup=False)
        raise typer.Exit(0) from None
    except (RunNotFound, ResumeRefused) as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    except StateDamaged as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INTERNAL) from None
    except SpecError as exc:
        print_problems(exc, " in the run's definition; nothing was run.")
        raise typer.Exit(EXIT_INVALID) from None


def _secrets_again(prepared: Any, pairs: list[str]) -> dict[str, str]:
    """The run's secret inputs, which its record holds by name only: from -i or the environment."""
    from agentflow.flows.cli._app import _parse_inputs
    from agentflow.flows.engine.secrets import with_secrets_from_env
    from agentflow.flows.language.inputs import secret_env

    spec = prepared.workflow.spec
    given = with_secrets_from_env(spec, _parse_inputs(pairs))
    names = [name for name, input_spec in spec.inputs.items() if input_spec.secret]
    other = sorted(set(given) - set(names))
    if other:
        err.print(f"resume takes only secret inputs again (the rest are the run's own): {', '.join(other)}",
                  markup=False)
        raise typer.Exit(EXIT_INVALID)
    missing = [name for name in names if name not in given and prepared.record.inputs.get(name)]
    if missing:
        err.print("the run's secret input(s) were not kept: give them again with "
                  + " ".join(f"-i {name}=... (or {secret_env(name)})" for name in missing), markup=False)
        raise typer.Exit(EXIT_INVALID)
    return {name: str(value) for name, value in given.items()}


def _enter(prepared: Any) -> None:
    """Work where the run worked: its steps' relative paths and repository are there."""
    for note in prepared.notes:
        err.print(f"note: {note}", markup=False)
    os.chdir(prepared.record.cwd)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())

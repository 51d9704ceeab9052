"""`agentflow deploy`: prefect.yaml from the project's workflows, and (with --apply) deployed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from agentflow.errors import SpecError
from agentflow.flows.cli._app import EXIT_FAILED, EXIT_INTERNAL, EXIT_INVALID, app, err, out, print_problems


@app.command()
def deploy(
    apply: bool = typer.Option(False, "--apply", help="Also deploy them (`prefect deploy --all`), creating "
                               "the work pools they name if missing."),
    check: bool = typer.Option(False, "--check", help="Only say whether prefect.yaml is up to date (exit 1 if not)."),
    workflows: Path = typer.Option(Path("workflows"), "--workflows", help="The folder of workflow files."),
) -> None:
    """Write prefect.yaml: one deployment per workflow (its schedules, triggers, work pool)."""
    from agentflow.deployments import project
    from agentflow.deployments.entry import workflow_files
    from agentflow.flows.language.loader import load_workflow

    files = workflow_files(workflows)
    if not files:
        err.print(f"no workflows in {workflows}/: run this in the project's root, or give --workflows",
                  markup=False)
        raise typer.Exit(EXIT_INVALID)
    try:
        loaded = [load_workflow(path) for path in files.values()]
        text = project.render(loaded)
    except SpecError as exc:
        print_problems(exc, "; prefect.yaml was not written.")
        raise typer.Exit(EXIT_INVALID) from None
    target = Path(project.FILE)
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if check:
        if current == text:
            out.print(f"{target} is up to date ({len(loaded)} deployments)", markup=False)
            return
        err.print(f"{target} is stale: run `agentflow deploy` and commit it", markup=False)
        raise typer.Exit(EXIT_FAILED)
    if current != text:
        target.write_text(text, encoding="utf-8")
    names = ", ".join(sorted(w.spec.name for w in loaded))
    out.print(f"{target}: {len(loaded)} deployments ({names}){'' if current != text else ' (unchanged)'}",
              markup=False)
    if apply:
        _apply(sorted({w.spec.work_pool for w in loaded}))


def _apply(pools: list[str]) -> None:
    """Create the process work pools that are missing, then `prefect deploy --all` here."""
    from agentflow import _prefect_env
    from agentflow.deployments.pools import ensure_process_pool
    from agentflow.flows.durability.crash import ensure_crash_automation

    if not _prefect_env.configured_api_url() and not os.environ.get("PREFECT_API_URL"):
        err.print("deploying needs a Prefect server that stays up (the embedded one stops with each command): "
                  "`agentflow server start`, or set PREFECT_API_URL", markup=False)
        raise typer.Exit(EXIT_INVALID)

    # Deployed runs send heartbeats (engine/run_scope.py): a run whose worker died is marked
    # Crashed by this automation, and `agentflow resume` then hands it to another worker.
    ensure_crash_automation()
    for pool in pools:
        if ensure_process_pool(pool):
            out.print(f"created work pool {pool} (process): `prefect worker start --pool {pool}` runs its flows",
                      markup=False)
    env = {**os.environ, "PREFECT_CLI_PROMPT": "false"}
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        err.print(f"`prefect deploy --all` failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}",
                  markup=False)
        raise typer.Exit(EXIT_INTERNAL)
    out.print("deployed: `prefect deployment ls` lists them; `agentflow run --deployment NAME` runs one",
              markup=False)

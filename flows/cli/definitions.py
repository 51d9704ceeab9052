"""Working with definitions, nothing run: `validate`, `graph`, `schema`, `plan`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from agentflow.flows.cli._app import EXIT_FAILED, _load, _prepare, app, err, need_api, out, print_problems
from agentflow.errors import SpecError
from agentflow.printable import counted

@app.command()
def plan(
    workflow: Path = typer.Argument(..., help="The workflow YAML file."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="An input as key=value, or key=@FILE to read it from a file; repeat for more."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
    inputs_file: Optional[Path] = typer.Option(None, "--inputs-file", help="Input values from a JSON object file."),
) -> None:
    """Dry run: which steps would be answered from the cache now, and why not. Calls no agent."""
    from rich.table import Table

    resolved, values = _prepare(workflow, inputs, inputs_file)
    need_api()
    from agentflow.flows.engine.dry_run import plan_workflow

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
def validate(workflows: list[Path] = typer.Argument(..., help="Workflow YAML files (and agents files, and *.test.yaml test files).")) -> None:
    """Check definitions; print every problem as file:line: where: what; fix."""
    from agentflow.flows.language.loader import is_agents_file, load_agents_file, load_workflow
    from agentflow.flows.language.testfile import load_tests

    failed = 0
    for path in workflows:
        try:
            if is_agents_file(path):
                agents = load_agents_file(path)
                out.print(f"{path}: ok (agents file, {len(agents)} agents)", markup=False)
                continue
            if path.name.endswith(".test.yaml"):  # a workflow's tests (agentflow test)
                tests, resolved = load_tests(path)
                out.print(f"{path}: ok (tests of {tests.workflow}, {counted(len(tests.cases), 'case')})", markup=False)
                continue
            resolved = load_workflow(path)
        except SpecError as exc:
            failed += 1
            print_problems(exc, console=out)
            continue
        out.print(f"{path}: ok ({counted(len(resolved.spec.steps), 'step')}, version {resolved.spec_hash})", markup=False)
    if failed:
        err.print(f"{failed} of {len(workflows)} file(s) have problems", markup=False)
        raise typer.Exit(EXIT_FAILED)


@app.command()
def graph(
    workflow: Path = typer.Argument(..., help="The workflow YAML file."),
    mermaid: bool = typer.Option(False, "--mermaid", help="Print a mermaid flowchart."),
) -> None:
    """Print the step graph: which steps run together and what each waits for."""
    from agentflow.flows.language import graph as graph_

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
    from agentflow.flows.language.schema import workflow_schema

    sys.stdout.write(json.dumps(workflow_schema(), indent=2) + "\n")

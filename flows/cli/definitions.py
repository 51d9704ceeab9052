"""Working with definitions, nothing run: `validate`, `graph`, `schema`, `plan`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from agentflow.flows.cli._app import EXIT_FAILED, EXIT_INVALID, _load, _prepare, app, err, need_api, out, print_problems
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


@app.command()
def new(
    name: str = typer.Argument(..., help="The workflow's name (letters, digits, `-`, `_`, `.`)."),
    pattern: Optional[str] = typer.Option(None, "--pattern", help="sequential, parallel, dag, fan-out, iterative or "
                                          "approval (default: chosen from --describe, else sequential)."),
    describe: Optional[str] = typer.Option(None, "--describe", help="What the workflow is for, in words; "
                                           "picks the pattern when --pattern is not given."),
    directory: Path = typer.Option(Path("workflows"), "--dir", help="Where to write the files."),
) -> None:
    """Start a workflow: writes DIR/NAME.yaml (valid, commented, runs offline) and
    DIR/NAME.test.yaml (one passing case); never overwrites a file."""
    from agentflow.flows.language import scaffold
    from agentflow.flows.language.schema import workflow_schema

    if not scaffold.NAME.match(name):
        err.print(f"{name!r} cannot name a workflow: use letters, digits, `-`, `_` or `.`, starting with a letter or "
                  "digit (e.g. review-change)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if pattern is not None and pattern not in scaffold.PATTERNS:
        err.print(f"--pattern {pattern!r}: use one of {', '.join(scaffold.PATTERNS)}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    why = "as asked (--pattern)"
    if pattern is None:
        pattern, why = scaffold.select_pattern(describe or "")
    workflow, tests = directory / f"{name}.yaml", directory / f"{name}.test.yaml"
    there = [str(p) for p in (workflow, tests) if p.exists()]
    if there:
        err.print(f"{' and '.join(there)} exist already: nothing was written; choose another name, or --dir",
                  markup=False)
        raise typer.Exit(EXIT_INVALID)
    directory.mkdir(parents=True, exist_ok=True)
    workflow.write_text(scaffold.workflow_text(name, pattern, describe or "", str(workflow), str(tests)),
                        encoding="utf-8")
    tests.write_text(scaffold.tests_text(name, pattern), encoding="utf-8")
    wrote = [str(workflow), str(tests)]
    schema = directory / "workflow.schema.json"
    if not schema.exists():  # the files' first line names it: an editor completes and checks them
        schema.write_text(json.dumps(workflow_schema(), indent=2) + "\n", encoding="utf-8")
        wrote.append(str(schema))
    out.print(f"pattern: {pattern} ({why})", markup=False)
    out.print(f"wrote {', '.join(wrote)}", markup=False)
    out.print(f"next: agentflow run {workflow}   then   agentflow test {tests}", markup=False)


@app.command()
def lint(
    workflows: list[Path] = typer.Argument(None, help="Workflow files (default: workflows/*.yaml)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on any warning."),
    as_json: bool = typer.Option(False, "--json", help="Print the warnings as JSON."),
) -> None:
    """Warnings beyond validity, each with a code and a fix: security (S), reliability (R),
    performance (P), best practice (B). `# agentflow: ignore[CODE]` on the line (or the line
    above) silences one. Exit 0 (1 with --strict and a warning); 2 for an invalid file."""
    from agentflow.flows.language.document import parse
    from agentflow.flows.language.lint import lint as lint_
    from agentflow.flows.language.loader import is_agents_file

    paths = list(workflows or sorted(p for p in Path("workflows").glob("*.yaml")
                                     if not p.name.endswith(".test.yaml")))
    paths = [p for p in paths if not p.name.endswith(".test.yaml") and not is_agents_file(p)]
    if not paths:
        err.print("no workflow to lint: give the files (default: workflows/*.yaml)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    warnings = []
    for path in paths:
        resolved = _load(path)  # exit 2, every problem located, if it is not valid
        text = path.read_text(encoding="utf-8")
        warnings += lint_(resolved, parse(text), text, str(path))
    if as_json:
        sys.stdout.write(json.dumps([w.as_dict() for w in warnings], indent=2) + "\n")
    else:
        for warning in warnings:
            out.print(str(warning), markup=False, highlight=False)
        out.print(f"{counted(len(warnings), 'warning')} in {counted(len(paths), 'file')}", markup=False)
    raise typer.Exit(EXIT_FAILED if strict and warnings else 0)

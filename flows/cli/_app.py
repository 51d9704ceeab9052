"""What every command shares: the Typer app, the consoles, exit codes, loading a workflow."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from agentflow.errors import InputError, SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Durable AI-agent workflows in YAML, run on Prefect.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 1, 2, 130

def print_problems(exc: SpecError, after: str = "", console: Console = err) -> None:
    """Every problem of a definition, one `file:line: where: what; fix` per line, then a count."""
    for problem in exc.problems:
        console.print(str(problem), markup=False)
    if after:
        err.print(f"{len(exc.problems)} problem(s){after}", markup=False)


def _load(path: Path):
    from agentflow.flows.language.loader import load_workflow

    try:
        return load_workflow(path)
    except SpecError as exc:
        print_problems(exc, "; nothing was run.")
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
    from agentflow.flows.language.inputs import validate_inputs

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

"""`agentflow test`: run workflows' test files (`*.test.yaml`) offline, agents answered by the tests."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional
from xml.sax.saxutils import escape as xml_escape, quoteattr

import typer

from agentflow import _prefect_env
from agentflow.errors import SpecError
from agentflow.printable import counted
from agentflow.flows.cli._app import EXIT_FAILED, EXIT_INVALID, app, err, need_api, out, print_problems

SEARCHED = ("tests", "workflows")


@app.command("test")
def test(
    paths: Optional[list[Path]] = typer.Argument(None, help="Test files (*.test.yaml) or folders holding them; "
                                                 "default: those under tests/ and workflows/."),
    keyword: Optional[str] = typer.Option(None, "-k", help="Only the cases whose name contains this text."),
    junit_xml: Optional[Path] = typer.Option(None, "--junit-xml", help="Also write the results as JUnit XML."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, max=32,
                                       help="Cases run at once, each in a process of its own (its own tree, journal "
                                       "and answers); default: half the machine's cores, at most 4 (1: one after "
                                       "another in this process)."),
) -> None:
    """Run workflows' test cases offline: each agent call is answered by the test (a canned
    answer or a recording), commands run for real unless the test stands in for them.

    A test file names the workflow under test and its cases; a case gives inputs, how agents
    (and, optionally, commands and approvals) answer, and what it expects:

    \b
        workflow: review.yaml
        cases:
          - name: reviewer answers
            inputs: {target: src}
            agents: {reviewer: {summary: "2 findings", data: {findings: 2}}}
            expect:
              status: completed
              steps: {review: {status: success, data: {findings: 2}}}
          - name: reviewer down, the fallback answers
            agents: {reviewer: {unavailable: true}}
            expect: {steps: {review: {degraded: true, fallback_used: reviewer-local}}}

    An answer has summary, output, data, status, metrics; or `fail: REASON` (retried, then the
    fallback ladder) or `unavailable: true` (straight to the fallback); a list answers calls in
    turn. `recording: FILE` answers from `agentflow run --record FILE`. Exit 0: all passed;
    1: a case failed; 2: a test file is wrong (its file and line are named).
    """
    files = _found(paths or [])
    suites = [_suite(path) for path in files]
    chosen = [(path, resolved, [c for c in tests.cases if keyword is None or keyword in c.name])
              for path, resolved, tests in suites]
    total = sum(len(cases) for _, _, cases in chosen)
    if total == 0:
        err.print(f"no case matches -k {keyword!r} in {counted(len(files), 'test file')}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    need_api()
    started = time.monotonic()
    work = [(path, resolved, case) for path, resolved, cases in chosen for case in cases]
    results: list[tuple[Path, Any]] = []
    # A case keeps about a core busy (Prefect's client here, the server beside it), and a case
    # process pays Prefect's import first: on 2 cores, one after another in this process is fastest.
    jobs = jobs or max(1, min(4, (os.cpu_count() or 2) // 2))
    for (path, _, case), outcome in zip(work, _outcomes(work, jobs)):  # said in the files' order
        results.append((path, outcome))
        mark = "[green]PASS[/]" if outcome.passed else "[red]FAIL[/]"
        out.print(f"{mark} {_shown(path)}::{case.name} ({outcome.seconds:.1f}s)", highlight=False)
        for line in outcome.differences:
            out.print(f"    {line}", markup=False, highlight=False)
    failed = sum(1 for _, o in results if not o.passed)
    elapsed = time.monotonic() - started
    out.print(f"{total - failed} passed, {failed} failed in {elapsed:.1f}s" if failed else
              f"{counted(total, 'case')} passed in {elapsed:.1f}s", markup=False)
    if junit_xml is not None:
        junit_xml.write_text(_junit(results, elapsed), encoding="utf-8")
    raise typer.Exit(EXIT_FAILED if failed else 0)


def _outcomes(work: list[tuple[Path, Any, Any]], jobs: int) -> Iterator[Any]:
    """Each case's outcome, in order. Cases run in processes of their own, `jobs` at once: a run
    works in its tree as its process's directory (so that functions it calls in-process see
    it), which threads of one process cannot each have. The processes use this command's server."""
    from agentflow.flows.engine.cases import run_case

    if jobs == 1 or len(work) == 1:
        for path, resolved, case in work:
            yield run_case(resolved, case, path)
        return
    from agentflow.flows.durability.rest import api_url

    spawn = multiprocessing.get_context("spawn")  # never fork a process that runs Prefect's threads
    with ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=spawn, initializer=_case_process,
                             initargs=(api_url(),)) as pool:
        pending = [pool.submit(_run_case_of, str(path), case.name) for path, _, case in work]
        for future in pending:
            yield future.result()


def _case_process(url: str | None) -> None:
    """A case's process: this command's server and quiet console, set before Prefect is imported."""
    if url:
        os.environ["PREFECT_API_URL"] = url
    _prefect_env.apply({**_prefect_env.RELIABLE, **_prefect_env.QUIET})


def _run_case_of(path: str, name: str) -> Any:
    from agentflow.flows.engine.cases import run_case
    from agentflow.flows.language.testfile import load_tests

    tests, resolved = load_tests(Path(path))
    case = next(c for c in tests.cases if c.name == name)
    return run_case(resolved, case, Path(path))


def _found(paths: list[Path]) -> list[Path]:
    """The test files given, or found under the folders given (or tests/ and workflows/)."""
    roots = paths or [Path(name) for name in SEARCHED if Path(name).is_dir()]
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files += sorted(root.rglob("*.test.yaml"))
        elif root.is_file():
            files.append(root)
        else:
            err.print(f"{root}: no such file or folder", markup=False)
            raise typer.Exit(EXIT_INVALID)
    if not files:
        where = ", ".join(str(r) for r in roots) or "tests/ or workflows/ (neither is here)"
        err.print(f"no *.test.yaml file in {where}: write one (see agentflow test --help)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    return files


def _suite(path: Path) -> tuple[Path, Any, Any]:
    """A test file and its workflow, checked against each other; exit 2 naming what is wrong."""
    from agentflow.flows.language.testfile import load_tests

    try:
        tests, resolved = load_tests(path)
    except SpecError as exc:
        print_problems(exc, "; nothing was run.")
        raise typer.Exit(EXIT_INVALID) from None
    return path, resolved, tests


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _junit(results: list[tuple[Path, Any]], elapsed: float) -> str:
    failures = sum(1 for _, o in results if not o.passed)
    rows = [f'<testsuite name="agentflow" tests="{len(results)}" failures="{failures}" time="{elapsed:.3f}">']
    for path, outcome in results:
        rows.append(f"  <testcase classname={quoteattr(_shown(path))} name={quoteattr(outcome.name)} "
                    f'time="{outcome.seconds:.3f}">')
        if not outcome.passed:
            rows.append(f"    <failure message={quoteattr(outcome.differences[0])}>"
                        f"{xml_escape(chr(10).join(outcome.differences))}</failure>")
        rows.append("  </testcase>")
    rows.append("</testsuite>")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + "\n".join(rows) + "\n"

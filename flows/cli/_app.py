"""What every command shares: the Typer app, the consoles, exit codes, loading a workflow."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from agentflow.errors import InputError, SpecError, format_got

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Durable AI-agent workflows in YAML, run on Prefect.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 130

# What starts the Prefect API this command uses, when it first needs it (set by main()).
_api_starter: list[Callable[[], None]] = []


def need_api() -> None:
    """Before a command's first use of the Prefect API, once its arguments, files and inputs
    are checked: with no server configured, the embedded one starts here, so that a mistake
    is answered at once and never waits for a server."""
    while _api_starter:
        _api_starter.pop()()


def start_api_when_needed(start: Callable[[], None]) -> None:
    _api_starter.append(start)


def report_internal_error(exc: BaseException) -> Path | None:
    """One line on stderr naming the error and the log file that holds its traceback."""
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    path: Path | None = None
    for directory in (_prefect_home() / "agentflow-errors", Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(f"agentflow {' '.join(sys.argv[1:])}\n\n{text}", encoding="utf-8")
            break
        except OSError:
            path = None
    where = f"; details in {path}" if path else ""
    url = _unreachable_api(exc)
    if url is not None:  # the environment's, not agentflow's
        err.print(f"agentflow: cannot reach the Prefect API at {url}: start the server (agentflow server start), "
                  f"or unset PREFECT_API_URL to use an embedded one{where}", markup=False)
    else:
        err.print(f"agentflow: internal error: {type(exc).__name__}: {_first_line(exc)}{where}", markup=False)
    return path


def _prefect_home() -> Path:
    try:
        from prefect.settings import get_current_settings

        return Path(get_current_settings().home).expanduser()
    except Exception:  # noqa: BLE001 - the settings themselves may be what is broken
        return Path.home() / ".prefect"


def _unreachable_api(exc: BaseException) -> str | None:
    """The API's URL if `exc` is (or was caused by) a failed connection to it (Prefect wraps
    it in a RuntimeError "Failed to reach API")."""
    import httpx

    from agentflow._prefect_env import configured_api_url

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (httpx.ConnectError, httpx.ConnectTimeout)):
            return configured_api_url() or "the embedded server"
        seen = seen.__cause__ or seen.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 200 else line[:197] + "..."

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


def _invalid(message: str) -> typer.Exit:
    err.print(message, markup=False)
    return typer.Exit(EXIT_INVALID)


def _parse_inputs(pairs: list[str], inputs_file: Path | None = None) -> dict[str, Any]:
    """`-i key=value` pairs (`key=@path` reads the value from a file; `@@` is a literal `@`),
    and the mapping in `--inputs-file` (JSON); a key given twice is an error."""
    given: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            data = json.loads(inputs_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _invalid(f"--inputs-file {inputs_file}: cannot read it as JSON ({_reason(exc)}); "
                           'write one object, e.g. {"feature": "VAT invoice"}') from None
        if not isinstance(data, dict):
            raise _invalid(f"--inputs-file {inputs_file}: must hold one JSON object of input values")
        given.update(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise _invalid(f"-i {format_got(pair)}: write inputs as key=value, e.g. -i feature='VAT invoice'")
        if key in given:
            raise _invalid(f"-i {key}: given more than once (or also in --inputs-file); give it once")
        given[key] = _value_of(key, value)
    return given


def _value_of(key: str, value: str) -> str:
    if value.startswith("@@"):
        return value[1:]
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(f"-i {key}=@{path}: cannot read the file ({_reason(exc)}); "
                       "give a readable UTF-8 file, or @@ for a value that starts with @") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0][:120] or type(exc).__name__


def _prepare(workflow: Path, inputs: list[str], inputs_file: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """The loaded workflow and its checked inputs, or exit 2 saying what is wrong."""
    from agentflow.flows.language.inputs import validate_inputs

    resolved = _load(workflow)
    try:
        from agentflow.flows.engine.secrets import with_secrets_from_env

        given = with_secrets_from_env(resolved.spec, _parse_inputs(inputs, inputs_file))
        values = validate_inputs(resolved.spec, given, from_strings=True)
    except InputError as exc:
        err.print(f"{workflow}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    # Like `python -m`: `call: mymodule:fn` finds modules in the directory the user runs from.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return resolved, values

"""The `agentflow` command.

Exit codes: 0 success; 1 the workflow failed, or `validate` found problems; 2 the
definition or the inputs given are invalid (nothing ran); 3 agentflow itself failed (one
line on stderr, the traceback in a log file it names); 130 interrupted.

One module per group of commands; each registers its commands on `app` (flows/cli/_app.py).
"""

from __future__ import annotations

import sys

from agentflow import _prefect_env

# Before anything imports Prefect: it reads its settings once, at import.
_prefect_env.apply(_prefect_env.QUIET)
_prefect_env.apply(_prefect_env.RELIABLE)

# Each module registers its commands; `--help` lists them in this order.
from agentflow.flows.cli import running  # noqa: E402,F401,I001
from agentflow.flows.cli import offline  # noqa: E402,F401
from agentflow.flows.cli import history  # noqa: E402,F401
from agentflow.flows.cli import definitions  # noqa: E402,F401
from agentflow.flows.cli import cache  # noqa: E402,F401
from agentflow.flows.cli import agents  # noqa: E402,F401
from agentflow.flows.cli import server  # noqa: E402,F401
from agentflow.flows.cli import deploy  # noqa: E402,F401
from agentflow.flows.cli import storage  # noqa: E402,F401
from agentflow.flows.cli import logs  # noqa: E402,F401
from agentflow.flows.cli import audit  # noqa: E402,F401
from agentflow.flows.cli import metrics  # noqa: E402,F401
from agentflow.flows.cli import stats  # noqa: E402,F401
from agentflow.flows.cli import approve  # noqa: E402,F401
from agentflow.flows.cli import work  # noqa: E402,F401
from agentflow.flows.cli import configuration  # noqa: E402,F401
from agentflow.errors import AgentflowError, SettingsError, SpecError  # noqa: E402
from agentflow.flows.cli._app import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_INVALID, app, err,  # noqa: E402
                                      print_problems, start_api_when_needed)


# Commands that talk to the Prefect API: with no server configured, they start the embedded
# one, which cannot start on a damaged database (checked first, to say so).
_USE_THE_API = {"run", "test", "resume", "rerun", "runs", "status", "plan", "agents", "stats", "approve"}
# Commands that use a server only if one stays up (the local one, or PREFECT_API_URL).
_NEED_A_STARTED_SERVER = {"deploy", "storage", "metrics", "logs"}


def main() -> None:
    guards: list = []
    try:
        if len(sys.argv) > 1 and sys.argv[1] in _NEED_A_STARTED_SERVER:
            _prefect_env.use_local_server()
        if len(sys.argv) > 1 and sys.argv[1] in _USE_THE_API:
            # The server `agentflow server start` keeps, if it runs and no other is configured:
            # set before Prefect is imported, which reads its settings once. Otherwise the
            # embedded server, started when the command first needs it (`need_api`).
            if _prefect_env.use_local_server() is None and not _prefect_env.configured_api_url():
                start_api_when_needed(lambda: guards.append(_guard_the_embedded_server()))
        from agentflow import tracing

        tracing.configure()  # OTLP traces of the runs this command makes, if an endpoint is set
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except SpecError as exc:  # found while compiling (an agent block that does not exist): invalid
        print_problems(exc, "; nothing was run.")
        sys.exit(EXIT_INVALID)
    except SettingsError as exc:  # agentflow.toml or AGENTFLOW_*: said with its source
        err.print(f"agentflow: {exc}", markup=False)
        sys.exit(EXIT_INVALID)
    except AgentflowError as exc:  # a state agentflow cannot go on from, said in its own words
        err.print(f"agentflow: {exc}", markup=False)
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:  # noqa: BLE001 - never a traceback on the terminal: a line and a log file
        from agentflow.flows.cli._app import report_internal_error

        report_internal_error(exc)
        sys.exit(EXIT_INTERNAL)
    finally:
        for guard in guards:
            guard.stop()


def _guard_the_embedded_server():
    """Start the embedded server (when no server is configured) under a watchdog: a killed
    command does not leave it running."""
    import os

    from prefect.settings import get_current_settings

    from agentflow.flows.durability.database import check_local_database
    from agentflow.flows.durability.guard import ServerGuard

    check_local_database()  # the embedded server cannot start on a damaged database: say so

    home = get_current_settings().home.expanduser()
    guard = ServerGuard(home / "agentflow-commands" / str(os.getpid()))
    if guard.start():
        _suggest_the_local_server(home)
    return guard


def _suggest_the_local_server(home) -> None:
    """Once per Prefect home: the embedded server costs seconds a command and has no UI."""
    marker = home / "agentflow-server-suggested"
    if marker.exists():
        return
    err.print("note: this command started Prefect's embedded server (a few seconds, and no UI); "
              "`agentflow server start` keeps one running, with the UI, for every command", markup=False)
    try:
        marker.touch()
    except OSError:
        pass


if __name__ == "__main__":
    main()

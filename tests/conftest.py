"""Shared fixtures: one real Prefect server for the whole session, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Step results of this session go to a directory of its own, so that an entry written by an
# earlier session (same inputs, same content) cannot turn a test's expected miss into a hit.
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = tempfile.mkdtemp(prefix="agentflow-test-results-")
# agentflow's log and audit log of this session: not the user's (~/.prefect/agentflow/).
_logs = tempfile.mkdtemp(prefix="agentflow-test-logs-")
os.environ.setdefault("AGENTFLOW_LOG_FILE", os.path.join(_logs, "agentflow.jsonl"))
os.environ.setdefault("AGENTFLOW_AUDIT_FILE", os.path.join(_logs, "audit.jsonl"))

import agentflow  # noqa: E402,F401  (sets agentflow's Prefect defaults before Prefect is imported)
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: needs no Prefect server, service or subprocess: `pytest -m unit` "
                                       "is the one-minute loop")
    config.addinivalue_line("markers", "server: needs a Prefect server (every test not marked `unit` gets it)")
    config.addinivalue_line("markers", "deployment: deploys to workers on a server of its own (tests/deployments/)")
    config.addinivalue_line("markers", "ui: looks at Prefect's UI in Chromium (tests/test_ui.py)")


def pytest_collection_modifyitems(config, items):
    """What a test needs is said by its marks: a test is `unit` or it needs a server, so that
    `-m "not deployment and not ui"` or `-m server` select by what can run."""
    for item in items:
        if item.get_closest_marker("unit") is None:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server (SQLite in a temporary directory), shared by every test of a
    process but the `unit` ones; started by the first test that needs it."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session", autouse=True)
def _the_shared_server_first(request):
    """The shared server starts before any module fixture (one that points Prefect at a server
    of its own must not be overridden by it when it comes later), unless every selected test
    is `unit` (`pytest -m unit`): then none starts."""
    if all(item.get_closest_marker("unit") is not None for item in request.session.items):
        yield None
        return
    yield request.getfixturevalue("prefect_server")


@pytest.fixture(autouse=True)
def _a_server_unless_unit(request):
    """Every test runs against the shared server (runs, the CLI, deployments need one), but a
    `unit` test, which must not need it: there, no API is configured and Prefect may not start
    one of its own, so a test marked `unit` by mistake fails at once instead of starting one."""
    if request.node.get_closest_marker("unit") is None:
        request.getfixturevalue("prefect_server")
        yield
        return
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE, temporary_settings

    if PREFECT_API_URL.value():
        yield  # the process's server is up already (a whole run): nothing to keep out
        return
    with temporary_settings({PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False}):
        yield


@pytest.fixture(scope="module", autouse=True)
def events_to_the_current_server():
    """Each module starts with no events worker: Prefect's is one per process, bound to the
    server it first sent to (its instance is keyed by client type, not URL), so a module that
    pointed this process at a server of its own would keep a later module's events (with two
    test processes, modules share a process in any order). Stopped, the next event starts one
    bound to the server in use then."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)
    yield


@pytest.fixture
def cli(prefect_server, tmp_path):
    """Run `agentflow ...` as a real subprocess against the session's server."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 240,
            python_flags: bool = False):
        """`python_flags`: the arguments up to the second are Python's own (`-X importtime`)."""
        environment = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(FIXTURES),
                       **(env or {})}
        flags, rest = (list(args[:2]), list(args[2:])) if python_flags else ([], list(args))
        return subprocess.run([sys.executable, *flags, "-m", "agentflow", *rest], cwd=cwd or REPO, env=environment,
                              capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture
def write(tmp_path):
    """Write a workflow file (and optional extra files) into a temporary directory."""

    def write_file(text: str, name: str = "wf.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write_file


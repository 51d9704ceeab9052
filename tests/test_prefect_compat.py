"""Contract tests of agentflow/prefect_compat.py: each checks, against the installed Prefect (and
Claude Agent SDK), one thing agentflow relies on that they do not promise. A failure names
the item: read its docstring in prefect_compat.py for what it is used for and what to do.
And no other module may name those things (the door is one)."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from pathlib import Path

import pytest
from waiting import until

from agentflow import prefect_compat

REPO = Path(__file__).resolve().parent.parent
# What only prefect_compat.py may name (a name, or the shape of a use).
PRIVATE = [r"_sync=True", r"_block_document_id", r"prefect\._internal", r"SubprocessASGIServer", r"\._instances\b",
           r"flow_engine", r"SettingsContext", r"TagsContext", r"run_input_keyset", r"\"_bundled\"", r"\bstate\.data\b",
           r"keyset_from", r"get_settings_context", r"-response\"", r"\"prefect\.flow-run\.heartbeat\"",
           r"[\"']Finished in state", r"APILogHandler"]


@pytest.mark.unit
def test_no_other_module_names_what_prefect_does_not_promise():
    found = []
    for folder in ("agentflow", "flows", "tasks", "blocks", "deployments"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "prefect_compat.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                found += [f"{path.relative_to(REPO)}:{number}: {name}" for name in PRIVATE if re.search(name, line)]
    assert found == [], "use agentflow/prefect_compat.py for these: " + "; ".join(found)


@pytest.mark.unit
def test_a_local_storage_resolves_its_paths():
    """path_resolver: LocalFileSystem's `_resolve_path` (durability/results.py forwards it)."""
    from prefect.filesystems import LocalFileSystem

    resolve = prefect_compat.path_resolver(LocalFileSystem(basepath="/tmp/agentflow-compat"))
    assert resolve is not None, "LocalFileSystem no longer has _resolve_path"
    assert Path(resolve("key")) == Path("/tmp/agentflow-compat/key")


@pytest.mark.unit
def test_block_paths_are_read_and_written_synchronously_inside_an_event_loop(tmp_path):
    """read_path/write_path: a block's sync-compatible methods called from a coroutine's thread
    (where they would return a coroutine) answer bytes; the async pair works too."""
    from prefect.filesystems import LocalFileSystem

    storage = LocalFileSystem(basepath=str(tmp_path))

    async def inside_a_loop() -> tuple[bytes, bytes]:
        prefect_compat.write_path(storage, "a", b"one")
        await prefect_compat.awrite_path(storage, "b", b"two")
        return prefect_compat.read_path(storage, "a"), await prefect_compat.aread_path(storage, "b")

    assert asyncio.run(inside_a_loop()) == (b"one", b"two")


@pytest.mark.unit
def test_settings_replaced_for_a_block():
    """settings_context/current_settings: a changed copy of the settings holds inside only."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    before = prefect_compat.current_settings()
    changed = before.copy_with_update(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 45})
    with prefect_compat.settings_context(changed):
        assert prefect_compat.current_settings().flows.heartbeat_frequency == 45
    assert prefect_compat.current_settings() is before
    assert isinstance(prefect_compat.current_profile_name(), str)


@pytest.mark.unit
def test_the_embedded_server_is_one_object_per_process():
    """embedded_server: Prefect's SubprocessASGIServer, a singleton with start/running/api_url."""
    server = prefect_compat.embedded_server()
    assert server is prefect_compat.embedded_server()
    assert all(hasattr(server, name) for name in ("start", "running", "api_url", "server_process")), \
        "SubprocessASGIServer changed its interface"
    from prefect.server.api.server import SubprocessASGIServer

    assert server in SubprocessASGIServer._instances.values(), "SubprocessASGIServer._instances is gone"


@pytest.mark.unit
def test_the_heartbeat_event_is_named_and_shaped_as_prefects_own():
    """HEARTBEAT_EVENT/heartbeat_resources: what Prefect's flow engine emits (crash detection
    and Prefect's automations read ours as its own)."""
    import inspect

    import prefect.flow_engine

    source = inspect.getsource(prefect.flow_engine)
    assert f'"{prefect_compat.HEARTBEAT_EVENT}"' in source, "Prefect renamed its flow-run heartbeat event"
    for shape in ('f"prefect.flow-run.{', 'f"prefect.flow.{', '"prefect.resource.role": "flow"'):
        assert shape in source, f"Prefect's heartbeat event no longer has {shape}"


@pytest.mark.unit
def test_the_claude_sdk_bundles_its_cli():
    """claude_bundled_dir: the SDK's wheel ships the CLI and its version in `_bundled`."""
    bundled = prefect_compat.claude_bundled_dir()
    assert bundled is not None, "install the claude extra: pip install -e '.[test]'"
    assert (bundled / "claude.version").is_file() and (bundled / "claude").is_file(), \
        f"the Claude Agent SDK no longer bundles its CLI in {bundled}"


def test_a_saved_block_is_found_by_its_document_id(prefect_server, tmp_path):
    """block_document_id/result_storage: the id a result record names its storage by."""
    from prefect.filesystems import LocalFileSystem

    name = f"compat-{uuid.uuid4().hex[:8]}"
    saved = LocalFileSystem(basepath=str(tmp_path)).save(name)
    assert prefect_compat.block_document_id(f"local-file-system/{name}") == saved
    assert prefect_compat.result_storage(saved).basepath == str(tmp_path)
    assert prefect_compat.default_result_storage() is not None


def test_a_flow_run_is_entered_again_and_its_state_holds_the_record(prefect_server):
    """run_flow_again and state_data: an existing flow run, forced back to Scheduled, runs
    here to its end; a state made here holds its result (a record, or the value)."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.results import ResultRecord
    from prefect.states import Scheduled

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow(name=f"compat-{uuid.uuid4().hex[:6]}")
    def twice(x: int) -> int:
        state = double(x, return_state=True)
        data = prefect_compat.state_data(state)
        return data.result if isinstance(data, ResultRecord) else data

    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(twice, parameters={"x": 4})
        client.set_flow_run_state(flow_run.id, Scheduled(), force=True)
        flow_run = client.read_flow_run(flow_run.id)
    state = prefect_compat.run_flow_again(twice, flow_run, {"x": 4})
    assert state.is_completed() and state.result() == 8
    assert prefect_compat.run_flow_again(twice, flow_run, {"x": 5}, return_type="result") == 10


def test_only_the_kept_tags_reach_a_task_run(prefect_server):
    """only_tags: TagsContext replaces the current tags (Prefect's `tags()` only adds)."""
    from prefect import flow, tags, task
    from prefect.context import get_run_context

    @task
    def seen() -> list[str]:
        return sorted(get_run_context().task_run.tags)

    @flow(name=f"compat-{uuid.uuid4().hex[:6]}")
    def tagged() -> list[str]:
        with prefect_compat.only_tags(lambda tag: tag != "drop"):
            return seen()

    with tags("drop", "keep"):
        assert tagged() == ["keep"]


def test_a_task_runs_end_line_is_recognised_and_sent_by_prefects_api_handler(prefect_server):
    """is_task_run_end_line, api_log_handlers: a task run that ends well is logged as `Finished in
    state ...` at INFO on prefect.task_runs, with its flow run's id, and an APILogHandler on
    that logger sends it to the run's log (engine/prefect_logs.py keeps it off for our steps)."""
    import logging

    from prefect import flow, task

    handlers = prefect_compat.api_log_handlers()
    assert handlers, "no APILogHandler on the prefect.task_runs logger"
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    @task
    def quick() -> int:
        return 1

    @flow(name=f"compat-{uuid.uuid4().hex[:6]}")
    def one() -> str:
        quick()
        from prefect.context import get_run_context

        return str(get_run_context().flow_run.id)

    keep = Keep()
    logging.getLogger("prefect.task_runs").addHandler(keep)
    try:
        flow_run_id = one()
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(keep)
    ends = [record for record in seen if prefect_compat.is_task_run_end_line(record)]
    assert len(ends) == 1, [record.getMessage() for record in seen]
    assert getattr(ends[0], "flow_run_id", None) == flow_run_id, "the record no longer carries its flow run's id"


def test_an_answer_to_a_pause_is_found_by_its_key(prefect_server):
    """pause_response_prefixes/is_response_key/pause_key_of_response/paused_form_key: where
    Prefect keeps a pause's form and its answer, as flow-run inputs named by the pause key."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import pause_flow_run, resume_flow_run
    from prefect.input import RunInput

    class Answer(RunInput):
        approve: bool

    key = f"agentflow-compat-{uuid.uuid4().hex[:6]}-1"
    started = threading.Event()
    ids: list = []

    @flow(name=f"compat-{uuid.uuid4().hex[:6]}")
    def paused() -> bool:
        from prefect.context import FlowRunContext

        ids.append(FlowRunContext.get().flow_run.id)
        started.set()
        return pause_flow_run(wait_for_input=Answer, timeout=120, poll_interval=1, key=key).approve

    outcome: list = []
    runner = threading.Thread(target=lambda: outcome.append(paused()))
    runner.start()
    assert started.wait(60)
    with get_client(sync_client=True) as client:

        def form_saved() -> bool:  # an answer is taken once the form is saved
            form = prefect_compat.paused_form_key(client.read_flow_run(ids[0]).state)
            try:
                return form is not None and client.read_flow_run_input(ids[0], form) is not None
            except Exception:  # noqa: BLE001 - not saved yet
                return False

        until(form_saved, 60, "the paused run's form under paused_form_key")
        resume_flow_run(ids[0], run_input={"approve": True})
        runner.join(120)
        assert outcome == [True]
        found = [f.key for prefix in prefect_compat.pause_response_prefixes("agentflow-compat-")
                 for f in client.filter_flow_run_input(ids[0], prefix, 10, set())]
    answers = [k for k in found if prefect_compat.is_response_key(k)]
    assert [prefect_compat.pause_key_of_response(k) for k in answers] == [key], found

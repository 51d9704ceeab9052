"""Everything agentflow relies on that Prefect (or the Claude Agent SDK) does not promise.

One door: no other module names a private or undocumented Prefect name, so an upgrade is
checked here and in tests/test_prefect_compat.py, whose contract tests fail naming the item
that broke. pyproject.toml pins the minor version they passed on (Prefect 3.9.1,
claude-agent-sdk 0.2.189); widen it only after they pass on the next one.

Each item says what we rely on, why, and the public alternative where one exists. Prefect
is imported inside the functions: this module sits at the root of agentflow's layers and
importing it costs nothing.

Also relied on, outside this module because it is our own code's shape, not a Prefect name:
Prefect deep-copies cache policies (`StepLocks.__deepcopy__` returns itself, so that a copy
keeps its locks: durability/locks.py); a contract test checks the copy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


# ---- 1. Result storage blocks, called synchronously from any thread --------------------------
# Prefect's block methods are "sync compatible": called from a thread that runs an event loop
# they return a coroutine. Task runs call them from worker threads that may, so we ask for
# the sync form explicitly: the private `_sync=True` argument, and Prefect's own helper for
# blocks whose methods are plain `async def` pairs (`call_explicitly_*_block_method`).
# Public alternative: none in 3.9 (the `a`-prefixed async twins exist for some blocks only).


def default_result_storage() -> Any:
    """Prefect's default result storage block (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, or local files)."""
    from prefect.results import get_default_result_storage

    return get_default_result_storage(_sync=True)


def result_storage(block_id: Any) -> Any:
    """The result storage block a result record names by its block document id."""
    from prefect.results import resolve_result_storage

    return resolve_result_storage(block_id, _sync=True)


def block_document_id(slug: str) -> Any:
    """The document id of a saved block (`type/name`): what a result record names it by.
    `_block_document_id` is private; `Block.load` returns no public id in 3.9."""
    from prefect.blocks.core import Block

    return Block.load(slug, _sync=True)._block_document_id


def read_path(storage: Any, path: str) -> bytes:
    from prefect._internal.compatibility.blocks import call_explicitly_sync_block_method

    return call_explicitly_sync_block_method(storage, "read_path", (path,), {})


async def aread_path(storage: Any, path: str) -> bytes:
    from prefect._internal.compatibility.blocks import call_explicitly_async_block_method

    return await call_explicitly_async_block_method(storage, "read_path", (path,), {})


def write_path(storage: Any, path: str, content: bytes) -> Any:
    from prefect._internal.compatibility.blocks import call_explicitly_sync_block_method

    return call_explicitly_sync_block_method(storage, "write_path", (path, content), {})


async def awrite_path(storage: Any, path: str, content: bytes) -> Any:
    from prefect._internal.compatibility.blocks import call_explicitly_async_block_method

    return await call_explicitly_async_block_method(storage, "write_path", (path, content), {})


def path_resolver(storage: Any) -> Callable[[str], Any] | None:
    """LocalFileSystem's private `_resolve_path`: where a key lives. Prefect's result store calls
    it on a storage block (twice per task run); our wrapper storage forwards it, resolving the
    base once (durability/results.py). None for blocks that have none."""
    return getattr(storage, "_resolve_path", None)


# ---- 2. A state's result record ----------------------------------------------------------------
def state_data(state: Any) -> Any:
    """`State.data`: the ResultRecord (or its metadata, for a state read from the server) or
    the value itself for a state made in this process. Public alternative: `State.result()`,
    which goes through an event loop per call (0.1 s for 50 steps ending at once: B2), and
    reads what a stored record names, which we must not (durability/results.py's trust rule)."""
    return state.data


# ---- 3. The embedded server ----------------------------------------------------------------------
# `prefect.server.api.server.SubprocessASGIServer`: the temporary server Prefect starts for a
# process with no PREFECT_API_URL. We start it ourselves (to guard it against a SIGKILL of
# the command, and to read the API without importing Prefect's client), and find the one
# this process runs through its private `_instances`. Public alternative: none.


def embedded_server() -> Any:
    """This process's embedded server object (not started)."""
    from prefect.server.api.server import SubprocessASGIServer

    return SubprocessASGIServer()


def running_embedded_servers() -> list[Any]:
    """The embedded servers this process started, if Prefect's server module is loaded (it is
    never imported just to look)."""
    module = sys.modules.get("prefect.server.api.server")
    if module is None:
        return []
    found = list(getattr(module.SubprocessASGIServer, "_instances", {}).values())
    return [server for server in found if getattr(server, "server_process", None) is not None
            and server.server_process.poll() is None]


# ---- 4. Entering a flow run again ------------------------------------------------------------------
def run_flow_again(flow: Any, flow_run: Any, parameters: dict[str, Any], return_type: str = "state") -> Any:
    """Run an existing flow run (forced back to Scheduled first) in this process:
    `prefect.flow_engine.run_flow`, undocumented, with its `flow_run` argument. Used by
    `agentflow resume`/`rerun` and by a child workflow resumed with its parent.
    Public alternative: a deployment's worker, which needs a deployment and a worker."""
    from prefect.flow_engine import run_flow

    return run_flow(flow, flow_run=flow_run, parameters=parameters, return_type=return_type)


# ---- 5. Settings for one block of code ----------------------------------------------------------------
@contextmanager
def settings_context(settings: Any) -> Iterator[None]:
    """Run the block with `settings` (a copy of the current ones, changed): `SettingsContext`
    built from the current context's profile. Used to turn Prefect's heartbeat thread off
    for the runs we start (engine/compile.py). Public alternative: `temporary_settings`,
    which copies the settings on every call (~20 ms)."""
    from prefect.context import SettingsContext, get_settings_context

    with SettingsContext(profile=get_settings_context().profile, settings=settings):
        yield


def current_settings() -> Any:
    from prefect.context import get_settings_context

    return get_settings_context().settings


def current_profile_name() -> str:
    """The active Prefect profile's name (`agentflow server start` sets its PREFECT_API_URL)."""
    from prefect.context import get_settings_context

    return get_settings_context().profile.name


# ---- 6. Tags ------------------------------------------------------------------------------------------
@contextmanager
def only_tags(keep: Callable[[str], bool]) -> Iterator[None]:
    """The block's task runs get only the current tags `keep` accepts. Prefect's `tags()` only
    adds; `TagsContext(current_tags=...)` replaces them (its field is public, the context
    class is not documented)."""
    from prefect.context import TagsContext

    with TagsContext(current_tags={tag for tag in TagsContext.get().current_tags if keep(tag)}):
        yield


# ---- 7. Pauses' run-input keys ---------------------------------------------------------------------------
# An answer to a pause is the flow run's input `<state>-<pause key>-response`, `<state>` being
# `paused` or `suspended` (keyset_from_paused_state). We look answers up by key, for a run
# started again from the top after a suspension (or a crash after the answer came).


def pause_response_prefixes(pause_key_prefix: str) -> list[str]:
    """The run-input key prefixes under which answers to pauses whose key starts with
    `pause_key_prefix` are stored (Paused in place, or Suspended)."""
    from prefect.input.run_input import keyset_from_base_key

    return [keyset_from_base_key(f"{state}-{pause_key_prefix}")["response"].removesuffix("-response")
            for state in ("suspended", "paused")]


def is_response_key(key: str) -> bool:
    from prefect.input.run_input import keyset_from_base_key

    return key.endswith(keyset_from_base_key("")["response"])


def pause_key_of_response(key: str) -> str:
    """The pause key a response key answers (`suspended-KEY-response` -> `KEY`)."""
    from prefect.input.run_input import keyset_from_base_key

    return key.split("-", 1)[1].removesuffix(keyset_from_base_key("")["response"])


def paused_form_key(state: Any) -> str | None:
    """The run-input key of the form a Paused state waits on (its schema): saved just after the
    state, so a run is ready for an answer once it can be read. None if `state` is not paused."""
    from prefect.input import keyset_from_paused_state

    if state is None or not state.is_paused() or not state.state_details.pause_key:
        return None
    return keyset_from_paused_state(state)["schema"]


# ---- 8. Heartbeat events -------------------------------------------------------------------------------------
# We send a flow run's heartbeats ourselves (durability/heartbeat.py) with Prefect's event name
# and resources, so that Prefect's automations and our crash automation (durability/crash.py)
# read them as Prefect's own. The shape is what Prefect 3.9's FlowRunEngine emits.
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"


def heartbeat_resources(flow_run: Any, flow_name: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(resource, related) of a flow run's heartbeat event."""
    resource = {"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.name": flow_run.name or ""}
    related = [{"prefect.resource.id": f"prefect.flow.{flow_run.flow_id}", "prefect.resource.role": "flow",
                "prefect.resource.name": flow_name}]
    if flow_run.deployment_id:
        related.append({"prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                        "prefect.resource.role": "deployment"})
    related += [{"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
                for tag in sorted(flow_run.tags or [])]
    return resource, related


# ---- 9. The line Prefect logs when a task run ends -------------------------------------------------------
# Prefect's task engine logs `Finished in state Completed()` (or `Cached(...)`) at INFO on the
# `prefect.task_runs` logger as a task run ends well (TaskRunEngine.log_finished_message), with
# the task run's `flow_run_id` on the record (task_run_logger's extra); that logger's records
# reach the run's log in the UI through Prefect's APILogHandler (Prefect's logging.yml).
# Public alternative: none (the message is not a setting).


def is_task_run_end_line(record: Any) -> bool:
    import logging

    return record.levelno == logging.INFO and str(record.msg).startswith("Finished in state ")


def api_log_handlers() -> list[Any]:
    """The handlers that send `prefect.task_runs` records to the API (the run's log in the UI)."""
    import logging

    from prefect.logging.handlers import APILogHandler

    return [handler for handler in logging.getLogger("prefect.task_runs").handlers
            if isinstance(handler, APILogHandler)]


# ---- 10. The Claude Agent SDK's bundled CLI ------------------------------------------------------------------------
def claude_bundled_dir() -> Path | None:
    """The folder the SDK's wheel ships its Claude Code CLI in (`_bundled`, private), with its
    `claude.version`; None if the SDK is not installed. Shown by `agentflow agents`."""
    try:
        import claude_agent_sdk
    except ImportError:
        return None
    return Path(claude_agent_sdk.__file__).parent / "_bundled"

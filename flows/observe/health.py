"""`/health` of the metrics exporter: is each part agentflow's runs rely on up?

- prefect_api: the API answers its health check;
- database: the server reaches its database (its `/ready`);
- result_storage: the shared storage (results, journals, records, the cache index) can be written;
- local_server: the server `agentflow server start` keeps, when that is the API in use;
- events: the exporter's latest read of the events succeeded.

200 when every one is up, 503 naming those that are not (`failing`), each with why.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from agentflow import _prefect_env


def check(api_url: str, local: bool, shared_store: Callable[[], Any],
          reader: Callable[[], tuple[float, str | None]]) -> tuple[int, dict[str, Any]]:
    """`local`: the API in use is the local server's (it ran when the exporter started)."""
    from prefect.client.orchestration import get_client

    components: dict[str, dict[str, Any]] = {}
    try:
        with get_client(sync_client=True) as client:
            failure = client.api_healthcheck()
            components["prefect_api"] = _part(failure is None, api_url if failure is None else str(failure))
            if failure is None:
                components["database"] = _database(client)
    except Exception as exc:  # noqa: BLE001 - whatever stops the client, the API is what is down
        components["prefect_api"] = _part(False, f"{type(exc).__name__}: {exc}")
    components.setdefault("database", {"ok": None, "detail": "not known: the Prefect API does not answer"})
    components["result_storage"] = _storage(shared_store)
    components["local_server"] = _local_server(api_url, local)
    ok, error = reader()
    if not ok and error is None:  # started, not read yet: not known, not failing
        components["events"] = {"ok": None, "detail": "the first read of the events is under way"}
    else:
        components["events"] = _part(bool(ok), error or "the latest read of the events succeeded")
    failing = [name for name, part in components.items() if part["ok"] is False]
    return (503 if failing else 200), {"status": "failing" if failing else "ok", "failing": failing,
                                        "components": components}


def _part(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail}


def _database(client: Any) -> dict[str, Any]:
    try:
        client.request("GET", "/ready")
    except Exception as exc:  # noqa: BLE001 - a 503 from /ready is raised as an HTTP error
        return _part(False, f"the server cannot reach its database: {exc}")
    return _part(True, "the server reaches its database")


def _storage(shared_store: Callable[[], Any]) -> dict[str, Any]:
    """The shared store (durability/store.py) takes a write and a delete."""
    try:
        store = shared_store()
        probe = f".agentflow-health-{uuid.uuid4().hex}"
        store.write(probe, b"ok")
        store.delete(probe)
    except Exception as exc:  # noqa: BLE001 - any reason the storage cannot be written is the answer
        return _part(False, f"cannot write the shared storage: {exc}")
    return _part(True, store.where)


def _local_server(api_url: str, local: bool) -> dict[str, Any]:
    if not local:
        return _part(True, f"not used: the API in use is {api_url}")
    record = _prefect_env.local_server()
    if record is None or record.get("api_url") != api_url:
        return _part(False, f"the local server at {api_url} is not running: `agentflow server start` starts it")
    return _part(True, f"running (pid {record['pid']})")

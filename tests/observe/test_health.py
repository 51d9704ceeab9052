"""`/health` of the metrics exporter, against the session's Prefect server."""

from __future__ import annotations

from agentflow.flows.durability.store import LocalStore
from agentflow.flows.observe import health


def test_events_not_read_yet_are_not_a_failure_and_a_failed_read_is(prefect_server, tmp_path):
    store = lambda: LocalStore(tmp_path)  # noqa: E731

    code, document = health.check(prefect_server, False, store, lambda: (0.0, None))
    assert code == 200 and document["failing"] == []
    assert document["components"]["events"] == {"ok": None, "detail": "the first read of the events is under way"}

    code, document = health.check(prefect_server, False, store, lambda: (0.0, "ConnectError: refused"))
    assert code == 503 and document["failing"] == ["events"]
    assert document["components"]["events"]["detail"] == "ConnectError: refused"

    code, document = health.check(prefect_server, False, store, lambda: (1.0, None))
    assert code == 200 and document["components"]["events"]["ok"] is True

"""OpenTelemetry traces: a run, its steps, and each agent call inside a step.

Prefect makes the spans of a flow run and of each task run itself (prefect/telemetry), on
OpenTelemetry's global tracer: a run's span is the root, each step's task run a child of it.
agentflow adds one span per agent call, a child of its step's, with the agent's attributes
(agent, kind, variant, the step it stands in for, outcome, tokens, cost).

Nothing is exported unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set:
then `configure()`, called by each entry point, installs the SDK's tracer provider with an
OTLP/HTTP exporter (the standard OTEL_* variables configure it: headers, service name). Off,
an agent call checks one boolean: no span object, no context change (benchmarks/ B1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_log = logging.getLogger("agentflow")
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_state: dict[str, Any] = {"enabled": False, "configured": False, "tracer": None}


def configure() -> bool:
    """Export traces with OTLP if an endpoint is set (once per process); whether they are."""
    if _state["configured"]:
        return _state["enabled"]
    _state["configured"] = True
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or not any(os.environ.get(v) for v in _ENDPOINTS):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        _log.warning("agentflow: OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
                     "no traces are sent; install it with `pip install 'agentflow[otel]'`")
        return False
    provider = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):  # the API's proxy: nobody installed an SDK provider
        service = os.environ.get("OTEL_SERVICE_NAME") or "agentflow"
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    _state["tracer"] = trace.get_tracer("agentflow")
    _state["enabled"] = True
    return True


def enabled() -> bool:
    return _state["enabled"]


@contextmanager
def span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    """A child of the current span (a step's task run), or nothing at all when traces are off.
    Yields the span (None when off) so that the caller can add what the call came to."""
    if not _state["enabled"]:
        yield None
        return
    clean = {k: v for k, v in attributes.items() if v is not None}
    with _state["tracer"].start_as_current_span(name, attributes=clean) as current:
        yield current


def flush(timeout_s: float = 10.0) -> None:
    """Send what is batched (a short-lived command exits right after its run)."""
    if not _state["enabled"]:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(int(timeout_s * 1000))

"""`agentflow metrics serve`: a Prometheus exporter whose figures come from the Prefect server.

A thread reads the server every few seconds: the events since its cursors (folded into the
totals: flows/observe/fold.py) and what is true now (runs in flight, circuit states). A
scrape only renders what the latest read found, so it costs the same with ten runs or ten
thousand, and a slow or stopped API never makes Prometheus wait. The totals and cursors are
saved after each read that changed them (one small JSON file per Prefect API): an exporter
restarted goes on from them, so no counter goes back, and any number of workers may run:
every one of them reports to the same server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from agentflow import log
from agentflow.flows.durability.storage import atomic_write
from agentflow.flows.observe import source
from agentflow.flows.observe.fold import CIRCUIT_STATES, METRICS, Totals

_log = logging.getLogger("agentflow")
_STATE_VERSION = 1
_READ_BUDGET_S = 20.0  # a catch-up longer than this goes on at the next read
# A read is tried again at the next refresh: one request may take this long, and is not retried
# by the client (its backoff would hold a failing read for a minute: the server going down
# mid-request was said that late, seen under load).
_REQUEST_TIMEOUT_S = 10.0


def state_file(api_url: str) -> Path:
    """Where an exporter of this API keeps its totals: one file per server, so that two
    servers' figures never mix."""
    digest = hashlib.sha256(api_url.encode()).hexdigest()[:12]
    return log.default_file("AGENTFLOW_METRICS_STATE", f"metrics-{digest}.json")


class Figures:
    """The totals, the cursors and the latest view of the server, behind one lock."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.totals = Totals()
        self.cursors = {stream: source.Cursor() for stream in source.STREAMS}
        self.in_flight: dict[tuple[str, str], int] = {}
        self.circuits: dict[str, str] = {}
        self.refresh_ok = 0.0
        self.refresh_s = 0.0
        self.last_error: str | None = None
        self.refreshed_at: float | None = None
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            _log.warning("agentflow: metrics: %s could not be read (%s): starting from the server's events", self.path, exc)
            return
        if data.get("version") != _STATE_VERSION:
            return
        self.totals = Totals.load(data.get("totals") or {})
        for stream, cursor in (data.get("cursors") or {}).items():
            if stream in self.cursors:
                self.cursors[stream] = source.Cursor.load(cursor)

    def _save(self) -> None:
        data = {"version": _STATE_VERSION, "totals": self.totals.dump(),
                "cursors": {stream: cursor.dump() for stream, cursor in self.cursors.items()}}
        atomic_write(self.path, json.dumps(data, separators=(",", ":")))

    def refresh(self, client: Any, settle: float = source.SETTLE_S) -> int:
        """Read what is new on the server (events at least `settle` seconds old: source.py);
        the number of events folded. Raises what the API raised (the caller records it); what
        was folded before the error is kept."""
        started = time.monotonic()
        deadline = started + _READ_BUDGET_S
        until = datetime.now(timezone.utc) - timedelta(seconds=settle)
        folded = 0
        try:
            for stream, cursor in self.cursors.items():
                if cursor.since() >= until:
                    continue
                for event in source.events(client, stream, cursor.since(), until, deadline=deadline):
                    with self.lock:
                        if cursor.take(str(event["id"]), _when(event["occurred"])) and self.totals.fold(event):
                            folded += 1
                cursor.prune()
            in_flight, circuits = source.in_flight(client), source.circuits(client)
            with self.lock:
                self.in_flight, self.circuits = in_flight, circuits
                self.refresh_ok, self.last_error, self.refreshed_at = 1.0, None, time.time()
        except Exception as exc:
            with self.lock:
                self.refresh_ok, self.last_error = 0.0, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with self.lock:
                self.refresh_s = time.monotonic() - started
                if folded:
                    self._save()
        return folded


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Collector:
    """prometheus-client's view of the figures: every metric of `METRICS`, rendered at a scrape."""

    def __init__(self, figures: Figures):
        self.figures = figures

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        f = self.figures
        with f.lock:
            counters = {m: dict(series) for m, series in f.totals.counters.items()}
            histograms = {k: (h.cumulative(), h.total) for k, h in f.totals.histograms.items()}
            gauges = {
                "agentflow_workflow_runs_in_flight": {k: float(v) for k, v in f.in_flight.items()},
                "agentflow_circuit_state": {(agent, state): float(state == now) for agent, now in f.circuits.items()
                                            for state in CIRCUIT_STATES},
                "agentflow_exporter_refresh_ok": {(): f.refresh_ok},
                "agentflow_exporter_refresh_seconds": {(): f.refresh_s},
            }
        for metric in METRICS.values():
            if metric.kind == "counter":
                family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
                for labels, value in sorted(counters.get(metric.name, {}).items()):
                    family.add_metric(list(labels), value)
            elif metric.kind == "gauge":
                family = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
                for labels, value in sorted(gauges.get(metric.name, {}).items()):
                    family.add_metric(list(labels), value)
            else:
                family = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
                for labels, (buckets, total) in sorted(histograms.items()):
                    family.add_metric(list(labels), buckets, sum_value=total)
            yield family


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # a line per scrape on the console is noise


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def app(figures: Figures, health: Callable[[], tuple[int, dict[str, Any]]], token: str | None):
    """The WSGI app: /metrics (prometheus-client's own rendering, both text formats) and
    /health; with a token, both want `Authorization: Bearer TOKEN`."""
    from prometheus_client import CollectorRegistry, make_wsgi_app

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(figures))
    metrics = make_wsgi_app(registry)

    def serve(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        if token is not None:
            given = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                    ("WWW-Authenticate", 'Bearer realm="agentflow"')])
                return [b"a bearer token is required: Authorization: Bearer TOKEN\n"]
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/health":
            status, body = health()
            start_response(f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
                           [("Content-Type", "application/json")])
            return [json.dumps(body, indent=2).encode() + b"\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"agentflow metrics: /metrics and /health\n"]

    return serve


class Exporter:
    """The reading thread and the HTTP server of one `agentflow metrics serve`."""

    def __init__(self, figures: Figures, host: str, port: int, every: float,
                 health: Callable[[], tuple[int, dict[str, Any]]], token: str | None,
                 settle: float = source.SETTLE_S):
        self.figures, self.every, self.settle = figures, every, settle
        self.server = make_server(host, port, app(figures, health, token), server_class=_ThreadingServer,
                                  handler_class=_Quiet)
        self.stopping = threading.Event()
        self._reader = threading.Thread(target=self._read, name="agentflow-metrics-reader", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_port

    def serve(self) -> None:
        self._reader.start()
        try:
            self.server.serve_forever(poll_interval=0.5)
        finally:
            self.stopping.set()
            self._reader.join(timeout=30)
            self.server.server_close()

    def stop(self) -> None:
        self.stopping.set()
        threading.Thread(target=self.server.shutdown, daemon=True).start()

    def _read(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

        logger = log.logger(component="metrics")
        failing = False
        while not self.stopping.is_set():
            try:
                with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}), \
                        get_client(sync_client=True, httpx_settings={"timeout": _REQUEST_TIMEOUT_S}) as client:
                    folded = self.figures.refresh(client, self.settle)
                if failing:
                    logger.info("metrics: the Prefect API answers again")
                failing = False
                if folded:
                    logger.debug(f"metrics: {folded} new events", events=folded)
            except Exception as exc:  # noqa: BLE001 - the API down is a state to report, not an end
                if not failing:
                    logger.warning(f"metrics: could not read the Prefect API: {exc}")
                failing = True
            self.stopping.wait(self.every)

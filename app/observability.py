"""JSON logs with a request id, Prometheus metrics, and the ASGI middleware that feeds both."""

import contextvars
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import tracing
from app.errors import PROBLEM_JSON, problem_document
from app.logsafe import loggable_path

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

M = TypeVar("M")


# Set by `nextstep serve` for its worker processes (app/serving.py) before they start: each
# writes its counters and histograms to files there, and a scrape of any one adds them up.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


# Set by `nextstep serve` with one server process: where the outbound worker it runs beside
# that process writes its metrics, for the server's /metrics to show with its own.
SENDER_METRICS_DIR = "NEXTSTEP_SENDER_METRICS_DIR"


def shared_metrics_dir() -> str | None:
    """Where the worker processes of this server share their metrics; None for one process."""
    return os.environ.get(MULTIPROCESS_DIR) or None


def sender_metrics_dir() -> str | None:
    """Where the outbound worker beside this one server process writes its metrics."""
    return os.environ.get(SENDER_METRICS_DIR) or None


class Metrics:
    """One app's Prometheus metrics, on a registry of its own (``app.state.metrics``), so
    that two apps (two tests) never share a counter.

    In one process, the registry holds what the process-wide one holds (the process,
    platform and garbage collector metrics), then the request and delivery metrics below,
    then whatever a module adds with ``of``: ``/metrics`` writes them in that order.

    Under several worker processes (``shared_metrics_dir``), ``/metrics`` writes every
    counter and histogram summed over all of them, read from the shared directory, then
    the collectors' gauges, computed once by the process scraped. The per-process metrics
    (memory, CPU, garbage collector) are left out there: one process's would stand for all.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._shared_dir = shared_metrics_dir()
        if self._shared_dir is None:
            GCCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            ProcessCollector(registry=self.registry)
            sender_dir = sender_metrics_dir()
            if sender_dir is not None:
                MultiProcessCollector(self.registry, path=sender_dir)  # type: ignore[no-untyped-call]
        self._collectors: list[Collector] = []
        self._made: dict[Callable[[CollectorRegistry], Any], Any] = {}
        self._lock = threading.Lock()
        self.http = self.of(HttpMetrics.on)
        self.deliveries = self.of(DeliveryMetrics.on)

    def of(self, make: Callable[[CollectorRegistry], M]) -> M:
        """The metrics ``make(registry)`` creates on this app's registry, made on the first
        call and the same object on every later one."""
        with self._lock:
            if make not in self._made:
                self._made[make] = make(self.registry)
            made: M = self._made[make]
            return made

    def register(self, collector: Collector) -> None:
        """A collector read when scraped (e.g. gauges computed from the database)."""
        self.registry.register(collector)
        self._collectors.append(collector)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        if self._shared_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._shared_dir)  # type: ignore[no-untyped-call]
        for collector in self._collectors:
            registry.register(collector)
        return generate_latest(registry)


def metrics_of(app: Any) -> Metrics:
    """The metrics of the app (a FastAPI or Starlette app, or ``request.app``)."""
    metrics: Metrics = app.state.metrics
    return metrics


@dataclass(frozen=True)
class HttpMetrics:
    requests: Counter
    latency: Histogram

    @classmethod
    def on(cls, registry: CollectorRegistry) -> "HttpMetrics":
        return cls(
            Counter(
                "nextstep_http_requests_total",
                "HTTP requests by route, method and status.",
                ["route", "method", "status"],
                registry=registry,
            ),
            Histogram(
                "nextstep_http_request_duration_seconds",
                "HTTP request latency by route and method.",
                ["route", "method"],
                buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class DeliveryMetrics:
    received: Counter
    apply_latency: Histogram
    auth_failures: Counter

    @classmethod
    def on(cls, registry: CollectorRegistry) -> "DeliveryMetrics":
        return cls(
            Counter(
                "nextstep_deliveries_total",
                "Inbound event deliveries by source and result.",
                ["source", "result"],
                registry=registry,
            ),
            Histogram(
                "nextstep_delivery_apply_seconds",
                "Time to store and apply one delivery.",
                ["source"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
                registry=registry,
            ),
            Counter(
                "nextstep_webhook_auth_failures_total",
                "Deliveries refused for their signature.",
                ["source"],
                registry=registry,
            ),
        )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        trace_id = tracing.trace_id()
        if trace_id is not None:
            entry["trace_id"] = trace_id
        for key in ("method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.set_name("nextstep")
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "nextstep"] + [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The middleware below writes one access line per request, with the request id.
    logging.getLogger("uvicorn.access").disabled = True


access_log = logging.getLogger("nextstep.access")
log = logging.getLogger("nextstep.errors")


async def send_problem(
    send: Send,
    status: int,
    detail: str,
    instance: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with a problem document from plain ASGI code, outside the framework."""
    body = json.dumps(problem_document(status, detail, instance)).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Sets the request id, writes the access log line and records the request metrics."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        status_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, status_started
            if message["type"] == "http.response.start":
                status, status_started = message["status"], True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Logged here, where the request id is still known; the client gets no trace.
            log.exception("unhandled error on %s %s", scope["method"], loggable_path(scope["path"]))
            if status_started:
                raise
            status = 500
            await send_problem(
                send,
                500,
                f"An unexpected error occurred. It has been logged with request id {request_id}.",
                scope["path"],
                [(b"x-request-id", request_id.encode())],
            )
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template, scope["method"]).observe(elapsed)
            path = loggable_path(scope["path"])
            access_log.info(
                "%s %s %s",
                scope["method"],
                path,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


class CommitmentGauges(Collector):
    """Open and overdue commitment counts, read from the database when scraped."""

    def __init__(self, count: Any) -> None:
        self._count = count

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            open_count, overdue_count = self._count()
        except Exception:  # a scrape must not fail because the database is down
            return
        yield GaugeMetricFamily("nextstep_commitments_open", "Open commitments.", value=open_count)
        yield GaugeMetricFamily(
            "nextstep_commitments_overdue",
            "Open commitments past their due time.",
            value=overdue_count,
        )


class PendingDeliveryGauges(Collector):
    """The age of the oldest pending delivery, read from the database when scraped."""

    def __init__(self, oldest: Callable[[], datetime | None]) -> None:
        self._oldest = oldest

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            oldest = self._oldest()
        except Exception:  # a scrape must not fail because the database is down
            return
        age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        yield GaugeMetricFamily(
            "nextstep_delivery_pending_oldest_age_seconds",
            "Seconds since the oldest delivery still pending was received (0: none pending).",
            value=age,
        )

"""JSON logs with a request id, Prometheus metrics, and the ASGI middleware that feeds both."""

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PROBLEM_JSON, problem_document
from app.logsafe import loggable_path

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUESTS = Counter(
    "nextstep_http_requests_total",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "nextstep_http_request_duration_seconds",
    "HTTP request latency by route and method.",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DELIVERIES = Counter(
    "nextstep_deliveries_total",
    "Inbound event deliveries by source and result.",
    ["source", "result"],
)
APPLY_LATENCY = Histogram(
    "nextstep_delivery_apply_seconds",
    "Time to store and apply one delivery.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
AUTH_FAILURES = Counter(
    "nextstep_webhook_auth_failures_total",
    "Deliveries refused for their signature.",
    ["source"],
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

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            REQUESTS.labels(template, scope["method"], str(status)).inc()
            LATENCY.labels(template, scope["method"]).observe(elapsed)
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

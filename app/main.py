"""create_app(): the routers, the middleware, the error handlers."""

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from app import openapi, tracing
from app.action_links.router import pages as action_pages
from app.calendar_feeds.router import feeds as calendar_feeds
from app.calendar_feeds.router import router as calendar_feeds_router
from app.commitments.router import router as commitments_router
from app.commitments.service import count_open_and_overdue
from app.config import get_settings
from app.db import SessionDep, dispose_engine, get_engine, new_session
from app.deadlines.router import router as deadlines_router
from app.errors import ServiceUnavailable, install_error_handlers
from app.events.pending import oldest_pending_received_at
from app.events.router import EVENT_SCHEMAS
from app.events.router import router as events_router
from app.events.sweep import sweep_forever
from app.limits import BodySizeLimitMiddleware
from app.models import utcnow
from app.observability import (
    CommitmentGauges,
    Metrics,
    PendingDeliveryGauges,
    RequestContextMiddleware,
    configure_logging,
    metrics_of,
)
from app.outbound import outbox, worker
from app.outbound.mail_router import router as mail_router
from app.outbound.metrics import AttemptMetrics, MessageGauges
from app.outbound.router import router as outbound_router
from app.owners.router import router as owners_router
from app.reports.router import router as reports_router
from app.schemas import PROBLEM_RESPONSES, Health, problems
from app.status_page.router import pages as status_pages
from app.status_page.router import router as status_links_router


def _commitment_counts() -> tuple[int, int]:
    return count_open_and_overdue(get_engine(), utcnow())


def _oldest_pending() -> datetime | None:
    with new_session() as session:
        return oldest_pending_received_at(session)


# A list page builds thousands of short-lived containers: with the default first threshold
# (700) the collector ran several times per request and took about a sixth of a worker's
# CPU (bench/RESULTS.md). Cycles are still collected, every 50,000 allocations; the older
# generations keep their default ratios (10, 10), so that garbage promoted into them is not
# held for long.
GC_THRESHOLDS = (50_000, 10, 10)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    gc.set_threshold(*GC_THRESHOLDS)
    settings = get_settings()
    if tracing.enabled():
        # Built here, where statements are traced, not first by the worker's polling, where
        # they are not (and the instrumentation attaches itself when the engine is built).
        get_engine()
    interval = settings.pending_sweep_seconds
    tasks = [asyncio.create_task(sweep_forever(interval))] if interval > 0 else []
    if settings.worker:
        attempts = metrics_of(app).of(AttemptMetrics.on)
        sending = worker.run_forever(settings.worker_poll_seconds, metrics=attempts)
        tasks.append(asyncio.create_task(sending))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    dispose_engine()


# Every tag an operation uses, declared with what it groups (generated clients and
# documentation viewers show these as sections, in this order).
TAGS = [
    {
        "name": "commitments",
        "description": "Interviews and their next steps: agree, change, complete, cancel, reopen; "
        "overdue lists and summaries; contacts and timelines.",
    },
    {
        "name": "events",
        "description": "Signed events from ATS and tools (canonical and vendor webhooks), and the "
        "stored deliveries, which can be inspected and replayed.",
    },
    {
        "name": "deadlines",
        "description": "Calendars of business time, deadline policies, and how a step's due time "
        "was made.",
    },
    {
        "name": "owners",
        "description": "The owner directory: who owns steps, how to reach them, and the calendar "
        "each works by; owners are also learned from the ATS.",
    },
    {
        "name": "outbound",
        "description": "Endpoints that receive messages, reminder rules, the messages sent and a "
        "step's reminders.",
    },
    {
        "name": "email",
        "description": "E-mail to owners: a test e-mail, and an owner's digest sent now. "
        "Reminder e-mails come from rules with `email_owner`; digests each morning.",
    },
    {"name": "reports", "description": "The responsiveness report: JSON, CSV or an SVG chart."},
    {
        "name": "status links",
        "description": "Private, expiring status pages for candidates, and the links to them.",
    },
    {
        "name": "owners",
        "description": "The owner directory: who each owner id is, how to reach them and the "
        "calendar they work by.",
    },
    {
        "name": "calendar feeds",
        "description": "Private iCalendar feeds of an owner's open steps, for their calendar to "
        "subscribe to, and the links to them.",
    },
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics."},
]


def create_app() -> FastAPI:
    settings = get_settings()
    outbox.install()  # every change of a step writes its messages (app/commitments/changes.py)
    configure_logging(settings.log_level)
    app = FastAPI(
        title="nextstep",
        version="1.0.0",
        description=(
            "Every interview ends with an agreed next step: what, who owns it, by when. "
            "nextstep records each promise and tells you what is overdue, for whom, by how "
            "much, and how long the candidate has been waiting."
        ),
        lifespan=lifespan,
        responses=problems(413, 415, 503),
        servers=[{"url": "http://127.0.0.1:8000", "description": "A local `nextstep serve`."}],
        license_info={"name": "MIT", "identifier": "MIT"},
        contact={"name": "nextstep maintainers"},
        openapi_tags=TAGS,
        # The request spans come from the OpenTelemetry ASGI instrumentation (app/tracing.py),
        # the request metrics from /metrics: FastAPI's own telemetry would repeat both.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app_metrics = Metrics()
    app_metrics.register(CommitmentGauges(_commitment_counts))
    app_metrics.register(PendingDeliveryGauges(_oldest_pending))
    app_metrics.register(MessageGauges())
    app.state.metrics = app_metrics
    install_error_handlers(app)
    openapi.install(app, EVENT_SCHEMAS)

    @app.get("/healthz", operation_id="health", tags=["operations"])
    def healthz() -> Health:
        """The process is up. Does not touch the database."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        operation_id="readiness",
        tags=["operations"],
        responses={503: PROBLEM_RESPONSES[503]},
    )
    def readyz(session: SessionDep) -> Health:
        """The database answers a query."""
        try:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        except Exception as exc:
            raise ServiceUnavailable(
                "The database does not answer.",
                headers={"Retry-After": str(settings.retry_after_seconds)},
            ) from exc
        return Health(status="ok")

    @app.get(
        "/metrics",
        operation_id="metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(app_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(commitments_router)
    app.include_router(events_router)
    app.include_router(deadlines_router)
    app.include_router(owners_router)
    app.include_router(status_links_router)
    app.include_router(status_pages)
    app.include_router(action_pages)
    app.include_router(calendar_feeds_router)
    app.include_router(calendar_feeds)
    app.include_router(reports_router)
    app.include_router(outbound_router)
    app.include_router(mail_router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=app_metrics.http)
    tracing.configure(app)
    return app


def openapi_document() -> str:
    """The refined OpenAPI document of the app, as committed in openapi/openapi.json."""
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"

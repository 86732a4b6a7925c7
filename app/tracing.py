"""OpenTelemetry tracing, off unless the standard ``OTEL_*`` variables turn it on.

On (``enabled``): spans for each HTTP request (the ASGI instrumentation), each SQL
statement (SQLAlchemy), each outbound HTTP request (httpx, which also sends ``traceparent``),
and, made here, each delivery's apply and each outbound attempt. A message keeps the trace
context of the change that wrote it (``message.trace_context``), so that its attempts,
made later by the worker, join the trace of the event that caused them.

Off (the default), nothing of the SDK, the instrumentations or the exporter is imported
(FastAPI imports the light API in any case), and every helper below returns on its first
line: a service without tracing pays nothing measurable for it (bench/RESULTS.md).
"""

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from app.logsafe import loggable_path

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

Attributes = Mapping[str, str | int | bool]

_tracer: "Tracer | None" = None
_NO_SPAN: AbstractContextManager[None] = nullcontext()
# The trace context of each step written by the batch in hand (events/bulk.py), for the
# messages the outbox writes about them in one statement after the batch's spans.
_step_traces: ContextVar[Mapping[uuid.UUID, str] | None] = ContextVar("step_traces", default=None)


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, or a traces exporter
    other than ``none``; never when ``OTEL_SDK_DISABLED`` is true."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _tracer is not None


def _start_provider() -> "Tracer":
    """The process's tracer provider, sampler and exporters, as the environment says."""
    import logging

    from opentelemetry import trace
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    attributes = {}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = "nextstep"
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG), the batching from OTEL_BSP_*.
    provider = TracerProvider(resource=Resource.create(attributes))
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
    for name in (n.strip() for n in names):
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            logging.getLogger("nextstep.tracing").warning(
                "OTEL_TRACES_EXPORTER %r is not supported (otlp, console): ignored", name
            )
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # Engines look create_engine up when they are built (app/db.py), so that this wraps it.
    # The instrumentation declares SQLAlchemy < 2.1 but works with 2.1's unchanged engine
    # events (tests/test_tracing.py sees the statements' spans).
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    return trace.get_tracer("nextstep")


def start() -> bool:
    """Start the process's tracing, once, if the environment asks for it (``wanted``):
    before the database engine is built. Whether tracing is on."""
    global _tracer
    if _tracer is None and wanted():
        _tracer = _start_provider()
    return _tracer is not None


def configure(app: "FastAPI") -> None:
    """Trace the app's requests when tracing is on (``start``): to be called once the app's
    own middleware is added, so that the request's span encloses all of it (the access log
    line carries its trace id)."""
    if not start():
        return
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.util.http import parse_excluded_urls

    # Named `route_naming` when routed: inside the request's span, around the routing.
    app.add_middleware(_RouteNaming)
    # The official ASGI instrumentation, which the FastAPI one wraps, without the FastAPI
    # one's naming of the span: that matches every request against every route of the app
    # again, before routing and whether sampled or not (bench/RESULTS.md, "Tracing").
    app.add_middleware(
        OpenTelemetryMiddleware,
        excluded_urls=parse_excluded_urls(
            os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "healthz,readyz,metrics")
        ),
        default_span_details=_method_only,
        server_request_hook=_without_tokens,
        # The ASGI receive and send of every request as spans of their own: noise, and cost.
        exclude_spans=["receive", "send"],
    )


# The request's address as the instrumentation records it, old and new conventions.
_ADDRESS_ATTRIBUTES = ("http.target", "http.url", "url.path", "url.full")


def _without_tokens(span: "Span", scope: "Scope") -> None:
    """The address attributes of a request to a page served by token (status page, feed,
    action or unsubscribe page) with the token redacted, as in the access log: a trace
    backend is no place for a working link."""
    path = scope.get("path") or ""
    redacted = loggable_path(path)
    recorded = getattr(span, "attributes", None)
    if redacted == path or not span.is_recording() or not recorded:
        return
    for key in _ADDRESS_ATTRIBUTES:
        value = recorded.get(key)
        if isinstance(value, str) and path in value:
            span.set_attribute(key, value.replace(path, redacted))


def instrument_client(client: "httpx.AsyncClient") -> None:
    """Trace a client whose transport is not httpx's own (the outbound worker's, over
    aiohttp), which the instrumentation started in ``start`` does not reach: a span per
    request, and the ``traceparent`` header."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client)


def _method_only(scope: "Scope") -> tuple[str, dict[str, str]]:
    """The request span's name until it is routed (``_RouteNaming``): the method alone, as
    the HTTP conventions name a span whose route is not known."""
    return scope.get("method") or "HTTP", {}


class _RouteNaming:
    """Names a recorded request span after the route that answers it (``{method} {route}``,
    with ``http.route``), when the response starts: routing has put the route in the scope
    by then, and the span is still open. An unsampled request pays one check."""

    def __init__(self, app: "ASGIApp") -> None:
        self.app = app

    async def __call__(self, scope: "Scope", receive: "Receive", send: "Send") -> None:
        from opentelemetry import trace

        request_span = trace.get_current_span()
        if scope["type"] != "http" or not request_span.is_recording():
            await self.app(scope, receive, send)
            return

        async def naming_send(message: "Message") -> None:
            if message["type"] == "http.response.start":
                template = getattr(scope.get("route"), "path", None)
                if template:
                    route = scope.get("root_path", "") + template
                    request_span.update_name(f"{scope['method']} {route}")
                    request_span.set_attribute("http.route", route)
            await send(message)

        await self.app(scope, receive, naming_send)


def span(
    name: str, attributes: Attributes | None = None, parent: "Context | None" = None
) -> "AbstractContextManager[Span | None]":
    """A span made current for the block (a child of ``parent``, else of the current one);
    None when tracing is off."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, context=parent, attributes=attributes)


@contextmanager
def batch_span(carried: Sequence["Context | None"]) -> Iterator["Span | None"]:
    """The span of a transaction shared by deliveries from several requests (``carried``:
    their contexts): a child of the first, linked to the others. Its statements are its
    children; each delivery's own work goes under its own request (``resumed``). Unsampled,
    its statements make no spans: theirs would be dropped too, at a cost per statement."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import context, trace
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    known = [c for c in carried if c is not None]
    parent = known[0] if known else context.Context()
    links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in known[1:]]
    with _tracer.start_as_current_span(
        "nextstep.delivery.batch",
        context=parent,
        links=links,
        attributes={"nextstep.batch.size": len(carried)},
    ) as started:
        if started.is_recording():
            yield started
        else:
            with suppress_instrumentation():
                yield started


def current_context() -> "Context | None":
    """The trace context here, to carry to another task or thread; None when off."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


@contextmanager
def resumed(carried: "Context | None") -> Iterator[None]:
    """The block runs in a context carried from elsewhere (``current_context``)."""
    if carried is None:
        yield
        return
    from opentelemetry import context

    token = context.attach(carried)
    try:
        yield
    finally:
        context.detach(token)


def quiet() -> AbstractContextManager[None]:
    """No spans in the block (the worker's polling, which would start a trace a second)."""
    if _tracer is None:
        return _NO_SPAN
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def traceparent(of: "Span | None" = None) -> str | None:
    """The W3C ``traceparent`` of ``of`` (else of the current span); None when off or
    outside any trace."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = (of or trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def from_traceparent(value: str | None) -> "Context | None":
    """The context a stored ``traceparent`` stands for, to start a span under it."""
    if _tracer is None or not value:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": value})


def trace_id() -> str | None:
    """The current trace's id in hex, for the log lines; None when off or outside any."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def message_traceparent(commitment_id: uuid.UUID | None) -> str | None:
    """The trace context a new message keeps: that of the step's event in the batch in
    hand (``step_traces``), else the current one."""
    if _tracer is None:
        return None
    traces = _step_traces.get()
    if traces is not None and commitment_id is not None and commitment_id in traces:
        return traces[commitment_id]
    return traceparent()


class BatchSpans:
    """The apply spans of a batch written together (events/bulk.py): one per delivery, each
    under its own request, open until the batch is written."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._steps: dict[uuid.UUID, str] = {}

    def start(
        self, name: str, attributes: Callable[[], Attributes], parent: "Context | None"
    ) -> "Span | None":
        """The apply span of one delivery of the batch, under ``parent`` (its request); for
        a request not sampled, that request's own span, which is all its messages need."""
        if _tracer is None:
            return None
        from opentelemetry import trace

        request = trace.get_current_span(parent) if parent is not None else None
        if request is not None and not request.get_span_context().trace_flags.sampled:
            return request
        started = _tracer.start_span(name, context=parent, attributes=attributes())
        self._spans.append(started)
        return started

    def steps_of(self, of: "Span | None", commitment_rows: Sequence[Mapping[str, Any]]) -> None:
        """The steps ``of``'s delivery wrote (their rows): their messages join its trace."""
        value = traceparent(of) if of is not None else None
        if value is not None:
            self._steps.update(dict.fromkeys((row["id"] for row in commitment_rows), value))

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """The block writes the messages of the batch's steps."""
        token = _step_traces.set(self._steps)
        try:
            yield
        finally:
            _step_traces.reset(token)

    def end(self) -> None:
        for started in self._spans:
            started.end()
        self._spans = []


def set_attributes(on: "Span | None", attributes: Attributes) -> None:
    if on is not None:
        on.set_attributes(attributes)

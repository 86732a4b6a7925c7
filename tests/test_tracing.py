"""Tracing: off unless OTEL_* says so, and then one trace from an ATS's signed event to the
request the receiver gets, through a real `nextstep serve` exporting OTLP/HTTP to a
receiver in this process."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from app import tracing
from app.models import utcnow
from tests.outbound_helpers import Receiver, make_endpoint
from tests.signing import event_body
from tests.test_reliability import Server, completed_event, post_event, running, service_env

TRACES = "/v1/traces"
# What tracing loads when on. (FastAPI itself imports the light OpenTelemetry API.)
HEAVY = (
    "opentelemetry.sdk",
    "opentelemetry.instrumentation",
    "opentelemetry.exporter",
    "opentelemetry.proto",
)


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, str | int | bool]


def _value(value: AnyValue) -> str | int | bool:
    if value.HasField("int_value"):
        return value.int_value
    if value.HasField("bool_value"):
        return value.bool_value
    return value.string_value


def spans_received(receiver: Receiver) -> list[Span]:
    """Every span the service exported to ``receiver``, decoded from OTLP protobuf."""
    spans = []
    for delivery in receiver.at(TRACES):
        request = ExportTraceServiceRequest.FromString(delivery.body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    spans.append(
                        Span(
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            span.kind,
                            {a.key: _value(a.value) for a in span.attributes},
                        )
                    )
    return spans


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"within {timeout} s: {what}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def _serve(database_url: str, receiver: Receiver, log: Path, **otel: str) -> Iterator[Server]:
    env = service_env(
        database_url,
        NEXTSTEP_WORKER="true",
        NEXTSTEP_WORKER_POLL_SECONDS="0.1",
        NEXTSTEP_PENDING_SWEEP_SECONDS="0",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url(""),
        OTEL_SERVICE_NAME="nextstep-under-test",
        OTEL_BSP_SCHEDULE_DELAY="100",
        **otel,
    )
    env["NEXTSTEP_LOG_LEVEL"] = "INFO"  # the access lines
    server = Server(env, log)
    with running(server):
        yield server


@pytest.fixture
def traced_server(database_url: str, receiver: Receiver, tmp_path: Path) -> Iterator[Server]:
    yield from _serve(database_url, receiver, tmp_path / "server.log")


@pytest.fixture
def unsampled_server(database_url: str, receiver: Receiver, tmp_path: Path) -> Iterator[Server]:
    yield from _serve(
        database_url,
        receiver,
        tmp_path / "server.log",
        OTEL_TRACES_SAMPLER="parentbased_always_off",
    )


def _follow_one_event(receiver: Receiver, server: Server, body: bytes, hook_count: int) -> None:
    """Post ``body``; its request, its apply and its message's attempt share one trace, and
    the webhook the receiver gets carries it."""
    with httpx.Client() as client:
        answer = post_event(client, server.url, body, f"msg_{os.urandom(6).hex()}")
    assert answer.status_code == 202, answer.text
    delivery_id = answer.json()["delivery_id"]
    _wait_for(lambda: len(receiver.at("/hook")) == hook_count, "the webhook is sent")
    hook = receiver.at("/hook")[-1]
    message_id = hook.headers["webhook-id"]

    def attempt_exported() -> bool:
        return any(
            s.attributes.get("nextstep.message.id") == message_id for s in spans_received(receiver)
        )

    _wait_for(attempt_exported, "the attempt's span is exported")
    spans = spans_received(receiver)
    (apply,) = [s for s in spans if s.attributes.get("nextstep.delivery.id") == delivery_id]
    assert apply.name == "nextstep.delivery.apply"
    trace = [s for s in spans if s.trace_id == apply.trace_id]
    by_id = {s.span_id: s for s in trace}

    (request,) = [s for s in trace if s.kind == SpanProto.SPAN_KIND_SERVER]
    assert request.parent_id == ""  # the trace starts at the ATS's request
    assert request.attributes.get("http.route") == "/v1/events/{source}"
    assert any("INSERT INTO message" in str(s.attributes.values()) for s in trace)
    (attempt,) = [s for s in trace if s.name == "nextstep.outbound.attempt"]
    assert attempt.attributes["nextstep.message.id"] == message_id
    assert attempt.attributes["nextstep.attempt.succeeded"] is True

    # The webhook's traceparent is the httpx client span of that attempt, in that trace.
    _version, trace_id, parent_id, _flags = hook.headers["traceparent"].split("-")
    assert trace_id == apply.trace_id
    assert by_id[parent_id].kind == SpanProto.SPAN_KIND_CLIENT
    assert by_id[parent_id].parent_id == attempt.span_id

    # The access log line of the request carries the trace id beside the request id.
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry.get("path") == "/v1/events/acme-ats"]
    assert access[-1]["trace_id"] == apply.trace_id
    assert access[-1]["request_id"] == answer.headers["x-request-id"]


def test_one_trace_follows_an_event_from_the_ats_to_the_receiver(
    database_url: str, receiver: Receiver, traced_server: Server
) -> None:
    make_endpoint(
        receiver.url("/hook"), ["next_step.agreed", "next_step.completed"], receiver=receiver
    )
    ended = utcnow() - timedelta(hours=2)
    # A new interview with its step: written by the batch's fast path (events/bulk.py).
    _follow_one_event(receiver, traced_server, completed_event("iv-traced", ended), 1)
    # The step completed: applied one by one (events/applier.py).
    done = event_body(
        "next_step.completed",
        ended + timedelta(hours=1),
        {"external_id": "step-iv-traced", "outcome": "Second interview booked"},
    )
    _follow_one_event(receiver, traced_server, done, 2)
    traces = {s.trace_id for s in spans_received(receiver) if s.name == "nextstep.delivery.apply"}
    assert len(traces) == 2  # one trace per event


def test_an_unsampled_event_exports_nothing_but_its_webhook_and_log_line_share_its_trace_id(
    database_url: str, receiver: Receiver, unsampled_server: Server
) -> None:
    make_endpoint(receiver.url("/hook"), ["next_step.agreed"], receiver=receiver)
    with httpx.Client() as client:
        answer = post_event(
            client,
            unsampled_server.url,
            completed_event("iv-unsampled", utcnow() - timedelta(hours=2)),
            f"msg_{os.urandom(6).hex()}",
        )
    assert answer.status_code == 202, answer.text
    _wait_for(lambda: len(receiver.at("/hook")) == 1, "the webhook is sent")

    # A receiver sampling by its parent's flag drops it too (the sampled bit is off), and
    # the trace id is the event's.
    _version, trace_id, _parent_id, flags = (
        receiver.at("/hook")[0].headers["traceparent"].split("-")
    )
    assert int(flags, 16) & 1 == 0
    lines = [json.loads(line) for line in unsampled_server.output().splitlines() if line[:1] == "{"]
    access = [entry for entry in lines if entry.get("path") == "/v1/events/acme-ats"]
    assert access[-1]["trace_id"] == trace_id
    time.sleep(0.5)  # longer than the export delay: a span, had one been made, would be here
    assert spans_received(receiver) == []


def test_request_spans_of_pages_served_by_token_do_not_carry_the_token(
    database_url: str, receiver: Receiver, traced_server: Server
) -> None:
    token = "T" * 43
    paths = [f"/s/{token}", f"/ics/{token}.ics", f"/a/{token}", f"/u/{token}"]
    with httpx.Client() as client:
        for path in paths:
            assert client.get(traced_server.url + path).status_code == 404
        answer = client.post(traced_server.url + f"/a/{token}?done=complete", data={"op": "x"})
        assert answer.status_code == 404

    def requests_exported() -> list[Span]:
        return [s for s in spans_received(receiver) if s.name.startswith(("GET /", "POST /"))]

    _wait_for(lambda: len(requests_exported()) == len(paths) + 1, "the request spans")
    routes = {s.attributes.get("http.route") for s in requests_exported()}
    assert routes == {"/s/{token}", "/ics/{token}.ics", "/a/{token}", "/u/{token}"}
    for span in spans_received(receiver):
        assert token not in json.dumps(span.attributes), span
    for span in requests_exported():
        address = span.attributes.get("http.target") or span.attributes.get("url.path")
        assert "[redacted]" in str(address), span


def test_tracing_is_off_without_otel_variables_and_loads_no_sdk() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["NEXTSTEP_DATABASE_URL"] = "sqlite:///:memory:"
    probe = (
        "import sys; from app.main import create_app; create_app(); "
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "nextstep"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
    ],
)
def test_tracing_is_on_when_an_exporter_or_endpoint_is_named(
    environ: dict[str, str], on: bool
) -> None:
    assert tracing.wanted(environ) is on

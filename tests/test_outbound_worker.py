"""The outbound worker on an injected clock: the retry schedule, Retry-After, 410 Gone,
redirects and connections that fail, every attempt recorded, and the metrics."""

import asyncio
import re
import ssl
import subprocess
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app import config, db
from app.models import utcnow
from app.models.outbound import Message, MessageStatus
from app.observability import metrics_of
from app.outbound import destination
from app.outbound.metrics import AttemptMetrics
from app.outbound.sending import Outcome, Outgoing, new_client, send
from app.outbound.transport import AiohttpTransport
from app.outbound.worker import INTERRUPTED, Sender, claim
from tests.factories import create_commitment, create_interview
from tests.outbound_helpers import (
    Answer,
    Receiver,
    attempts,
    endpoint,
    make_endpoint,
    messages,
    run_pass,
    worker_settings,
)
from tests.test_reliability import free_port

Headers = dict[str, str]
SECOND = timedelta(seconds=1)


@pytest.fixture
def receiver() -> Any:
    with Receiver() as running:
        yield running


def _agree(client: TestClient, headers: Headers, count: int = 1) -> None:
    interview = create_interview(client, headers)
    for _ in range(count):
        create_commitment(client, headers, interview["id"])


def _start() -> datetime:
    """A clock reading just after every message written so far is due."""
    return utcnow() + SECOND


def test_failures_are_retried_on_the_configured_schedule_then_fail(
    client: TestClient,
    admin_headers: Headers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXTSTEP_OUTBOUND_RETRY_SCHEDULE", "5, 60")
    config.get_settings.cache_clear()
    settings = config.get_settings()
    make_endpoint(receiver.url(), ["next_step.agreed"], receiver=receiver)
    receiver.default("/hook", Answer(500))
    _agree(client, admin_headers)
    t0 = _start()

    assert run_pass(t0, settings).sent == 1
    [sent] = messages()
    assert (sent.status, sent.attempts, sent.next_attempt_at) == ("pending", 1, t0 + 5 * SECOND)
    assert run_pass(t0 + 4.9 * SECOND, settings).sent == 0  # not before its time
    assert run_pass(t0 + 5 * SECOND, settings).sent == 1
    assert messages()[0].next_attempt_at == t0 + 65 * SECOND
    assert run_pass(t0 + 64 * SECOND, settings).sent == 0
    assert run_pass(t0 + 65 * SECOND, settings).sent == 1
    assert run_pass(t0 + timedelta(days=30), settings).sent == 0

    [failed] = messages()
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", 3, None)
    assert len(receiver.deliveries) == 3
    log = attempts(failed.id)
    assert [(a.n, a.response_status, a.error) for a in log] == [
        (1, 500, "HTTP 500"),
        (2, 500, "HTTP 500"),
        (3, 500, "HTTP 500"),
    ]
    assert [a.at for a in log] == [t0, t0 + 5 * SECOND, t0 + 65 * SECOND]
    assert all(0 <= a.duration_ms < 5000 for a in log)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(
    client: TestClient, admin_headers: Headers, receiver: Receiver, status: int
) -> None:
    make_endpoint(receiver.url(), ["next_step.agreed"], receiver=receiver)
    receiver.answer("/hook", Answer(status, {"Retry-After": "120"}))
    _agree(client, admin_headers)
    t0 = _start()
    settings = worker_settings(outbound_retry_schedule=(5, 5))

    run_pass(t0, settings)
    assert messages()[0].next_attempt_at == t0 + 120 * SECOND  # not the schedule's 5 s
    assert run_pass(t0 + 119 * SECOND, settings).sent == 0
    assert run_pass(t0 + 120 * SECOND, settings).sent == 1
    [done] = messages()
    assert done.status == MessageStatus.succeeded
    assert [a.response_status for a in attempts(done.id)] == [status, 204]


def test_410_disables_the_endpoint_and_fails_its_pending_messages(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    gone = make_endpoint(receiver.url("/gone"), ["next_step.agreed"], receiver=receiver)
    make_endpoint(receiver.url("/fine"), ["next_step.agreed"], receiver=receiver)
    receiver.default("/gone", Answer(410))
    _agree(client, admin_headers, count=2)
    t0 = _start()
    # One message a pass: the second to /gone is still waiting when the first meets 410.
    settings = worker_settings(worker_batch=1)

    for n in range(6):
        run_pass(t0 + n * timedelta(hours=1), settings)

    assert len(receiver.at("/gone")) == 1
    assert len(receiver.at("/fine")) == 2
    disabled = endpoint(gone.id)
    assert disabled.enabled is False
    assert disabled.disabled_reason is not None
    assert "410" in disabled.disabled_reason
    to_gone = [m for m in messages() if m.endpoint_id == gone.id]
    assert [(m.status, m.attempts) for m in to_gone] == [("failed", 1), ("failed", 0)]
    assert [a.response_status for a in attempts(to_gone[0].id)] == [410]
    # Nothing is written for it while it is off.
    _agree(client, admin_headers)
    assert len([m for m in messages() if m.endpoint_id == gone.id]) == 2


def test_a_redirect_is_not_followed_and_fails_the_attempt(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url("/old"), ["next_step.agreed"], receiver=receiver)
    receiver.answer("/old", Answer(302, {"Location": receiver.url("/new")}))
    _agree(client, admin_headers)
    t0 = _start()

    run_pass(t0, worker_settings(outbound_retry_schedule=(5,)))

    assert receiver.at("/new") == []
    [pending] = messages()
    assert (pending.status, pending.next_attempt_at) == ("pending", t0 + 5 * SECOND)
    [attempt] = attempts(pending.id)
    assert attempt.response_status == 302
    assert attempt.error is not None
    assert "redirect" in attempt.error


def test_a_refused_or_dropped_connection_fails_the_attempt_with_an_error(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(f"http://127.0.0.1:{free_port()}/nobody", ["next_step.agreed"])
    make_endpoint(receiver.url("/drops"), ["next_step.agreed"], receiver=receiver)
    receiver.default("/drops", Answer(close=True))
    _agree(client, admin_headers)
    t0 = _start()

    run_pass(t0, worker_settings(outbound_retry_schedule=()))

    assert len(receiver.at("/drops")) == 1
    for failed in messages():
        assert (failed.status, failed.attempts) == ("failed", 1)  # an empty schedule: no retry
        [attempt] = attempts(failed.id)
        assert attempt.response_status is None
        assert attempt.error
        assert attempt.error != INTERRUPTED
        assert attempt.at == t0
    errors = sorted(attempts(m.id)[0].error or "" for m in messages())
    assert any(e.startswith("could not connect") for e in errors), errors


# --- one endpoint's share ------------------------------------------------------------------


def test_a_claim_takes_no_more_than_an_endpoints_share(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    busy = make_endpoint(receiver.url("/busy"), ["next_step.agreed"], receiver=receiver)
    free = make_endpoint(receiver.url("/free"), ["next_step.agreed"], receiver=receiver)
    _agree(client, admin_headers, count=5)

    claimed = claim(_start(), 30, limit=10, per_endpoint=3, in_flight={busy.id: 2})

    # The busy endpoint has 2 in flight already: one more place; the other, three.
    by_endpoint = Counter(o.endpoint_id for o in claimed)
    assert by_endpoint == {busy.id: 1, free.id: 3}
    # Those not taken are still due, not leased: another claim takes them.
    assert sum(1 for m in messages() if m.attempts == 0) == 6


def test_a_slow_endpoint_holds_back_no_other_endpoints_messages(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    slow = make_endpoint(receiver.url("/slow"), ["next_step.agreed"], receiver=receiver)
    fast = make_endpoint(receiver.url("/fast"), ["next_step.agreed"], receiver=receiver)
    receiver.default("/slow", Answer(204, delay=60))  # held: no answer while the test runs
    _agree(client, admin_headers, count=12)
    t0 = _start()
    settings = worker_settings(
        worker_concurrency=8, worker_endpoint_concurrency=2, worker_poll_seconds=0.05
    )

    async def until_both_endpoints_have_theirs() -> None:
        deadline = asyncio.get_running_loop().time() + 60
        async with new_client() as http:
            sender = Sender(http, settings, lambda: t0)
            try:
                # Until the fast endpoint has answered all twelve (not only received
                # them) and the slow one has its two.
                while (
                    len(receiver.at("/fast")) < 12
                    or fast.id in sender.in_flight
                    or len(receiver.at("/slow")) < 2
                ):
                    assert asyncio.get_running_loop().time() < deadline, receiver.deliveries
                    await sender.turn()
            finally:
                await sender.stop()

    asyncio.run(until_both_endpoints_have_theirs())

    # The slow endpoint's two places are taken, its other ten messages wait for them; the
    # fast endpoint's twelve went past.
    assert len(receiver.at("/slow")) == 2
    states: dict[uuid.UUID | None, Counter[tuple[str, int]]] = {
        e.id: Counter() for e in (slow, fast)
    }
    for sent in messages():
        states[sent.endpoint_id][sent.status, sent.attempts] += 1
    assert states[fast.id] == {("succeeded", 1): 12}
    # Two in flight when the worker stopped (their attempts say so), ten never claimed.
    assert states[slow.id] == {("pending", 1): 2, ("pending", 0): 10}


def test_an_answer_that_comes_after_other_answers_were_recorded_is_recorded_too(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    """The fast endpoint's answer is recorded while the slow one's attempt is still out;
    the slow answer, when it comes, is recorded in a later turn, not dropped."""
    make_endpoint(receiver.url("/slow"), ["next_step.agreed"], receiver=receiver)
    make_endpoint(receiver.url("/fast"), ["next_step.agreed"], receiver=receiver)
    receiver.default("/slow", Answer(204, delay=0.5))
    _agree(client, admin_headers, count=1)
    t0 = _start()
    settings = worker_settings(worker_poll_seconds=0.05)

    async def until_both_answered_and_recorded() -> None:
        deadline = asyncio.get_running_loop().time() + 30
        async with new_client() as http:
            sender = Sender(http, settings, lambda: t0)
            try:
                await sender.turn()
                while len(receiver.deliveries) < 2 or sender.sending or sender.finished:
                    assert asyncio.get_running_loop().time() < deadline, receiver.deliveries
                    await sender.turn()
            finally:
                await sender.stop()

    asyncio.run(until_both_answered_and_recorded())

    assert [(m.status, m.attempts) for m in messages()] == [("succeeded", 1)] * 2


# --- the address connected to ------------------------------------------------------------


def _resolving(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
    """Names of the test domain resolve as ``names`` says (the table may change between
    passes); every other name through the system resolver."""
    system = destination.resolve

    async def resolve(host: str, port: int) -> list[str]:
        if host in names:
            return names[host]
        return await system(host, port)

    monkeypatch.setattr(destination, "resolve", resolve)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("fe80::1", "link-local"),
        ("::", "unspecified"),
    ],
)
def test_a_name_that_resolves_to_a_forbidden_address_is_not_sent_to(
    client: TestClient,
    admin_headers: Headers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    address: str,
    why: str,
) -> None:
    port = receiver.server.server_port
    _resolving(monkeypatch, {"metadata.nextstep.test": [address]})
    make_endpoint(f"http://metadata.nextstep.test:{port}/hook", ["next_step.agreed"])
    _agree(client, admin_headers)

    run_pass(_start(), worker_settings(outbound_retry_schedule=()))

    assert receiver.at("/hook") == []
    [failed] = messages()
    assert (failed.status, failed.attempts) == ("failed", 1)
    [attempt] = attempts(failed.id)
    assert attempt.response_status is None
    assert attempt.error is not None
    assert "metadata.nextstep.test" in attempt.error
    assert address in attempt.error
    assert why in attempt.error


def test_every_attempt_checks_the_address_the_name_has_then(
    client: TestClient,
    admin_headers: Headers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = receiver.server.server_port
    names = {"hooks.nextstep.test": ["127.0.0.1"]}
    _resolving(monkeypatch, names)
    make_endpoint(
        f"http://hooks.nextstep.test:{port}/hook", ["next_step.agreed"], receiver=receiver
    )
    receiver.answer("/hook", Answer(503))
    _agree(client, admin_headers)
    t0 = _start()

    run_pass(t0, worker_settings(outbound_retry_schedule=(5, 5)))
    [first] = receiver.at("/hook")
    # The name is kept for the receiver: its Host header is the endpoint's, not the address.
    assert first.headers["host"] == f"hooks.nextstep.test:{port}"

    names["hooks.nextstep.test"] = ["169.254.169.254"]
    run_pass(t0 + 5 * SECOND, worker_settings(outbound_retry_schedule=(5, 5)))

    assert len(receiver.at("/hook")) == 1
    [pending] = messages()
    log = attempts(pending.id)
    assert [a.response_status for a in log] == [503, None]
    assert log[1].error is not None
    assert "169.254.169.254 is a link-local address" in log[1].error


def test_an_https_attempt_keeps_the_host_name_for_tls_and_host() -> None:
    async def pinned() -> tuple[httpx.URL, dict[str, object]]:
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(204)

        outgoing = Outgoing(
            uuid.uuid4(),
            uuid.uuid4(),
            1,
            "endpoint.test",
            uuid.uuid4(),
            "slack",
            "https://localhost:8443/hook",
            (),
            "{}",
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            outcome = await send(http, outgoing)
        assert outcome.succeeded
        [request] = seen
        assert request.headers["host"] == "localhost:8443"
        return request.url, dict(request.extensions)

    url, extensions = asyncio.run(pinned())
    assert url.host in {"127.0.0.1", "::1"}
    assert url.port == 8443
    assert extensions["sni_hostname"] == "localhost"


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"),
            *("-addext", f"subjectAltName=DNS:{name}"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_names_and_checks_the_endpoints_host_while_connecting_to_the_vetted_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path, "hooks.nextstep.test")
    _resolving(monkeypatch, {"hooks.nextstep.test": ["127.0.0.1"]})
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    names: list[str | None] = []

    def note_name(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    server_side.sni_callback = note_name
    trusting = ssl.create_default_context(cafile=str(cert))
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    def outgoing(url: str) -> Outgoing:
        return Outgoing(
            uuid.uuid4(), uuid.uuid4(), 1, "endpoint.test", uuid.uuid4(), "slack", url, (), "{}"
        )

    async def both() -> tuple[Outcome, Outcome]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_side)
        port = server.sockets[0].getsockname()[1]
        transport = AiohttpTransport(max_connections=4, ssl_context=trusting)
        async with server, httpx.AsyncClient(transport=transport) as http:
            by_name = await send(http, outgoing(f"https://hooks.nextstep.test:{port}/hook"))
            # The same server by its address: the certificate names the host, not it.
            by_address = await send(http, outgoing(f"https://127.0.0.1:{port}/hook"))
        return by_name, by_address

    by_name, by_address = asyncio.run(both())

    assert by_name.succeeded, by_name.error
    assert names[0] == "hooks.nextstep.test"
    assert b"\r\nhost: hooks.nextstep.test:" in heads[0].lower()
    assert not by_address.succeeded
    assert by_address.error is not None
    assert "certificate" in by_address.error.lower()


# --- metrics -----------------------------------------------------------------------------


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_metrics_show_messages_by_type_and_status_latency_and_the_oldest_pending(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url("/ok"), ["next_step.agreed"], receiver=receiver)
    make_endpoint(receiver.url("/down"), ["next_step.agreed"], receiver=receiver)
    receiver.default("/down", Answer(500))
    before = client.get("/metrics").text
    latency = "nextstep_outbound_attempt_duration_seconds_count"
    counted = _metric(before, latency, kind="webhook") or 0.0

    _agree(client, admin_headers)
    run_pass(_start(), metrics=metrics_of(client.app).of(AttemptMetrics.on))
    # The message still pending was written an hour ago.
    with db.new_session(write=True) as session:
        session.exec(
            update(Message)
            .where(Message.status == MessageStatus.pending)  # type: ignore[arg-type]
            .values(created_at=utcnow() - timedelta(hours=1))
        )
        session.commit()

    text = client.get("/metrics").text
    by_type = "nextstep_outbound_messages"
    assert _metric(text, by_type, type="next_step.agreed", status="succeeded") == 1
    assert _metric(text, by_type, type="next_step.agreed", status="pending") == 1
    assert (_metric(text, latency, kind="webhook") or 0) == counted + 2
    bucket = "nextstep_outbound_attempt_duration_seconds_bucket"
    assert _metric(text, bucket, kind="webhook", le="+Inf") == counted + 2
    age = _metric(text, "nextstep_outbound_pending_oldest_age_seconds")
    assert age is not None
    assert 3600 <= age < 3700

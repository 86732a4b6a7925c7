"""One attempt at sending one message: sign it, post it, say what came of it.

Each endpoint's channel (``channels/``) adds its own headers: a webhook's are the Standard
Webhooks signature, Slack's none. Redirects are never followed: a 3xx fails the attempt
like any other answer that is not a 2xx. Each attempt connects only to an address
destination.py vetted at that moment.
"""

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from app import tracing
from app.models.outbound import MessageChannel
from app.outbound.channels import channel_of
from app.outbound.destination import DestinationRefused, vetted_destination
from app.outbound.mailer import mail_once
from app.outbound.transport import AiohttpTransport

TIMEOUT_SECONDS = 10.0
# The longest one attempt may take, vetting, connecting, sending and reading together.
ATTEMPT_LIMIT_SECONDS = 2 * TIMEOUT_SECONDS
USER_AGENT = "nextstep-webhooks/1.0"
# The longest Retry-After honoured; a longer one waits this long.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Outgoing:
    """A claimed message, with what sending it needs."""

    message_id: uuid.UUID
    attempt_id: uuid.UUID
    n: int
    type: str
    endpoint_id: uuid.UUID | None  # None for an e-mail
    kind: str  # the endpoint's kind, or "email"
    url: str
    secrets: tuple[str, ...]
    body: str
    # The traceparent of the change that wrote the message: the attempt joins its trace.
    trace_context: str | None = None
    recipient: str | None = None  # the owner id an e-mail goes to


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    outgoing: Outgoing
    at: datetime
    response_status: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None
    permanent: bool = False  # an answer that sending again would not change (SMTP 5xx)

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300

    @property
    def gone(self) -> bool:
        return self.response_status == 410


def signed_headers(outgoing: Outgoing, at: datetime) -> dict[str, str]:
    """An attempt's headers: the common ones, then its channel's (a webhook's signature)."""
    channel = channel_of(outgoing.kind)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **channel.headers(str(outgoing.message_id), outgoing.body, outgoing.secrets, at),
    }


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now, within bounds."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value) if value.isdigit() else None
        if seconds is None:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _error_text(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {exc}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _answer_error(response: httpx.Response) -> str | None:
    status = response.status_code
    if 200 <= status < 300:
        return None
    if response.is_redirect:
        return f"HTTP {status}: redirects are not followed"
    return f"HTTP {status}"


def wall_clock() -> datetime:
    return datetime.now(UTC)


async def send(
    client: httpx.AsyncClient, outgoing: Outgoing, signed_at: Callable[[], datetime] = wall_clock
) -> Outcome:
    """Post the message once; never raises for what the endpoint or the network does.

    The signature's timestamp is the wall clock's (``signed_at``): the receiver checks it
    against its own clock.
    """
    at = signed_at()
    started = time.perf_counter()
    if outgoing.kind == MessageChannel.email:
        reply = await mail_once(outgoing.body)
        duration = int((time.perf_counter() - started) * 1000)
        error = None if reply.succeeded else reply.text
        return Outcome(outgoing, at, reply.code, error, duration, permanent=reply.permanent)
    try:
        # A bound on the whole attempt besides the transport's own timeouts (connect, read):
        # an attempt that waited on anything else past them would hold its message until
        # the lease runs out.
        async with asyncio.timeout(ATTEMPT_LIMIT_SECONDS):
            destination = await vetted_destination(outgoing.url, TIMEOUT_SECONDS)
            response = await client.post(
                destination.url,
                content=outgoing.body.encode(),
                headers={**signed_headers(outgoing, at), **destination.headers},
                timeout=TIMEOUT_SECONDS,
                follow_redirects=False,
                extensions=dict(destination.extensions),
            )
    except TimeoutError:
        duration = int((time.perf_counter() - started) * 1000)
        return Outcome(outgoing, at, None, f"no answer within {TIMEOUT_SECONDS:g} s", duration)
    except DestinationRefused as exc:
        duration = int((time.perf_counter() - started) * 1000)
        return Outcome(outgoing, at, None, str(exc)[:500], duration)
    except httpx.HTTPError as exc:
        duration = int((time.perf_counter() - started) * 1000)
        return Outcome(outgoing, at, None, _error_text(exc), duration)
    duration = int((time.perf_counter() - started) * 1000)
    retry_after = None
    if response.status_code in (429, 503):
        retry_after = retry_after_seconds(response.headers.get("retry-after"), at)
    return Outcome(
        outgoing, at, response.status_code, _answer_error(response), duration, retry_after
    )


async def send_traced(
    client: httpx.AsyncClient, outgoing: Outgoing, signed_at: Callable[[], datetime] = wall_clock
) -> Outcome:
    """``send``, as a span in the trace of the change that wrote the message (app/tracing.py)."""
    parent = tracing.from_traceparent(outgoing.trace_context)
    with tracing.span("nextstep.outbound.attempt", _attempt_attributes(outgoing), parent) as span:
        outcome = await send(client, outgoing, signed_at)
        tracing.set_attributes(span, _outcome_attributes(outcome))
        return outcome


def _attempt_attributes(outgoing: Outgoing) -> dict[str, str | int]:
    return {
        "nextstep.message.id": str(outgoing.message_id),
        "nextstep.message.type": outgoing.type,
        "nextstep.message.attempt": outgoing.n,
        "nextstep.endpoint.id": str(outgoing.endpoint_id),
        "nextstep.endpoint.kind": outgoing.kind,
    }


def _outcome_attributes(outcome: Outcome) -> dict[str, str | int | bool]:
    answer: dict[str, str | int | bool] = {"nextstep.attempt.succeeded": outcome.succeeded}
    if outcome.response_status is not None:
        answer["http.response.status_code"] = outcome.response_status
    if outcome.error is not None:
        answer["nextstep.attempt.error"] = outcome.error
    return answer


def new_client() -> httpx.AsyncClient:
    """The client every attempt of a worker goes through: no redirects, a 10 s timeout,
    keep-alive connections pooled per endpoint address over aiohttp (transport.py)."""
    client = httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=256),
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,
        trust_env=False,
    )
    tracing.instrument_client(client)
    return client

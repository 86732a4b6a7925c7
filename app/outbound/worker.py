"""The outbound worker: fires due reminders and sends pending messages, at least once.

Each pass, in short transactions of its own:
1. **Fire** the reminders that are due (``firing.fire`` checks each step again).
2. **Claim** a batch of due messages: each gets a lease (``next_attempt_at`` moves to the
   end of the lease), its attempt count goes up and an attempt row is written, before
   anything is sent. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``, so any number of
   processes share the work without sending a message twice; SQLite serialises writers.
3. **Send** the batch concurrently, outside any transaction.
4. **Record** each outcome on its attempt row and its message: succeeded; or retried after
   the schedule's next delay (``Retry-After`` on 429/503 instead); or failed after the last.
   A 410 disables the endpoint and fails its pending messages.

A process that dies between 2 and 4 leaves its attempts saying so; the messages are
claimed again when their lease runs out, and sent again: none is lost, and every send is
a recorded attempt. Every instant but the signature's comes from ``clock``, so that tests
can drive the retry schedule.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from anyio import to_thread
from sqlalchemy import bindparam, or_, update
from sqlmodel import Session, col, select

from app import tracing
from app.config import Settings, get_settings
from app.db import new_session
from app.models import utcnow
from app.models.outbound import (
    Endpoint,
    Message,
    MessageAttempt,
    MessageChannel,
    MessageStatus,
    Reminder,
    ReminderState,
)
from app.outbound import digest, firing, outbox, reminders
from app.outbound.mail import email_outgoing
from app.outbound.metrics import AttemptMetrics
from app.outbound.sending import Outcome, Outgoing, new_client, send_traced, wall_clock

log = logging.getLogger("nextstep.outbound")

Clock = Callable[[], datetime]
INTERRUPTED = "no outcome recorded: the sending process stopped during the attempt"


@dataclass(frozen=True)
class Pass:
    """What one pass did."""

    fired: int
    sent: int
    full: bool  # a batch was full: there may be more to do at once


# Open steps a created or changed rule is scheduled for per pass: one transaction each,
# short enough not to hold the database long (bench/rule_schedule.py: 100,000 steps).
RULE_SCHEDULE_BATCH = 5000


def schedule_rules(limit: int = RULE_SCHEDULE_BATCH) -> int:
    """One batch of the scheduling that created or changed rules still need; how many rows."""
    with new_session(write=True) as session:
        done = reminders.schedule_changed_rule(session, limit)
        session.commit()
        return done


def fire_due(now: datetime, limit: int) -> int:
    """Fire up to ``limit`` due reminders in one transaction; how many."""
    with new_session(write=True) as session:
        statement = (
            select(Reminder)
            .where(
                col(Reminder.state) == ReminderState.scheduled,
                col(Reminder.fire_at) <= now,
            )
            .order_by(col(Reminder.fire_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        due = list(session.exec(statement).all())
        if due:
            firing.fire(session, due, now)
        session.commit()
        return len(due)


def _signing_secrets(endpoint: Endpoint, now: datetime) -> tuple[str, ...]:
    secrets = [endpoint.secret] if endpoint.secret else []
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return tuple(secrets)


def claim(now: datetime, lease_seconds: float, limit: int) -> list[Outgoing]:
    """Lease up to ``limit`` due messages (of enabled endpoints, and e-mails) and open an
    attempt for each."""
    with new_session(write=True) as session:
        due = (
            select(Message.id)
            .outerjoin(Endpoint, col(Endpoint.id) == col(Message.endpoint_id))
            .where(
                col(Message.status) == MessageStatus.pending,
                col(Message.next_attempt_at) <= now,
                or_(col(Endpoint.enabled), col(Message.channel) == MessageChannel.email),
            )
            .order_by(col(Message.next_attempt_at))
            .limit(limit)
            .with_for_update(skip_locked=True, of=Message)
        )
        claimed = session.exec(
            update(Message)
            .where(col(Message.id).in_(due.scalar_subquery()))
            .values(
                next_attempt_at=now + timedelta(seconds=lease_seconds),
                attempts=col(Message.attempts) + 1,
                updated_at=now,
            )
            .returning(
                col(Message.id),
                col(Message.endpoint_id),
                col(Message.type),
                col(Message.body),
                col(Message.attempts),
                col(Message.trace_context),
                col(Message.recipient),
            )
        ).all()
        if not claimed:
            session.commit()
            return []
        endpoint_ids = {row.endpoint_id for row in claimed if row.endpoint_id is not None}
        endpoints = {
            e.id: e
            for e in session.exec(select(Endpoint).where(col(Endpoint.id).in_(endpoint_ids)))
        }
        batch = []
        for row in claimed:
            attempt = MessageAttempt(
                message_id=row.id, n=row.attempts, at=now, error=INTERRUPTED, duration_ms=0
            )
            session.add(attempt)
            if row.endpoint_id is None:
                batch.append(email_outgoing(row, attempt.id))
                continue
            endpoint = endpoints[row.endpoint_id]
            batch.append(
                Outgoing(
                    message_id=row.id,
                    attempt_id=attempt.id,
                    n=row.attempts,
                    type=row.type,
                    endpoint_id=endpoint.id,
                    kind=endpoint.kind,
                    url=endpoint.url,
                    secrets=_signing_secrets(endpoint, now),
                    body=row.body,
                    trace_context=row.trace_context,
                )
            )
        session.commit()
        return batch


def _next_attempt(outcome: Outcome, now: datetime, schedule: Sequence[float]) -> datetime | None:
    """When to try again after a failed attempt; None when it was the last."""
    if outcome.outgoing.n > len(schedule):
        return None
    delay = schedule[outcome.outgoing.n - 1]
    if outcome.retry_after is not None:
        delay = outcome.retry_after
    return now + timedelta(seconds=delay)


# The attempt keeps the instant it was claimed at, from the worker's clock like every other
# instant it writes (the signature's timestamp alone is the wall clock's).
_RECORD_ATTEMPT = (
    update(MessageAttempt)
    .where(col(MessageAttempt.id) == bindparam("attempt_id"))
    .values(
        response_status=bindparam("response_status"),
        error=bindparam("error"),
        duration_ms=bindparam("duration_ms"),
    )
)
# Only while the message is still this attempt's: not resent, cancelled or claimed again.
_SETTLE_MESSAGE = (
    update(Message)
    .where(
        col(Message.id) == bindparam("message_id"),
        col(Message.attempts) == bindparam("n"),
        col(Message.status) == MessageStatus.pending,
    )
    .values(
        status=bindparam("status"),
        next_attempt_at=bindparam("next_attempt_at"),
        updated_at=bindparam("now"),
    )
)


def _disable(session: Session, endpoint_id: uuid.UUID, now: datetime) -> None:
    reason = f"the endpoint answered 410 Gone at {now.isoformat().replace('+00:00', 'Z')}"
    session.exec(
        update(Endpoint)
        .where(col(Endpoint.id) == endpoint_id, col(Endpoint.enabled))
        .values(enabled=False, disabled_reason=reason, updated_at=now)
    )
    outbox.end_pending(session, endpoint_id, MessageStatus.failed, now)


def record(
    outcomes: Sequence[Outcome],
    now: datetime,
    schedule: Sequence[float],
    metrics: AttemptMetrics | None = None,
) -> None:
    """Write what each attempt came to, and what becomes of its message."""
    if not outcomes:
        return
    with new_session(write=True) as session:
        connection = session.connection()
        connection.execute(
            _RECORD_ATTEMPT,
            [
                {
                    "attempt_id": o.outgoing.attempt_id,
                    "response_status": o.response_status,
                    "error": o.error,
                    "duration_ms": o.duration_ms,
                }
                for o in outcomes
            ],
        )
        settled = []
        for o in outcomes:
            final = o.succeeded or o.gone or o.permanent
            retry = None if final else _next_attempt(o, now, schedule)
            status = (
                MessageStatus.succeeded
                if o.succeeded
                else MessageStatus.pending
                if retry is not None
                else MessageStatus.failed
            )
            settled.append(
                {
                    "message_id": o.outgoing.message_id,
                    "n": o.outgoing.n,
                    "status": status.value,
                    "next_attempt_at": retry,
                    "now": now,
                }
            )
        connection.execute(_SETTLE_MESSAGE, settled)
        for endpoint_id in {o.outgoing.endpoint_id for o in outcomes if o.gone}:
            if endpoint_id is not None:
                _disable(session, endpoint_id, now)
        session.commit()
    if metrics is not None:
        for o in outcomes:
            metrics.observe(o)


async def _send_all(
    client: httpx.AsyncClient, batch: Sequence[Outgoing], concurrency: int, signed_at: Clock
) -> list[Outcome]:
    gate = asyncio.Semaphore(concurrency)

    async def one(outgoing: Outgoing) -> Outcome:
        async with gate:
            return await send_traced(client, outgoing, signed_at)

    return list(await asyncio.gather(*(one(o) for o in batch)))


async def run_once(
    client: httpx.AsyncClient,
    clock: Clock = utcnow,
    settings: Settings | None = None,
    metrics: AttemptMetrics | None = None,
    signed_at: Clock = wall_clock,
) -> Pass:
    """One pass: schedule changed rules (a batch), fire what is due, then claim, send and
    record one batch (signed at the wall clock's instant unless ``signed_at`` says otherwise)."""
    settings = settings or get_settings()
    limit = settings.worker_batch
    # Polled every second: traced, each poll would be a trace of its own. The attempts are
    # traced, under the changes that wrote their messages (sending.py).
    with tracing.quiet():
        scheduled = await to_thread.run_sync(schedule_rules)
        fired = await to_thread.run_sync(fire_due, clock(), limit)
        await to_thread.run_sync(digest.write_due_digests, clock())
        batch = await to_thread.run_sync(claim, clock(), settings.worker_lease_seconds, limit)
    if batch:
        outcomes = await _send_all(client, batch, settings.worker_concurrency, signed_at)
        schedule = settings.outbound_retry_schedule
        with tracing.quiet():
            await to_thread.run_sync(record, outcomes, clock(), schedule, metrics)
    full = fired == limit or len(batch) == limit or scheduled >= RULE_SCHEDULE_BATCH
    return Pass(fired=fired, sent=len(batch), full=full)


async def run_forever(
    poll_seconds: float, clock: Clock = utcnow, metrics: AttemptMetrics | None = None
) -> None:
    """Passes until cancelled: at once while there is more to do, else every
    ``poll_seconds``. A failed pass (the database away, say) is logged and retried."""
    async with new_client() as client:
        while True:
            try:
                done = await run_once(client, clock, metrics=metrics)
            except Exception:
                log.exception("the outbound worker's pass failed; next in %s s", poll_seconds)
                done = Pass(0, 0, full=False)
            if not done.full:
                await asyncio.sleep(poll_seconds)

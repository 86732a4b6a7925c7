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
import contextlib
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from anyio import to_thread
from sqlalchemy import Row, bindparam, insert, or_, text, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from app import tracing
from app.config import Settings, get_settings
from app.db import get_write_engine, new_session
from app.models import utcnow
from app.models.outbound import (
    Endpoint,
    Message,
    MessageAttempt,
    MessageChannel,
    MessageStatus,
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


def _commit_without_flush_wait(session: Session) -> None:
    """On PostgreSQL, let this transaction's commit return before its WAL reaches the disk.

    Only for writes that may be lost to a crash of the database server (not of this
    process) without breaking at least once: an outcome not recorded leaves its message to
    be claimed again when the lease runs out (another attempt, recorded); reminders fired
    and their messages are lost together and fire again. Never for a claim, whose attempt
    row must exist before anything is sent. The worker's commits then stop queueing for
    the disk with the API's (bench/RESULTS.md, "Outbound")."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))


def fire_due(now: datetime, limit: int) -> int:
    """Fire up to ``limit`` due reminders in one transaction; how many."""
    with new_session(write=True) as session:
        _commit_without_flush_wait(session)
        fired = firing.fire(session, now, limit)
        session.commit()
        return fired


def _signing_secrets(endpoint: Row[Any], now: datetime) -> tuple[str, ...]:
    secrets = [endpoint.secret] if endpoint.secret else []
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return tuple(secrets)


_ENDPOINT_COLUMNS = (
    col(Endpoint.id),
    col(Endpoint.kind),
    col(Endpoint.url),
    col(Endpoint.secret),
    col(Endpoint.previous_secret),
    col(Endpoint.previous_secret_expires_at),
)


def _claimable(
    session: Session,
    now: datetime,
    limit: int,
    per_endpoint: int | None,
    in_flight: Mapping[uuid.UUID | None, int],
) -> list[uuid.UUID]:
    """The due messages to claim, locked: the oldest first, at most ``per_endpoint`` in
    flight to any endpoint, counting the ``in_flight`` ones (none to an endpoint that has
    its fill; e-mails, without an endpoint, share one cap: they go to one SMTP server). The
    rows read but not taken are only locked until the claim commits."""
    full = {e for e, n in in_flight.items() if per_endpoint is not None and n >= per_endpoint}
    endpoint = col(Message.endpoint_id)
    mail_room = endpoint.is_not(None) if None in full else endpoint.is_(None)
    due = (
        sa_select(col(Message.id), endpoint)
        .outerjoin(Endpoint, col(Endpoint.id) == endpoint)
        .where(
            col(Message.status) == MessageStatus.pending,
            col(Message.next_attempt_at) <= now,
            or_(col(Endpoint.enabled), col(Message.channel) == MessageChannel.email),
            or_(mail_room, endpoint.not_in([e for e in full if e is not None])),
        )
        .order_by(col(Message.next_attempt_at))
        .limit(limit)
        .with_for_update(skip_locked=True, of=Message)
    )
    rows = session.execute(due).all()
    if per_endpoint is None:
        return [row.id for row in rows]
    taken: Counter[uuid.UUID | None] = Counter(in_flight)
    picked = []
    for row in rows:
        if taken[row.endpoint_id] < per_endpoint:
            taken[row.endpoint_id] += 1
            picked.append(row.id)
    return picked


def claim(
    now: datetime,
    lease_seconds: float,
    limit: int,
    per_endpoint: int | None = None,
    in_flight: Mapping[uuid.UUID | None, int] | None = None,
) -> list[Outgoing]:
    """Lease up to ``limit`` due messages (of enabled endpoints, and e-mails) and open an
    attempt for each;
    with ``per_endpoint``, no more than that many in flight to one endpoint, counting those
    ``in_flight`` already (by endpoint). Plain rows, no models: a claim is on the hot path."""
    with new_session(write=True) as session:
        ids = _claimable(session, now, limit, per_endpoint, in_flight or {})
        if not ids:
            session.commit()
            return []
        claimed = session.exec(
            update(Message)
            .where(col(Message.id).in_(ids))
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
        endpoint_ids = {row.endpoint_id for row in claimed if row.endpoint_id is not None}
        endpoints = {
            e.id: e
            for e in session.execute(
                sa_select(*_ENDPOINT_COLUMNS).where(col(Endpoint.id).in_(endpoint_ids))
            )
        }
        batch = []
        for row in claimed:
            if row.endpoint_id is None:
                batch.append(email_outgoing(row, uuid.uuid4()))
                continue
            endpoint = endpoints[row.endpoint_id]
            batch.append(
                Outgoing(
                    message_id=row.id,
                    attempt_id=uuid.uuid4(),
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
        session.execute(
            insert(MessageAttempt),
            [
                {
                    "id": o.attempt_id,
                    "message_id": o.message_id,
                    "n": o.n,
                    "at": now,
                    "response_status": None,
                    "error": INTERRUPTED,
                    "duration_ms": 0,
                }
                for o in batch
            ],
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
        _commit_without_flush_wait(session)
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
    client: httpx.AsyncClient,
    batch: Sequence[Outgoing],
    concurrency: int,
    signed_at: Clock,
    per_endpoint: int | None = None,
) -> list[Outcome]:
    """Send a batch, ``concurrency`` at a time and at most ``per_endpoint`` to one endpoint.
    A message waits for its endpoint's turn before it takes one of the shared places, so
    that a slow endpoint holds no more than its own share of them."""
    gate = asyncio.Semaphore(concurrency)
    turns: dict[uuid.UUID | None, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(per_endpoint or concurrency)
    )

    async def one(outgoing: Outgoing) -> Outcome:
        async with turns[outgoing.endpoint_id], gate:
            return await send_traced(client, outgoing, signed_at)

    return list(await asyncio.gather(*(one(o) for o in batch)))


def fire_and_schedule(now: datetime, limit: int, rules: bool = True) -> tuple[int, int, bool]:
    """A batch of rule scheduling and the digests due (unless not ``rules``), then a batch of
    due reminders fired: how many fired, how many digests were written, and whether a batch
    was full (there may be more to do at once)."""
    scheduled = schedule_rules() if rules else 0
    digests = digest.write_due_digests(now) if rules else 0
    fired = fire_due(now, limit)
    return fired, digests, fired == limit or scheduled >= RULE_SCHEDULE_BATCH


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
        fired, _digests, more = await to_thread.run_sync(fire_and_schedule, clock(), limit)
        batch = await to_thread.run_sync(claim, clock(), settings.worker_lease_seconds, limit)
    if batch:
        per_endpoint = settings.worker_endpoint_concurrency
        outcomes = await _send_all(
            client, batch, settings.worker_concurrency, signed_at, per_endpoint
        )
        schedule = settings.outbound_retry_schedule
        with tracing.quiet():
            await to_thread.run_sync(record, outcomes, clock(), schedule, metrics)
    return Pass(fired=fired, sent=len(batch), full=more or len(batch) == limit)


# How long the sender lets answers gather before it records them and claims again.
GATHER_SECONDS = 0.005


class Sender:
    """Claims, sends and records without waiting for a batch to end: a message is claimed
    as soon as there is a place for it, and outcomes are recorded a few at a time as they
    come, so that one slow answer holds back nothing but its own endpoint's place.

    At most ``worker_concurrency`` messages are in flight, and at most
    ``worker_endpoint_concurrency`` to one endpoint: an endpoint that answers slowly keeps
    its places busy, and the others keep theirs (bench/outbound.py measures it).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        clock: Clock = utcnow,
        metrics: AttemptMetrics | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.in_flight: Counter[uuid.UUID | None] = Counter()
        self.finished: list[Outcome] = []
        self.sending: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()
        # Claim at once while claims come back full; after one that does not, claim again
        # when a poll interval has passed or when reminders just fired (``poke``).
        self.claim_after = 0.0

    def poke(self) -> None:
        """New messages were written: claim them without waiting for the poll."""
        self.claim_after = 0.0
        self.changed.set()

    def _room(self) -> int:
        return self.settings.worker_concurrency - sum(self.in_flight.values())

    async def _claim(self, loop_time: float) -> None:
        wanted = min(self.settings.worker_batch, self._room())
        if loop_time < self.claim_after or wanted < 1:
            return
        settings = self.settings
        with tracing.quiet():
            batch = await to_thread.run_sync(
                claim,
                self.clock(),
                settings.worker_lease_seconds,
                wanted,
                settings.worker_endpoint_concurrency,
                dict(self.in_flight),
            )
        for outgoing in batch:
            self.in_flight[outgoing.endpoint_id] += 1
            task = asyncio.create_task(self._send(outgoing))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)
        # A claim short of what was wanted may only have met its endpoints' caps: the next
        # answer frees a place. One that found nothing waits for the poll (or a poke).
        if not batch:
            self.claim_after = loop_time + self.settings.worker_poll_seconds

    async def _send(self, outgoing: Outgoing) -> None:
        try:
            # Awaited before ``self.finished`` is read: a turn may have taken the list to
            # record while this attempt was out, and what is added to that list is lost.
            outcome = await send_traced(self.client, outgoing)
            self.finished.append(outcome)
        except Exception as exc:
            # Recorded all the same: an outcome dropped here would hold its message until
            # the lease runs out, with an attempt that says nothing of why.
            log.exception("sending message %s failed unexpectedly", outgoing.message_id)
            error = f"{type(exc).__name__}: {exc}"[:500]
            self.finished.append(Outcome(outgoing, self.clock(), None, error, 0))
        finally:
            self.in_flight[outgoing.endpoint_id] -= 1
            if not self.in_flight[outgoing.endpoint_id]:
                del self.in_flight[outgoing.endpoint_id]
            self.changed.set()

    async def record_finished(self) -> None:
        outcomes, self.finished = self.finished, []
        if outcomes:
            schedule = self.settings.outbound_retry_schedule
            with tracing.quiet():
                await to_thread.run_sync(record, outcomes, self.clock(), schedule, self.metrics)

    async def turn(self) -> None:
        """Record what finished, claim for the places free, then wait for an answer (or a
        poke, or the poll interval), and a moment more for the answers close behind it."""
        loop = asyncio.get_running_loop()
        self.changed.clear()
        # Both at once, each in a thread with a connection of its own: places freed are
        # filled while the answers that freed them are written down.
        await asyncio.gather(self._claim(loop.time()), self.record_finished())
        if not self.finished and not self.changed.is_set():
            wait = self.settings.worker_poll_seconds
            if self.claim_after > loop.time():
                wait = min(wait, self.claim_after - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), wait)
        if self.sending:
            # Answers come close together under load: a claim and a record per few of
            # them, not a round trip each (at 1,000 answers a second, 5 ms is five).
            await asyncio.sleep(GATHER_SECONDS)

    async def stop(self) -> None:
        """Cancel what is in flight (its attempts say so) and record what finished."""
        for task in list(self.sending):
            task.cancel()
        await asyncio.gather(*self.sending, return_exceptions=True)
        await self.record_finished()


# Reminders fired per transaction by the worker's loop, as a multiple of the claim batch:
# when thousands fall due at once, firing is the slower half of delivering them, and most
# of its time per batch is round trips (bench/RESULTS.md, "Outbound").
FIRE_BATCHES_PER_CLAIM = 5


async def fire_forever(
    sender: Sender, poll_seconds: float, clock: Clock, rules: bool = True
) -> None:
    """Fire due reminders (and schedule changed rules, with ``rules``): at once while
    batches come back full, else every ``poll_seconds``; each batch that fired something
    pokes the sender."""
    limit = sender.settings.worker_batch * FIRE_BATCHES_PER_CLAIM
    while True:
        try:
            with tracing.quiet():
                fired, digests, more = await to_thread.run_sync(
                    fire_and_schedule, clock(), limit, rules
                )
        except Exception:
            log.exception("firing reminders failed; next in %s s", poll_seconds)
            fired, digests, more = 0, 0, False
        if fired or digests:
            sender.poke()
        if not more:
            await asyncio.sleep(poll_seconds)


async def run_forever(
    poll_seconds: float, clock: Clock = utcnow, metrics: AttemptMetrics | None = None
) -> None:
    """Fire, claim, send and record until cancelled: the reminders in a loop of their own,
    the messages as places free up (``Sender``). A failed turn (the database away, say) is
    logged and retried after ``poll_seconds``."""
    settings = get_settings().model_copy(update={"worker_poll_seconds": poll_seconds})
    async with new_client() as client:
        sender = Sender(client, settings, clock, metrics)
        firing = [asyncio.create_task(fire_forever(sender, poll_seconds, clock))]
        if get_write_engine().dialect.name == "postgresql":
            # A second loop firing beside the first (each skips the reminders the other has
            # locked), so that one's round trips overlap the other's work. On SQLite writers
            # take turns: a second would only wait.
            firing.append(asyncio.create_task(fire_forever(sender, poll_seconds, clock, False)))
        try:
            while True:
                try:
                    await sender.turn()
                except Exception:
                    log.exception("the outbound worker's turn failed; next in %s s", poll_seconds)
                    await asyncio.sleep(poll_seconds)
        finally:
            for task in firing:
                task.cancel()
            await asyncio.gather(*firing, return_exceptions=True)
            await sender.stop()

"""Calendar feeds: create, list, revoke, and the iCalendar document a feed's URL answers.

The document is what a calendar client subscribes to: Google Calendar, Outlook and Apple
Calendar fetch it on their own schedule and replace what they showed with what it holds,
matching events by ``UID``. So each step keeps one ``UID`` for life (its id), ``SEQUENCE``
is its version (a client keeps the highest it has seen), times are UTC (a time without a
zone is read in the viewer's zone and shifts), and a step that leaves the owner stays in
the feed as ``STATUS:CANCELLED`` for 30 days, long enough for every client's refresh to
see it go. Only ``VEVENT``: subscribed calendars ignore ``VTODO`` and ``VALARM``.

Two statements whatever the size: the open steps the owner holds (with the candidate's
waiting clock), and the steps that left them in the window.
"""

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Executable, and_, bindparam, not_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from app.calendar_feeds.ics import (
    CRLF,
    content_lines,
    escape_text,
    fold,
    unescaped_value,
    utc_stamp,
)
from app.commitments.clock import clock_columns, clock_from
from app.commitments.rows import fetch_rows
from app.db import keyset_page
from app.errors import NotFound
from app.links import public_link
from app.models import (
    CalendarFeed,
    Commitment,
    CommitmentStatus,
    CommitmentVersion,
    Interview,
    OwedBy,
    Owner,
)
from app.models.base import UTCDateTime
from app.owners.service import get_owner
from app.pagination import aware_instant
from app.tokens import find_by_token, hash_token, new_token

# How long a step that left the owner stays in the feed, cancelled: clients that refresh
# daily (Google) or less often still see it go rather than keep a stale event.
CANCELLED_KEPT = timedelta(days=30)
PRODID = "-//nextstep//calendar feed//EN"
REFRESH = "PT15M"
EVENT_LENGTH = "PT15M"


class FeedDocument(NamedTuple):
    body: bytes
    etag: str


def create_feed(
    session: Session, owner_id: str, actor: str, now: datetime
) -> tuple[CalendarFeed, str]:
    """A new feed of the owner's steps, and its token (never stored, never shown again)."""
    get_owner(session, owner_id)
    token = new_token()
    feed = CalendarFeed(
        owner_id=owner_id, token_hash=hash_token(token), created_at=now, actor=actor
    )
    session.add(feed)
    session.commit()
    return feed, token


def feed_url(token: str, request_base: str | None = None) -> str:
    """The address a feed is subscribed to (``request_base``: the base URL of the request
    being answered, None outside one)."""
    return public_link(f"/ics/{token}.ics", request_base)


def list_feeds(
    session: Session, owner_id: str, limit: int, after: list[str] | None
) -> tuple[list[CalendarFeed], list[str] | None]:
    """The owner's feeds, oldest first, after a cursor's mark; and the mark to go on from."""
    get_owner(session, owner_id)
    keys = (col(CalendarFeed.created_at), col(CalendarFeed.id))
    where = (col(CalendarFeed.owner_id) == owner_id,)
    return keyset_page(session, CalendarFeed, keys, (aware_instant, uuid.UUID), after, limit, where)


def revoke_feed(session: Session, feed_id: uuid.UUID) -> None:
    """Revoke a feed: its URL answers 404 from the next request on."""
    feed = session.get(CalendarFeed, feed_id)
    if feed is None:
        raise NotFound(f"No calendar feed with id {feed_id}.")
    session.delete(feed)
    session.commit()


def feed_owner(session: Session, token: str) -> Owner | None:
    """The owner whose feed a token opens; None for a token unknown or revoked (alike)."""
    feed = find_by_token(session, CalendarFeed, token)
    return session.get(Owner, feed.owner_id) if feed is not None else None


# --- the document ---------------------------------------------------------------------------

_HELD = and_(
    col(Commitment.owner_id) == bindparam("owner_id"),
    col(Commitment.status) == CommitmentStatus.open.value,
    col(Commitment.owed_by) == OwedBy.company.value,
)
_STEP_COLUMNS = (
    col(Commitment.id),
    col(Commitment.action),
    col(Commitment.channel),
    col(Commitment.due_at),
    col(Commitment.version),
    col(Commitment.updated_at),
    col(Interview.candidate_name),
    col(Interview.candidate_external_id),
    col(Interview.job_title),
    col(Interview.job_external_id),
)


@cache
def _held_statement() -> Executable:
    # Built once: the clock's correlated subqueries cost more to build than to run.
    i = Interview
    return (
        sa_select(
            *_STEP_COLUMNS,
            col(i.ends_at),
            col(i.completed_at),
            *clock_columns(col(i.id), col(i.ends_at), col(i.completed_at)),
        )
        .join(i, col(i.id) == col(Commitment.interview_id))
        .where(_HELD)
        .order_by(col(Commitment.due_at), col(Commitment.id))
    )


@cache
def _departed_statement() -> Executable:
    """Steps the owner held open and company-owed until some instant since ``since``, and
    does not hold so now: completed, cancelled, handed over, or now owed by the candidate."""
    v = CommitmentVersion
    # From the owner's versions (indexed by owner) to their steps: asked the other way,
    # for each step whether such a version exists, SQLite reads every step.
    held_then = sa_select(col(v.commitment_id)).where(
        col(v.owner_id) == bindparam("owner_id"),
        col(v.status) == CommitmentStatus.open.value,
        col(v.owed_by) == OwedBy.company.value,
        col(v.valid_to) >= bindparam("since", type_=UTCDateTime),
    )
    return (
        sa_select(*_STEP_COLUMNS)
        .join(Interview, col(Interview.id) == col(Commitment.interview_id))
        .where(col(Commitment.id).in_(held_then), not_(_HELD))
        .order_by(col(Commitment.due_at), col(Commitment.id))
    )


def feed_document(session: Session, owner: Owner, now: datetime) -> FeedDocument:
    """The owner's feed at ``now``: their open company-owed steps, and those that left
    them in the last 30 days as cancelled. The ETag is the bytes' digest."""
    params = {"owner_id": owner.id, "as_of": now, "since": now - CANCELLED_KEPT}
    held = fetch_rows(session, _held_statement(), params)
    departed = fetch_rows(session, _departed_statement(), params)
    body = "".join(_document(owner.name or owner.id, held, departed, now)).encode()
    return FeedDocument(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _document(
    name: str, held: Sequence[Any], departed: Sequence[Any], now: datetime
) -> Iterator[str]:
    yield from content_lines(
        [
            ("BEGIN", "VCALENDAR"),
            ("VERSION", "2.0"),
            ("PRODID", PRODID),
            ("CALSCALE", "GREGORIAN"),
            ("METHOD", "PUBLISH"),
            ("X-WR-CALNAME", unescaped_value(name)),
            ("REFRESH-INTERVAL;VALUE=DURATION", REFRESH),
            ("X-PUBLISHED-TTL", REFRESH),
        ]
    )
    for row in held:
        since, _chased = clock_from(row.ends_at, row.completed_at, row._mapping)
        yield _event(row, now, "CONFIRMED", since)
    for row in departed:
        yield _event(row, now, "CANCELLED", None)
    yield "END:VCALENDAR" + CRLF


def _event(row: Any, now: datetime, status: str, waiting_since: datetime | None) -> str:
    candidate = row.candidate_name or row.candidate_external_id
    due = "Overdue" if row.due_at < now else "Due"
    description = [f"Candidate: {candidate}"]
    job = row.job_title or row.job_external_id
    if job:
        description.append(f"Job: {job}")
    if row.channel:
        description.append(f"Channel: {row.channel}")
    if waiting_since is not None:
        description.append(f"Waiting since: {waiting_since:%Y-%m-%d %H:%M} UTC")
    # The lines written whole are ASCII and short (the UID is 49 octets): only the two
    # texts need folding. One string per event: the writer's cost is per call.
    return (
        f"BEGIN:VEVENT{CRLF}UID:{row.id}@nextstep{CRLF}SEQUENCE:{row.version}{CRLF}"
        f"DTSTAMP:{utc_stamp(row.updated_at)}{CRLF}DTSTART:{utc_stamp(row.due_at)}{CRLF}"
        f"DURATION:{EVENT_LENGTH}{CRLF}"
        + fold("SUMMARY:" + escape_text(f"{due}: {row.action} — {candidate}"))
        + fold("DESCRIPTION:" + escape_text("\n".join(description)))
        + f"STATUS:{status}{CRLF}END:VEVENT{CRLF}"
    )

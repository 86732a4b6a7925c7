"""Status links: create, list, revoke; the page a link shows; the candidate's nudge.

A link's token is 256 random bits, shown once in the URL and stored only as its SHA-256.
The page shows only what API.md allows: the stage, the open company-owed steps (their
candidate note or a sentence from role and channel, and the date the candidate was told),
the waiting clock and the dates of completed steps. Never an action, outcome, reason,
owner, e-mail, interviewer, or anything about a cancelled step.
"""

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app.commitments.clock import waiting_clock
from app.commitments.ledger import Origin, record_contact
from app.commitments.service import get_interview
from app.db import get_or_not_found, keyset_page
from app.deadlines.service import default_calendar
from app.errors import InvalidInput
from app.models import (
    Commitment,
    CommitmentStatus,
    ContactChannel,
    ContactDirection,
    DeadlineBasis,
    Interview,
    OwedBy,
    StatusLink,
)
from app.pagination import aware_instant
from app.status_page.schemas import Nudge, PromisedStep, StatusPage
from app.status_page.wording import (
    step_sentence,
    written_date,
    written_instant,
    written_length,
    written_time,
    zone_name,
)
from app.tokens import find_by_token, hash_token, new_token

DEFAULT_LIFETIME = timedelta(days=30)
MAX_LIFETIME = timedelta(days=180)
COMPLETED_SHOWN = 5
NUDGE_NOTE = "Nudge from the status page"


def page_time_zone(session: Session, interview: Interview) -> ZoneInfo:
    """The zone the page writes dates in: that of the calendar a deadline policy used for
    one of the interview's steps (the latest agreed), else the default calendar's, else UTC."""
    zone = session.exec(
        select(Commitment.deadline_time_zone)
        .where(
            Commitment.interview_id == interview.id,
            col(Commitment.deadline_basis) == DeadlineBasis.policy,
            col(Commitment.deadline_time_zone).is_not(None),
        )
        .order_by(col(Commitment.agreed_at).desc(), col(Commitment.id).desc())
    ).first()
    if zone is None:
        calendar = default_calendar(session)
        zone = calendar.time_zone if calendar is not None else None
    return ZoneInfo(zone or "UTC")


def create_link(
    session: Session,
    interview_id: uuid.UUID,
    expires_at: datetime | None,
    actor: str,
    now: datetime,
) -> tuple[StatusLink, str]:
    """A new link to the interview's page, and its token (never stored, never shown again)."""
    get_interview(session, interview_id)
    if expires_at is None:
        expires_at = now + DEFAULT_LIFETIME
    elif expires_at <= now:
        raise _bad_expiry("is not in the future")
    elif expires_at > now + MAX_LIFETIME:
        raise _bad_expiry("is more than 180 days ahead")
    token = new_token()
    link = StatusLink(
        interview_id=interview_id,
        token_hash=hash_token(token),
        created_at=now,
        expires_at=expires_at,
        actor=actor,
    )
    session.add(link)
    session.commit()
    return link, token


def _bad_expiry(message: str) -> InvalidInput:
    return InvalidInput(
        f"expires_at {message}.", errors=[{"loc": ["body", "expires_at"], "msg": message}]
    )


def list_links(
    session: Session, interview_id: uuid.UUID, limit: int, after: list[str] | None
) -> tuple[list[StatusLink], list[str] | None]:
    """The interview's links, oldest first, after a cursor's mark; and the mark to go on from."""
    get_interview(session, interview_id)
    keys = (col(StatusLink.created_at), col(StatusLink.id))
    where = (col(StatusLink.interview_id) == interview_id,)
    return keyset_page(session, StatusLink, keys, (aware_instant, uuid.UUID), after, limit, where)


def revoke_link(session: Session, link_id: uuid.UUID, now: datetime) -> None:
    """Revoke a link; its page is gone from the next request on. Revoking twice is fine."""
    link = get_or_not_found(session, StatusLink, link_id, "status link")
    if link.revoked_at is None:
        link.revoked_at = now
        session.add(link)
        session.commit()


def active_link(
    session: Session, token: str, now: datetime, *, lock: bool = False
) -> StatusLink | None:
    """The link a token opens, or None when it is unknown, expired or revoked (alike)."""
    link = find_by_token(session, StatusLink, token, lock=lock)
    if link is None or link.revoked_at is not None or link.expires_at <= now:
        return None
    return link


def status_page(session: Session, token: str, now: datetime) -> StatusPage | None:
    """What the candidate sees on the link's page at ``now``; None for a link that is
    unknown, expired or revoked."""
    link = active_link(session, token, now)
    if link is None:
        return None
    interview = get_interview(session, link.interview_id)
    zone = page_time_zone(session, interview)
    steps = session.exec(
        select(Commitment).where(
            Commitment.interview_id == interview.id,
            col(Commitment.status).in_([CommitmentStatus.open, CommitmentStatus.done]),
        )
    ).all()
    promised = sorted(
        (c for c in steps if c.status == CommitmentStatus.open and c.owed_by == OwedBy.company),
        key=lambda c: (c.promised_by or c.due_at, c.id),
    )
    done = sorted(
        (c for c in steps if c.status == CommitmentStatus.done and c.completed_at is not None),
        key=lambda c: (c.completed_at, c.id),
        reverse=True,
    )[:COMPLETED_SHOWN]
    since, chased = waiting_clock(session, interview, now)
    nudged = link.last_nudged_at
    return StatusPage(
        stage=interview.stage,
        steps=[_promised_step(c, zone, now) for c in promised],
        waiting_since=written_instant(since, zone) if since is not None else None,
        waiting_for=written_length(now - since) if since is not None else None,
        chased=chased,
        completed_on=[written_date(c.completed_at, zone) for c in done if c.completed_at],
        nudged_today_at=written_time(nudged, zone) if nudged and _same_day(nudged, now) else None,
        time_zone=zone_name(zone),
    )


def _promised_step(step: Commitment, zone: ZoneInfo, now: datetime) -> PromisedStep:
    # The date the candidate was told, else the internal deadline.
    told = step.promised_by or step.due_at
    return PromisedStep(
        sentence=step.candidate_note or step_sentence(step.owner_role, step.channel),
        promised_at=told.isoformat().replace("+00:00", "Z"),
        promised=written_instant(told, zone),
        late=told < now,
    )


def _same_day(moment: datetime | None, now: datetime) -> bool:
    # Days are UTC days, whatever zone the page writes in.
    return moment is not None and moment.date() == now.date()


def nudge(session: Session, token: str, now: datetime) -> Nudge | None:
    """The candidate says they are waiting: an inbound contact (channel web) at most once a
    UTC day per link. None for a link that is unknown, expired or revoked."""
    link = active_link(session, token, now, lock=True)
    if link is None:
        session.rollback()
        return None
    if _same_day(link.last_nudged_at, now):
        session.rollback()
        return Nudge.already
    interview = get_interview(session, link.interview_id)
    record_contact(
        session,
        interview,
        ContactDirection.inbound.value,
        ContactChannel.web.value,
        NUDGE_NOTE,
        Origin(effective_at=now, actor=f"status-link:{link.id}", now=now),
    )
    link.last_nudged_at = now
    session.add(link)
    session.commit()
    return Nudge.recorded

"""The daily digest: each morning, one e-mail to an owner listing the open company-owed
steps they hold: overdue (most late first), due today, and due in the next two open days,
each with its action link.

Scheduled by the worker (``write_due_digests``) at ``digest.at`` local time in the zone of
the owner's working calendar (theirs, else the default, else UTC), on that calendar's open
days (every day without one); a worker that was not running then writes it at its first
pass later that day. At most one scheduled digest per owner and local date however
many processes look: each writes a ``digest_run`` row first, whose primary key lets one of
them through; the others' savepoints roll back. A day with nothing to list is still done.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db import new_session
from app.deadlines import calendar as deadlines
from app.deadlines.calendar import parse_wall_time
from app.deadlines.service import engine_calendar
from app.deadlines.wording import written_instant
from app.models import Commitment, CommitmentStatus, Interview, OwedBy, Owner, UnsubscribeTopic
from app.models.outbound import DigestRun, Message, MessageType
from app.outbound.mail import (
    action_link,
    directory_owner,
    require_address,
    require_smtp,
    smtp_configured,
    step_view,
    write_email,
)
from app.outbound.outbox import waiting_clocks
from app.owners.service import working_calendar

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# How many open days after today the digest looks ahead.
LOOKAHEAD_OPEN_DAYS = 2
# A calendar with no open day within a year: the digest looks a year ahead at most.
_SEARCH_DAYS = 366


def _calendar_and_zone(
    session: Session, owner: Owner
) -> tuple[deadlines.Calendar | None, ZoneInfo]:
    row = working_calendar(session, owner)
    if row is None:
        return None, ZoneInfo("UTC")
    calendar = engine_calendar(row)
    return calendar, calendar.zone


def _is_open_day(calendar: deadlines.Calendar | None, day: date) -> bool:
    return calendar is None or calendar.is_open_day(day)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _lookahead_end(calendar: deadlines.Calendar | None, today: date, zone: ZoneInfo) -> datetime:
    """The end of the second open day after ``today``: the digest lists steps due before it."""
    day, found = today, 0
    for _ in range(_SEARCH_DAYS):
        day += timedelta(days=1)
        if _is_open_day(calendar, day):
            found += 1
            if found == LOOKAHEAD_OPEN_DAYS:
                break
    return _local_midnight(day + timedelta(days=1), zone)


def _written_day(day: date) -> str:
    return f"{_WEEKDAYS[day.weekday()]}, {day.day} {_month(day)} {day.year}"


def _month(day: date) -> str:
    return date(2000, day.month, 1).strftime("%B")


def write_digest(session: Session, owner: Owner, now: datetime) -> Message | None:
    """The owner's digest at ``now``, in the outbox; None (and no e-mail) when there is
    nothing to list. Does not commit."""
    calendar, zone = _calendar_and_zone(session, owner)
    today = now.astimezone(zone).date()
    end_of_today = _local_midnight(today + timedelta(days=1), zone)
    horizon = _lookahead_end(calendar, today, zone)
    rows = session.exec(
        select(Commitment, Interview)
        .join(Interview, col(Interview.id) == col(Commitment.interview_id))
        .where(
            col(Commitment.owner_id) == owner.id,
            col(Commitment.status) == CommitmentStatus.open,
            col(Commitment.owed_by) == OwedBy.company,
            col(Commitment.due_at) < horizon,
        )
        .order_by(col(Commitment.due_at), col(Commitment.id))
    ).all()
    if not rows:
        return None
    clocks = waiting_clocks(session, {i.id for _c, i in rows}, now)
    titles = ("Overdue", "Due today", "Due in the next two open days")
    sections: list[dict[str, object]] = [{"title": t, "steps": []} for t in titles]
    for commitment, interview in rows:
        link = action_link(session, commitment.id, owner.id, now)
        view = step_view(commitment, interview, clocks[interview.id], zone, now, link)
        due = commitment.due_at
        section = 0 if due <= now else 1 if due < end_of_today else 2
        steps = sections[section]["steps"]
        assert isinstance(steps, list)
        steps.append(view)  # most late first: the oldest due time first
    count = len(rows)
    intro = (
        f"You hold {count} open step{'s' if count != 1 else ''} due by "
        f"{written_instant(horizon - timedelta(minutes=1), zone)}."
    )
    return write_email(
        session,
        owner,
        MessageType.owner_digest,
        f"Your promises for {_written_day(today)}",
        intro,
        [s for s in sections if s["steps"]],
        UnsubscribeTopic.digest,
        now,
        zone,
    )


def send_digest_now(session: Session, owner_id: str, now: datetime) -> Message | None:
    """The owner's digest, now, whatever the hour (it does not count as the day's); None
    when there is nothing to list. 404 unknown; 422 without an address or an SMTP server."""
    owner = directory_owner(session, owner_id)
    require_address(owner)
    require_smtp("A digest", ["path", "owner_id"])
    message = write_digest(session, owner, now)
    session.commit()
    return message


def _due_today(session: Session, owner: Owner, now: datetime) -> date | None:
    """The owner's local date when their digest is due at ``now`` (an open day, at or after
    ``digest.at``); None when it is not."""
    calendar, zone = _calendar_and_zone(session, owner)
    local = now.astimezone(zone)
    if not _is_open_day(calendar, local.date()):
        return None
    if local.time().replace(tzinfo=None) < parse_wall_time(owner.digest_at):
        return None
    return local.date()


def _undone(session: Session, now: datetime) -> list[tuple[Owner, date]]:
    """The owners whose digest is due at ``now`` and not yet written, by owner id."""
    owners = session.exec(
        select(Owner)
        .where(col(Owner.digest_enabled), col(Owner.email).is_not(None))
        .order_by(col(Owner.id))  # the same order in every process: no deadlock
    ).all()
    due = [(o, d) for o in owners if (d := _due_today(session, o, now)) is not None]
    if not due:
        return []
    runs = session.exec(
        select(DigestRun).where(
            col(DigestRun.owner_id).in_([o.id for o, _d in due]),
            col(DigestRun.on_date).in_({d for _o, d in due}),
        )
    )
    done = {(run.owner_id, run.on_date) for run in runs}
    return [(o, d) for o, d in due if (o.id, d) not in done]


def write_due_digests(now: datetime) -> int:
    """Write the digests due at ``now`` that no process has written yet; how many e-mails.
    Looked for in a read (each pass of the worker), written in one write transaction."""
    if not smtp_configured():
        return 0
    with new_session() as session:
        if not _undone(session, now):
            return 0
    written = 0
    with new_session(write=True) as session:
        for owner, day in _undone(session, now):
            try:
                with session.begin_nested():
                    run = DigestRun(owner_id=owner.id, on_date=day, created_at=now)
                    session.add(run)
                    session.flush()
                    message = write_digest(session, owner, now)
                    if message is not None:
                        run.message_id = message.id
                        written += 1
                    session.flush()
            except IntegrityError:
                continue  # another process wrote this owner's digest for the day
        session.commit()
    return written

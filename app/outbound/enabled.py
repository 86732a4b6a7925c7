"""What the outbox reads on every change: the enabled endpoints and rules, and the owners'
quiet-hours calendars, each read once per transaction (a batch of deliveries shares one)."""

from collections.abc import Iterable

from sqlmodel import Session, col, select

from app.db import transaction_cache
from app.deadlines import calendar as deadlines
from app.deadlines.service import default_calendar, engine_calendar
from app.models import Calendar, Owner
from app.models.outbound import Endpoint, EventType, ReminderRule


# Built when a transaction first asks: building a select costs more than the cached look-up.
def _endpoints(session: Session) -> list[Endpoint]:
    statement = select(Endpoint).where(col(Endpoint.enabled)).order_by(col(Endpoint.id))
    return list(session.exec(statement))


def _rules(session: Session) -> list[ReminderRule]:
    statement = (
        select(ReminderRule)
        .where(col(ReminderRule.enabled))
        .order_by(col(ReminderRule.position), col(ReminderRule.id))
    )
    return list(session.exec(statement))


def enabled_endpoints(session: Session) -> list[Endpoint]:
    return transaction_cache(session, "outbox.endpoints", lambda: _endpoints(session))


def enabled_rules(session: Session) -> list[ReminderRule]:
    return transaction_cache(session, "outbox.rules", lambda: _rules(session))


def subscribers(session: Session, type_: EventType) -> list[Endpoint]:
    return [e for e in enabled_endpoints(session) if type_.value in e.event_types]


# One short statement sent as is: most deliveries meet an idle outbox, and loading both
# lists as models to find them empty was two ORM queries per batch, a twentieth of the
# ingestion's CPU (bench/RESULTS.md, 2026-12-08).
_ANY_ENABLED = (
    "SELECT 1 FROM endpoint WHERE enabled UNION ALL SELECT 1 FROM reminder_rule WHERE enabled"
)


def _idle(session: Session) -> bool:
    session.flush()  # as the ORM's queries would: what this transaction added counts
    return session.connection().exec_driver_sql(_ANY_ENABLED).first() is None


def is_idle(session: Session) -> bool:
    """Nothing to write for any change: no enabled endpoint and no enabled rule."""
    return transaction_cache(session, "outbox.idle", lambda: _idle(session))


def quiet_calendar(session: Session, owner_id: str) -> deadlines.Calendar | None:
    """The owner's calendar, else the default one; None when there is no calendar at all."""
    calendars: dict[str, deadlines.Calendar | None] = transaction_cache(
        session, "outbox.calendars", dict
    )
    if owner_id not in calendars:
        own = session.get(Owner, owner_id)
        row = session.get(Calendar, own.calendar_id) if own and own.calendar_id else None
        row = row or default_calendar(session)
        calendars[owner_id] = engine_calendar(row) if row is not None else None
    return calendars[owner_id]


def prefetch_quiet_calendars(session: Session, owner_ids: Iterable[str]) -> None:
    """What ``quiet_calendar`` looks up, for many owners in two queries (a batch of 5,000
    steps has hundreds of owners)."""
    calendars: dict[str, deadlines.Calendar | None] = transaction_cache(
        session, "outbox.calendars", dict
    )
    missing = sorted({o for o in owner_ids if o not in calendars})
    if not missing:
        return
    statement = select(Owner).where(col(Owner.id).in_(missing), col(Owner.calendar_id).is_not(None))
    own = {row.id: row.calendar_id for row in session.exec(statement) if row.calendar_id}
    rows = (
        {
            row.id: row
            for row in session.exec(select(Calendar).where(col(Calendar.id).in_(set(own.values()))))
        }
        if own
        else {}
    )
    default = default_calendar(session)
    for owner_id in missing:
        calendar_id = own.get(owner_id)
        row = (rows.get(calendar_id) if calendar_id is not None else None) or default
        calendars[owner_id] = engine_calendar(row) if row is not None else None

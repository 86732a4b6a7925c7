"""What the outbox reads on every change: the enabled endpoints and rules, and the owners'
quiet-hours calendars, each read once per transaction (a batch of deliveries shares one)."""

import uuid
from collections.abc import Iterable
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import CompoundSelect, Select, literal, null, union_all
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from app.db import transaction_cache
from app.deadlines import calendar as deadlines
from app.deadlines.service import default_calendar, engine_calendar
from app.models import Calendar, Owner
from app.models.outbound import Endpoint, EventType, ReminderRule


class Subscriber(NamedTuple):
    """An enabled endpoint as the outbox reads it: the message's address, form and types."""

    id: uuid.UUID
    kind: str
    event_types: list[str]


class _Enabled(NamedTuple):
    endpoints: list[Subscriber]
    any_rule: bool


@cache
def _enabled_statement() -> CompoundSelect[Any]:
    # One statement, typed so that both databases give the same values: the enabled
    # endpoints, and one row of NULLs when some rule is enabled.
    e = SQLModel.metadata.tables[Endpoint.__tablename__].c
    any_rule = sa_select(literal(1)).where(col(ReminderRule.enabled)).limit(1).subquery()
    endpoints: Select[Any] = sa_select(e.id, e.kind, e.event_types).where(e.enabled)
    nulls: Select[Any] = sa_select(
        *(null().cast(column.type) for column in (e.id, e.kind, e.event_types))
    ).select_from(any_rule)
    return union_all(endpoints, nulls)


def _enabled(session: Session) -> _Enabled:
    session.flush()  # as the ORM's queries would: what this transaction added counts
    rows = session.connection().execute(_enabled_statement()).all()
    endpoints = [Subscriber(*row) for row in rows if row[0] is not None]
    return _Enabled(sorted(endpoints), any(row[0] is None for row in rows))


# Read once per transaction, in one statement: most deliveries meet an idle outbox, and
# loading the endpoints and the rules as models was two ORM queries per batch, a sixth of
# ingesting with one endpoint subscribed (bench/RESULTS.md, 2026-12-08).
def _read(session: Session) -> _Enabled:
    return transaction_cache(session, "outbox.enabled", lambda: _enabled(session))


def _rules(session: Session) -> list[ReminderRule]:
    if not _read(session).any_rule:
        return []
    statement = (
        select(ReminderRule)
        .where(col(ReminderRule.enabled))
        .order_by(col(ReminderRule.position), col(ReminderRule.id))
    )
    return list(session.exec(statement))


def enabled_rules(session: Session) -> list[ReminderRule]:
    return transaction_cache(session, "outbox.rules", lambda: _rules(session))


def subscribers(session: Session, type_: EventType) -> list[Subscriber]:
    """The enabled endpoints that take ``type_``, in the order of their ids."""
    return [e for e in _read(session).endpoints if type_.value in e.event_types]


def is_idle(session: Session) -> bool:
    """Nothing to write for any change: no enabled endpoint and no enabled rule."""
    enabled = _read(session)
    return not enabled.endpoints and not enabled.any_rule


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

"""Use cases of calendars, computing a due time, and a commitment's deadline (deadline
policies: policy_admin.py; the calendar an owner works by: app/owners). Each write ends in
one commit.

Calendar and policy rows hold the API's JSON; the engine's values are parsed from them
(``engine_calendar``), cached by id and version, since a row only changes with its version.
"""

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, text, update
from sqlmodel import Session, col, select

from app import deadlines
from app.db import get_or_not_found, keyset_page, save_changes
from app.deadlines.schemas import (
    CalendarCreate,
    CalendarOut,
    CalendarPatch,
    CalendarRef,
    ComputeOut,
    DeadlineOut,
    RuleIn,
    SkippedOut,
)
from app.errors import Conflict, InvalidInput
from app.models import (
    Calendar,
    Commitment,
    DeadlineBasis,
    DeadlinePolicy,
    Owner,
)
from app.pagination import aware_instant
from app.versions import check_if_match

# Calendar writes are serialised (PostgreSQL; SQLite has one writer at a time), so that
# "exactly one default" holds under concurrent creates and changes.
_CALENDARS_LOCK = "nextstep:calendars"


def lock_calendars(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": _CALENDARS_LOCK})


# --- calendars -----------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _parsed(definition: str) -> deadlines.Calendar:
    return deadlines.parse_calendar(json.loads(definition))


def engine_calendar(row: Calendar) -> deadlines.Calendar:
    """The engine's value of a stored calendar."""
    definition = json.dumps(
        {
            "time_zone": row.time_zone,
            "hours": row.hours,
            "holidays": row.holidays,
            "closed_dates": row.closed_dates,
        },
        sort_keys=True,
    )
    return _parsed(definition)


def engine_zone(name: str) -> ZoneInfo:
    """The zone of a stored calendar's time_zone (checked when it was stored)."""
    return deadlines.check_time_zone(name)


def calendar_out(row: Calendar) -> CalendarOut:
    hours = {day: row.hours.get(day, []) for day in deadlines.WEEKDAYS}
    return CalendarOut(
        id=row.id,
        name=row.name,
        time_zone=row.time_zone,
        hours=hours,
        holidays=row.holidays,
        closed_dates=row.closed_dates,
        is_default=row.is_default,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def calendar_ref(row: Calendar) -> CalendarRef:
    return CalendarRef(id=row.id, version=row.version, time_zone=row.time_zone)


def get_calendar(session: Session, calendar_id: uuid.UUID, *, lock: bool = False) -> Calendar:
    return get_or_not_found(session, Calendar, calendar_id, "calendar", lock=lock)


def default_calendar(session: Session) -> Calendar | None:
    return session.exec(select(Calendar).where(col(Calendar.is_default))).first()


def _unset_default(session: Session, keep: uuid.UUID) -> None:
    session.exec(
        update(Calendar)
        .where(col(Calendar.is_default), col(Calendar.id) != keep)
        .values(is_default=False)
    )
    session.flush()


def _hours_json(hours: Any) -> dict[str, list[list[str]]]:
    dumped: dict[str, list[list[str]]] = hours.model_dump()
    return {day: intervals for day, intervals in dumped.items() if intervals}


def create_calendar(session: Session, data: CalendarCreate, now: datetime) -> Calendar:
    """A new calendar; the first one, or one sent with ``is_default``, becomes the default.
    Flushed, not committed: the request commits it (with its Idempotency-Key, if sent)."""
    lock_calendars(session)
    first = session.exec(select(func.count()).select_from(Calendar)).one() == 0
    row = Calendar(
        name=data.name,
        time_zone=data.time_zone,
        hours=_hours_json(data.hours),
        holidays=data.holidays.model_dump() if data.holidays else None,
        closed_dates=sorted(set(data.closed_dates)),
        is_default=False,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    if first or data.is_default:
        _unset_default(session, row.id)
        row.is_default = True
        session.add(row)
    session.flush()
    return row


def update_calendar(
    session: Session,
    calendar_id: uuid.UUID,
    patch: CalendarPatch,
    if_match: str,
    now: datetime,
) -> Calendar:
    """Change a calendar, guarded by its ETag; its version counts the change. Due times
    already computed on it keep the version they were computed with."""
    lock_calendars(session)
    row = get_calendar(session, calendar_id, lock=True)
    check_if_match(row, if_match, "calendar")
    sent = patch.model_fields_set
    values: dict[str, Any] = {}
    if "name" in sent:
        values["name"] = patch.name
    if "time_zone" in sent:
        values["time_zone"] = patch.time_zone
    if "hours" in sent:
        values["hours"] = _hours_json(patch.hours)
    if "holidays" in sent:
        values["holidays"] = patch.holidays.model_dump() if patch.holidays else None
    if "closed_dates" in sent and patch.closed_dates is not None:
        values["closed_dates"] = sorted(set(patch.closed_dates))
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if "is_default" in sent:
        if patch.is_default and not row.is_default:
            _unset_default(session, row.id)
            changed["is_default"] = True
        elif not patch.is_default and row.is_default:
            raise Conflict(
                "This calendar is the default; make another calendar the default instead."
            )
    return save_changes(session, row, changed, now)


def delete_calendar(
    session: Session, calendar_id: uuid.UUID, if_match: str | None, now: datetime
) -> None:
    """Delete a calendar nobody works by; the default only when it is the last one."""
    lock_calendars(session)
    row = get_calendar(session, calendar_id, lock=True)
    check_if_match(row, if_match, "calendar")
    policies = session.exec(
        select(func.count()).where(col(DeadlinePolicy.calendar_id) == row.id)
    ).one()
    owners = session.exec(select(func.count()).where(col(Owner.calendar_id) == row.id)).one()
    if policies or owners:
        raise Conflict(
            f"The calendar is in use by {policies} deadline policies and {owners} owners; "
            "move them to another calendar first.",
            policies=int(policies),
            owners=int(owners),
        )
    if row.is_default:
        others = session.exec(
            select(func.count()).select_from(Calendar).where(col(Calendar.id) != row.id)
        ).one()
        if others:
            raise Conflict(
                "The default calendar cannot be deleted while other calendars exist; "
                "make another one the default first."
            )
        # The last calendar: the policies without a calendar of their own count on it.
        counting = session.exec(
            select(func.count()).where(col(DeadlinePolicy.calendar_id).is_(None))
        ).one()
        if counting:
            raise Conflict(
                f"The default calendar is the one {counting} deadline policies count on; "
                "delete them or create another calendar first.",
                policies=int(counting),
            )
    session.delete(row)
    session.commit()


def list_calendars(
    session: Session, limit: int, after: list[str] | None
) -> tuple[list[CalendarOut], list[str] | None]:
    """Calendars, oldest first; the page and the key to continue after."""
    keys = (col(Calendar.created_at), col(Calendar.id))
    rows, cursor = keyset_page(session, Calendar, keys, (aware_instant, uuid.UUID), after, limit)
    return [calendar_out(r) for r in rows], cursor


class DeadlineError(InvalidInput):
    """A due time cannot be computed as asked (an event that asks is stored as rejected)."""


def compute_due(row: Calendar, start: datetime, rule: deadlines.Rule, loc: list[str | int]) -> Any:
    try:
        return deadlines.compute(engine_calendar(row), start, rule)
    except deadlines.NoOpenTimeError as exc:
        raise DeadlineError(
            f"Calendar {row.id} has no open time to count this rule on: {exc}",
            errors=[{"loc": loc, "msg": str(exc)}],
        ) from None
    except (OverflowError, ValueError):
        # Counting near the ends of the calendar (years 1 and 9999) steps past them, in UTC
        # or in the calendar's zone: the due time cannot be written down, so it is refused.
        raise DeadlineError(
            f"Counting this rule from {start.isoformat()} on calendar {row.id} "
            f"({row.time_zone}) goes outside the years 1 to 9999.",
            errors=[{"loc": loc, "msg": "counting it goes outside the years 1 to 9999"}],
        ) from None


def skipped_out(skipped: Sequence[deadlines.SkippedDay]) -> list[SkippedOut]:
    return [SkippedOut(date=day.day.isoformat(), why=day.why) for day in skipped]


def compute_on_calendar(
    session: Session, calendar_id: uuid.UUID, start: datetime, rule: RuleIn
) -> ComputeOut:
    """What a policy would compute on this calendar from ``start``."""
    row = get_calendar(session, calendar_id)
    result = compute_due(row, start, rule.rule(), ["body", "rule"])
    return ComputeOut(
        due_at=result.due_at,
        rule=rule.to_json(),
        calendar=calendar_ref(row),
        skipped=skipped_out(result.skipped),
    )


# --- a calendar a request names ---------------------------------------------------------


def known_calendar(session: Session, calendar_id: uuid.UUID, loc: list[str | int]) -> Calendar:
    row = session.get(Calendar, calendar_id)
    if row is None:
        raise InvalidInput(
            f"No calendar with id {calendar_id}.",
            errors=[{"loc": loc, "msg": "is not the id of a calendar"}],
        )
    return row


# --- a commitment's deadline ---------------------------------------------------------------


def deadline_of(session: Session, commitment_id: uuid.UUID) -> DeadlineOut:
    """How the commitment's due time was made. A computed due time that was moved since
    (a PATCH, an update event) is explicit from then on."""
    commitment = get_or_not_found(session, Commitment, commitment_id, "commitment")
    computed = (
        commitment.deadline_basis == DeadlineBasis.policy
        and commitment.deadline_computed_at == commitment.due_at
        and commitment.deadline_calendar_id is not None
    )
    if not computed:
        return DeadlineOut(
            basis=DeadlineBasis.explicit,
            policy_id=None,
            rule=None,
            calendar=None,
            start=None,
            due_at=commitment.due_at,
            skipped=[],
        )
    assert commitment.deadline_calendar_id is not None
    return DeadlineOut(
        basis=DeadlineBasis.policy,
        policy_id=commitment.deadline_policy_id,
        rule=commitment.deadline_rule,
        calendar=CalendarRef(
            id=commitment.deadline_calendar_id,
            version=commitment.deadline_calendar_version or 1,
            time_zone=commitment.deadline_time_zone or "UTC",
        ),
        start=commitment.deadline_start,
        due_at=commitment.due_at,
        skipped=[SkippedOut.model_validate(s) for s in commitment.deadline_skipped or []],
    )

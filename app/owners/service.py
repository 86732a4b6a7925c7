"""Use cases of the owner directory: write, read and list owners, and the calendar each
works by. Each write ends in one commit.

Every write over the API makes the owner ``learned_from: "api"``: from then on events
never change it (learning.py).
"""

import hashlib
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from app.db import save_changes
from app.deadlines.service import default_calendar, known_calendar, lock_calendars
from app.errors import NotFound, PreconditionFailed
from app.models import Calendar, Owner
from app.models.owners import API
from app.owners.schemas import (
    DigestOut,
    DirectoryOwner,
    OwnerCalendarOut,
    OwnerIn,
    OwnerPatch,
    OwnerQuery,
)
from app.pagination import keyset


def lock_owner(session: Session, owner_id: str) -> None:
    """Serialise the writes of one owner (PostgreSQL; SQLite has one writer at a time), so
    that two first writes of the same id do not both insert it."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": f"nextstep:owner:{owner_id}"}
        )


def etag(row: Owner) -> str:
    # The creation instant is in it, so that the ETag of a deleted owner never matches the
    # one created again under the same id.
    created = hashlib.sha256(f"{row.id}\x00{row.created_at.isoformat()}".encode()).hexdigest()
    return f'"{created[:20]}-{row.version}"'


def _check_if_match(row: Owner | None, if_match: str | None) -> None:
    """If-Match compares strongly; None skips it. No owner matches no tag, not even "*"."""
    if if_match is None:
        return
    tags = {t.strip() for t in if_match.split(",")}
    if row is None or ("*" not in tags and etag(row) not in tags):
        current = f" (current ETag {etag(row)})" if row is not None else ""
        raise PreconditionFailed(f"The owner has changed{current}; GET it and retry.")


def owner_out(row: Owner) -> DirectoryOwner:
    return DirectoryOwner(
        id=row.id,
        name=row.name,
        email=row.email,
        calendar_id=row.calendar_id,
        email_reminders=row.email_reminders,
        digest=DigestOut(enabled=row.digest_enabled, at=row.digest_at),
        learned_from=row.learned_from,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def get_owner(session: Session, owner_id: str) -> Owner:
    row = session.get(Owner, owner_id)
    if row is None:
        raise NotFound(f"No owner with id {owner_id!r}.")
    return row


def working_calendar(session: Session, owner: Owner) -> Calendar | None:
    """The calendar the owner works by: their own, else the default; None without either."""
    if owner.calendar_id is not None:
        own = session.get(Calendar, owner.calendar_id)
        if own is not None:
            return own
    return default_calendar(session)


def owner_time_zone(session: Session, owner: Owner) -> ZoneInfo:
    """The zone the owner reads times in (e-mails, action pages): their working calendar's,
    else UTC."""
    calendar = working_calendar(session, owner)
    return ZoneInfo(calendar.time_zone if calendar is not None else "UTC")


def _values(data: OwnerIn) -> dict[str, Any]:
    return {
        "name": data.name,
        "email": data.email,
        "calendar_id": data.calendar_id,
        "email_reminders": data.email_reminders,
        "digest_enabled": data.digest.enabled,
        "digest_at": data.digest.at,
    }


def put_owner(
    session: Session, owner_id: str, data: OwnerIn, if_match: str | None, now: datetime
) -> tuple[Owner, bool]:
    """Create the owner or replace all of it (a field left out takes its default); the
    owner and whether it was created. A replacement moves the version on."""
    lock_calendars(session)
    lock_owner(session, owner_id)
    if data.calendar_id is not None:
        known_calendar(session, data.calendar_id, ["body", "calendar_id"])
    row = session.get(Owner, owner_id)
    _check_if_match(row, if_match)
    values = {**_values(data), "learned_from": API, "learned_at": None, "learned_key": None}
    if row is None:
        row = Owner(id=owner_id, created_at=now, updated_at=now, **values)
        session.add(row)
        session.commit()
        return row, True
    for name, value in values.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = now
    session.add(row)
    session.commit()
    return row, False


def update_owner(
    session: Session, owner_id: str, patch: OwnerPatch, if_match: str, now: datetime
) -> Owner:
    """Change the fields sent, guarded by the owner's ETag."""
    lock_calendars(session)
    lock_owner(session, owner_id)
    row = get_owner(session, owner_id)
    _check_if_match(row, if_match)
    sent = patch.model_fields_set
    values: dict[str, Any] = {}
    for name in ("name", "email", "email_reminders"):
        if name in sent:
            values[name] = getattr(patch, name)
    if "calendar_id" in sent:
        if patch.calendar_id is not None:
            known_calendar(session, patch.calendar_id, ["body", "calendar_id"])
        values["calendar_id"] = patch.calendar_id
    if patch.digest is not None:
        digest = patch.digest.model_fields_set
        if "enabled" in digest:
            values["digest_enabled"] = patch.digest.enabled
        if "at" in digest:
            values["digest_at"] = patch.digest.at
    return _save_over_api(session, row, values, now)


def set_owner(session: Session, owner_id: str, patch: OwnerPatch, now: datetime) -> Owner:
    """The fields given, on the owner, created with the others at their defaults if it is
    not in the directory yet (the command line's ``owners set``)."""
    lock_calendars(session)
    lock_owner(session, owner_id)
    if session.get(Owner, owner_id) is None:
        digest = patch.digest.model_dump(exclude_unset=True) if patch.digest else {}
        fields = patch.model_dump(exclude_unset=True, exclude={"digest"})
        data = OwnerIn.model_validate({**fields, "digest": digest})
        row, _created = put_owner(session, owner_id, data, None, now)
        return row
    return update_owner(session, owner_id, patch, "*", now)


def _save_over_api(session: Session, row: Owner, values: dict[str, Any], now: datetime) -> Owner:
    """A change over the API: the owner is the API's from now on, even when the values it
    sends are the ones learned."""
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    if changed or row.learned_from != API:
        changed.update(learned_from=API, learned_at=None, learned_key=None)
    return save_changes(session, row, changed, now)


def delete_owner(session: Session, owner_id: str, if_match: str | None) -> None:
    """Remove the owner from the directory; steps keep the owner id they carry."""
    lock_owner(session, owner_id)
    row = get_owner(session, owner_id)
    _check_if_match(row, if_match)
    session.delete(row)
    session.commit()


def list_owners(
    session: Session, query: OwnerQuery, after: list[str] | None
) -> tuple[list[DirectoryOwner], list[str] | None]:
    """Owners by id (byte order on both databases); the page and the key to go on from."""
    statement = select(Owner)
    if query.learned_from is not None:
        statement = statement.where(col(Owner.learned_from) == query.learned_from)
    if query.calendar_id is not None:
        statement = statement.where(col(Owner.calendar_id) == query.calendar_id)
    if query.email is not None:
        statement = statement.where(func.lower(col(Owner.email)) == query.email.lower())
    mark = keyset(after, str)
    if mark is not None:
        statement = statement.where(col(Owner.id) > mark[0])
    rows = list(session.exec(statement.order_by(col(Owner.id)).limit(query.limit + 1)).all())
    if len(rows) <= query.limit:
        return [owner_out(r) for r in rows], None
    rows = rows[: query.limit]
    return [owner_out(r) for r in rows], [rows[-1].id]


# --- the calendar an owner works by --------------------------------------------------------


def set_owner_calendar(
    session: Session, owner_id: str, calendar_id: uuid.UUID, now: datetime
) -> OwnerCalendarOut:
    """The calendar an owner works by, from now on; an owner not in the directory yet is
    added to it (over the API, with every other field at its default)."""
    lock_calendars(session)
    lock_owner(session, owner_id)
    known_calendar(session, calendar_id, ["body", "calendar_id"])
    row = session.get(Owner, owner_id)
    if row is None:
        row = Owner(
            id=owner_id, calendar_id=calendar_id, learned_from=API, created_at=now, updated_at=now
        )
        session.add(row)
        session.commit()
    else:
        _save_over_api(session, row, {"calendar_id": calendar_id}, now)
    return OwnerCalendarOut(owner_id=owner_id, calendar_id=calendar_id)


def get_owner_calendar(session: Session, owner_id: str) -> OwnerCalendarOut:
    row = session.get(Owner, owner_id)
    if row is None or row.calendar_id is None:
        raise NotFound(f"Owner {owner_id!r} has no calendar of their own.")
    return OwnerCalendarOut(owner_id=row.id, calendar_id=row.calendar_id)


def delete_owner_calendar(session: Session, owner_id: str, now: datetime) -> None:
    """The owner works by the policy's or the default calendar again."""
    lock_owner(session, owner_id)
    row = session.get(Owner, owner_id)
    if row is None or row.calendar_id is None:
        raise NotFound(f"Owner {owner_id!r} has no calendar of their own.")
    _save_over_api(session, row, {"calendar_id": None}, now)

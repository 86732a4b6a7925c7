"""Owners learned from the ATS: the people an interview event names with an e-mail.

An event's recruiter, coordinator and interviewers become owners ``<source>:<their id>``
(``learned_from: <source>``), kept up to date by later events of that source. The data of
the newest event wins, by ``occurred_at`` and then the delivery's key (the order events
apply in), not by arrival, so that replays and late deliveries end in the same directory.
An owner written over the API is never changed here.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.fields import is_addr_spec
from app.models import Owner
from app.owners.schemas import OWNER_ID_PATTERN
from app.owners.service import lock_owner

_OWNER_ID = re.compile(OWNER_ID_PATTERN)


@dataclass(frozen=True)
class Person:
    """Someone an event names: the source's id for them, their name and e-mail."""

    external_id: str
    name: str | None
    email: str


def owner_id(source: str, external_id: str) -> str:
    return f"{source}:{external_id}"


def people_named(fields: Mapping[str, Any]) -> list[Person]:
    """The people an interview's fields name with a usable e-mail address: its recruiter and
    coordinator (``default_owners``), then its interviewers."""
    return people_of(
        [
            *(fields.get("default_owners") or {}).values(),
            *(
                {"id": i.get("external_id"), "name": i.get("name"), "email": i.get("email")}
                for i in fields.get("interviewers") or []
            ),
        ]
    )


def people_of(named: Iterable[Mapping[str, Any]]) -> list[Person]:
    """People as events name them (``{"id", "name", "email"}``), each once, the first mention
    winning. Someone without an id, or whose address is not an addr-spec, is not learned."""
    people: dict[str, Person] = {}
    for raw in named:
        external_id, email, name = raw.get("id"), raw.get("email"), raw.get("name")
        if not isinstance(external_id, str | int) or not isinstance(email, str):
            continue
        email = email.strip()
        if not is_addr_spec(email):
            continue
        name = name.strip()[:300] or None if isinstance(name, str) else None
        people.setdefault(str(external_id), Person(str(external_id), name, email))
    return list(people.values())


def learn_owners(
    session: Session,
    source: str,
    people: Iterable[Person],
    occurred_at: datetime,
    tiebreak: str,
    now: datetime,
) -> None:
    """Create or update the owners these people are, as of an event of ``source`` that
    happened at ``occurred_at``; in id order, so that two transactions cannot deadlock."""
    by_id = {owner_id(source, p.external_id): p for p in people}
    for key in sorted(by_id):
        if len(key) > 200 or not _OWNER_ID.fullmatch(key):
            continue  # an id no URL could name
        person = by_id[key]
        lock_owner(session, key)
        row = session.get(Owner, key)
        if row is None:
            session.add(
                Owner(
                    id=key,
                    name=person.name,
                    email=person.email,
                    learned_from=source,
                    learned_at=occurred_at,
                    learned_key=tiebreak,
                    created_at=now,
                    updated_at=now,
                )
            )
            continue
        if row.learned_from != source or row.learned_at is None:
            continue  # written over the API, or learned from another source
        if (occurred_at, tiebreak) <= (row.learned_at, row.learned_key or ""):
            continue  # an older event than the one the owner holds
        if (row.name, row.email) != (person.name, person.email):
            row.name, row.email = person.name, person.email
            row.version += 1
            row.updated_at = now
        row.learned_at, row.learned_key = occurred_at, tiebreak
        session.add(row)
    session.flush()

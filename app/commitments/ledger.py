"""The append-only history and what is rebuilt from it: every write goes through here.

A change is first appended to the timeline as an entry that records its ``Origin`` (when
it takes effect, who made it, what delivery carried it); then the subject's current state
(and, for commitments, its versions in effect time) is rebuilt by replaying its history.
The REST use cases, the CLI and the event applier all write with these functions; none
of them commits. Every rebuild of a step hands the change to the publisher installed at
start-up (``changes.py``: the outbox), which writes its messages and reminders in the same
transaction.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic_core import PydanticUndefined
from sqlalchemy import delete, func
from sqlmodel import Session, SQLModel, col, select

from app.commitments.changes import publisher, step_state
from app.commitments.history import (
    INSTANT_FIELDS,
    INTERVIEW_FIELDS,
    Change,
    replay_commitment,
    replay_interview,
)
from app.errors import Conflict
from app.models import (
    Commitment,
    CommitmentVersion,
    Contact,
    Interview,
    TimelineEntry,
    TimelineKind,
    ordered_uuid,
)


@dataclass(frozen=True)
class Origin:
    """Who and what caused a change, and when it takes effect: what every entry records.

    ``tiebreak`` orders changes that take effect at the same instant the same way whatever
    order they arrive in: an event's delivery key; None for an API call, which then uses
    the entry's own (time-ordered) id.
    """

    effective_at: datetime
    actor: str
    now: datetime
    tiebreak: str | None = None
    delivery_id: uuid.UUID | None = None

    def at(self, effective_at: datetime) -> "Origin":
        """The same origin, taking effect at another instant (an event's own time)."""
        return replace(self, effective_at=effective_at)


def encode_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Timeline values as JSON: instants become ISO strings."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


def decode_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: datetime.fromisoformat(v) if k in INSTANT_FIELDS and isinstance(v, str) else v
        for k, v in values.items()
    }


def entry_values(
    origin: Origin,
    kind: TimelineKind,
    interview_id: uuid.UUID,
    commitment_id: uuid.UUID | None = None,
    changes: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The columns of one timeline entry: the one factory every entry is made by (the bulk
    ingestion path inserts these values as they are, the others as a ``TimelineEntry``)."""
    entry_id = ordered_uuid()
    return {
        "id": entry_id,
        "interview_id": interview_id,
        "commitment_id": commitment_id,
        "kind": kind.value,
        "effective_at": origin.effective_at,
        "tiebreak": origin.tiebreak or str(entry_id),
        "recorded_at": origin.now,
        "actor": origin.actor,
        "reason": reason,
        "changes": encode_values(changes or {}),
        "delivery_id": origin.delivery_id,
    }


def as_change(entry: TimelineEntry | Mapping[Any, Any]) -> Change:
    """An entry (a row, or the values ``entry_values`` made for one) as the replay takes it."""
    if isinstance(entry, Mapping):
        return Change(
            kind=entry["kind"],
            effective_at=entry["effective_at"],
            tiebreak=entry["tiebreak"],
            values=decode_values(entry["changes"]),
            reason=entry["reason"],
        )
    return Change(
        kind=entry.kind,
        effective_at=entry.effective_at,
        tiebreak=entry.tiebreak,
        values=decode_values(entry.changes),
        reason=entry.reason,
    )


def find_interview(session: Session, source: str, external_id: str) -> Interview | None:
    statement = select(Interview).where(
        Interview.source == source, Interview.external_id == external_id
    )
    return session.exec(statement.with_for_update()).first()


def find_commitment(session: Session, source: str, external_id: str) -> Commitment | None:
    statement = select(Commitment).where(
        Commitment.source == source, Commitment.external_id == external_id
    )
    return session.exec(statement.with_for_update()).first()


# The entries that record or change an interview's fields.
INTERVIEW_KINDS = (TimelineKind.interview_recorded, TimelineKind.interview_updated)


def _entries(session: Session, **where: uuid.UUID) -> list[TimelineEntry]:
    statement = select(TimelineEntry)
    for name, value in where.items():
        statement = statement.where(getattr(TimelineEntry, name) == value)
    return list(session.exec(statement).all())


def has_agreement(session: Session, commitment_id: uuid.UUID) -> bool:
    """Whether some entry still agrees to the step (a replay may have removed its last)."""
    count = session.exec(
        select(func.count()).where(
            TimelineEntry.commitment_id == commitment_id, TimelineEntry.kind == TimelineKind.agreed
        )
    ).one()
    return bool(count)


def has_interview_history(session: Session, interview_id: uuid.UUID) -> bool:
    """Whether entries that record or change the interview's fields remain."""
    count = session.exec(
        select(func.count()).where(
            TimelineEntry.interview_id == interview_id,
            col(TimelineEntry.kind).in_(INTERVIEW_KINDS),
        )
    ).one()
    return bool(count)


def interview_columns(changes: Sequence[Change]) -> dict[str, Any]:
    """The interview's columns that its history of field changes decides."""
    final = replay_interview(changes)[-1]
    columns = {name: final.fields[name] for name in INTERVIEW_FIELDS if name in final.fields}
    columns.update(completed_at=final.completed_at, version=len(changes))
    return columns


# Who owes a step: a version whose values of these are those of the one before it has
# had the same owner since that one's owner_since.
OWNER_FIELDS = ("owner_id", "owner_role", "owed_by")


def commitment_columns(changes: Sequence[Change]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The commitment's columns that its history decides, and its versions in effect time.

    Every version carries the agreement, and since when its owner has held the step
    without a change: the responsiveness report then finds a window's steps, and who held
    each when it fell due, from one index, looking up earlier versions only for steps
    reassigned after that.
    """
    states = replay_commitment(changes)
    agreed_at = states[0].valid_from
    versions: list[dict[str, Any]] = []
    for index, state in enumerate(states):
        valid_to = states[index + 1].valid_from if index + 1 < len(states) else None
        if valid_to is not None and valid_to <= state.valid_from:
            continue  # superseded at the same instant: never observable
        snapshot = state.snapshot()
        owner_since = state.valid_from
        if versions and all(versions[-1][name] == snapshot[name] for name in OWNER_FIELDS):
            owner_since = versions[-1]["owner_since"]
        versions.append(
            {
                "valid_from": state.valid_from,
                "valid_to": valid_to,
                "agreed_at": agreed_at,
                "owner_since": owner_since,
                **snapshot,
            }
        )
    return {**states[-1].snapshot(), "agreed_at": agreed_at}, versions


def rebuild_interview(
    session: Session,
    interview: Interview,
    now: datetime,
    history: Sequence[TimelineEntry] | None = None,
) -> None:
    """Replay the interview's field changes onto it (``history``: all of them, if known)."""
    entries = (
        [e for e in _entries(session, interview_id=interview.id) if e.kind in INTERVIEW_KINDS]
        if history is None
        else history
    )
    for name, value in interview_columns([as_change(e) for e in entries]).items():
        setattr(interview, name, value)
    interview.updated_at = now
    session.add(interview)


def rebuild_commitment(
    session: Session,
    commitment: Commitment,
    now: datetime,
    history: Sequence[TimelineEntry] | None = None,
) -> None:
    """Replay the commitment's history and rewrite its versions.

    ``history`` is given only for a commitment that is being created: its whole history,
    with no versions stored yet.
    """
    before = None if history is not None else step_state(commitment)
    entries = _entries(session, commitment_id=commitment.id) if history is None else history
    columns, versions = commitment_columns([as_change(e) for e in entries])
    if history is None:
        session.exec(
            delete(CommitmentVersion).where(col(CommitmentVersion.commitment_id) == commitment.id)
        )
    for version in versions:
        session.add(
            CommitmentVersion(
                commitment_id=commitment.id, interview_id=commitment.interview_id, **version
            )
        )
    for name, value in columns.items():
        setattr(commitment, name, value)
    commitment.updated_at = now
    session.add(commitment)
    publisher().step_changed(session, commitment, before, now)


def _model_defaults(model: type[SQLModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A table model's plain defaults, and the factories of the others (a fresh list or
    dict for each row); the required fields have neither."""
    plain: dict[str, Any] = {}
    factories: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.default_factory is not None:
            factories[name] = field.default_factory
        elif field.default is not PydanticUndefined and field.default is not Ellipsis:
            plain[name] = field.default
    return plain, factories


# Read once: FieldInfo.get_default copies the default each time, which cost 150 µs a row.
_INTERVIEW_DEFAULTS, _INTERVIEW_FACTORIES = _model_defaults(Interview)


def new_interview_row(
    interview_id: uuid.UUID,
    source: str,
    external_id: str | None,
    entry: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Every column of a new interview whose whole history is ``entry`` (the values
    ``entry_values`` made): the model's defaults, then what that history decides. The one
    row both ``new_interview`` and the bulk ingestion path write."""
    return {
        **_INTERVIEW_DEFAULTS,
        **{name: make() for name, make in _INTERVIEW_FACTORIES.items() if name != "id"},
        "id": interview_id,
        "source": source,
        "external_id": external_id,
        "candidate_external_id": entry["changes"].get("candidate_external_id") or "",
        "created_at": now,
        "updated_at": now,
        **interview_columns([as_change(entry)]),
    }


def new_commitment_rows(
    entry: Mapping[str, Any],
    source: str | None,
    external_id: str | None,
    provenance: Mapping[str, Any],
    now: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The row of a new commitment whose whole history is its agreement ``entry`` (the values
    ``entry_values`` made), with the deadline ``provenance`` columns, and its versions: what
    ``agree`` writes, as plain rows for the bulk ingestion path."""
    commitment_id, interview_id = entry["commitment_id"], entry["interview_id"]
    columns, versions = commitment_columns([as_change(entry)])
    row = {
        "id": commitment_id,
        "interview_id": interview_id,
        "source": source,
        "external_id": external_id,
        **columns,
        "created_at": now,
        "updated_at": now,
        **provenance,
    }
    return row, [
        {"commitment_id": commitment_id, "interview_id": interview_id, **version}
        for version in versions
    ]


def new_interview(
    session: Session,
    source: str,
    external_id: str | None,
    values: Mapping[str, Any],
    origin: Origin,
) -> Interview:
    """Record a new interview with ``values`` as its first entry."""
    interview_id = uuid.uuid4()
    entry = entry_values(origin, TimelineKind.interview_recorded, interview_id, changes=values)
    # A new interview's history is exactly this entry: replayed before the first INSERT,
    # with nothing to read back.
    interview = Interview(**new_interview_row(interview_id, source, external_id, entry, origin.now))
    session.add(interview)
    session.flush()  # the interview before its entry
    session.add(TimelineEntry(**entry))
    return interview


def record_interview_change(
    session: Session, interview: Interview, values: Mapping[str, Any], origin: Origin
) -> None:
    """Append a change of interview fields and rebuild the interview."""
    session.add(
        TimelineEntry(
            **entry_values(origin, TimelineKind.interview_updated, interview.id, changes=values)
        )
    )
    session.flush()
    rebuild_interview(session, interview, origin.now)


def agree(
    session: Session,
    interview: Interview,
    values: Mapping[str, Any],
    origin: Origin,
    *,
    source: str | None = None,
    external_id: str | None = None,
) -> Commitment:
    """Record a new commitment under an interview, agreed at ``origin.effective_at``."""
    if external_id is not None and source is not None:
        existing = find_commitment(session, source, external_id)
        if existing is not None:
            raise Conflict(
                f"A commitment with source {source!r} and external_id {external_id!r} exists.",
                existing_id=str(existing.id),
            )
    commitment = Commitment(
        interview_id=interview.id,
        source=source,
        external_id=external_id,
        action=values["action"],
        owner_id=values["owner_id"],
        owner_role=values["owner_role"],
        owed_by=values.get("owed_by") or "company",
        agreed_at=origin.effective_at,
        due_at=values["due_at"],
        created_at=origin.now,
        updated_at=origin.now,
    )
    session.add(commitment)
    session.flush()  # the commitment before its entry and versions
    entry = TimelineEntry(
        **entry_values(origin, TimelineKind.agreed, interview.id, commitment.id, values)
    )
    session.add(entry)
    # A new commitment's history is exactly its agreement: nothing to read back.
    rebuild_commitment(session, commitment, origin.now, history=[entry])
    return commitment


def change(
    session: Session,
    commitment: Commitment,
    kind: TimelineKind,
    values: Mapping[str, Any],
    origin: Origin,
    *,
    reason: str | None = None,
) -> None:
    """Append one change to a commitment's history and rebuild it."""
    session.add(
        TimelineEntry(
            **entry_values(origin, kind, commitment.interview_id, commitment.id, values, reason)
        )
    )
    session.flush()
    rebuild_commitment(session, commitment, origin.now)


def record_contact(
    session: Session,
    interview: Interview,
    direction: str,
    channel: str,
    note: str | None,
    origin: Origin,
) -> Contact:
    """Record a touch between candidate and company, made at ``origin.effective_at``."""
    contact = Contact(
        interview_id=interview.id,
        direction=direction,
        channel=channel,
        at=origin.effective_at,
        note=note,
        actor=origin.actor,
        created_at=origin.now,
        delivery_id=origin.delivery_id,
    )
    session.add(contact)
    changes = {
        "contact_id": str(contact.id),
        "direction": direction,
        "channel": channel,
        "note": note,
    }
    session.add(
        TimelineEntry(**entry_values(origin, TimelineKind.contact, interview.id, changes=changes))
    )
    return contact

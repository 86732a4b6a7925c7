"""Use cases that change interviews, commitments and contacts. Each ends in one commit.

Every change is first appended to the timeline, then the subject's current state
(and, for commitments, its versions in effect time) is rebuilt by replaying its
history. The same functions serve the HTTP API, the CLI and the event applier.
"""

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.commitments.history import (
    INSTANT_FIELDS,
    INTERVIEW_FIELDS,
    Change,
    default_owed_by,
    replay_commitment,
    replay_interview,
)
from app.commitments.schemas import (
    CommitmentPatch,
    ContactIn,
    InterviewCreate,
    InterviewFields,
    InterviewUpsert,
    NextStepIn,
)
from app.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from app.models import (
    Commitment,
    CommitmentStatus,
    CommitmentVersion,
    Contact,
    Interview,
    TimelineEntry,
    TimelineKind,
    ordered_uuid,
)


def encode_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Timeline values as JSON: instants become ISO strings."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


def decode_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: datetime.fromisoformat(v) if k in INSTANT_FIELDS and isinstance(v, str) else v
        for k, v in values.items()
    }


def as_change(entry: TimelineEntry) -> Change:
    return Change(
        kind=entry.kind,
        effective_at=entry.effective_at,
        tiebreak=entry.tiebreak,
        values=decode_values(entry.changes),
        reason=entry.reason,
    )


def interview_values(data: InterviewFields) -> dict[str, Any]:
    """The interview's fields in the flat shape of the interview table."""
    return {
        "candidate_external_id": data.candidate.external_id,
        "candidate_name": data.candidate.name,
        "candidate_email": data.candidate.email,
        "job_external_id": data.job.external_id,
        "job_title": data.job.title,
        "stage": data.stage,
        "status": data.status.value,
        "interviewers": [i.model_dump(mode="json") for i in data.interviewers],
        "starts_at": data.starts_at,
        "ends_at": data.ends_at,
    }


def step_values(step: NextStepIn) -> dict[str, Any]:
    return {
        "action": step.action,
        "owner_id": step.owner.id,
        "owner_name": step.owner.name,
        "owner_role": step.owner.role.value,
        "owed_by": step.owed_by.value if step.owed_by else None,
        "channel": step.channel.value if step.channel else None,
        "due_at": step.due_at,
        "promised_by": step.promised_by,
        "candidate_note": step.candidate_note,
    }


def patch_values(patch: CommitmentPatch) -> dict[str, Any]:
    values: dict[str, Any] = {}
    sent = patch.model_fields_set
    if "action" in sent:
        values["action"] = patch.action
    if "owner" in sent and patch.owner is not None:
        values.update(
            owner_id=patch.owner.id, owner_name=patch.owner.name, owner_role=patch.owner.role.value
        )
    for name in ("owed_by", "channel"):
        if name in sent:
            value = getattr(patch, name)
            values[name] = value.value if value is not None else None
    for name in ("due_at", "promised_by", "candidate_note"):
        if name in sent:
            values[name] = getattr(patch, name)
    return values


Subject = TypeVar("Subject", Interview, Commitment)


def _lock(session: Session, model: type[Subject], key: uuid.UUID) -> Subject | None:
    # Changes to one subject are serialised: its rebuild must see every entry.
    statement = select(model).where(col(model.id) == key).with_for_update()
    return session.exec(statement).first()


def get_interview(session: Session, interview_id: uuid.UUID, *, lock: bool = False) -> Interview:
    interview = (
        _lock(session, Interview, interview_id) if lock else session.get(Interview, interview_id)
    )
    if interview is None:
        raise NotFound(f"No interview with id {interview_id}.")
    return interview


def get_commitment(session: Session, commitment_id: uuid.UUID, *, lock: bool = False) -> Commitment:
    commitment = (
        _lock(session, Commitment, commitment_id)
        if lock
        else session.get(Commitment, commitment_id)
    )
    if commitment is None:
        raise NotFound(f"No commitment with id {commitment_id}.")
    return commitment


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


def _entries(session: Session, **where: uuid.UUID) -> list[TimelineEntry]:
    statement = select(TimelineEntry)
    for name, value in where.items():
        statement = statement.where(getattr(TimelineEntry, name) == value)
    return list(session.exec(statement).all())


def interview_columns(changes: Sequence[Change]) -> dict[str, Any]:
    """The interview's columns that its history of field changes decides."""
    final = replay_interview(changes)[-1]
    columns = {name: final.fields[name] for name in INTERVIEW_FIELDS if name in final.fields}
    columns.update(completed_at=final.completed_at, version=len(changes))
    return columns


def commitment_columns(changes: Sequence[Change]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The commitment's columns that its history decides, and its versions in effect time."""
    states = replay_commitment(changes)
    versions = []
    for index, state in enumerate(states):
        valid_to = states[index + 1].valid_from if index + 1 < len(states) else None
        if valid_to is not None and valid_to <= state.valid_from:
            continue  # superseded at the same instant: never observable
        versions.append({"valid_from": state.valid_from, "valid_to": valid_to, **state.snapshot()})
    return {**states[-1].snapshot(), "agreed_at": states[0].valid_from}, versions


def rebuild_interview(
    session: Session,
    interview: Interview,
    now: datetime,
    history: Sequence[TimelineEntry] | None = None,
) -> None:
    """Replay the interview's field changes onto it (``history``: all of them, if known)."""
    entries = (
        [
            e
            for e in _entries(session, interview_id=interview.id)
            if e.kind in (TimelineKind.interview_recorded, TimelineKind.interview_updated)
        ]
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


def record_interview_change(
    session: Session,
    interview: Interview,
    values: Mapping[str, Any],
    *,
    effective_at: datetime,
    tiebreak: str,
    actor: str,
    now: datetime,
    delivery_id: uuid.UUID | None = None,
    kind: TimelineKind = TimelineKind.interview_updated,
) -> None:
    """Append a change of interview fields and rebuild the interview."""
    session.add(
        _interview_entry(interview, values, kind, effective_at, tiebreak, actor, now, delivery_id)
    )
    session.flush()
    rebuild_interview(session, interview, now)


def _interview_entry(
    interview: Interview,
    values: Mapping[str, Any],
    kind: TimelineKind,
    effective_at: datetime,
    tiebreak: str,
    actor: str,
    now: datetime,
    delivery_id: uuid.UUID | None,
) -> TimelineEntry:
    return TimelineEntry(
        interview_id=interview.id,
        kind=kind,
        effective_at=effective_at,
        tiebreak=tiebreak,
        recorded_at=now,
        actor=actor,
        changes=encode_values(values),
        delivery_id=delivery_id,
    )


def new_interview(
    session: Session,
    source: str,
    external_id: str | None,
    values: Mapping[str, Any],
    *,
    effective_at: datetime,
    tiebreak: str,
    actor: str,
    now: datetime,
    delivery_id: uuid.UUID | None = None,
) -> Interview:
    interview = Interview(
        source=source,
        external_id=external_id,
        candidate_external_id=values.get("candidate_external_id") or "",
        created_at=now,
        updated_at=now,
    )
    entry = _interview_entry(
        interview,
        values,
        TimelineKind.interview_recorded,
        effective_at,
        tiebreak,
        actor,
        now,
        delivery_id,
    )
    # A new interview's history is exactly this entry: replayed before the first INSERT,
    # with nothing to read back.
    rebuild_interview(session, interview, now, history=[entry])
    session.flush()  # the interview before its entry
    session.add(entry)
    return interview


def agree(
    session: Session,
    interview: Interview,
    values: Mapping[str, Any],
    *,
    source: str | None,
    external_id: str | None,
    agreed_at: datetime,
    tiebreak: str | None,
    actor: str,
    now: datetime,
    delivery_id: uuid.UUID | None = None,
) -> Commitment:
    """Record a new commitment under an interview (no commit)."""
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
        agreed_at=agreed_at,
        due_at=values["due_at"],
        created_at=now,
        updated_at=now,
    )
    session.add(commitment)
    session.flush()  # the commitment before its entry and versions
    entry_id = ordered_uuid()
    entry = TimelineEntry(
        id=entry_id,
        interview_id=interview.id,
        commitment_id=commitment.id,
        kind=TimelineKind.agreed,
        effective_at=agreed_at,
        tiebreak=tiebreak or str(entry_id),
        recorded_at=now,
        actor=actor,
        changes=encode_values(values),
        delivery_id=delivery_id,
    )
    session.add(entry)
    # A new commitment's history is exactly its agreement: nothing to read back.
    rebuild_commitment(session, commitment, now, history=[entry])
    return commitment


def change(
    session: Session,
    commitment: Commitment,
    kind: TimelineKind,
    values: Mapping[str, Any],
    *,
    reason: str | None,
    effective_at: datetime,
    tiebreak: str | None,
    actor: str,
    now: datetime,
    delivery_id: uuid.UUID | None = None,
) -> None:
    """Append one change to a commitment's history and rebuild it (no commit)."""
    entry_id = ordered_uuid()
    session.add(
        TimelineEntry(
            id=entry_id,
            interview_id=commitment.interview_id,
            commitment_id=commitment.id,
            kind=kind,
            effective_at=effective_at,
            tiebreak=tiebreak or str(entry_id),
            recorded_at=now,
            actor=actor,
            reason=reason,
            changes=encode_values(values),
            delivery_id=delivery_id,
        )
    )
    session.flush()
    rebuild_commitment(session, commitment, now)


def _end(session: Session, commit: bool) -> None:
    """The end of a create: commit, or (``commit=False``, inside an idempotent request
    that stores its answer in the same transaction) flush, so that conflicts show now."""
    if commit:
        session.commit()
    else:
        session.flush()


def create_interview(
    session: Session, data: InterviewCreate, actor: str, now: datetime, *, commit: bool = True
) -> Interview:
    """Record an interview, with the next steps agreed at its end."""
    if data.external_id is not None and find_interview(session, data.source, data.external_id):
        raise Conflict(
            f"An interview with source {data.source!r} and external_id "
            f"{data.external_id!r} exists; use PUT to update it."
        )
    try:
        interview = new_interview(
            session,
            data.source,
            data.external_id,
            interview_values(data),
            effective_at=now,
            tiebreak=str(uuid.uuid4()),
            actor=actor,
            now=now,
        )
        _agree_steps(session, interview, data.next_steps, actor, now)
        _end(session, commit)
    except IntegrityError:
        # Another request recorded the same interview or step since the look-up above.
        session.rollback()
        raise Conflict(
            f"An interview with source {data.source!r} and external_id {data.external_id!r}, "
            "or one of its next steps, was recorded by another request meanwhile."
        ) from None
    return interview


def _agreed_at(step: NextStepIn, now: datetime) -> datetime:
    # A step agreed in the future would not exist until then: invisible to every query.
    if step.agreed_at is not None and step.agreed_at > now:
        raise InvalidInput(
            "agreed_at is in the future.",
            errors=[{"loc": ["body", "agreed_at"], "msg": "is in the future"}],
        )
    return step.agreed_at or now


def _agree_steps(
    session: Session, interview: Interview, steps: list[NextStepIn], actor: str, now: datetime
) -> None:
    for step in steps:
        agree(
            session,
            interview,
            step_values(step),
            source=interview.source if step.external_id else None,
            external_id=step.external_id,
            agreed_at=_agreed_at(step, now),
            tiebreak=None,
            actor=actor,
            now=now,
        )


def upsert_interview(
    session: Session,
    source: str,
    external_id: str,
    data: InterviewUpsert,
    actor: str,
    now: datetime,
) -> tuple[Interview, bool]:
    """Create or update the interview known to ``source`` as ``external_id``.

    Sending the same body again changes nothing. Next steps with an external_id that
    already exists are left alone; new ones are agreed.
    """
    try:
        return _upsert_interview(session, source, external_id, data, actor, now)
    except IntegrityError:
        # Another request created it (or one of the steps) since our look-up: now the
        # same body is an update, and the look-up sees what the other request wrote.
        session.rollback()
        return _upsert_interview(session, source, external_id, data, actor, now)


def _upsert_interview(
    session: Session,
    source: str,
    external_id: str,
    data: InterviewUpsert,
    actor: str,
    now: datetime,
) -> tuple[Interview, bool]:
    values = interview_values(data)
    interview = find_interview(session, source, external_id)
    created = interview is None
    if interview is None:
        interview = new_interview(
            session,
            source,
            external_id,
            values,
            effective_at=now,
            tiebreak=str(uuid.uuid4()),
            actor=actor,
            now=now,
        )
    else:
        current = {name: getattr(interview, name) for name in values}
        changed = {k: v for k, v in values.items() if current[k] != v}
        if changed:
            record_interview_change(
                session,
                interview,
                changed,
                effective_at=now,
                tiebreak=str(uuid.uuid4()),
                actor=actor,
                now=now,
            )
    new_steps = [
        s
        for s in data.next_steps
        if s.external_id is None or find_commitment(session, source, s.external_id) is None
    ]
    if not created:
        # Without an external id a step cannot be recognised again: skip exact repeats.
        existing = {
            (c.action, c.owner_id, c.due_at)
            for c in session.exec(
                select(Commitment).where(Commitment.interview_id == interview.id)
            ).all()
        }
        new_steps = [
            s
            for s in new_steps
            if s.external_id is not None or (s.action, s.owner.id, s.due_at) not in existing
        ]
    _agree_steps(session, interview, new_steps, actor, now)
    session.commit()
    return interview, created


def create_commitment(
    session: Session,
    interview_id: uuid.UUID,
    step: NextStepIn,
    actor: str,
    now: datetime,
    *,
    commit: bool = True,
) -> Commitment:
    """Agree a next step under an interview."""
    interview = get_interview(session, interview_id, lock=True)
    if step.external_id is not None:
        existing = find_commitment(session, interview.source, step.external_id)
        if existing is not None:
            owner = session.get(Interview, existing.interview_id)
            where = (
                "this interview"
                if existing.interview_id == interview.id
                else (
                    f"interview {existing.interview_id}"
                    + (
                        f" (external_id {owner.external_id!r})"
                        if owner and owner.external_id
                        else ""
                    )
                )
            )
            raise Conflict(
                f"A next step with source {interview.source!r} and external_id "
                f"{step.external_id!r} already belongs to {where}.",
                commitment_id=str(existing.id),
            )
    try:
        commitment = agree(
            session,
            interview,
            step_values(step),
            source=interview.source if step.external_id else None,
            external_id=step.external_id,
            agreed_at=_agreed_at(step, now),
            tiebreak=None,
            actor=actor,
            now=now,
        )
        _end(session, commit)
    except IntegrityError:
        # The same step of the same source was agreed under another interview meanwhile.
        session.rollback()
        raise Conflict(
            f"A next step with source {interview.source!r} and external_id "
            f"{step.external_id!r} was recorded by another request meanwhile."
        ) from None
    return commitment


def etag(commitment: Commitment) -> str:
    return f'"{commitment.id.hex}-{commitment.version}"'


def _changes_nothing(commitment: Commitment, values: Mapping[str, Any]) -> bool:
    if any(getattr(commitment, name) != value for name, value in values.items()):
        return False
    # A restated owner resets owed_by to the role's default unless owed_by is sent too.
    role = values.get("owner_role")
    return role is None or "owed_by" in values or commitment.owed_by == default_owed_by(role)


def update_commitment(
    session: Session,
    commitment_id: uuid.UUID,
    patch: CommitmentPatch,
    if_match: str,
    actor: str,
    now: datetime,
) -> Commitment:
    """Change what, who or when of an open commitment, guarded by its ETag."""
    commitment = get_commitment(session, commitment_id, lock=True)
    # If-Match compares strongly (RFC 9110, 13.1.1): a weak tag never matches.
    tags = {t.strip() for t in if_match.split(",")}
    if "*" not in tags and etag(commitment) not in tags:
        raise PreconditionFailed(
            f"The commitment has changed (current ETag {etag(commitment)}); GET it and retry."
        )
    if commitment.status != CommitmentStatus.open:
        raise Conflict(f"The commitment is {commitment.status}; reopen it before changing it.")
    values = patch_values(patch)
    if _changes_nothing(commitment, values):
        # Sending the current values again is not a change: no version, no timeline entry.
        session.rollback()
        return commitment
    # promised_by is what the candidate was told: moving due_at leaves it alone.
    change(
        session,
        commitment,
        TimelineKind.updated,
        values,
        reason=patch.reason,
        effective_at=now,
        tiebreak=None,
        actor=actor,
        now=now,
    )
    session.commit()
    return commitment


_STATUS_KINDS = (
    TimelineKind.agreed,
    TimelineKind.completed,
    TimelineKind.cancelled,
    TimelineKind.reopened,
)


def _transition(
    session: Session,
    commitment_id: uuid.UUID,
    kind: TimelineKind,
    *,
    allowed_from: set[CommitmentStatus],
    values: Mapping[str, Any],
    reason: str | None,
    effective_at: datetime,
    actor: str,
    now: datetime,
) -> Commitment:
    commitment = get_commitment(session, commitment_id, lock=True)
    if commitment.status not in allowed_from:
        raise Conflict(f"Cannot mark a commitment {kind.value} while it is {commitment.status}.")
    # History is replayed in effect order: a transition dated before the status last
    # changed would be overruled by it (a completion before a reopening leaves the step
    # open). Dating it before a mere reassignment is fine.
    status_since = session.exec(
        select(func.max(col(TimelineEntry.effective_at))).where(
            col(TimelineEntry.commitment_id) == commitment.id,
            col(TimelineEntry.kind).in_(_STATUS_KINDS),
        )
    ).one()
    since = max(commitment.agreed_at, status_since or commitment.agreed_at)
    if effective_at < since:
        loc = ["body", "completed_at"] if kind == TimelineKind.completed else ["body"]
        raise InvalidInput(
            f"The change cannot take effect before the commitment's status last changed "
            f"({since.isoformat()}).",
            errors=[{"loc": loc, "msg": "is before the status last changed"}],
        )
    change(
        session,
        commitment,
        kind,
        values,
        reason=reason,
        effective_at=effective_at,
        tiebreak=None,
        actor=actor,
        now=now,
    )
    session.commit()
    return commitment


def complete_commitment(
    session: Session,
    commitment_id: uuid.UUID,
    outcome: str | None,
    completed_at: datetime | None,
    actor: str,
    now: datetime,
) -> Commitment:
    if completed_at is not None and completed_at > now:
        raise InvalidInput(
            "completed_at is in the future.",
            errors=[{"loc": ["body", "completed_at"], "msg": "is in the future"}],
        )
    return _transition(
        session,
        commitment_id,
        TimelineKind.completed,
        allowed_from={CommitmentStatus.open},
        values={"outcome": outcome},
        reason=None,
        effective_at=completed_at or now,
        actor=actor,
        now=now,
    )


def cancel_commitment(
    session: Session, commitment_id: uuid.UUID, reason: str, actor: str, now: datetime
) -> Commitment:
    return _transition(
        session,
        commitment_id,
        TimelineKind.cancelled,
        allowed_from={CommitmentStatus.open},
        values={},
        reason=reason,
        effective_at=now,
        actor=actor,
        now=now,
    )


def reopen_commitment(
    session: Session, commitment_id: uuid.UUID, reason: str, actor: str, now: datetime
) -> Commitment:
    return _transition(
        session,
        commitment_id,
        TimelineKind.reopened,
        allowed_from={CommitmentStatus.done, CommitmentStatus.cancelled},
        values={},
        reason=reason,
        effective_at=now,
        actor=actor,
        now=now,
    )


def record_contact(
    session: Session,
    interview: Interview,
    direction: str,
    channel: str,
    at: datetime,
    note: str | None,
    *,
    tiebreak: str | None,
    actor: str,
    now: datetime,
    delivery_id: uuid.UUID | None = None,
) -> Contact:
    """Record a touch between candidate and company (no commit)."""
    contact = Contact(
        interview_id=interview.id,
        direction=direction,
        channel=channel,
        at=at,
        note=note,
        actor=actor,
        created_at=now,
        delivery_id=delivery_id,
    )
    session.add(contact)
    session.add(
        TimelineEntry(
            interview_id=interview.id,
            kind=TimelineKind.contact,
            effective_at=at,
            tiebreak=tiebreak or str(contact.id),
            recorded_at=now,
            actor=actor,
            changes={
                "contact_id": str(contact.id),
                "direction": direction,
                "channel": channel,
                "note": note,
            },
            delivery_id=delivery_id,
        )
    )
    return contact


def add_contact(
    session: Session,
    interview_id: uuid.UUID,
    data: ContactIn,
    actor: str,
    now: datetime,
    *,
    commit: bool = True,
) -> Contact:
    """Record that the candidate reached out (inbound) or was reached (outbound)."""
    interview = get_interview(session, interview_id)
    if data.at is not None and data.at > now:
        # A future contact would reset the waiting clock before it happened.
        raise InvalidInput(
            "at is in the future.", errors=[{"loc": ["body", "at"], "msg": "is in the future"}]
        )
    contact = record_contact(
        session,
        interview,
        data.direction.value,
        data.channel.value,
        data.at or now,
        data.note,
        tiebreak=None,
        actor=actor,
        now=now,
    )
    _end(session, commit)
    return contact


def count_open_and_overdue(engine: Engine, now: datetime) -> tuple[int, int]:
    """Open and overdue commitments at ``now``, for the metrics endpoint."""
    with Session(engine) as session:
        open_filter = col(Commitment.status) == CommitmentStatus.open
        open_count = session.exec(select(func.count()).where(open_filter)).one()
        overdue = session.exec(
            select(func.count()).where(open_filter, col(Commitment.due_at) < now)
        ).one()
    return int(open_count), int(overdue)

"""Use cases that change interviews, commitments and contacts over the API and the CLI.

Each use case ends in one commit, but the creates: they flush (so that a conflict shows
in them) and the request that calls them commits, with its Idempotency-Key if it sent one
(http.idempotent, idempotency.create_once). The writes themselves go through ledger.py,
which the event applier shares.
"""

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.commitments import policy_steps
from app.commitments.history import default_owed_by
from app.commitments.ledger import (
    Origin,
    change,
    find_commitment,
    find_interview,
    new_interview,
    record_contact,
    record_interview_change,
)
from app.commitments.schemas import (
    CommitmentPatch,
    ContactIn,
    InterviewCreate,
    InterviewUpsert,
    NextStepIn,
)
from app.commitments.values import interview_values, patch_values, step_values
from app.db import get_or_not_found
from app.deadlines.policy_due import NoPolicyApplies
from app.errors import Conflict, InvalidInput
from app.models import (
    Commitment,
    CommitmentStatus,
    Contact,
    Interview,
    InterviewStatus,
    TimelineEntry,
    TimelineKind,
)
from app.versions import check_if_match


# Changes to one subject are serialised (``lock``): its rebuild must see every entry.
def get_interview(session: Session, interview_id: uuid.UUID, *, lock: bool = False) -> Interview:
    return get_or_not_found(session, Interview, interview_id, "interview", lock=lock)


def get_commitment(session: Session, commitment_id: uuid.UUID, *, lock: bool = False) -> Commitment:
    return get_or_not_found(session, Commitment, commitment_id, "commitment", lock=lock)


def create_interview(
    session: Session, data: InterviewCreate, actor: str, now: datetime
) -> Interview:
    """Record an interview, with the next steps agreed at its end."""
    if data.external_id is not None and find_interview(session, data.source, data.external_id):
        raise Conflict(
            f"An interview with source {data.source!r} and external_id "
            f"{data.external_id!r} exists; use PUT to update it."
        )
    try:
        origin = Origin(effective_at=now, actor=actor, now=now)
        interview = new_interview(
            session, data.source, data.external_id, interview_values(data), origin
        )
        carried = _agree_steps(session, interview, list(enumerate(data.next_steps)), origin)
        _settle_policy_step(session, interview, False, carried, origin)
        session.flush()
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


def _agree_step(
    session: Session, interview: Interview, step: NextStepIn, origin: Origin
) -> Commitment:
    return policy_steps.agree_step(
        session,
        interview,
        step_values(step),
        origin.at(_agreed_at(step, origin.now)),
        source=interview.source if step.external_id else None,
        external_id=step.external_id,
    )


def _agree_steps(
    session: Session, interview: Interview, steps: list[tuple[int, NextStepIn]], origin: Origin
) -> list[uuid.UUID]:
    """Agree the steps sent with an interview (with their index in the request); returns
    their ids."""
    agreed = []
    for index, step in steps:
        try:
            agreed.append(_agree_step(session, interview, step, origin).id)
        except NoPolicyApplies as exc:
            loc = ["body", "next_steps", index, "due_at"]
            raise NoPolicyApplies(
                exc.detail, errors=[{"loc": loc, "msg": "required: no deadline policy applies"}]
            ) from None
    return agreed


def _settle_policy_step(
    session: Session,
    interview: Interview,
    was_completed: bool,
    carried: list[uuid.UUID],
    origin: Origin,
) -> None:
    """Deadline policies, rules 2 and 3, after a change to the interview or its steps."""
    completed_now = not was_completed and interview.status == InterviewStatus.completed
    policy_steps.settle_policy_step(
        session, interview, completed_now=completed_now, carried=carried, now=origin.now
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
    origin = Origin(effective_at=now, actor=actor, now=now)
    interview = find_interview(session, source, external_id)
    created = interview is None
    was_completed = interview is not None and interview.status == InterviewStatus.completed
    if interview is None:
        interview = new_interview(session, source, external_id, values, origin)
    else:
        current = {name: getattr(interview, name) for name in values}
        changed = {k: v for k, v in values.items() if current[k] != v}
        if changed:
            record_interview_change(session, interview, changed, origin)
    new_steps = [
        (i, s)
        for i, s in enumerate(data.next_steps)
        if s.external_id is None or find_commitment(session, source, s.external_id) is None
    ]
    if not created:
        # Without an external id a step cannot be recognised again: skip exact repeats (a
        # step sent without due_at repeats one of the same action and owner).
        rows = session.exec(select(Commitment).where(Commitment.interview_id == interview.id))
        existing = {(c.action, c.owner_id, c.due_at) for c in rows.all()}
        undated = {(action, owner) for action, owner, _due in existing}
        new_steps = [
            (i, s)
            for i, s in new_steps
            if s.external_id is not None
            or (
                (s.action, s.owner.id) not in undated
                if s.due_at is None
                else (s.action, s.owner.id, s.due_at) not in existing
            )
        ]
    carried = _agree_steps(session, interview, new_steps, origin)
    _settle_policy_step(session, interview, was_completed, carried, origin)
    session.commit()
    return interview, created


def create_commitment(
    session: Session,
    interview_id: uuid.UUID,
    step: NextStepIn,
    actor: str,
    now: datetime,
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
        origin = Origin(effective_at=now, actor=actor, now=now)
        commitment = _agree_step(session, interview, step, origin)
        _settle_policy_step(session, interview, True, [commitment.id], origin)
        session.flush()
    except IntegrityError:
        # The same step of the same source was agreed under another interview meanwhile.
        session.rollback()
        raise Conflict(
            f"A next step with source {interview.source!r} and external_id "
            f"{step.external_id!r} was recorded by another request meanwhile."
        ) from None
    return commitment


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
    check_if_match(commitment, if_match, "commitment")
    if commitment.status != CommitmentStatus.open:
        raise Conflict(f"The commitment is {commitment.status}; reopen it before changing it.")
    values = patch_values(patch)
    if _changes_nothing(commitment, values):
        # Sending the current values again is not a change: no version, no timeline entry.
        session.rollback()
        return commitment
    # promised_by is what the candidate was told: moving due_at leaves it alone.
    origin = Origin(effective_at=now, actor=actor, now=now)
    change(session, commitment, TimelineKind.updated, values, origin, reason=patch.reason)
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
    origin = Origin(effective_at=effective_at, actor=actor, now=now)
    change(session, commitment, kind, values, origin, reason=reason)
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


def _with_reason(
    session: Session,
    commitment_id: uuid.UUID,
    kind: TimelineKind,
    allowed_from: set[CommitmentStatus],
    reason: str,
    actor: str,
    now: datetime,
) -> Commitment:
    """A transition that takes effect now and says why: cancelling, reopening."""
    return _transition(
        session,
        commitment_id,
        kind,
        allowed_from=allowed_from,
        values={},
        reason=reason,
        effective_at=now,
        actor=actor,
        now=now,
    )


def cancel_commitment(
    session: Session, commitment_id: uuid.UUID, reason: str, actor: str, now: datetime
) -> Commitment:
    open_ = {CommitmentStatus.open}
    return _with_reason(session, commitment_id, TimelineKind.cancelled, open_, reason, actor, now)


def reopen_commitment(
    session: Session, commitment_id: uuid.UUID, reason: str, actor: str, now: datetime
) -> Commitment:
    closed = {CommitmentStatus.done, CommitmentStatus.cancelled}
    return _with_reason(session, commitment_id, TimelineKind.reopened, closed, reason, actor, now)


def add_contact(
    session: Session,
    interview_id: uuid.UUID,
    data: ContactIn,
    actor: str,
    now: datetime,
) -> Contact:
    """Record that the candidate reached out (inbound) or was reached (outbound)."""
    interview = get_interview(session, interview_id)
    if data.at is not None and data.at > now:
        # A future contact would reset the waiting clock before it happened.
        raise InvalidInput(
            "at is in the future.", errors=[{"loc": ["body", "at"], "msg": "is in the future"}]
        )
    origin = Origin(effective_at=data.at or now, actor=actor, now=now)
    contact = record_contact(
        session, interview, data.direction.value, data.channel.value, data.note, origin
    )
    session.flush()
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

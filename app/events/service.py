"""Store each inbound delivery, then apply it, in one transaction.

A delivery is mapped to commands (see commands.py). A command whose subject (an
interview, a step, a candidate) is not known yet leaves the whole delivery
``pending``; it is applied as soon as that subject is created. Effects are ordered by
the events' own instants, so any arrival order ends in the same state.
"""

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.commitments import service as commitments
from app.commitments.history import COMMITMENT_FIELDS
from app.errors import Conflict, InvalidInput, NotFound
from app.events import canonical
from app.events.commands import (
    AgreeStep,
    CancelInterview,
    CancelStep,
    CloseCandidate,
    Command,
    CompleteStep,
    Mapped,
    MappingError,
    RecordContact,
    SetCandidateStage,
    UpdateStep,
    UpsertInterview,
)
from app.events.vendors import ashby, greenhouse, lever
from app.models import (
    Commitment,
    CommitmentStatus,
    Contact,
    Delivery,
    DeliveryResult,
    Interview,
    InterviewStatus,
    OwedBy,
    TimelineEntry,
    TimelineKind,
)

log = logging.getLogger("nextstep.events")

Mapper = Callable[[bytes, datetime], Mapped]


def _vendor(map_payload: Callable[[dict[str, object], datetime], Mapped]) -> Mapper:
    def mapper(body: bytes, received_at: datetime) -> Mapped:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MappingError(f"body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise MappingError("body is not a JSON object")
        return map_payload(payload, received_at)

    return mapper


MAPPERS: dict[str, Mapper] = {
    "canonical": lambda body, _received_at: canonical.map_event(body),
    "greenhouse": _vendor(greenhouse.map_event),
    "lever": _vendor(lever.map_event),
    "ashby": _vendor(ashby.map_event),
}


@dataclass(frozen=True)
class Inbound:
    """One authenticated delivery, as received."""

    source: str
    kind: str
    delivery_key: str
    body: bytes
    headers: dict[str, str]
    received_at: datetime


class InvalidDelivery(InvalidInput):
    """Signed, stored as rejected, and refused with 422."""


class _Pending(Exception):
    def __init__(self, subject: str) -> None:
        super().__init__(subject)
        self.subject = subject


def interview_subject(source: str, external_id: str) -> str:
    return f"interview:{source}:{external_id}"


def step_subject(source: str, external_id: str) -> str:
    return f"step:{source}:{external_id}"


def _lock_subject(session: Session, subject: str) -> None:
    # Serialises "mark pending on S" against "create S, then release what waits for S",
    # so that a delivery can never wait for a subject that already exists.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": subject})


@dataclass
class _Run:
    """What one application of one delivery needs and produces."""

    delivery: Delivery
    now: datetime
    created: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.delivery.source

    @property
    def actor(self) -> str:
        return f"source:{self.delivery.source}"

    @property
    def tiebreak(self) -> str:
        return self.delivery.delivery_key


def _interview_or_pending(session: Session, run: _Run, external_id: str) -> Interview:
    interview = commitments.find_interview(session, run.source, external_id)
    if interview is None:
        subject = interview_subject(run.source, external_id)
        _lock_subject(session, subject)
        interview = commitments.find_interview(session, run.source, external_id)
        if interview is None:
            raise _Pending(subject)
    return interview


def _step_or_pending(session: Session, run: _Run, external_id: str) -> Commitment:
    step = commitments.find_commitment(session, run.source, external_id)
    if step is None:
        subject = step_subject(run.source, external_id)
        _lock_subject(session, subject)
        step = commitments.find_commitment(session, run.source, external_id)
        if step is None:
            raise _Pending(subject)
    return step


def _candidate_interviews(session: Session, run: _Run, candidate_id: str) -> list[Interview]:
    # None yet is not a reason to wait: a stage change or a hire concerns the steps
    # and interviews that exist when it happened, and later ones start after it.
    statement = select(Interview).where(
        Interview.source == run.source, Interview.candidate_external_id == candidate_id
    )
    return list(session.exec(statement.with_for_update()).all())


def _cancel_open_steps(
    session: Session,
    run: _Run,
    interview_ids: list[uuid.UUID],
    reason: str,
    at: datetime,
    *,
    company_owed_only: bool,
) -> None:
    statement = select(Commitment).where(
        col(Commitment.interview_id).in_(interview_ids),
        Commitment.status == CommitmentStatus.open,
    )
    if company_owed_only:
        statement = statement.where(Commitment.owed_by == OwedBy.company)
    for step in session.exec(statement.with_for_update()).all():
        commitments.change(
            session,
            step,
            TimelineKind.cancelled,
            {},
            reason=reason,
            effective_at=at,
            tiebreak=run.tiebreak,
            actor=run.actor,
            now=run.now,
            delivery_id=run.delivery.id,
        )


def _upsert_interview(session: Session, run: _Run, command: UpsertInterview) -> None:
    interview = commitments.find_interview(session, run.source, command.external_id)
    common = {
        "effective_at": command.occurred_at,
        "tiebreak": run.tiebreak,
        "actor": run.actor,
        "now": run.now,
        "delivery_id": run.delivery.id,
    }
    if interview is not None:
        commitments.record_interview_change(session, interview, command.fields, **common)  # type: ignore[arg-type]
        return
    candidate = command.fields.get("candidate_external_id")
    if not candidate:
        # Nothing says who the candidate is yet: wait for an event that does.
        subject = interview_subject(run.source, command.external_id)
        _lock_subject(session, subject)
        raise _Pending(subject)
    commitments.new_interview(session, run.source, command.external_id, command.fields, **common)  # type: ignore[arg-type]
    run.created.append(interview_subject(run.source, command.external_id))


def _agree_step(session: Session, run: _Run, command: AgreeStep) -> None:
    interview = _interview_or_pending(session, run, command.interview_external_id)
    step = commitments.find_commitment(session, run.source, command.step_external_id)
    if step is None:
        commitments.agree(
            session,
            interview,
            command.values,
            source=run.source,
            external_id=command.step_external_id,
            agreed_at=command.occurred_at,
            tiebreak=run.tiebreak,
            actor=run.actor,
            now=run.now,
            delivery_id=run.delivery.id,
        )
        run.created.append(step_subject(run.source, command.step_external_id))
        return
    # The same step stated again: another agreement, which the history orders.
    commitments.change(
        session,
        step,
        TimelineKind.agreed,
        {k: v for k, v in command.values.items() if k in COMMITMENT_FIELDS},
        reason=None,
        effective_at=command.occurred_at,
        tiebreak=run.tiebreak,
        actor=run.actor,
        now=run.now,
        delivery_id=run.delivery.id,
    )


def _change_step(
    session: Session,
    run: _Run,
    external_id: str,
    kind: TimelineKind,
    values: dict[str, object],
    reason: str | None,
    at: datetime,
) -> None:
    step = _step_or_pending(session, run, external_id)
    commitments.change(
        session,
        step,
        kind,
        values,
        reason=reason,
        effective_at=at,
        tiebreak=run.tiebreak,
        actor=run.actor,
        now=run.now,
        delivery_id=run.delivery.id,
    )


def _apply_command(session: Session, run: _Run, command: Command) -> None:
    match command:
        case UpsertInterview():
            _upsert_interview(session, run, command)
        case AgreeStep():
            _agree_step(session, run, command)
        case UpdateStep():
            _change_step(
                session,
                run,
                command.step_external_id,
                TimelineKind.updated,
                command.values,
                command.reason,
                command.occurred_at,
            )
        case CompleteStep():
            _change_step(
                session,
                run,
                command.step_external_id,
                TimelineKind.completed,
                {"outcome": command.outcome},
                None,
                command.occurred_at,
            )
        case CancelStep():
            _change_step(
                session,
                run,
                command.step_external_id,
                TimelineKind.cancelled,
                {},
                command.reason,
                command.occurred_at,
            )
        case RecordContact():
            interview = _interview_or_pending(session, run, command.interview_external_id)
            commitments.record_contact(
                session,
                interview,
                command.direction,
                command.channel,
                command.occurred_at,
                command.note,
                tiebreak=run.tiebreak,
                actor=run.actor,
                now=run.now,
                delivery_id=run.delivery.id,
            )
        case CancelInterview():
            interview = _interview_or_pending(session, run, command.external_id)
            if interview.status != InterviewStatus.cancelled:
                commitments.record_interview_change(
                    session,
                    interview,
                    {"status": InterviewStatus.cancelled.value},
                    effective_at=command.occurred_at,
                    tiebreak=run.tiebreak,
                    actor=run.actor,
                    now=run.now,
                    delivery_id=run.delivery.id,
                )
            _cancel_open_steps(
                session,
                run,
                [interview.id],
                command.reason,
                command.occurred_at,
                company_owed_only=False,
            )
        case SetCandidateStage():
            for interview in _candidate_interviews(session, run, command.candidate_external_id):
                commitments.record_interview_change(
                    session,
                    interview,
                    {"stage": command.stage},
                    effective_at=command.occurred_at,
                    tiebreak=run.tiebreak,
                    actor=run.actor,
                    now=run.now,
                    delivery_id=run.delivery.id,
                )
        case CloseCandidate():
            interviews = _candidate_interviews(session, run, command.candidate_external_id)
            _cancel_open_steps(
                session,
                run,
                [i.id for i in interviews],
                command.reason,
                command.occurred_at,
                company_owed_only=True,
            )


def _apply(session: Session, delivery: Delivery, mapped: Mapped, now: datetime) -> list[str]:
    """Apply one delivery's commands, or none of them; returns the subjects it created."""
    run = _Run(delivery=delivery, now=now)
    try:
        with session.begin_nested():
            for command in mapped.commands:
                _apply_command(session, run, command)
    except _Pending as pending:
        delivery.result, delivery.subject = DeliveryResult.pending, pending.subject
        session.add(delivery)
        return []
    delivery.result, delivery.subject, delivery.applied_at = DeliveryResult.applied, None, now
    session.add(delivery)
    return run.created


def _release_pending(session: Session, created: list[str], now: datetime) -> None:
    """Apply the deliveries that were waiting for the subjects just created."""
    queue = list(created)
    while queue:
        subject = queue.pop(0)
        _lock_subject(session, subject)
        waiting = session.exec(
            select(Delivery)
            .where(Delivery.result == DeliveryResult.pending, Delivery.subject == subject)
            .order_by(col(Delivery.occurred_at), col(Delivery.delivery_key))
            .with_for_update()
        ).all()
        for delivery in waiting:
            mapped = MAPPERS[delivery.kind](delivery.body, delivery.received_at)
            queue += _apply(session, delivery, mapped, now)


def ashby_delivery_key(body: bytes) -> str:
    """Ashby names each delivery by its action and webhookActionId; else the body's hash."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        action, action_id = payload.get("action"), payload.get("webhookActionId")
        if isinstance(action, str) and isinstance(action_id, str | int) and action_id != "":
            return f"{action}:{action_id}"[:300]
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _headers_to_keep(headers: dict[str, str]) -> dict[str, str]:
    # Never the signature: stored deliveries are shown to admins and are not re-verified.
    keep = (
        "webhook-id",
        "webhook-timestamp",
        "content-type",
        "user-agent",
        "greenhouse-event-id",
        "x-request-id",
    )
    return {k: v for k, v in headers.items() if k in keep}


def _duplicate(session: Session, existing: Delivery, inbound: Inbound) -> tuple[Delivery, str]:
    if existing.body_sha256 != hashlib.sha256(inbound.body).hexdigest():
        session.rollback()
        raise Conflict(
            f"Delivery {inbound.delivery_key!r} from {inbound.source!r} was received before "
            "with a different body.",
            delivery_id=str(existing.id),
        )
    # Atomic: concurrent copies must each be counted.
    session.exec(
        update(Delivery)
        .where(col(Delivery.id) == existing.id)
        .values(duplicates=col(Delivery.duplicates) + 1)
    )
    session.commit()
    if existing.result == DeliveryResult.rejected:
        raise InvalidDelivery(existing.error or "invalid event", delivery_id=str(existing.id))
    return existing, DeliveryResult.duplicate.value


def _find(session: Session, source: str, key: str) -> Delivery | None:
    return session.exec(
        select(Delivery).where(Delivery.source == source, Delivery.delivery_key == key)
    ).first()


def ingest(session: Session, inbound: Inbound, now: datetime) -> tuple[Delivery, str]:
    """Store and apply one delivery; returns it and its answer (applied, duplicate, …).

    The delivery and its effects commit together, or not at all.
    """
    for attempt in range(3):
        existing = _find(session, inbound.source, inbound.delivery_key)
        if existing is not None:
            return _duplicate(session, existing, inbound)
        try:
            return _store_and_apply(session, inbound, now)
        except IntegrityError:
            # Another request stored the same delivery, or created the same subject,
            # first: look again with its work visible.
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _store_and_apply(session: Session, inbound: Inbound, now: datetime) -> tuple[Delivery, str]:
    try:
        mapped: Mapped | None = MAPPERS[inbound.kind](inbound.body, inbound.received_at)
        error = None
    except MappingError as exc:
        mapped, error = None, str(exc)[:2000]
    delivery = Delivery(
        source=inbound.source,
        delivery_key=inbound.delivery_key,
        kind=inbound.kind,
        event_type=mapped.event_type[:100] if mapped else None,
        occurred_at=mapped.occurred_at if mapped else None,
        body=inbound.body,
        body_sha256=hashlib.sha256(inbound.body).hexdigest(),
        headers=_headers_to_keep(inbound.headers),
        received_at=inbound.received_at,
        result=DeliveryResult.rejected if error else DeliveryResult.ignored,
        error=error,
    )
    session.add(delivery)
    session.flush()
    if mapped is not None and mapped.commands:
        _release_pending(session, _apply(session, delivery, mapped, now), now)
    session.commit()
    if error is not None:
        raise InvalidDelivery(error, delivery_id=str(delivery.id))
    return delivery, delivery.result


def _undo(session: Session, delivery: Delivery) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Remove what a delivery did; returns the interviews and steps to rebuild."""
    entries = session.exec(
        select(TimelineEntry).where(TimelineEntry.delivery_id == delivery.id)
    ).all()
    interviews = {e.interview_id for e in entries if e.commitment_id is None}
    steps = {e.commitment_id for e in entries if e.commitment_id is not None}
    session.exec(delete(TimelineEntry).where(col(TimelineEntry.delivery_id) == delivery.id))
    session.exec(delete(Contact).where(col(Contact.delivery_id) == delivery.id))
    session.flush()
    return interviews, steps


def _rebuild_after_replay(
    session: Session, interviews: set[uuid.UUID], steps: set[uuid.UUID], now: datetime
) -> None:
    for step_id in steps:
        step = session.get(Commitment, step_id)
        if step is None:
            continue
        has_agreement = session.exec(
            select(func.count()).where(
                TimelineEntry.commitment_id == step_id, TimelineEntry.kind == TimelineKind.agreed
            )
        ).one()
        if has_agreement:
            commitments.rebuild_commitment(session, step, now)
        else:
            session.delete(step)  # no event agrees to it any more
    for interview_id in interviews:
        interview = session.get(Interview, interview_id)
        if (
            interview is not None
            and session.exec(
                select(func.count()).where(
                    TimelineEntry.interview_id == interview_id,
                    col(TimelineEntry.kind).in_(
                        [TimelineKind.interview_recorded, TimelineKind.interview_updated]
                    ),
                )
            ).one()
        ):
            commitments.rebuild_interview(session, interview, now)


def replay(session: Session, delivery_id: uuid.UUID, now: datetime) -> Delivery:
    """Apply a stored delivery again with today's mapping. Replaying twice changes nothing more."""
    delivery = session.exec(
        select(Delivery).where(Delivery.id == delivery_id).with_for_update()
    ).first()
    if delivery is None:
        raise NotFound(f"No delivery with id {delivery_id}.")
    interviews, steps = _undo(session, delivery)
    try:
        mapped: Mapped | None = MAPPERS[delivery.kind](delivery.body, delivery.received_at)
    except MappingError as exc:
        mapped = None
        delivery.result, delivery.error, delivery.subject = (
            DeliveryResult.rejected,
            str(exc)[:2000],
            None,
        )
    if mapped is not None:
        delivery.error = None
        delivery.event_type = mapped.event_type[:100]
        delivery.occurred_at = mapped.occurred_at
        if mapped.commands:
            _release_pending(session, _apply(session, delivery, mapped, now), now)
        else:
            delivery.result, delivery.subject = DeliveryResult.ignored, None
    session.flush()
    _rebuild_after_replay(session, interviews, steps, now)
    session.add(delivery)
    session.commit()
    return delivery


def list_deliveries(
    session: Session,
    source: str | None,
    result: DeliveryResult | None,
    received_after: datetime | None,
    limit: int,
    after: list[str] | None,
) -> tuple[list[Delivery], list[str] | None]:
    """Stored deliveries, oldest first; returns the page and the key to continue after."""
    statement = select(Delivery)
    if source is not None:
        statement = statement.where(Delivery.source == source)
    if result is not None:
        statement = statement.where(Delivery.result == result)
    if received_after is not None:
        statement = statement.where(col(Delivery.received_at) > received_after)
    keys = (col(Delivery.received_at), col(Delivery.id))
    if after:
        statement = statement.where(
            tuple_(*keys) > tuple_(datetime.fromisoformat(after[0]), uuid.UUID(after[1]))
        )
    rows = list(session.exec(statement.order_by(*keys).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, [rows[-1].received_at.isoformat(), str(rows[-1].id)]

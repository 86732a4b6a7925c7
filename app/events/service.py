"""Store each inbound delivery, then apply it, in one transaction.

A delivery is mapped to commands (see commands.py). A command whose subject (an
interview, a step, a candidate) is not known yet leaves the whole delivery
``pending``; it is applied as soon as that subject is created. Effects are ordered by
the events' own instants, so any arrival order ends in the same state.
"""

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    literal,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, SQLModel, col, select

from app import jsonbody
from app.commitments import service as commitments
from app.commitments.history import COMMITMENT_FIELDS, DUE_BASIS_KEY, Change
from app.config import get_settings
from app.deadlines import service as deadline_policies
from app.deadlines.policies import InterviewFacts
from app.errors import Conflict, InvalidInput, NotFound, is_connection_error
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
    ordered_uuid,
)
from app.pagination import aware_instant, keyset

log = logging.getLogger("nextstep.events")

Mapper = Callable[[bytes, datetime], Mapped]


def _vendor(map_payload: Callable[[dict[str, object], datetime], Mapped]) -> Mapper:
    def mapper(body: bytes, received_at: datetime) -> Mapped:
        try:
            payload = jsonbody.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MappingError(f"body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise MappingError("body is not a JSON object")
        if _has_nul(payload):
            # PostgreSQL text cannot hold NUL, and no vendor field needs one.
            raise MappingError("body has a NUL character in a string")
        return map_payload(payload, received_at)

    return mapper


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


MAPPERS: dict[str, Mapper] = {
    "canonical": lambda body, _received_at: canonical.map_event(body),
    "greenhouse": _vendor(greenhouse.map_event),
    "lever": _vendor(lever.map_event),
    "ashby": _vendor(ashby.map_event),
}


def map_delivery(kind: str, body: bytes, received_at: datetime) -> Mapped:
    """What a delivery asks for; MappingError if it cannot be applied as it stands.

    An event may not claim to have happened later than it was received (plus the
    signature's tolerance for clock skew): a step agreed in the future would count as
    open and late in one list and not yet exist in another.
    """
    mapped = MAPPERS[kind](body, received_at)
    latest = received_at + timedelta(seconds=get_settings().webhook_tolerance_seconds)
    occurred_at = max((command.occurred_at for command in mapped.commands), default=None)
    if occurred_at is not None and occurred_at > latest:
        raise MappingError(
            f"occurred_at {occurred_at.isoformat()} is later than the moment the event was "
            f"received ({received_at.isoformat()}): an event cannot come from the future"
        )
    return mapped


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


class _Refused(Exception):
    """The delivery contradicts what is stored: it is kept as rejected, with the reason."""


class _Pending(Exception):
    def __init__(self, subject: str) -> None:
        super().__init__(subject)
        self.subject = subject


def interview_subject(source: str, external_id: str) -> str:
    return f"interview:{source}:{external_id}"


def step_subject(source: str, external_id: str) -> str:
    return f"step:{source}:{external_id}"


def _locks_subjects(session: Session) -> bool:
    """PostgreSQL serialises subjects with advisory locks; SQLite has one writer at a time."""
    return session.get_bind().dialect.name == "postgresql"


def _lock_subject(session: Session, subject: str) -> None:
    # Serialises "mark pending on S" against "create S, then release what waits for S",
    # so that a delivery can never wait for a subject that already exists.
    if _locks_subjects(session):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": subject})


_LOCK_SUBJECTS = text(
    "SELECT pg_advisory_xact_lock(hashtext(s)) FROM unnest(CAST(:s AS text[])) AS s"
)


def _lock_subjects(session: Session, subjects: list[str]) -> None:
    """``_lock_subject`` for several subjects, in one statement and a fixed order."""
    if subjects and _locks_subjects(session):
        session.connection().execute(_LOCK_SUBJECTS, {"s": sorted(set(subjects))})


@dataclass
class _Run:
    """What one application of one delivery needs and produces."""

    delivery: Delivery
    now: datetime
    created: list[str] = field(default_factory=list)
    # For the deadline policies (settled once every command has been applied): the
    # interviews this delivery completed, those it agreed steps on, and those steps.
    completed: dict[uuid.UUID, Interview] = field(default_factory=dict)
    agreed_on: dict[uuid.UUID, Interview] = field(default_factory=dict)
    carried: set[uuid.UUID] = field(default_factory=set)

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
        was_completed = interview.status == InterviewStatus.completed
        commitments.record_interview_change(session, interview, command.fields, **common)  # type: ignore[arg-type]
        if not was_completed and interview.status == InterviewStatus.completed:
            run.completed[interview.id] = interview
        return
    candidate = command.fields.get("candidate_external_id")
    if not candidate:
        # Nothing says who the candidate is yet: wait for an event that does.
        subject = interview_subject(run.source, command.external_id)
        _lock_subject(session, subject)
        raise _Pending(subject)
    interview = commitments.new_interview(
        session,
        run.source,
        command.external_id,
        command.fields,
        **common,  # type: ignore[arg-type]
    )
    if interview.status == InterviewStatus.completed:
        run.completed[interview.id] = interview
    run.created.append(interview_subject(run.source, command.external_id))


def _agree_step(session: Session, run: _Run, command: AgreeStep) -> None:
    interview = _interview_or_pending(session, run, command.interview_external_id)
    step = commitments.find_commitment(session, run.source, command.step_external_id)
    run.agreed_on[interview.id] = interview
    if step is None:
        step = commitments.agree(
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
        run.carried.add(step.id)
        run.created.append(step_subject(run.source, command.step_external_id))
        return
    if step.interview_id != interview.id:
        owner = session.get(Interview, step.interview_id)
        raise _Refused(
            f"next step {command.step_external_id!r} belongs to interview "
            f"{owner.external_id if owner else step.interview_id!r}, not to "
            f"{command.interview_external_id!r}: a step cannot move to another interview"
        )
    # The same step stated again: another agreement, which the history orders.
    run.carried.add(step.id)
    values = {k: v for k, v in command.values.items() if k in COMMITMENT_FIELDS}
    if values.get("due_at") is None:
        values = _policy_due(session, interview, step, values, command.occurred_at)
    commitments.change(
        session,
        step,
        TimelineKind.agreed,
        values,
        reason=None,
        effective_at=command.occurred_at,
        tiebreak=run.tiebreak,
        actor=run.actor,
        now=run.now,
        delivery_id=run.delivery.id,
    )


def _policy_due(
    session: Session,
    interview: Interview,
    step: Commitment,
    values: dict[str, Any],
    agreed_at: datetime,
) -> dict[str, Any]:
    """A repeated agreement without due_at: the due time a policy gives from this agreement.

    It counts only if this agreement turns out to be the step's first (see history.py): then
    the commitment keeps how it was computed. Either way the values carry one, so that the
    step's first agreement has a due time whichever copy arrived first.
    """
    computed = deadline_policies.due_from_policy(
        session, interview, values["owner_id"], values["owner_role"], agreed_at
    )
    if agreed_at <= step.agreed_at:
        computed.stamp(step)
    return {**values, "due_at": computed.due_at, DUE_BASIS_KEY: "policy"}


def _settle_policy_steps(session: Session, run: _Run) -> None:
    """Deadline policies, rules 2 and 3, once all of a delivery's commands are applied."""
    for interview in {**run.agreed_on, **run.completed}.values():
        deadline_policies.settle_policy_step(
            session,
            interview,
            completed_now=interview.id in run.completed,
            carried=run.carried,
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
    """Apply one delivery's commands, or none of them; returns the subjects it created.

    A delivery goes pending only while this transaction holds the lock of the subject it
    waits for, so that whoever creates that subject, on any replica, waits for the
    pending mark to commit and then sees it (``_release_pending``). The lock taken while
    looking is lost with the savepoint that is rolled back (PostgreSQL releases the locks
    a rolled-back savepoint took): it is taken again outside it, and the delivery is tried
    once more, since the subject may have been created in between.
    """
    held: set[str] = set()
    while True:
        run = _Run(delivery=delivery, now=now)
        try:
            with session.begin_nested():
                for command in mapped.commands:
                    _apply_command(session, run, command)
                _settle_policy_steps(session, run)
        except (_Refused, deadline_policies.DeadlineError) as refused:
            delivery.result, delivery.subject, delivery.error = (
                DeliveryResult.rejected,
                None,
                str(refused)[:2000],
            )
            session.add(delivery)
            return []
        except _Pending as pending:
            if pending.subject in held or not _locks_subjects(session):
                delivery.result, delivery.subject = DeliveryResult.pending, pending.subject
                session.add(delivery)
                return []
            _lock_subject(session, pending.subject)
            held.add(pending.subject)
            continue
        delivery.result, delivery.subject, delivery.applied_at = DeliveryResult.applied, None, now
        session.add(delivery)
        return run.created


# Rendered inline: a partial index on pending subjects serves only a query that names
# the value (SQLite does not match a bound parameter against the index's WHERE).
_PENDING = literal(DeliveryResult.pending.value, literal_execute=True)


def _release_pending(session: Session, created: list[str], now: datetime) -> None:
    """Apply the deliveries that were waiting for the subjects just created.

    Subject by subject in the order they were created, each one's deliveries in event
    order; one query per round of subjects. A delivery applied here cannot start waiting
    for a subject of the same round (they all exist), so the round's query sees what a
    query per subject would.
    """
    subjects = list(created)
    while subjects:
        _lock_subjects(session, subjects)
        rank = {subject: index for index, subject in enumerate(subjects)}
        waiting = session.exec(
            select(Delivery)
            .where(col(Delivery.result) == _PENDING, col(Delivery.subject).in_(subjects))
            .order_by(col(Delivery.occurred_at), col(Delivery.delivery_key))
            .with_for_update()
        ).all()
        subjects = []
        for delivery in sorted(waiting, key=lambda d: rank[d.subject or ""]):
            mapped = map_delivery(delivery.kind, delivery.body, delivery.received_at)
            subjects += _apply(session, delivery, mapped, now)


def _subject_exists(session: Session, subject: str) -> bool:
    """Whether the interview or step a pending delivery waits for is stored.

    A subject reads ``kind:source:external_id``; either name may hold a colon, so every
    split is tried (one index look-up each, and there is rarely more than one).
    """
    kind, _, rest = subject.partition(":")
    find = {"interview": commitments.find_interview, "step": commitments.find_commitment}.get(kind)
    if find is None:
        return False
    splits = [i for i, char in enumerate(rest) if char == ":"]
    return any(find(session, rest[:i], rest[i + 1 :]) is not None for i in splits)


def apply_ready_pending(session: Session, now: datetime, limit: int = 200) -> int:
    """Apply pending deliveries whose subject exists; returns how many were applied.

    Creating a subject releases what waits for it in the same transaction, so this finds
    nothing unless that guarantee failed: it is the safety net that makes sure no
    acknowledged delivery waits for good. Each delivery commits on its own.
    """
    waiting = session.exec(
        select(Delivery.id, Delivery.subject)
        .where(col(Delivery.result) == _PENDING)
        .order_by(col(Delivery.occurred_at), col(Delivery.delivery_key))
        .limit(limit)
    ).all()
    ready = [(i, s) for i, s in waiting if s is not None and _subject_exists(session, s)]
    session.rollback()
    applied = 0
    for delivery_id, subject in ready:
        _lock_subject(session, subject)
        delivery = session.exec(
            select(Delivery)
            .where(Delivery.id == delivery_id, col(Delivery.result) == _PENDING)
            .with_for_update()
        ).first()
        if delivery is None:  # applied meanwhile
            session.rollback()
            continue
        try:
            mapped = map_delivery(delivery.kind, delivery.body, delivery.received_at)
        except MappingError as exc:
            delivery.result, delivery.error, delivery.subject = (
                DeliveryResult.rejected,
                str(exc)[:2000],
                None,
            )
            session.add(delivery)
        else:
            _release_pending(session, _apply(session, delivery, mapped, now), now)
        session.commit()
        if delivery.result == DeliveryResult.applied:
            applied += 1
            log.warning(
                "pending delivery %s (%s) applied by the sweep: its subject %s existed",
                delivery.id,
                delivery.source,
                subject,
            )
    return applied


def oldest_pending_received_at(session: Session) -> datetime | None:
    """When the oldest delivery still pending was received, for the metrics endpoint."""
    return session.exec(
        select(func.min(Delivery.received_at)).where(col(Delivery.result) == _PENDING)
    ).one()


def ashby_delivery_key(body: bytes) -> str:
    """Ashby names each delivery by its action and webhookActionId; else the body's hash."""
    try:
        payload = jsonbody.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        action, action_id = payload.get("action"), payload.get("webhookActionId")
        if isinstance(action, str) and isinstance(action_id, str | int) and action_id != "":
            key = f"{action}:{action_id}"[:300]
            if "\x00" not in key:  # a text column cannot hold it; the hash names it instead
                return key
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
    return existing, DeliveryResult.duplicate.value


def _find(session: Session, source: str, key: str) -> Delivery | None:
    return session.exec(
        select(Delivery).where(Delivery.source == source, Delivery.delivery_key == key)
    ).first()


# What a delivery maps to, or why it cannot be mapped.
Mapping = tuple[Mapped, None] | tuple[None, str]


def _map(inbound: Inbound) -> Mapping:
    try:
        return map_delivery(inbound.kind, inbound.body, inbound.received_at), None
    except MappingError as exc:
        return None, str(exc)[:2000]


def _store(
    session: Session, inbound: Inbound, now: datetime, mapping: Mapping | None = None
) -> tuple[Delivery, str]:
    """Store and apply one delivery (``mapping``: what it maps to, if already known), or
    count it as a duplicate; no commit.

    Raises Conflict, having written nothing, for a known id with another body.
    """
    existing = _find(session, inbound.source, inbound.delivery_key)
    if existing is not None:
        return _duplicate(session, existing, inbound)
    return _store_and_apply(session, inbound, now, mapping or _map(inbound))


def _answer(delivery: Delivery, status: str) -> tuple[Delivery, str]:
    """Once committed: a delivery stored as rejected (now or before) is refused."""
    if delivery.result == DeliveryResult.rejected:
        raise InvalidDelivery(delivery.error or "invalid event", delivery_id=str(delivery.id))
    return delivery, status


def ingest(session: Session, inbound: Inbound, now: datetime) -> tuple[Delivery, str]:
    """Store and apply one delivery; returns it and its answer (applied, duplicate, …).

    The delivery and its effects commit together, or not at all.
    """
    for attempt in range(3):
        try:
            delivery, status = _store(session, inbound, now)
            session.commit()
        except Conflict:
            session.rollback()
            raise
        except IntegrityError:
            # Another request stored the same delivery, or created the same subject,
            # first: look again with its work visible.
            session.rollback()
            if attempt == 2:
                raise
            continue
        except DBAPIError as exc:
            # Deadlocked with a concurrent copy (SQLSTATE class 40): PostgreSQL undid this
            # attempt, so make another rather than answer 503.
            _rollback(session)
            if attempt == 2 or not (getattr(exc.orig, "sqlstate", None) or "").startswith("40"):
                raise
            continue
        return _answer(delivery, status)
    raise AssertionError("unreachable")


def _store_and_apply(
    session: Session, inbound: Inbound, now: datetime, mapping: Mapping
) -> tuple[Delivery, str]:
    mapped, error = mapping
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
    return delivery, delivery.result


@dataclass(frozen=True)
class Receipt:
    """What a delivery of a batch is answered: its id and status (applied, duplicate, …)."""

    delivery_id: uuid.UUID
    status: str


def ingest_batch(
    session: Session, inbounds: Sequence[Inbound], now: datetime
) -> list[Receipt | Exception]:
    """Store and apply deliveries that arrived together; a receipt, or the error, for each.

    They share one transaction and get the effects and answers of ingesting them one after
    another. Those that record a new interview with new next steps (most of the traffic)
    are written with one INSERT per table for all of them. If the shared transaction
    fails, each delivery is ingested on its own, so that one bad delivery costs no other
    its answer; only an unreachable database is everyone's error at once.
    """
    try:
        return _ingest_together(session, inbounds, now)
    except Exception as exc:
        _rollback(session)
        if _everyones_error(exc):
            return [exc for _ in inbounds]
        log.warning(
            "storing %d deliveries in one transaction failed (%s); storing them one by one",
            len(inbounds),
            type(exc).__name__,
        )
    answers: list[Receipt | Exception] = []
    for inbound in inbounds:
        if answers and isinstance(answers[-1], Exception) and _everyones_error(answers[-1]):
            answers.append(answers[-1])
            continue
        try:
            delivery, status = ingest(session, inbound, now)
        except Exception as exc:  # this delivery's own answer
            _rollback(session)
            answers.append(exc)
        else:
            answers.append(Receipt(delivery.id, status))
    return answers


def _everyones_error(exc: Exception) -> bool:
    """The database is unreachable or stuck: each delivery on its own would wait for the
    same error. A deadlock or serialisation failure (SQLSTATE class 40) is not."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    return is_connection_error(exc) and not sqlstate.startswith("40")


def _rollback(session: Session) -> None:
    try:
        session.rollback()
    except DBAPIError:
        log.warning("rollback failed: the database connection is gone")


def _key_order(inbound: Inbound) -> tuple[str, str]:
    return inbound.source, inbound.delivery_key


def _ingest_together(
    session: Session, inbounds: Sequence[Inbound], now: datetime
) -> list[Receipt | Exception]:
    mappings = [_map(inbound) for inbound in inbounds]
    new = _new_interviews(session, inbounds, mappings)
    answers: dict[int, Receipt | Exception] = dict(
        _store_new_interviews(session, inbounds, new, now)
    )
    stored: dict[int, tuple[Delivery, str]] = {}
    # In key order, as the bulk path does: replicas storing copies of the same deliveries
    # then take their unique-key locks in the same order and never deadlock.
    for index in sorted(range(len(inbounds)), key=lambda i: _key_order(inbounds[i])):
        inbound = inbounds[index]
        if index in answers:
            continue
        try:
            with session.begin_nested():
                stored[index] = _store(session, inbound, now, mappings[index])
        except Conflict as exc:
            answers[index] = exc
    session.commit()
    for index, (delivery, status) in stored.items():
        try:
            _answer(delivery, status)
        except InvalidDelivery as exc:
            answers[index] = exc
        else:
            answers[index] = Receipt(delivery.id, status)
    return [answers[index] for index in range(len(inbounds))]


def _new_interview_commands(mapped: Mapped) -> tuple[UpsertInterview, list[AgreeStep]] | None:
    """An interview that names its candidate, and next steps of it, each step named once."""
    if not mapped.commands:
        return None
    first, *rest = mapped.commands
    if not isinstance(first, UpsertInterview) or not first.fields.get("candidate_external_id"):
        return None
    steps = [
        c for c in rest if isinstance(c, AgreeStep) and c.interview_external_id == first.external_id
    ]
    if len(steps) != len(rest) or len({s.step_external_id for s in steps}) != len(steps):
        return None
    if any(s.values.get("due_at") is None for s in steps):
        return None  # a deadline policy computes it: one by one
    return first, steps


@dataclass(frozen=True)
class _NewInterview:
    inbound: Inbound
    mapped: Mapped
    interview: UpsertInterview
    steps: list[AgreeStep]

    @property
    def completes_without_step(self) -> bool:
        completed = self.interview.fields.get("status") == InterviewStatus.completed
        return completed and not self.steps

    @property
    def subjects(self) -> list[str]:
        source = self.inbound.source
        return [
            interview_subject(source, self.interview.external_id),
            *(step_subject(source, s.step_external_id) for s in self.steps),
        ]


def _new_interviews(
    session: Session, inbounds: Sequence[Inbound], mappings: Sequence[Mapping]
) -> dict[int, _NewInterview]:
    """The deliveries of a batch that record an interview not stored yet, with next steps not
    stored yet, under a delivery key not seen yet, sharing no key or subject with another
    delivery of the batch, and with no pending delivery waiting for their subjects (those
    go one by one, which releases the waiting). Whatever else the batch holds is applied
    after them.
    """
    found: dict[int, _NewInterview] = {}
    for index, (inbound, (mapped, _error)) in enumerate(zip(inbounds, mappings, strict=True)):
        if mapped is None:
            continue
        commands = _new_interview_commands(mapped)
        if commands is not None:
            found[index] = _NewInterview(inbound, mapped, *commands)
    if not found:
        return {}
    seen = Counter(f"delivery:{i.source}:{i.delivery_key}" for i in inbounds)
    seen.update(subject for new in found.values() for subject in new.subjects)
    found = {
        index: new
        for index, new in found.items()
        if seen[f"delivery:{new.inbound.source}:{new.inbound.delivery_key}"] == 1
        and all(seen[subject] == 1 for subject in new.subjects)
    }
    # Locked before looking, as _release_pending does: from here on no delivery can start
    # waiting for one of these subjects before this transaction ends.
    _lock_subjects(session, [subject for new in found.values() for subject in new.subjects])
    stored = _stored(session, found.values())
    return {
        index: new
        for index, new in found.items()
        if f"delivery:{new.inbound.source}:{new.inbound.delivery_key}" not in stored
        and not any(subject in stored for subject in new.subjects)
    }


# Which of a batch's keys and subjects exist: exact index look-ups on both databases,
# whatever the table statistics say (with "source = ? AND key IN (...)" PostgreSQL may
# filter every row of the source when the table was never analysed). 'pending' is inline
# so that the partial index on pending subjects serves.
_STORED = """
    SELECT w.kind, w.source, w.name FROM wanted AS w JOIN delivery AS d
        ON w.kind = 'delivery' AND d.source = w.source AND d.delivery_key = w.name
    UNION ALL
    SELECT w.kind, w.source, w.name FROM wanted AS w JOIN interview AS i
        ON w.kind = 'interview' AND i.source = w.source AND i.external_id = w.name
    UNION ALL
    SELECT w.kind, w.source, w.name FROM wanted AS w JOIN commitment AS c
        ON w.kind = 'step' AND c.source = w.source AND c.external_id = w.name
    UNION ALL
    SELECT w.kind, w.source, w.name FROM wanted AS w JOIN delivery AS p
        ON w.kind = 'waited' AND p.result = 'pending' AND p.subject = w.name
"""


def _stored(session: Session, found: Iterable[_NewInterview]) -> set[str]:
    """Which of these deliveries and subjects are stored, or (for subjects) waited for by a
    pending delivery, in one query; named as in ``_new_interviews``."""
    wanted: list[tuple[str, str, str]] = []
    for new in found:
        source = new.inbound.source
        wanted += [("delivery", source, new.inbound.delivery_key)]
        wanted += [("interview", source, new.interview.external_id)]
        wanted += [("step", source, step.step_external_id) for step in new.steps]
        wanted += [("waited", "", subject) for subject in new.subjects]
    if not wanted:
        return set()
    # Sent as is: the statement differs with the batch's size, and SQLAlchemy's handling
    # of a text with hundreds of parameters costs more than the query.
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    rows = ", ".join(f"({mark}, {mark}, {mark})" for _ in wanted)
    result = connection.exec_driver_sql(
        f"WITH wanted(kind, source, name) AS (VALUES {rows})" + _STORED,
        tuple(value for row in wanted for value in row),
    )
    return {
        name if kind == "waited" else f"{kind}:{source}:{name}" for kind, source, name in result
    }


def _store_new_interviews(
    session: Session, inbounds: Sequence[Inbound], new: dict[int, _NewInterview], now: datetime
) -> dict[int, Receipt]:
    """Write the new interviews, their steps and deliveries, with one INSERT per table.

    The rows are the ones ``_apply`` writes (see ``commitments.new_interview`` and
    ``commitments.agree``): for a subject that did not exist, its history is exactly the
    entry in hand, replayed here by the same functions.
    """
    if not new:
        return {}
    rows: dict[str, list[dict[str, Any]]] = {
        table: [] for table in ("delivery", "interview", "commitment", "timeline_entry")
    }
    rows["commitment_version"] = []
    receipts: dict[int, Receipt] = {}
    for index, item in new.items():
        inbound, delivery_id = item.inbound, uuid.uuid4()
        rows["delivery"].append(_delivery_row(inbound, item.mapped, delivery_id, now))
        _new_interview_rows(session, rows, item, delivery_id, now)
        receipts[index] = Receipt(delivery_id, DeliveryResult.applied.value)
    # In key order, so that two transactions inserting the same keys cannot deadlock: the
    # second waits for the first, then fails on the unique key and goes one by one.
    for table in ("delivery", "interview", "commitment"):
        key = "delivery_key" if table == "delivery" else "external_id"
        rows[table].sort(key=lambda row: (row["source"], row[key]))
    connection = session.connection()
    for table, table_rows in rows.items():
        if table_rows:
            connection.execute(insert(SQLModel.metadata.tables[table]), table_rows)
    return receipts


def _delivery_row(
    inbound: Inbound, mapped: Mapped, delivery_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    return {
        "id": delivery_id,
        "source": inbound.source,
        "delivery_key": inbound.delivery_key,
        "kind": inbound.kind,
        "event_type": mapped.event_type[:100],
        "occurred_at": mapped.occurred_at,
        "body": inbound.body,
        "body_sha256": hashlib.sha256(inbound.body).hexdigest(),
        "headers": _headers_to_keep(inbound.headers),
        "received_at": inbound.received_at,
        "result": DeliveryResult.applied.value,
        "error": None,
        "subject": None,
        "applied_at": now,
        "duplicates": 0,
    }


def _new_interview_rows(
    session: Session,
    rows: dict[str, list[dict[str, Any]]],
    item: _NewInterview,
    delivery_id: uuid.UUID,
    now: datetime,
) -> None:
    source, upsert = item.inbound.source, item.interview
    actor, tiebreak = f"source:{source}", item.inbound.delivery_key
    interview_id = uuid.uuid4()
    entry, change = _entry_row(
        TimelineKind.interview_recorded,
        interview_id,
        None,
        upsert.fields,
        upsert.occurred_at,
        tiebreak,
        actor,
        delivery_id,
        now,
    )
    rows["timeline_entry"].append(entry)
    rows["interview"].append(
        {
            "id": interview_id,
            "source": source,
            "external_id": upsert.external_id,
            "candidate_external_id": upsert.fields.get("candidate_external_id") or "",
            "candidate_name": None,
            "candidate_email": None,
            "job_external_id": None,
            "job_title": None,
            "stage": None,
            "status": InterviewStatus.scheduled.value,
            "interviewers": [],
            "default_owners": {},
            "starts_at": None,
            "ends_at": None,
            "completed_at": None,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            **commitments.interview_columns([change]),
        }
    )
    for step in item.steps:
        commitment_id = uuid.uuid4()
        entry, change = _entry_row(
            TimelineKind.agreed,
            interview_id,
            commitment_id,
            step.values,
            step.occurred_at,
            tiebreak,
            actor,
            delivery_id,
            now,
        )
        rows["timeline_entry"].append(entry)
        columns, versions = commitments.commitment_columns([change])
        rows["commitment"].append(
            {
                "id": commitment_id,
                "interview_id": interview_id,
                "source": source,
                "external_id": step.step_external_id,
                **columns,
                "created_at": now,
                "updated_at": now,
                **deadline_policies.NO_PROVENANCE,
            }
        )
        rows["commitment_version"] += [
            {"commitment_id": commitment_id, "interview_id": interview_id, **version}
            for version in versions
        ]
    if item.completes_without_step:
        _policy_step_rows(session, rows, item, interview_id, delivery_id, now)


def _policy_step_rows(
    session: Session,
    rows: dict[str, list[dict[str, Any]]],
    item: _NewInterview,
    interview_id: uuid.UUID,
    delivery_id: uuid.UUID,
    now: datetime,
) -> None:
    """The default step a deadline policy gives a new interview completed without a step:
    the rows that ``deadline_policies.settle_policy_step`` writes one by one."""
    upsert = item.interview
    facts = InterviewFacts(
        source=item.inbound.source,
        stage=upsert.fields.get("stage"),
        job_id=upsert.fields.get("job_external_id"),
    )
    # Its completion: ends_at, else when it was marked completed (this event).
    completed_at = upsert.fields.get("ends_at") or upsert.occurred_at
    found = deadline_policies.default_step(session, facts, completed_at)
    if found is None:
        return
    policy, values, computed = found
    commitment_id = uuid.uuid4()
    entry, change = _entry_row(
        TimelineKind.agreed,
        interview_id,
        commitment_id,
        values,
        completed_at,
        f"policy:{interview_id}",
        f"policy:{policy.id}",
        delivery_id,
        now,
    )
    rows["timeline_entry"].append(entry)
    columns, versions = commitments.commitment_columns([change])
    rows["commitment"].append(
        {
            "id": commitment_id,
            "interview_id": interview_id,
            "source": deadline_policies.POLICY_SOURCE,
            "external_id": str(interview_id),
            **columns,
            "created_at": now,
            "updated_at": now,
            **computed.columns(),
        }
    )
    rows["commitment_version"] += [
        {"commitment_id": commitment_id, "interview_id": interview_id, **version}
        for version in versions
    ]


def _entry_row(
    kind: TimelineKind,
    interview_id: uuid.UUID,
    commitment_id: uuid.UUID | None,
    values: dict[str, Any],
    effective_at: datetime,
    tiebreak: str,
    actor: str,
    delivery_id: uuid.UUID,
    now: datetime,
) -> tuple[dict[str, Any], Change]:
    """A timeline entry as commitments.new_interview or agree writes it, and its Change."""
    entry_id = ordered_uuid()
    if kind == TimelineKind.agreed:
        tiebreak = tiebreak or str(entry_id)
    changes = commitments.encode_values(values)
    row = {
        "id": entry_id,
        "interview_id": interview_id,
        "commitment_id": commitment_id,
        "kind": kind.value,
        "effective_at": effective_at,
        "tiebreak": tiebreak,
        "recorded_at": now,
        "actor": actor,
        "reason": None,
        "changes": changes,
        "delivery_id": delivery_id,
    }
    return row, Change(kind, effective_at, tiebreak, commitments.decode_values(changes))


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
    deadline_policies.prepare_replay(session, interviews, steps)
    try:
        mapped: Mapped | None = map_delivery(delivery.kind, delivery.body, delivery.received_at)
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
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(tuple_(*keys) > tuple_(*mark))
    rows = list(session.exec(statement.order_by(*keys).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, [rows[-1].received_at.isoformat(), str(rows[-1].id)]

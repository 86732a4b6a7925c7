"""Applies a delivery's commands to interviews and commitments, all of them or none.

Effects are ordered by the events' own instants (each command's ``occurred_at``), so any
arrival order ends in the same state. A command whose subject is not stored yet leaves
the whole delivery ``pending`` (see pending.py); it is applied as soon as that subject
is created, by ``release_pending`` in the creating transaction.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlmodel import Session, col, select

from app import tracing
from app.commitments import ledger, policy_steps
from app.commitments.history import COMMITMENT_FIELDS
from app.commitments.ledger import Origin, find_commitment, find_interview
from app.deadlines.policy_due import (
    Computed,
    NoPolicyApplies,
    due_from_policy,
    waits_for_interview_facts,
)
from app.deadlines.service import DeadlineError
from app.events.commands import (
    AgreeStep,
    CancelInterview,
    CancelStep,
    CloseCandidate,
    Command,
    CompleteStep,
    Mapped,
    NamePeople,
    RecordContact,
    SetCandidateStage,
    UpdateStep,
    UpsertInterview,
)
from app.events.mapping import map_delivery
from app.events.pending import (
    PENDING,
    Pending,
    facts_subject,
    interview_subject,
    lock_subjects,
    locks_subjects,
    step_subject,
)
from app.models import (
    Commitment,
    CommitmentStatus,
    Delivery,
    DeliveryResult,
    Interview,
    InterviewStatus,
    OwedBy,
    TimelineKind,
)
from app.owners.learning import learn_owners, people_named, people_of


class Refused(Exception):
    """The delivery contradicts what is stored: it is kept as rejected, with the reason."""


@dataclass
class _Run:
    """One application of one delivery: where its changes come from, and what it created."""

    delivery: Delivery
    now: datetime
    created: list[str] = field(default_factory=list)
    # For the deadline policies (settled once every command has been applied): the
    # interviews this delivery completed, those it agreed steps on, and those steps.
    completed: dict[uuid.UUID, Interview] = field(default_factory=dict)
    agreed_on: dict[uuid.UUID, Interview] = field(default_factory=dict)
    carried: set[uuid.UUID] = field(default_factory=set)
    # Interviews whose recruiter or coordinator this delivery names: a policy step owned by
    # that role may have been agreed before the name arrived.
    named: dict[uuid.UUID, Interview] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.delivery.source

    def origin(self, occurred_at: datetime) -> Origin:
        return Origin(
            effective_at=occurred_at,
            actor=f"source:{self.delivery.source}",
            now=self.now,
            tiebreak=self.delivery.delivery_key,
            delivery_id=self.delivery.id,
        )


Subject = TypeVar("Subject", Interview, Commitment)


def _or_pending(session: Session, subject: str, find: Callable[[], Subject | None]) -> Subject:
    """What ``find`` finds, or Pending on ``subject``: looked for again under its lock, so
    that a creator committing meanwhile is seen (pending.py)."""
    found = find()
    if found is None:
        lock_subjects(session, subject)
        found = find()
        if found is None:
            raise Pending(subject)
    return found


def _interview_or_pending(session: Session, run: _Run, external_id: str) -> Interview:
    return _or_pending(
        session,
        interview_subject(run.source, external_id),
        lambda: find_interview(session, run.source, external_id),
    )


def _step_or_pending(session: Session, run: _Run, external_id: str) -> Commitment:
    return _or_pending(
        session,
        step_subject(run.source, external_id),
        lambda: find_commitment(session, run.source, external_id),
    )


def _candidate_interviews(session: Session, run: _Run, candidate_id: str) -> list[Interview]:
    # None yet is not a reason to wait: a stage change or a hire concerns the steps
    # and interviews that exist when it happened, and later ones start after it.
    statement = select(Interview).where(
        Interview.source == run.source, Interview.candidate_external_id == candidate_id
    )
    return list(session.exec(statement.with_for_update()).all())


def _cancel_open_steps(
    session: Session,
    interview_ids: list[uuid.UUID],
    reason: str,
    origin: Origin,
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
        ledger.change(session, step, TimelineKind.cancelled, {}, origin, reason=reason)


def _upsert_interview(session: Session, run: _Run, command: UpsertInterview) -> None:
    interview = find_interview(session, run.source, command.external_id)
    origin = run.origin(command.occurred_at)
    if interview is not None:
        was_completed = interview.status == InterviewStatus.completed
        before = _facts(interview)
        ledger.record_interview_change(session, interview, command.fields, origin)
        if command.fields.get("default_owners"):
            run.named[interview.id] = interview
        if not was_completed and interview.status == InterviewStatus.completed:
            run.completed[interview.id] = interview
        _facts_known(run, interview, before)
        return
    if not command.fields.get("candidate_external_id"):
        # Nothing says who the candidate is yet: wait for an event that does.
        subject = interview_subject(run.source, command.external_id)
        lock_subjects(session, subject)
        raise Pending(subject)
    interview = ledger.new_interview(
        session, run.source, command.external_id, command.fields, origin
    )
    if interview.status == InterviewStatus.completed:
        run.completed[interview.id] = interview
    run.created.append(interview_subject(run.source, command.external_id))


def _facts(interview: Interview) -> tuple[object, ...]:
    return (interview.stage, interview.job_external_id, interview.status)


def _facts_known(run: _Run, interview: Interview, before: tuple[object, ...]) -> None:
    """What the policies match on changed: the steps waiting for it are tried again."""
    if _facts(interview) != before and interview.external_id is not None:
        run.created.append(facts_subject(interview.source, interview.external_id))


def _due_or_wait(
    session: Session, interview: Interview, owner_id: str, owner_role: str, at: datetime
) -> Computed:
    """Deadline policies, rule 1, in any arrival order (rule 4): the due time the first
    matching policy gives; or, while the interview's stage or job that a policy would match
    is not known yet, the delivery waits for it (pending); else 422, no policy applies."""
    try:
        return due_from_policy(session, interview, owner_id, owner_role, at)
    except NoPolicyApplies:
        if not waits_for_interview_facts(session, interview, owner_role):
            raise
    # Looked at again under the subject's lock, as _or_pending does: an event that makes
    # the facts known may have committed meanwhile. (An event's interview has an
    # external_id: it was found by it.)
    subject = facts_subject(interview.source, interview.external_id or "")
    lock_subjects(session, subject)
    session.flush()
    session.refresh(interview)
    try:
        return due_from_policy(session, interview, owner_id, owner_role, at)
    except NoPolicyApplies:
        if not waits_for_interview_facts(session, interview, owner_role):
            raise
    raise Pending(subject)


def _learn_owners(session: Session, run: _Run, command: UpsertInterview) -> None:
    people = people_named(command.fields)
    if people:
        tiebreak = run.delivery.delivery_key
        learn_owners(session, run.source, people, command.occurred_at, tiebreak, run.now)


def _agree_step(session: Session, run: _Run, command: AgreeStep) -> None:
    interview = _interview_or_pending(session, run, command.interview_external_id)
    origin = run.origin(command.occurred_at)
    step = find_commitment(session, run.source, command.step_external_id)
    run.agreed_on[interview.id] = interview
    if step is None:
        step = policy_steps.agree_step(
            session,
            interview,
            command.values,
            origin,
            source=run.source,
            external_id=command.step_external_id,
            due=_due_or_wait,
        )
        run.carried.add(step.id)
        run.created.append(step_subject(run.source, command.step_external_id))
        return
    if step.interview_id != interview.id:
        owner = session.get(Interview, step.interview_id)
        raise Refused(
            f"next step {command.step_external_id!r} belongs to interview "
            f"{owner.external_id if owner else step.interview_id!r}, not to "
            f"{command.interview_external_id!r}: a step cannot move to another interview"
        )
    run.carried.add(step.id)
    values = {k: v for k, v in command.values.items() if k in COMMITMENT_FIELDS}
    policy_steps.agree_again(session, interview, step, values, origin)


def _settle_policy_steps(session: Session, run: _Run) -> None:
    """Deadline policies, rules 2 and 3, once all of a delivery's commands are applied."""
    for interview in {**run.named, **run.agreed_on, **run.completed}.values():
        policy_steps.settle_policy_step(
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
    occurred_at: datetime,
    reason: str | None = None,
) -> None:
    step = _step_or_pending(session, run, external_id)
    ledger.change(session, step, kind, values, run.origin(occurred_at), reason=reason)


def _apply_command(session: Session, run: _Run, command: Command) -> None:
    match command:
        case UpsertInterview():
            _upsert_interview(session, run, command)
            _learn_owners(session, run, command)
        case AgreeStep():
            _agree_step(session, run, command)
        case UpdateStep():
            _change_step(
                session,
                run,
                command.step_external_id,
                TimelineKind.updated,
                command.values,
                command.occurred_at,
                command.reason,
            )
        case CompleteStep():
            _change_step(
                session,
                run,
                command.step_external_id,
                TimelineKind.completed,
                {"outcome": command.outcome},
                command.occurred_at,
            )
        case CancelStep():
            _change_step(
                session,
                run,
                command.step_external_id,
                TimelineKind.cancelled,
                {},
                command.occurred_at,
                command.reason,
            )
        case RecordContact():
            interview = _interview_or_pending(session, run, command.interview_external_id)
            ledger.record_contact(
                session,
                interview,
                command.direction,
                command.channel,
                command.note,
                run.origin(command.occurred_at),
            )
        case CancelInterview():
            interview = _interview_or_pending(session, run, command.external_id)
            origin = run.origin(command.occurred_at)
            if interview.status != InterviewStatus.cancelled:
                before = _facts(interview)
                cancelled = {"status": InterviewStatus.cancelled.value}
                ledger.record_interview_change(session, interview, cancelled, origin)
                _facts_known(run, interview, before)
            _cancel_open_steps(
                session, [interview.id], command.reason, origin, company_owed_only=False
            )
        case SetCandidateStage():
            origin = run.origin(command.occurred_at)
            for interview in _candidate_interviews(session, run, command.candidate_external_id):
                before = _facts(interview)
                ledger.record_interview_change(session, interview, {"stage": command.stage}, origin)
                _facts_known(run, interview, before)
        case NamePeople():
            people = people_of(command.people)
            tiebreak = run.delivery.delivery_key
            learn_owners(session, run.source, people, command.occurred_at, tiebreak, run.now)
        case CloseCandidate():
            interviews = _candidate_interviews(session, run, command.candidate_external_id)
            _cancel_open_steps(
                session,
                [i.id for i in interviews],
                command.reason,
                run.origin(command.occurred_at),
                company_owed_only=True,
            )


def apply_delivery(
    session: Session, delivery: Delivery, mapped: Mapped, now: datetime
) -> list[str]:
    """Apply one delivery's commands, or none of them; returns the subjects it created.

    A delivery goes pending only while this transaction holds the lock of the subject it
    waits for (pending.py). The lock taken while looking is lost with the savepoint that
    is rolled back: it is taken again outside it, and the delivery is tried once more,
    since the subject may have been created in between.
    """
    with tracing.span("nextstep.delivery.apply", delivery_attributes(delivery)) as span:
        created = _apply_delivery(session, delivery, mapped, now)
        tracing.set_attributes(span, {"nextstep.delivery.result": delivery.result})
        return created


def delivery_attributes(delivery: Delivery) -> dict[str, str]:
    """What a delivery's apply span says about it."""
    return {
        "nextstep.delivery.id": str(delivery.id),
        "nextstep.delivery.source": delivery.source,
        "nextstep.delivery.key": delivery.delivery_key,
    }


def _apply_delivery(
    session: Session, delivery: Delivery, mapped: Mapped, now: datetime
) -> list[str]:
    held: set[str] = set()
    while True:
        run = _Run(delivery=delivery, now=now)
        try:
            with session.begin_nested():
                for command in mapped.commands:
                    _apply_command(session, run, command)
                with tracing.span("nextstep.deadline_policies"):
                    _settle_policy_steps(session, run)
        except (Refused, DeadlineError) as refused:
            delivery.result, delivery.subject = DeliveryResult.rejected, None
            delivery.error = str(refused)[:2000]
            session.add(delivery)
            return []
        except Pending as pending:
            if pending.subject in held or not locks_subjects(session):
                delivery.result, delivery.subject = DeliveryResult.pending, pending.subject
                session.add(delivery)
                return []
            lock_subjects(session, pending.subject)
            held.add(pending.subject)
            continue
        delivery.result, delivery.subject, delivery.applied_at = DeliveryResult.applied, None, now
        session.add(delivery)
        return run.created


def apply_and_release(session: Session, delivery: Delivery, mapped: Mapped, now: datetime) -> None:
    """Apply a delivery, then whatever was waiting for the subjects it created."""
    release_pending(session, apply_delivery(session, delivery, mapped, now), now)


def release_pending(session: Session, created: list[str], now: datetime) -> None:
    """Apply the deliveries that were waiting for the subjects just created.

    Subject by subject in the order they were created, each one's deliveries in event
    order; one query per round of subjects. A delivery applied here cannot start waiting
    for a subject of the same round (they all exist), so the round's query sees what a
    query per subject would.
    """
    subjects = list(created)
    while subjects:
        lock_subjects(session, *subjects)
        rank = {subject: index for index, subject in enumerate(subjects)}
        waiting = session.exec(
            select(Delivery)
            .where(col(Delivery.result) == PENDING, col(Delivery.subject).in_(subjects))
            .order_by(col(Delivery.occurred_at), col(Delivery.delivery_key))
            .with_for_update()
        ).all()
        subjects = []
        for delivery in sorted(waiting, key=lambda d: rank[d.subject or ""]):
            mapped = map_delivery(delivery.kind, delivery.body, delivery.received_at)
            subjects += apply_delivery(session, delivery, mapped, now)

"""The transactional outbox: the messages and reminders of a change to a step, written beside it.

Every change to a step goes through the ledger (``app.commitments.ledger``), which hands it
to the publisher installed at start-up (``install``, below; see ``app.commitments.changes``)
in the same transaction: one message per enabled endpoint that takes the change's type, and
the step's reminders rescheduled (``reminders.py``). A change that rolls back takes its
messages and reminders with it; one that commits cannot lose them. The worker
(``app.outbound.worker``) sends the messages and fires the reminders later (``firing.py``).
"""

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from app import tracing
from app.commitments.changes import StepState, install_publisher, step_state
from app.commitments.clock import Clock, clock_columns, clock_from
from app.commitments.rows import commitment_item, commitment_out, commitment_out_columns
from app.commitments.schemas import CommitmentOut
from app.models import Commitment, CommitmentStatus, Interview
from app.models.outbound import (
    Endpoint,
    EventType,
    Message,
    MessageChannel,
    MessageStatus,
    Reminder,
)
from app.outbound import payloads
from app.outbound.enabled import Subscriber, enabled_rules, is_idle, subscribers
from app.outbound.reminders import schedule, settle_scheduled


def enqueue(
    session: Session,
    endpoint: Endpoint,
    type_: EventType,
    data: dict[str, Any],
    now: datetime,
    *,
    commitment_id: uuid.UUID | None = None,
    reminder_id: uuid.UUID | None = None,
) -> Message:
    """One pending message to ``endpoint``, due now. Does not commit."""
    message = Message(**message_values(endpoint, type_, data, now, commitment_id, reminder_id))
    session.add(message)
    return message


def end_pending(
    session: Session, endpoint_id: uuid.UUID, status: MessageStatus, now: datetime
) -> None:
    """End every pending message to an endpoint with ``status``: cancelled when the endpoint
    is deleted, failed when it answered 410 Gone."""
    session.exec(
        update(Message)
        .where(
            col(Message.endpoint_id) == endpoint_id,
            col(Message.status) == MessageStatus.pending,
        )
        .values(status=status, next_attempt_at=None, updated_at=now)
    )


def message_values(
    endpoint: Endpoint | Subscriber,
    type_: EventType,
    data: dict[str, Any],
    now: datetime,
    commitment_id: uuid.UUID | None,
    reminder_id: uuid.UUID | None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "endpoint_id": endpoint.id,
        # An endpoint's kind is its messages' channel (webhook or slack).
        "channel": MessageChannel(endpoint.kind).value,
        "recipient": None,
        "type": type_.value,
        "commitment_id": commitment_id,
        "reminder_id": reminder_id,
        "body": payloads.body_for(endpoint.kind, type_, data, now),
        "status": MessageStatus.pending.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "trace_context": tracing.message_traceparent(commitment_id),
    }


class Change(NamedTuple):
    """One message-worthy event about a step, for ``publish``."""

    type: EventType
    commitment: Commitment
    interview: Interview
    reminder: Reminder | None = None


_MESSAGE_TABLE = SQLModel.metadata.tables[Message.__tablename__]


def publish(session: Session, changes: Sequence[Change], now: datetime) -> set[int]:
    """The messages of ``changes`` to every enabled endpoint that takes their type, written
    in one statement; the waiting clocks they show are read in one statement. Returns the
    positions of the changes that some endpoint took."""
    wanted = [(n, c, subscribers(session, c.type)) for n, c in enumerate(changes)]
    wanted = [(n, c, endpoints) for n, c, endpoints in wanted if endpoints]
    if not wanted:
        return set()
    session.flush()  # the clocks read what this transaction wrote
    clocks = waiting_clocks(session, {c.interview.id for _n, c, _e in wanted}, now)
    rows = []
    for _n, change, endpoints in wanted:
        reminder = change.reminder
        data = payloads.step_data(
            commitment_out(change.commitment, now),
            payloads.interview_summary(change.interview, clocks[change.interview.id]),
            rule_id=reminder.rule_id if reminder is not None else None,
            escalate_to=reminder.escalate_to if reminder is not None else None,
        )
        reminder_id = reminder.id if reminder is not None else None
        rows += _messages(endpoints, change.type, data, now, change.commitment.id, reminder_id)
    _write(session, rows)
    return {n for n, _c, _e in wanted}


def _write(session: Session, rows: list[dict[str, Any]]) -> None:
    # The table, not the model: a plain multi-row INSERT, without the ORM's bulk machinery
    # (a sixth of firing a batch of reminders; bench/RESULTS.md, "Outbound"). Not
    # ``db.insert_rows``: its COPY is not a statement that traces show, and a change's trace
    # shows its messages written (tests/test_tracing.py).
    if rows:
        session.execute(insert(_MESSAGE_TABLE), rows)


def _messages(
    endpoints: Sequence[Subscriber],
    type_: EventType,
    data: dict[str, Any],
    now: datetime,
    commitment_id: uuid.UUID | None,
    reminder_id: uuid.UUID | None,
) -> list[dict[str, Any]]:
    return [
        message_values(endpoint, type_, data, now, commitment_id, reminder_id)
        for endpoint in endpoints
    ]


@cache
def _clocks_statement() -> Select[Any]:
    # Built once: building the clock's correlated subqueries cost more than running them.
    i = Interview
    return sa_select(
        col(i.id),
        col(i.ends_at),
        col(i.completed_at),
        *clock_columns(col(i.id), col(i.ends_at), col(i.completed_at)),
    ).where(col(i.id).in_(bindparam("ids", expanding=True)))


def waiting_clocks(
    session: Session, interview_ids: Iterable[uuid.UUID], now: datetime
) -> dict[uuid.UUID, Clock]:
    """The waiting clocks of many interviews at ``now``, in one statement."""
    params = {"as_of": now, "ids": list(set(interview_ids))}
    rows = session.connection().execute(_clocks_statement(), params)
    return {row.id: clock_from(row.ends_at, row.completed_at, row._mapping) for row in rows}


def _change_type(before: StepState | None, after: StepState) -> EventType | None:
    if before is None:
        return EventType.agreed
    if before == after:
        return None
    if before.status == CommitmentStatus.open and after.status == CommitmentStatus.done:
        return EventType.completed
    if before.status == CommitmentStatus.open and after.status == CommitmentStatus.cancelled:
        return EventType.cancelled
    return EventType.updated


def _reschedule_reason(before: StepState, after: StepState) -> str | None:
    """Why the step's scheduled reminders no longer hold, or None when they still do."""
    if after.status != CommitmentStatus.open:
        return f"step {after.status}"
    if before.status != CommitmentStatus.open:
        return "step reopened"
    if after.due_at != before.due_at:
        return "due time changed"
    if after.owner_id != before.owner_id:
        return "owner changed"
    if (after.owner_role, after.owed_by) != (before.owner_role, before.owed_by):
        return "step changed"
    return None


def step_changed(
    session: Session, commitment: Commitment, before: StepState | None, now: datetime
) -> None:
    """Write the messages and reminders of a change to ``commitment`` (``before``: its state
    before the change; None for a new step). Called by the ledger after every rebuild."""
    if is_idle(session):
        return
    after = step_state(commitment)
    type_ = _change_type(before, after)
    if type_ is None:
        return
    interview = session.get(Interview, commitment.interview_id)
    assert interview is not None  # the foreign key
    publish(session, [Change(type_, commitment, interview)], now)
    if before is None:
        schedule(session, commitment, interview, enabled_rules(session), now)
        return
    reason = _reschedule_reason(before, after)
    if reason is not None:
        settle_scheduled(session, [commitment.id], reason, now)
        schedule(session, commitment, interview, enabled_rules(session), now)


@cache
def _agreed_statement() -> Select[Any]:
    # What the ``agreed`` message of a new step shows, with its interview's waiting clock,
    # in one statement of plain rows (the steps and interviews are not loaded as models).
    c, i = Commitment, Interview
    return (
        sa_select(
            *commitment_out_columns(c),
            *(col(getattr(i, name)).label(f"i_{name}") for name in payloads.INTERVIEW_FIELDS),
            *clock_columns(col(i.id), col(i.ends_at), col(i.completed_at)),
            col(i.ends_at).label("i_ends_at"),
            col(i.completed_at).label("i_completed_at"),
        )
        .join(i, col(i.id) == col(c.interview_id))
        .where(col(c.id).in_(bindparam("ids", expanding=True)))
    )


def _publish_agreed(session: Session, commitment_ids: Sequence[uuid.UUID], now: datetime) -> None:
    """``publish`` of the ``agreed`` changes of new steps, from one read of the steps, their
    interviews and clocks; one statement writes the messages."""
    endpoints = subscribers(session, EventType.agreed)
    if not endpoints:
        return
    session.flush()  # the clocks read what this transaction wrote
    params = {"as_of": now, "ids": list(commitment_ids)}
    rows = []
    for row in session.connection().execute(_agreed_statement(), params):
        fields = row._mapping
        clock = clock_from(fields["i_ends_at"], fields["i_completed_at"], fields)
        interview = {name: fields[f"i_{name}"] for name in payloads.INTERVIEW_FIELDS}
        data = payloads.step_data(
            CommitmentOut.model_validate(commitment_item(fields, now)),
            payloads.interview_summary_of(interview, clock),
        )
        rows += _messages(endpoints, EventType.agreed, data, now, fields["id"], None)
    _write(session, rows)


def steps_inserted(session: Session, commitment_ids: Sequence[uuid.UUID], now: datetime) -> None:
    """``step_changed`` for new steps written as plain rows (the bulk ingestion path): their
    messages from one read and one write; their reminders when some rule is enabled."""
    if not commitment_ids or is_idle(session):
        return
    _publish_agreed(session, commitment_ids, now)
    rules = enabled_rules(session)
    if rules:
        statement = (
            select(Commitment, Interview)
            .join(Interview, col(Interview.id) == col(Commitment.interview_id))
            .where(col(Commitment.id).in_(commitment_ids))
        )
        for commitment, interview in session.exec(statement).all():
            schedule(session, commitment, interview, rules, now)


class _Outbox:
    """The outbox as the ledger's publisher of step changes."""

    def step_changed(
        self, session: Session, commitment: Commitment, before: StepState | None, now: datetime
    ) -> None:
        step_changed(session, commitment, before, now)

    def steps_inserted(
        self, session: Session, commitment_ids: Sequence[uuid.UUID], now: datetime
    ) -> None:
        steps_inserted(session, commitment_ids, now)


def install() -> None:
    """Publish every change of a step through the outbox: done once where a process starts."""
    install_publisher(_Outbox())

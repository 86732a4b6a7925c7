"""Firing due reminders: the messages of each whose step still stands as it was scheduled
for; the others are skipped with the reason.

A batch is read in one statement as plain rows (the reminder, its step, the step's
interview, its rule and the interview's waiting clock), its webhook messages written with
one ``insert_rows`` and the reminders settled with one UPDATE per outcome: firing was
mostly round trips and ORM loading, as costly as sending (bench/RESULTS.md, "Firing off
the ORM"). E-mails (rules with ``email_owner``) are rendered per message by mail.py, from
the steps loaded as models: a slower path, taken only for the reminders that e-mail.
"""

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, bindparam, literal_column, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from app.commitments.clock import clock_columns, clock_from
from app.commitments.rows import COMMITMENT_FIELDS, Fields, commitment_item
from app.commitments.schemas import CommitmentOut
from app.db import insert_rows
from app.models import Commitment, CommitmentStatus, Interview, UTCDateTime
from app.models.outbound import (
    EventType,
    Message,
    Reminder,
    ReminderRule,
    ReminderState,
)
from app.outbound import payloads
from app.outbound.enabled import subscribers
from app.outbound.mail import email_reminders
from app.outbound.outbox import Change, message_values

_MESSAGE_TABLE = SQLModel.metadata.tables[Message.__tablename__]
_REMINDER_TABLE = SQLModel.metadata.tables[Reminder.__tablename__]
# The interview's columns a message shows, and its waiting clock's, read under these labels
# beside the step's.
_INTERVIEW_FIELDS = (*payloads.INTERVIEW_FIELDS, "ends_at", "completed_at")


@cache
def _due_statement() -> Select[Any]:
    """The due reminders, oldest first, locked (others' locked ones skipped), each with
    what firing it needs; the step, interview and rule are NULL when gone."""
    r, c, i, rule = Reminder, Commitment, Interview, ReminderRule
    columns: list[Any] = [
        col(r.id).label("r_id"),
        col(r.rule_id).label("r_rule_id"),
        col(r.rule_version).label("r_rule_version"),
        col(r.type).label("r_type"),
        col(r.escalate_to).label("r_escalate_to"),
        col(r.due_at).label("r_due_at"),
        col(r.owner_id).label("r_owner_id"),
        *(col(getattr(c, name)).label(name) for name in COMMITMENT_FIELDS),
        *(col(getattr(i, name)).label(f"i_{name}") for name in _INTERVIEW_FIELDS),
        col(rule.enabled).label("rule_enabled"),
        col(rule.version).label("rule_version"),
        col(rule.email_owner).label("rule_email_owner"),
        *clock_columns(col(i.id), col(i.ends_at), col(i.completed_at)),
    ]
    return (
        sa_select(*columns)
        .select_from(r)
        .outerjoin(c, col(c.id) == col(r.commitment_id))
        .outerjoin(i, col(i.id) == col(c.interview_id))
        .outerjoin(rule, col(rule.id) == col(r.rule_id))
        # A literal, so that PostgreSQL uses the partial index of scheduled reminders.
        .where(col(r.state) == literal_column("'scheduled'"))
        .where(col(r.fire_at) <= bindparam("now", type_=UTCDateTime))
        .order_by(col(r.fire_at))
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(of=_REMINDER_TABLE, skip_locked=True)
    )


def _why_not(row: Fields) -> str | None:
    """Why a due reminder must not fire now, or None when it must."""
    if row["id"] is None:
        return "step deleted"
    if row["status"] != CommitmentStatus.open:
        return f"step {row['status']}"
    if row["due_at"] != row["r_due_at"]:
        return "due time changed"
    if row["owner_id"] != row["r_owner_id"]:
        return "owner changed"
    if row["rule_enabled"] is None:
        return "rule deleted"
    if not row["rule_enabled"]:
        return "rule disabled"
    if row["rule_version"] != row["r_rule_version"]:
        return "rule changed"
    return None


def _message_data(row: Fields, now: datetime) -> dict[str, Any]:
    """What a message about the firing of the reminder of ``row`` says."""
    interview = {name: row[f"i_{name}"] for name in _INTERVIEW_FIELDS}
    clock = clock_from(interview["ends_at"], interview["completed_at"], row)
    return payloads.step_data(
        CommitmentOut.model_validate(commitment_item(row, now)),
        payloads.interview_summary_of(interview, clock),
        rule_id=row["r_rule_id"],
        escalate_to=row["r_escalate_to"],
    )


def _webhook_messages(
    session: Session, firing: Sequence[Fields], now: datetime
) -> tuple[list[dict[str, Any]], set[int]]:
    """The messages of the firings to every enabled endpoint that takes their type, and the
    positions of the firings some endpoint took."""
    rows: list[dict[str, Any]] = []
    taken: set[int] = set()
    for n, row in enumerate(firing):
        type_ = EventType(row["r_type"])
        endpoints = subscribers(session, type_)
        if not endpoints:
            continue
        taken.add(n)
        data = _message_data(row, now)
        rows += [
            message_values(endpoint, type_, data, now, row["id"], row["r_id"])
            for endpoint in endpoints
        ]
    return rows, taken


def _emailed(session: Session, firing: Sequence[Fields], now: datetime) -> set[int]:
    """The e-mails of the firings whose rule e-mails the owner (mail.py, from the steps,
    interviews and reminders as models); the positions of the firings e-mailed."""
    emailing = {row["r_id"]: n for n, row in enumerate(firing) if row["rule_email_owner"]}
    if not emailing:
        return set()
    statement = (
        select(Reminder, Commitment, Interview)
        .join(Commitment, col(Commitment.id) == col(Reminder.commitment_id))
        .join(Interview, col(Interview.id) == col(Commitment.interview_id))
        .where(col(Reminder.id).in_(list(emailing)))
    )
    changes = {
        emailing[r.id]: Change(EventType(r.type), c, i, r) for r, c, i in session.exec(statement)
    }
    return email_reminders(session, sorted(changes.items()), now)


def fire(session: Session, now: datetime, limit: int) -> int:
    """Fire up to ``limit`` due reminders: the messages of each whose step still stands as
    it was scheduled for; each reminder becomes ``sent`` or ``skipped`` with its reason.
    How many were due. Does not commit."""
    params = {"now": now, "limit": limit, "as_of": now}
    due: list[Fields] = [
        row._mapping for row in session.connection().execute(_due_statement(), params)
    ]
    outcomes: dict[uuid.UUID, tuple[ReminderState, str | None]] = {}
    firing = []
    for row in due:
        reason = _why_not(row)
        if reason is None:
            firing.append(row)
            outcomes[row["r_id"]] = (ReminderState.sent, None)
        else:
            outcomes[row["r_id"]] = (ReminderState.skipped, reason)
    messages, taken = _webhook_messages(session, firing, now)
    insert_rows(session, _MESSAGE_TABLE, messages)
    taken |= _emailed(session, firing, now)
    for n, row in enumerate(firing):
        if n not in taken:  # sent to nobody: say so
            outcomes[row["r_id"]] = (
                ReminderState.sent,
                f"no enabled endpoint takes {row['r_type']}",
            )
    _settle(session, outcomes, now)
    return len(due)


def _settle(
    session: Session, outcomes: Mapping[uuid.UUID, tuple[ReminderState, str | None]], now: datetime
) -> None:
    """One UPDATE per outcome (most batches have one: all sent)."""
    by_outcome: dict[tuple[ReminderState, str | None], list[uuid.UUID]] = defaultdict(list)
    for id_, outcome in outcomes.items():
        by_outcome[outcome].append(id_)
    for (state, reason), ids in by_outcome.items():
        session.execute(
            update(_REMINDER_TABLE)
            .where(col(Reminder.id).in_(ids))
            .values(state=state.value, reason=reason, settled_at=now)
        )

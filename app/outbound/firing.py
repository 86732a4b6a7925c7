"""Firing due reminders: the messages of each whose step still stands as it was scheduled
for; the others are skipped with the reason."""

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.models import Commitment, CommitmentStatus, Interview
from app.models.outbound import EventType, Reminder, ReminderRule, ReminderState
from app.outbound.mail import email_reminders
from app.outbound.outbox import Change, publish


def _why_not(
    reminder: Reminder, commitment: Commitment | None, rule: ReminderRule | None
) -> str | None:
    """Why a due reminder must not fire now, or None when it must."""
    if commitment is None:
        return "step deleted"
    if commitment.status != CommitmentStatus.open:
        return f"step {commitment.status}"
    if commitment.due_at != reminder.due_at:
        return "due time changed"
    if commitment.owner_id != reminder.owner_id:
        return "owner changed"
    if rule is None:
        return "rule deleted"
    if not rule.enabled:
        return "rule disabled"
    if rule.version != reminder.rule_version:
        return "rule changed"
    return None


def _by_id(session: Session, model: Any, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = session.exec(select(model).where(col(model.id).in_(set(ids))))
    return {row.id: row for row in rows}


def _emailing(
    firing: Sequence[Change], rules: dict[uuid.UUID, ReminderRule]
) -> Iterable[tuple[int, Change]]:
    """The firings (and their positions) whose rule e-mails the owner."""
    for n, change in enumerate(firing):
        if change.reminder is not None and rules[change.reminder.rule_id].email_owner:
            yield n, change


def fire(session: Session, reminders: Sequence[Reminder], now: datetime) -> None:
    """Due reminders: the messages of each whose step still stands as it was scheduled for,
    written with one INSERT; each reminder becomes ``sent`` or ``skipped`` with its reason."""
    with session.no_autoflush:
        commitments = _by_id(session, Commitment, (r.commitment_id for r in reminders))
        rules = _by_id(session, ReminderRule, (r.rule_id for r in reminders))
        interview_ids = {c.interview_id for c in commitments.values()}
        interviews = _by_id(session, Interview, interview_ids)
    firing: list[Change] = []
    settled: dict[uuid.UUID, dict[str, Any]] = {}
    for reminder in reminders:
        commitment = commitments.get(reminder.commitment_id)
        reason = _why_not(reminder, commitment, rules.get(reminder.rule_id))
        state = ReminderState.skipped if reason is not None else ReminderState.sent
        settled[reminder.id] = {
            "id": reminder.id,
            "state": state,
            "reason": reason,
            "settled_at": now,
        }
        if reason is None and commitment is not None:
            interview = interviews[commitment.interview_id]
            firing.append(Change(EventType(reminder.type), commitment, interview, reminder))
    taken = publish(session, firing, now)
    taken |= email_reminders(session, list(_emailing(firing, rules)), now)
    for n, change in enumerate(firing):
        if n not in taken:  # sent to nobody: say so
            assert change.reminder is not None
            reason = f"no enabled endpoint takes {change.type.value}"
            settled[change.reminder.id]["reason"] = reason
    session.execute(update(Reminder), list(settled.values()))

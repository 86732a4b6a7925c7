"""Reminders: when each step of a rule fires for a step, scheduled beside the change that
calls for them and skipped when the step or the rule no longer stands as it was.

Reminders keep the due time and owner they were scheduled for; when they fire
(``firing.fire``), each step is checked again.
"""

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any, NamedTuple

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.deadlines import calendar as deadlines
from app.deadlines.engine import NoOpenTimeError, is_open, next_opening
from app.models import Commitment, CommitmentStatus, Interview
from app.models.outbound import Reminder, ReminderRule, ReminderState
from app.outbound.enabled import quiet_calendar
from app.outbound.offsets import stored_offset


# Rules and their steps.
@cache
def step_offset(text: str) -> timedelta:
    """A step's offset as the rule stored it (normalised when the rule was saved)."""
    return stored_offset(text)


def rule_matches(rule: ReminderRule, commitment: Commitment, interview: Interview) -> bool:
    match = rule.match
    if commitment.owed_by != (match.get("owed_by") or "company"):
        return False
    if match.get("owner_role") and commitment.owner_role != match["owner_role"]:
        return False
    if match.get("source") and interview.source != match["source"]:
        return False
    if match.get("job_id") and interview.job_external_id != match["job_id"]:
        return False
    stage = match.get("stage")
    return not stage or (interview.stage or "").casefold() == stage.casefold()


def _after_quiet_hours(calendar: deadlines.Calendar | None, at: datetime) -> datetime:
    if calendar is None or is_open(calendar, at):
        return at
    try:
        return next_opening(calendar, at)
    except NoOpenTimeError:  # a calendar that never opens again: no quiet hours to wait for
        return at


class _Planned(NamedTuple):
    fire_at: datetime
    step: int
    definition: dict[str, Any]


def plan(
    rule: ReminderRule, due_at: datetime, quiet: Callable[[datetime], datetime]
) -> list[_Planned]:
    """When each step of ``rule`` fires for a step due at ``due_at``."""
    planned = []
    for index, step in enumerate(rule.steps):
        at = due_at + step_offset(step["offset"])
        planned.append(_Planned(quiet(at) if rule.quiet_hours else at, index, step))
    return planned


def schedule(
    session: Session,
    commitment: Commitment,
    interview: Interview,
    rules: Iterable[ReminderRule],
    now: datetime,
    *,
    past_reason: str = "collapsed",
    fire_latest_past: bool = True,
) -> None:
    """Schedule the reminders of every rule in ``rules`` that matches the (open) step.

    Steps of a rule that are already past: only the latest fires (at once); the others are
    skipped with ``past_reason``. A rule that is new or changed fires none of them
    (``fire_latest_past=False``): it does not reach back.
    """
    if commitment.status != CommitmentStatus.open:
        return
    matching = [rule for rule in rules if rule_matches(rule, commitment, interview)]
    quiet = any(rule.quiet_hours for rule in matching)
    calendar = quiet_calendar(session, commitment.owner_id) if quiet else None
    for rule in matching:
        planned = plan(rule, commitment.due_at, partial(_after_quiet_hours, calendar))
        past = [p for p in planned if p.fire_at <= now]
        firing = max(past) if past and fire_latest_past else None
        for p in planned:
            skipped = p.fire_at <= now and p != firing
            session.add(
                Reminder(
                    commitment_id=commitment.id,
                    rule_id=rule.id,
                    rule_version=rule.version,
                    step=p.step,
                    type=p.definition["type"],
                    escalate_to=p.definition.get("to"),
                    due_at=commitment.due_at,
                    owner_id=commitment.owner_id,
                    fire_at=p.fire_at,
                    state=ReminderState.skipped if skipped else ReminderState.scheduled,
                    reason=past_reason if skipped else None,
                    created_at=now,
                    settled_at=now if skipped else None,
                )
            )


def settle_scheduled(
    session: Session,
    commitment_ids: Sequence[uuid.UUID],
    reason: str,
    now: datetime,
    *,
    rule_id: uuid.UUID | None = None,
) -> None:
    """Skip the reminders still scheduled for these steps (of one rule, if given)."""
    statement = update(Reminder).where(
        col(Reminder.state) == ReminderState.scheduled,
    )
    if commitment_ids:
        statement = statement.where(col(Reminder.commitment_id).in_(commitment_ids))
    if rule_id is not None:
        statement = statement.where(col(Reminder.rule_id) == rule_id)
    session.exec(statement.values(state=ReminderState.skipped, reason=reason, settled_at=now))


def rule_changed(session: Session, rule: ReminderRule, now: datetime) -> None:
    """After a rule is created or changed: its scheduled reminders are skipped and it is
    scheduled again for every open step it matches, from now on (it does not reach back:
    steps already past are skipped, not fired)."""
    session.flush()
    settle_scheduled(session, [], "rule changed", now, rule_id=rule.id)
    if not rule.enabled:
        return
    statement = (
        select(Commitment, Interview)
        .join(Interview, col(Interview.id) == col(Commitment.interview_id))
        .where(col(Commitment.status) == CommitmentStatus.open)
    )
    for commitment, interview in session.exec(statement).all():
        schedule(
            session,
            commitment,
            interview,
            [rule],
            now,
            past_reason="past when the rule took effect",
            fire_latest_past=False,
        )


def rule_removed(session: Session, rule_id: uuid.UUID, now: datetime) -> None:
    """A rule is deleted: its scheduled reminders are skipped."""
    settle_scheduled(session, [], "rule deleted", now, rule_id=rule_id)

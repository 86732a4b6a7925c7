"""Reminders: when each step of a rule fires for a step, scheduled beside the change that
calls for them and skipped when the step or the rule no longer stands as it was.

Reminders keep the due time and owner they were scheduled for; when they fire
(``firing.fire``), each step is checked again.
"""

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import Any, NamedTuple, Protocol

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import Session, SQLModel, col, select

from app.db import insert_rows
from app.deadlines import calendar as deadlines
from app.deadlines.engine import NoOpenTimeError, next_opening
from app.models import Commitment, CommitmentStatus, Interview
from app.models.outbound import Reminder, ReminderRule, ReminderState
from app.outbound.enabled import prefetch_quiet_calendars, quiet_calendar
from app.outbound.offsets import stored_offset


# Rules and their steps.
@cache
def step_offset(text: str) -> timedelta:
    """A step's offset as the rule stored it (normalised when the rule was saved)."""
    return stored_offset(text)


class StepFacts(Protocol):
    """What scheduling reads of a step: a Commitment, or a row of these columns."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def owner_id(self) -> str: ...
    @property
    def owner_role(self) -> str: ...
    @property
    def owed_by(self) -> str: ...
    @property
    def due_at(self) -> datetime: ...


class InterviewFacts(Protocol):
    """What a rule's match reads of the step's interview."""

    @property
    def source(self) -> str: ...
    @property
    def job_external_id(self) -> str | None: ...
    @property
    def stage(self) -> str | None: ...


class _StepRow(NamedTuple):
    id: uuid.UUID
    status: str
    owner_id: str
    owner_role: str
    owed_by: str
    due_at: datetime


class _InterviewRow(NamedTuple):
    source: str
    job_external_id: str | None
    stage: str | None


def rule_matches(rule: ReminderRule, commitment: StepFacts, interview: InterviewFacts) -> bool:
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
    if calendar is None:
        return at
    try:
        # ``at`` itself when open (tests/test_deadline_engine.py holds it): asking
        # ``is_open`` first cost twice the rest (bench/rule_schedule.py).
        return next_opening(calendar, at)
    except NoOpenTimeError:  # a calendar that never opens again: no quiet hours to wait for
        return at
    except (OverflowError, ValueError):  # at the end of the calendar: no later opening
        return at


# The first and last instants a reminder can be written down at.
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _fire_at(due_at: datetime, offset: timedelta) -> datetime:
    """``due_at`` + ``offset``, held within the years 1 to 9999: a reminder before year 1 is
    long past (it is skipped or fires at once, as any past one), one after 9999 never comes."""
    try:
        return due_at + offset
    except OverflowError:
        return _EARLIEST if offset < timedelta(0) else _LATEST


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
        at = _fire_at(due_at, step_offset(step["offset"]))
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
    rows = _reminder_rows(
        session,
        commitment,
        interview,
        rules,
        now,
        past_reason=past_reason,
        fire_latest_past=fire_latest_past,
    )
    for row in rows:
        session.add(Reminder(**row))


def _reminder_rows(
    session: Session,
    commitment: StepFacts,
    interview: InterviewFacts,
    rules: Iterable[ReminderRule],
    now: datetime,
    *,
    past_reason: str,
    fire_latest_past: bool,
) -> list[dict[str, Any]]:
    """The reminders ``schedule`` writes, as rows."""
    if commitment.status != CommitmentStatus.open:
        return []
    matching = [rule for rule in rules if rule_matches(rule, commitment, interview)]
    quiet = any(rule.quiet_hours for rule in matching)
    calendar = quiet_calendar(session, commitment.owner_id) if quiet else None
    rows = []
    for rule in matching:
        planned = plan(rule, commitment.due_at, partial(_after_quiet_hours, calendar))
        past = [p for p in planned if p.fire_at <= now]
        firing = max(past) if past and fire_latest_past else None
        for p in planned:
            skipped = p.fire_at <= now and p != firing
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "commitment_id": commitment.id,
                    "rule_id": rule.id,
                    "rule_version": rule.version,
                    "step": p.step,
                    "type": p.definition["type"],
                    "escalate_to": p.definition.get("to"),
                    "due_at": commitment.due_at,
                    "owner_id": commitment.owner_id,
                    "fire_at": p.fire_at,
                    "state": ReminderState.skipped if skipped else ReminderState.scheduled,
                    "reason": past_reason if skipped else None,
                    "created_at": now,
                    "settled_at": now if skipped else None,
                }
            )
    return rows


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
    """After a rule is created or changed: the worker is to schedule it for the open steps
    that exist (``schedule_changed_rule``), so that the answer does not wait for them.
    Steps agreed or changed meanwhile are scheduled by their own writes, as always."""
    rule.schedule_pending, rule.schedule_after = True, None
    session.add(rule)
    session.flush()


def schedule_changed_rule(session: Session, limit: int) -> int:
    """One batch of the scheduling that created or changed rules need: how many steps and
    reminders it went through, 0 only when no rule waits any more. A rule whose last batch
    finds nothing left is done, and the next one waiting is taken in the same call, so that a
    caller who stops at 0 leaves no rule behind."""
    while True:
        done = _schedule_one_rule(session, limit)
        if done is None:
            return 0
        if done:
            return done


def _schedule_one_rule(session: Session, limit: int) -> int | None:
    """One batch of one rule's scheduling; None when no rule waits for it.

    First its reminders scheduled under an earlier version are skipped ("rule changed";
    were one to come due first, it would be skipped when it fires anyway). Then the open
    steps it matches, in id order from where the last batch stopped, get their reminders
    as of the moment the rule took effect (it does not reach back: steps already past
    then are skipped, not fired), except those that already have them (a step written
    meanwhile is scheduled by that write). One rule at a time, locked, so that two workers
    never schedule the same steps.
    """
    rule = session.exec(
        select(ReminderRule)
        .where(col(ReminderRule.schedule_pending))
        .order_by(col(ReminderRule.updated_at), col(ReminderRule.id))
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if rule is None:
        return None
    effective = rule.updated_at
    old = (
        select(Reminder.id)
        .where(
            col(Reminder.rule_id) == rule.id,
            col(Reminder.state) == ReminderState.scheduled,
            col(Reminder.rule_version) < rule.version,
        )
        .limit(limit)
        .scalar_subquery()
    )
    settled = 0
    if rule.schedule_after is None:  # before the first step: no index serves this look-up
        settled = session.exec(
            update(Reminder)
            .where(col(Reminder.id).in_(old))
            .values(state=ReminderState.skipped, reason="rule changed", settled_at=effective)
        ).rowcount
        if settled >= limit:
            return settled
    if not rule.enabled:
        rule.schedule_pending = False
        session.add(rule)
        return settled
    # Columns, not entities: loading 5,000 ORM pairs per batch cost more than the rest.
    statement = (
        sa_select(
            *(getattr(Commitment, name) for name in _StepRow._fields),
            *(getattr(Interview, name) for name in _InterviewRow._fields),
        )
        .join(Interview, col(Interview.id) == col(Commitment.interview_id))
        .where(col(Commitment.status) == CommitmentStatus.open)
        .order_by(col(Commitment.id))
        .limit(limit)
    )
    if rule.schedule_after is not None:
        statement = statement.where(col(Commitment.id) > rule.schedule_after)
    split = len(_StepRow._fields)
    found = [
        (_StepRow(*row[:split]), _InterviewRow(*row[split:]))
        for row in session.execute(statement).all()
    ]
    # Steps written meanwhile were scheduled by their own writes: not twice. Looked up by
    # the batch's ids (the commitment index), which stays fast however many reminders exist.
    already = set(
        session.exec(
            select(Reminder.commitment_id).where(
                col(Reminder.commitment_id).in_([step.id for step, _ in found]),
                col(Reminder.rule_id) == rule.id,
                col(Reminder.rule_version) == rule.version,
            )
        )
    )
    if rule.quiet_hours:
        prefetch_quiet_calendars(session, (step.owner_id for step, _ in found))
    rows: list[dict[str, Any]] = []
    for step, interview in found:
        if step.id in already:
            continue
        rows += _reminder_rows(
            session,
            step,
            interview,
            [rule],
            effective,
            past_reason="past when the rule took effect",
            fire_latest_past=False,
        )
    # One statement on the driver (COPY on PostgreSQL), not the ORM's bulk insert
    # (measured in bench/RESULTS.md, "A rule over 100,000 open steps").
    insert_rows(session, SQLModel.metadata.tables["reminder"], rows)
    if len(found) < limit:
        rule.schedule_pending, rule.schedule_after = False, None
    else:
        rule.schedule_after = found[-1][0].id
    session.add(rule)
    return settled + len(found)


def rule_removed(session: Session, rule_id: uuid.UUID, now: datetime) -> None:
    """A rule is deleted: its scheduled reminders are skipped."""
    settle_scheduled(session, [], "rule deleted", now, rule_id=rule_id)

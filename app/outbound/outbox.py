"""The transactional outbox: messages and reminders written beside the change that causes them.

Every change to a step goes through ``ledger.rebuild_commitment``, which calls
``step_changed`` here in the same transaction: it writes one message per enabled endpoint
that takes the change's type, and rewrites the step's scheduled reminders. A change that
rolls back takes its messages and reminders with it; one that commits cannot lose them.
The worker (``app.outbound.worker``) sends the messages and fires the reminders later.

Reminders keep the due time and owner they were scheduled for; when they fire, ``fire``
checks each step again and sends nothing for a step that was done, re-dated or reassigned.
"""

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Select, bindparam, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from app import tracing
from app.commitments.clock import Clock, clock_columns, clock_from
from app.commitments.rows import commitment_out
from app.deadlines import calendar as deadlines
from app.deadlines.engine import NoOpenTimeError, is_open, next_opening
from app.deadlines.service import default_calendar, engine_calendar
from app.models import (
    Calendar,
    Commitment,
    CommitmentStatus,
    Interview,
    Owner,
)
from app.models.outbound import (
    Endpoint,
    EventType,
    Message,
    MessageStatus,
    Reminder,
    ReminderRule,
    ReminderState,
)
from app.outbound import payloads
from app.outbound.schemas import stored_offset


@dataclass
class _Looked:
    """What this transaction read of endpoints, rules and calendars: a batch of deliveries
    shares one transaction and reads them once."""

    transaction: object
    endpoints: list[Endpoint] | None = None
    rules: list[ReminderRule] | None = None
    calendars: dict[str, deadlines.Calendar | None] = field(default_factory=dict)


def _looked(session: Session) -> _Looked:
    transaction = session.get_transaction()
    looked = session.info.get("outbox")
    if not isinstance(looked, _Looked) or looked.transaction is not transaction:
        looked = session.info["outbox"] = _Looked(transaction)
    return looked


def enabled_endpoints(session: Session) -> list[Endpoint]:
    looked = _looked(session)
    if looked.endpoints is None:
        statement = select(Endpoint).where(col(Endpoint.enabled)).order_by(col(Endpoint.id))
        looked.endpoints = list(session.exec(statement).all())
    return looked.endpoints


def enabled_rules(session: Session) -> list[ReminderRule]:
    looked = _looked(session)
    if looked.rules is None:
        statement = (
            select(ReminderRule)
            .where(col(ReminderRule.enabled))
            .order_by(col(ReminderRule.position), col(ReminderRule.id))
        )
        looked.rules = list(session.exec(statement).all())
    return looked.rules


def _subscribers(session: Session, type_: EventType) -> list[Endpoint]:
    return [e for e in enabled_endpoints(session) if type_.value in e.event_types]


def is_idle(session: Session) -> bool:
    """Nothing to write for any change: no enabled endpoint and no enabled rule."""
    return not enabled_endpoints(session) and not enabled_rules(session)


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
    message = Message(**_message_values(endpoint, type_, data, now, commitment_id, reminder_id))
    session.add(message)
    return message


def _message_values(
    endpoint: Endpoint,
    type_: EventType,
    data: dict[str, Any],
    now: datetime,
    commitment_id: uuid.UUID | None,
    reminder_id: uuid.UUID | None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "endpoint_id": endpoint.id,
        "type": type_.value,
        "commitment_id": commitment_id,
        "reminder_id": reminder_id,
        "body": payloads.body_for(endpoint, type_, data, now),
        "status": MessageStatus.pending.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "trace_context": tracing.message_traceparent(commitment_id),
    }


class _Change(NamedTuple):
    """One message-worthy event about a step, for ``_publish``."""

    type: EventType
    commitment: Commitment
    interview: Interview
    reminder: Reminder | None = None


def _publish(session: Session, changes: Sequence[_Change], now: datetime) -> set[int]:
    """The messages of ``changes`` to every enabled endpoint that takes their type, written
    with one INSERT; the waiting clocks they show are read in one statement. Returns the
    positions of the changes that some endpoint took."""
    wanted = [(n, c, _subscribers(session, c.type)) for n, c in enumerate(changes)]
    wanted = [(n, c, endpoints) for n, c, endpoints in wanted if endpoints]
    if not wanted:
        return set()
    session.flush()  # the clocks read what this transaction wrote
    clocks = _clocks(session, {c.interview.id for _n, c, _e in wanted}, now)
    rows = []
    for _n, change, endpoints in wanted:
        reminder = change.reminder
        data = payloads.step_data(
            commitment_out(change.commitment, now),
            payloads.interview_summary(change.interview, clocks[change.interview.id]),
            rule_id=reminder.rule_id if reminder is not None else None,
            escalate_to=reminder.escalate_to if reminder is not None else None,
        )
        rows += [
            _message_values(
                endpoint,
                change.type,
                data,
                now,
                change.commitment.id,
                reminder.id if reminder is not None else None,
            )
            for endpoint in endpoints
        ]
    session.execute(insert(Message), rows)
    return {n for n, _c, _e in wanted}


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


def _clocks(
    session: Session, interview_ids: Iterable[uuid.UUID], now: datetime
) -> dict[uuid.UUID, Clock]:
    """The waiting clocks of many interviews at ``now``, in one statement."""
    params = {"as_of": now, "ids": list(set(interview_ids))}
    rows = session.connection().execute(_clocks_statement(), params)
    return {row.id: clock_from(row.ends_at, row.completed_at, row._mapping) for row in rows}


# What a step's messages and reminders depend on, before and after a change.
class Snapshot(NamedTuple):
    status: str
    due_at: datetime
    owner_id: str
    owner_role: str
    owed_by: str
    version: int


def snapshot(commitment: Commitment) -> Snapshot:
    return Snapshot(
        commitment.status,
        commitment.due_at,
        commitment.owner_id,
        commitment.owner_role,
        commitment.owed_by,
        commitment.version,
    )


def _change_type(before: Snapshot | None, after: Snapshot) -> EventType | None:
    if before is None:
        return EventType.agreed
    if before == after:
        return None
    if before.status == CommitmentStatus.open and after.status == CommitmentStatus.done:
        return EventType.completed
    if before.status == CommitmentStatus.open and after.status == CommitmentStatus.cancelled:
        return EventType.cancelled
    return EventType.updated


def _reschedule_reason(before: Snapshot, after: Snapshot) -> str | None:
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
    session: Session, commitment: Commitment, before: Snapshot | None, now: datetime
) -> None:
    """Write the messages and reminders of a change to ``commitment`` (``before``: its state
    before the change; None for a new step). Called by the ledger after every rebuild."""
    if is_idle(session):
        return
    after = snapshot(commitment)
    type_ = _change_type(before, after)
    if type_ is None:
        return
    interview = session.get(Interview, commitment.interview_id)
    assert interview is not None  # the foreign key
    _publish(session, [_Change(type_, commitment, interview)], now)
    if before is None:
        _schedule(session, commitment, interview, enabled_rules(session), now)
        return
    reason = _reschedule_reason(before, after)
    if reason is not None:
        _settle_scheduled(session, [commitment.id], reason, now)
        _schedule(session, commitment, interview, enabled_rules(session), now)


def steps_inserted(session: Session, commitment_ids: Sequence[uuid.UUID], now: datetime) -> None:
    """``step_changed`` for new steps written as plain rows (the bulk ingestion path), with
    one read of the steps and their interviews, one of the clocks and one INSERT."""
    if not commitment_ids or is_idle(session):
        return
    statement = (
        select(Commitment, Interview)
        .join(Interview, col(Interview.id) == col(Commitment.interview_id))
        .where(col(Commitment.id).in_(commitment_ids))
    )
    steps = session.exec(statement).all()
    _publish(session, [_Change(EventType.agreed, c, i) for c, i in steps], now)
    rules = enabled_rules(session)
    if rules:
        for commitment, interview in steps:
            _schedule(session, commitment, interview, rules, now)


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


def _prefetch_quiet_calendars(session: Session, owner_ids: Iterable[str]) -> None:
    """What ``_quiet_calendar`` looks up, for many owners in two queries (a batch of 5,000
    steps has hundreds of owners)."""
    looked = _looked(session)
    missing = sorted({o for o in owner_ids if o not in looked.calendars})
    if not missing:
        return
    statement = select(Owner).where(col(Owner.id).in_(missing), col(Owner.calendar_id).is_not(None))
    own = {row.id: row.calendar_id for row in session.exec(statement) if row.calendar_id}
    rows: dict[uuid.UUID, Calendar] = _by_id(session, Calendar, own.values()) if own else {}
    default = default_calendar(session)
    for owner_id in missing:
        calendar_id = own.get(owner_id)
        row = (rows.get(calendar_id) if calendar_id is not None else None) or default
        looked.calendars[owner_id] = engine_calendar(row) if row is not None else None


def _quiet_calendar(session: Session, owner_id: str) -> deadlines.Calendar | None:
    """The owner's calendar, else the default one; None when there is no calendar at all."""
    looked = _looked(session)
    if owner_id not in looked.calendars:
        own = session.get(Owner, owner_id)
        row = session.get(Calendar, own.calendar_id) if own and own.calendar_id else None
        row = row or default_calendar(session)
        looked.calendars[owner_id] = engine_calendar(row) if row is not None else None
    return looked.calendars[owner_id]


def _after_quiet_hours(calendar: deadlines.Calendar | None, at: datetime) -> datetime:
    try:
        if calendar is None or is_open(calendar, at):
            return at
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


def _schedule(
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
    """The reminders ``_schedule`` writes, as rows."""
    if commitment.status != CommitmentStatus.open:
        return []
    matching = [rule for rule in rules if rule_matches(rule, commitment, interview)]
    quiet = any(rule.quiet_hours for rule in matching)
    calendar = _quiet_calendar(session, commitment.owner_id) if quiet else None
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


def _settle_scheduled(
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
    """One batch of the scheduling a created or changed rule needs; how many rows it wrote.

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
        return 0
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
        _prefetch_quiet_calendars(session, (step.owner_id for step, _ in found))
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
    if rows:
        # Core, not the ORM's bulk insert: one executemany (measured in bench/RESULTS.md,
        # "A rule over 100,000 open steps").
        session.connection().execute(insert(SQLModel.metadata.tables["reminder"]), rows)
    if len(found) < limit:
        rule.schedule_pending, rule.schedule_after = False, None
    else:
        rule.schedule_after = found[-1][0].id
    session.add(rule)
    return settled + len(found)


def rule_removed(session: Session, rule_id: uuid.UUID, now: datetime) -> None:
    """A rule is deleted: its scheduled reminders are skipped."""
    _settle_scheduled(session, [], "rule deleted", now, rule_id=rule_id)


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


def fire(session: Session, reminders: Sequence[Reminder], now: datetime) -> None:
    """Due reminders: the messages of each whose step still stands as it was scheduled for,
    written with one INSERT; each reminder becomes ``sent`` or ``skipped`` with its reason."""
    with session.no_autoflush:
        commitments = _by_id(session, Commitment, (r.commitment_id for r in reminders))
        rules = _by_id(session, ReminderRule, (r.rule_id for r in reminders))
        interview_ids = {c.interview_id for c in commitments.values()}
        interviews = _by_id(session, Interview, interview_ids)
    firing: list[_Change] = []
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
            firing.append(_Change(EventType(reminder.type), commitment, interview, reminder))
    taken = _publish(session, firing, now)
    for n, change in enumerate(firing):
        if n not in taken:  # sent to nobody: say so
            assert change.reminder is not None
            reason = f"no enabled endpoint takes {change.type.value}"
            settled[change.reminder.id]["reason"] = reason
    session.execute(update(Reminder), list(settled.values()))

"""Use cases of calendars, owner calendars and deadline policies. Each write ends in one commit.

Calendar and policy rows hold the API's JSON; the engine's values are parsed from them
(``engine_calendar``), cached by id and version, since a row only changes with its version.
"""

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, text, tuple_, update
from sqlmodel import Session, col, select

from app import deadlines
from app.commitments import ledger
from app.commitments.history import DUE_BASIS_KEY
from app.commitments.ledger import Origin
from app.deadlines.policies import (
    InterviewFacts,
    matching_default_step_policy,
    matching_due_policy,
)
from app.deadlines.schemas import (
    CalendarCreate,
    CalendarOut,
    CalendarPatch,
    CalendarRef,
    ComputeOut,
    DeadlineOut,
    DefaultStepIn,
    OwnerCalendarOut,
    PolicyCreate,
    PolicyOut,
    PolicyPatch,
    RuleIn,
    SkippedOut,
)
from app.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from app.models import (
    Calendar,
    Commitment,
    DeadlineBasis,
    DeadlinePolicy,
    Interview,
    InterviewStatus,
    OwnerCalendar,
    TimelineEntry,
    TimelineKind,
)
from app.pagination import aware_instant, keyset

# Calendar writes are serialised (PostgreSQL; SQLite has one writer at a time), so that
# "exactly one default" holds under concurrent creates and changes.
_CALENDARS_LOCK = "nextstep:calendars"


def _lock_calendars(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": _CALENDARS_LOCK})


def etag(row: Calendar | DeadlinePolicy) -> str:
    return f'"{row.id.hex}-{row.version}"'


def _check_if_match(row: Calendar | DeadlinePolicy, if_match: str | None, what: str) -> None:
    """If-Match compares strongly (RFC 9110, 13.1.1); None (allowed for DELETE) skips it."""
    if if_match is None:
        return
    tags = {t.strip() for t in if_match.split(",")}
    if "*" not in tags and etag(row) not in tags:
        raise PreconditionFailed(
            f"The {what} has changed (current ETag {etag(row)}); GET it and retry."
        )


# --- calendars -----------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _parsed(definition: str) -> deadlines.Calendar:
    return deadlines.parse_calendar(json.loads(definition))


def engine_calendar(row: Calendar) -> deadlines.Calendar:
    """The engine's value of a stored calendar."""
    definition = json.dumps(
        {
            "time_zone": row.time_zone,
            "hours": row.hours,
            "holidays": row.holidays,
            "closed_dates": row.closed_dates,
        },
        sort_keys=True,
    )
    return _parsed(definition)


def engine_zone(name: str) -> ZoneInfo:
    """The zone of a stored calendar's time_zone (checked when it was stored)."""
    return deadlines.check_time_zone(name)


def calendar_out(row: Calendar) -> CalendarOut:
    hours = {day: row.hours.get(day, []) for day in deadlines.WEEKDAYS}
    return CalendarOut(
        id=row.id,
        name=row.name,
        time_zone=row.time_zone,
        hours=hours,
        holidays=row.holidays,
        closed_dates=row.closed_dates,
        is_default=row.is_default,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def calendar_ref(row: Calendar) -> CalendarRef:
    return CalendarRef(id=row.id, version=row.version, time_zone=row.time_zone)


def get_calendar(session: Session, calendar_id: uuid.UUID, *, lock: bool = False) -> Calendar:
    statement = select(Calendar).where(col(Calendar.id) == calendar_id)
    row = session.exec(statement.with_for_update() if lock else statement).first()
    if row is None:
        raise NotFound(f"No calendar with id {calendar_id}.")
    return row


def default_calendar(session: Session) -> Calendar | None:
    return session.exec(select(Calendar).where(col(Calendar.is_default))).first()


def _unset_default(session: Session, keep: uuid.UUID) -> None:
    session.exec(
        update(Calendar)
        .where(col(Calendar.is_default), col(Calendar.id) != keep)
        .values(is_default=False)
    )
    session.flush()


def _hours_json(hours: Any) -> dict[str, list[list[str]]]:
    dumped: dict[str, list[list[str]]] = hours.model_dump()
    return {day: intervals for day, intervals in dumped.items() if intervals}


def create_calendar(session: Session, data: CalendarCreate, now: datetime) -> Calendar:
    """A new calendar; the first one, or one sent with ``is_default``, becomes the default."""
    _lock_calendars(session)
    first = session.exec(select(func.count()).select_from(Calendar)).one() == 0
    row = Calendar(
        name=data.name,
        time_zone=data.time_zone,
        hours=_hours_json(data.hours),
        holidays=data.holidays.model_dump() if data.holidays else None,
        closed_dates=sorted(set(data.closed_dates)),
        is_default=False,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    if first or data.is_default:
        _unset_default(session, row.id)
        row.is_default = True
        session.add(row)
    session.commit()
    return row


def update_calendar(
    session: Session,
    calendar_id: uuid.UUID,
    patch: CalendarPatch,
    if_match: str,
    now: datetime,
) -> Calendar:
    """Change a calendar, guarded by its ETag; its version counts the change. Due times
    already computed on it keep the version they were computed with."""
    _lock_calendars(session)
    row = get_calendar(session, calendar_id, lock=True)
    _check_if_match(row, if_match, "calendar")
    sent = patch.model_fields_set
    values: dict[str, Any] = {}
    if "name" in sent:
        values["name"] = patch.name
    if "time_zone" in sent:
        values["time_zone"] = patch.time_zone
    if "hours" in sent:
        values["hours"] = _hours_json(patch.hours)
    if "holidays" in sent:
        values["holidays"] = patch.holidays.model_dump() if patch.holidays else None
    if "closed_dates" in sent and patch.closed_dates is not None:
        values["closed_dates"] = sorted(set(patch.closed_dates))
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if "is_default" in sent:
        if patch.is_default and not row.is_default:
            _unset_default(session, row.id)
            changed["is_default"] = True
        elif not patch.is_default and row.is_default:
            raise Conflict(
                "This calendar is the default; make another calendar the default instead."
            )
    if not changed:
        session.rollback()
        return row
    for name, value in changed.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = now
    session.add(row)
    session.commit()
    return row


def delete_calendar(
    session: Session, calendar_id: uuid.UUID, if_match: str | None, now: datetime
) -> None:
    """Delete a calendar nobody works by; the default only when it is the last one."""
    _lock_calendars(session)
    row = get_calendar(session, calendar_id, lock=True)
    _check_if_match(row, if_match, "calendar")
    policies = session.exec(
        select(func.count()).where(col(DeadlinePolicy.calendar_id) == row.id)
    ).one()
    owners = session.exec(
        select(func.count()).where(col(OwnerCalendar.calendar_id) == row.id)
    ).one()
    if policies or owners:
        raise Conflict(
            f"The calendar is in use by {policies} deadline policies and {owners} owners; "
            "move them to another calendar first.",
            policies=int(policies),
            owners=int(owners),
        )
    if row.is_default:
        others = session.exec(
            select(func.count()).select_from(Calendar).where(col(Calendar.id) != row.id)
        ).one()
        if others:
            raise Conflict(
                "The default calendar cannot be deleted while other calendars exist; "
                "make another one the default first."
            )
        # The last calendar: the policies without a calendar of their own count on it.
        counting = session.exec(
            select(func.count()).where(col(DeadlinePolicy.calendar_id).is_(None))
        ).one()
        if counting:
            raise Conflict(
                f"The default calendar is the one {counting} deadline policies count on; "
                "delete them or create another calendar first.",
                policies=int(counting),
            )
    session.delete(row)
    session.commit()


def list_calendars(
    session: Session, limit: int, after: list[str] | None
) -> tuple[list[CalendarOut], list[str] | None]:
    """Calendars, oldest first; the page and the key to continue after."""
    keys = (col(Calendar.created_at), col(Calendar.id))
    statement = select(Calendar)
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(tuple_(*keys) > tuple_(*mark))
    rows = list(session.exec(statement.order_by(*keys).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = [rows[-1].created_at.isoformat(), str(rows[-1].id)] if more else None
    return [calendar_out(r) for r in rows], cursor


class DeadlineError(InvalidInput):
    """A due time cannot be computed as asked (an event that asks is stored as rejected)."""


def _compute(row: Calendar, start: datetime, rule: deadlines.Rule, loc: list[str | int]) -> Any:
    try:
        return deadlines.compute(engine_calendar(row), start, rule)
    except deadlines.NoOpenTimeError as exc:
        raise DeadlineError(
            f"Calendar {row.id} has no open time to count this rule on: {exc}",
            errors=[{"loc": loc, "msg": str(exc)}],
        ) from None


def skipped_out(skipped: Sequence[deadlines.SkippedDay]) -> list[SkippedOut]:
    return [SkippedOut(date=day.day.isoformat(), why=day.why) for day in skipped]


def compute_on_calendar(
    session: Session, calendar_id: uuid.UUID, start: datetime, rule: RuleIn
) -> ComputeOut:
    """What a policy would compute on this calendar from ``start``."""
    row = get_calendar(session, calendar_id)
    result = _compute(row, start, rule.rule(), ["body", "rule"])
    return ComputeOut(
        due_at=result.due_at,
        rule=rule.to_json(),
        calendar=calendar_ref(row),
        skipped=skipped_out(result.skipped),
    )


# --- owner calendars -----------------------------------------------------------------------


def _known_calendar(session: Session, calendar_id: uuid.UUID, loc: list[str | int]) -> Calendar:
    row = session.get(Calendar, calendar_id)
    if row is None:
        raise InvalidInput(
            f"No calendar with id {calendar_id}.",
            errors=[{"loc": loc, "msg": "is not the id of a calendar"}],
        )
    return row


def set_owner_calendar(
    session: Session, owner_id: str, calendar_id: uuid.UUID, now: datetime
) -> OwnerCalendarOut:
    """The calendar an owner works by, from now on."""
    _lock_calendars(session)
    _known_calendar(session, calendar_id, ["body", "calendar_id"])
    row = session.get(OwnerCalendar, owner_id)
    if row is None:
        row = OwnerCalendar(owner_id=owner_id, calendar_id=calendar_id, updated_at=now)
    elif row.calendar_id != calendar_id:
        row.calendar_id, row.updated_at = calendar_id, now
    session.add(row)
    session.commit()
    return OwnerCalendarOut(owner_id=owner_id, calendar_id=calendar_id)


def get_owner_calendar(session: Session, owner_id: str) -> OwnerCalendarOut:
    row = session.get(OwnerCalendar, owner_id)
    if row is None:
        raise NotFound(f"Owner {owner_id!r} has no calendar of their own.")
    return OwnerCalendarOut(owner_id=row.owner_id, calendar_id=row.calendar_id)


def delete_owner_calendar(session: Session, owner_id: str) -> None:
    row = session.get(OwnerCalendar, owner_id)
    if row is None:
        raise NotFound(f"Owner {owner_id!r} has no calendar of their own.")
    session.delete(row)
    session.commit()


# --- policies ------------------------------------------------------------------------------


def _default_step_json(step: DefaultStepIn | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {
        "action": step.action,
        "owner": step.owner.model_dump(mode="json"),
        "channel": step.channel.value if step.channel else None,
        "rule": step.rule.to_json(),
    }


def policy_out(row: DeadlinePolicy) -> PolicyOut:
    return PolicyOut.model_validate(
        {
            "id": row.id,
            "name": row.name,
            "position": row.position,
            "enabled": row.enabled,
            "match": row.match,
            "calendar_id": row.calendar_id,
            "due_rule": row.due_rule,
            "default_step": row.default_step,
            "version": row.version,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


def get_policy(session: Session, policy_id: uuid.UUID, *, lock: bool = False) -> DeadlinePolicy:
    statement = select(DeadlinePolicy).where(col(DeadlinePolicy.id) == policy_id)
    row = session.exec(statement.with_for_update() if lock else statement).first()
    if row is None:
        raise NotFound(f"No deadline policy with id {policy_id}.")
    return row


def create_policy(session: Session, data: PolicyCreate, now: datetime) -> DeadlinePolicy:
    """A new policy; without a position it goes after the last one."""
    _lock_calendars(session)
    if data.calendar_id is not None:
        _known_calendar(session, data.calendar_id, ["body", "calendar_id"])
    position = data.position
    if position is None:
        last = session.exec(select(func.max(col(DeadlinePolicy.position)))).one()
        position = 0 if last is None else int(last) + 1
    row = DeadlinePolicy(
        name=data.name,
        position=position,
        enabled=data.enabled,
        match=data.match.model_dump(mode="json", exclude_none=True),
        calendar_id=data.calendar_id,
        due_rule=data.due_rule.to_json() if data.due_rule else None,
        default_step=_default_step_json(data.default_step),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.commit()
    return row


def update_policy(
    session: Session, policy_id: uuid.UUID, patch: PolicyPatch, if_match: str, now: datetime
) -> DeadlinePolicy:
    """Change a policy, guarded by its ETag. Due times it computed before stay as they are."""
    _lock_calendars(session)
    row = get_policy(session, policy_id, lock=True)
    _check_if_match(row, if_match, "deadline policy")
    sent = patch.model_fields_set
    values: dict[str, Any] = {}
    for name in ("name", "position", "enabled"):
        if name in sent:
            values[name] = getattr(patch, name)
    if "match" in sent and patch.match is not None:
        values["match"] = patch.match.model_dump(mode="json", exclude_none=True)
    if "calendar_id" in sent:
        if patch.calendar_id is not None:
            _known_calendar(session, patch.calendar_id, ["body", "calendar_id"])
        values["calendar_id"] = patch.calendar_id
    if "due_rule" in sent:
        values["due_rule"] = patch.due_rule.to_json() if patch.due_rule else None
    if "default_step" in sent:
        values["default_step"] = _default_step_json(patch.default_step)
    after_due = values.get("due_rule", row.due_rule)
    after_step = values.get("default_step", row.default_step)
    if after_due is None and after_step is None:
        raise InvalidInput(
            "A policy needs a due_rule, a default_step or both.",
            errors=[{"loc": ["body"], "msg": "a policy needs a due_rule, a default_step or both"}],
        )
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if not changed:
        session.rollback()
        return row
    for name, value in changed.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = now
    session.add(row)
    session.commit()
    return row


def delete_policy(session: Session, policy_id: uuid.UUID, if_match: str | None) -> None:
    """Delete a policy; the steps and due times it made stay."""
    row = get_policy(session, policy_id, lock=True)
    _check_if_match(row, if_match, "deadline policy")
    session.delete(row)
    session.commit()


def list_policies(
    session: Session, limit: int, after: list[str] | None
) -> tuple[list[PolicyOut], list[str] | None]:
    """Policies in the order they apply: by position, then creation, then id."""
    keys = (col(DeadlinePolicy.position), col(DeadlinePolicy.created_at), col(DeadlinePolicy.id))
    statement = select(DeadlinePolicy)
    mark = keyset(after, int, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(tuple_(*keys) > tuple_(*mark))
    rows = list(session.exec(statement.order_by(*keys).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = (
        [str(rows[-1].position), rows[-1].created_at.isoformat(), str(rows[-1].id)]
        if more
        else None
    )
    return [policy_out(r) for r in rows], cursor


# --- a commitment's deadline ---------------------------------------------------------------


def deadline_of(session: Session, commitment_id: uuid.UUID) -> DeadlineOut:
    """How the commitment's due time was made. A computed due time that was moved since
    (a PATCH, an update event) is explicit from then on."""
    commitment = session.get(Commitment, commitment_id)
    if commitment is None:
        raise NotFound(f"No commitment with id {commitment_id}.")
    computed = (
        commitment.deadline_basis == DeadlineBasis.policy
        and commitment.deadline_computed_at == commitment.due_at
        and commitment.deadline_calendar_id is not None
    )
    if not computed:
        return DeadlineOut(
            basis=DeadlineBasis.explicit,
            policy_id=None,
            rule=None,
            calendar=None,
            start=None,
            due_at=commitment.due_at,
            skipped=[],
        )
    assert commitment.deadline_calendar_id is not None
    return DeadlineOut(
        basis=DeadlineBasis.policy,
        policy_id=commitment.deadline_policy_id,
        rule=commitment.deadline_rule,
        calendar=CalendarRef(
            id=commitment.deadline_calendar_id,
            version=commitment.deadline_calendar_version or 1,
            time_zone=commitment.deadline_time_zone or "UTC",
        ),
        start=commitment.deadline_start,
        due_at=commitment.due_at,
        skipped=[SkippedOut.model_validate(s) for s in commitment.deadline_skipped or []],
    )


# --- policies at work: the hooks of the write paths ----------------------------------------
#
# Called from two places in each write path (REST: commitments/service.py; events:
# events/applier.py, and events/bulk.py for new interviews): ``due_from_policy`` where a
# step without due_at is agreed, and ``settle_policy_step`` after a change that completes
# an interview or agrees a step on it. Every call runs while the caller holds the
# interview's row lock (or has just created it), so that the decisions below see every
# step of it.

POLICY_SOURCE = "policy"


class NoPolicyApplies(DeadlineError):
    """A step without due_at, and no enabled policy with a due_rule matches it."""


class NoCalendar(DeadlineError):
    """A policy applies, but there is no calendar to count its rule on."""


@dataclass(frozen=True)
class Computed:
    """A due time a policy computed, and how: what GET .../deadline shows later."""

    policy_id: uuid.UUID
    calendar: Calendar
    start: datetime
    rule: dict[str, Any]
    due_at: datetime
    skipped: list[dict[str, str]]

    def columns(self) -> dict[str, Any]:
        """The commitment's provenance columns (see models.Commitment)."""
        return {
            "deadline_basis": DeadlineBasis.policy.value,
            "deadline_policy_id": self.policy_id,
            "deadline_calendar_id": self.calendar.id,
            "deadline_calendar_version": self.calendar.version,
            "deadline_time_zone": self.calendar.time_zone,
            "deadline_start": self.start,
            "deadline_rule": self.rule,
            "deadline_skipped": self.skipped,
            "deadline_computed_at": self.due_at,
        }

    def stamp(self, commitment: Commitment) -> None:
        """Keep the provenance on the commitment, as it is now."""
        for name, value in self.columns().items():
            setattr(commitment, name, value)


# The provenance columns of a commitment whose due time was given.
NO_PROVENANCE: dict[str, Any] = dict.fromkeys(
    (
        "deadline_basis",
        "deadline_policy_id",
        "deadline_calendar_id",
        "deadline_calendar_version",
        "deadline_time_zone",
        "deadline_start",
        "deadline_rule",
        "deadline_skipped",
        "deadline_computed_at",
    )
)


def interview_facts(interview: Interview) -> InterviewFacts:
    return InterviewFacts(
        source=interview.source, stage=interview.stage, job_id=interview.job_external_id
    )


@dataclass
class _Looked:
    """What this transaction read of policies and calendars: a batch of deliveries shares
    one transaction and reads them once (measured in bench/ingest_policy.py)."""

    transaction: object
    policies: list[DeadlinePolicy] | None = None
    calendars: dict[uuid.UUID | None, Calendar | None] = field(default_factory=dict)
    owners: dict[str, uuid.UUID | None] = field(default_factory=dict)


def _looked(session: Session) -> _Looked:
    transaction = session.get_transaction()
    looked = session.info.get("deadline_policies")
    if not isinstance(looked, _Looked) or looked.transaction is not transaction:
        looked = session.info["deadline_policies"] = _Looked(transaction)
    return looked


def enabled_policies(session: Session) -> list[DeadlinePolicy]:
    """The enabled policies in the order they apply, as this transaction first read them."""
    looked = _looked(session)
    if looked.policies is None:
        statement = (
            select(DeadlinePolicy)
            .where(col(DeadlinePolicy.enabled))
            .order_by(
                col(DeadlinePolicy.position),
                col(DeadlinePolicy.created_at),
                col(DeadlinePolicy.id),
            )
        )
        looked.policies = list(session.exec(statement).all())
    return looked.policies


def _calendar_for(session: Session, owner_id: str, policy: DeadlinePolicy) -> Calendar:
    """The owner's calendar if set, else the policy's, else the default."""
    looked = _looked(session)
    if owner_id not in looked.owners:
        own = session.get(OwnerCalendar, owner_id)
        looked.owners[owner_id] = own.calendar_id if own is not None else None
    calendar_id = looked.owners[owner_id] or policy.calendar_id
    if calendar_id not in looked.calendars:
        looked.calendars[calendar_id] = (
            session.get(Calendar, calendar_id)
            if calendar_id is not None
            else default_calendar(session)
        )
    row = looked.calendars[calendar_id]
    if row is None and calendar_id is not None:  # deleted since: the default
        row = default_calendar(session)
    if row is None:
        raise NoCalendar(
            f"Deadline policy {policy.id} applies, but there is no calendar to count its rule "
            "on: create a calendar (the first becomes the default).",
            errors=[{"loc": ["body"], "msg": "no calendar to count the policy's rule on"}],
        )
    return row


def _computed(
    session: Session,
    policy: DeadlinePolicy,
    rule_json: dict[str, Any],
    owner_id: str,
    start: datetime,
) -> Computed:
    calendar = _calendar_for(session, owner_id, policy)
    rule = deadlines.parse_rule(rule_json)
    result = _compute(calendar, start, rule, ["body", "due_at"])
    return Computed(
        policy_id=policy.id,
        calendar=calendar,
        start=start,
        rule=deadlines.rule_to_json(rule),
        due_at=result.due_at,
        skipped=[day.to_json() for day in result.skipped],
    )


def due_from_policy(
    session: Session, interview: Interview, owner_id: str, owner_role: str, agreed_at: datetime
) -> Computed:
    """Rule 1: the due time of a step agreed without one, from the first enabled policy (by
    position) that matches the interview and the owner's role and has a due_rule, counted
    from ``agreed_at`` on the owner's calendar, else the policy's, else the default."""
    policy = matching_due_policy(enabled_policies(session), interview_facts(interview), owner_role)
    if policy is None or policy.due_rule is None:
        raise NoPolicyApplies(
            "due_at is missing and no deadline policy applies to this step "
            f"(source {interview.source!r}, stage {interview.stage!r}, job "
            f"{interview.job_external_id!r}, owner role {owner_role!r}).",
            errors=[{"loc": ["body", "due_at"], "msg": "required: no deadline policy applies"}],
        )
    return _computed(session, policy, policy.due_rule, owner_id, agreed_at)


def policy_step_key(interview: Interview) -> str:
    """The policy step's external_id: one per interview, by the unique (source, external_id)."""
    return str(interview.id)


def completion_instant(interview: Interview) -> datetime | None:
    """ends_at, else the instant the interview was marked completed; None until completed."""
    if interview.status != InterviewStatus.completed or interview.completed_at is None:
        return None
    return interview.ends_at or interview.completed_at


def settle_policy_step(
    session: Session,
    interview: Interview,
    *,
    completed_now: bool,
    carried: Collection[uuid.UUID] = (),
    now: datetime,
    delivery_id: uuid.UUID | None = None,
) -> None:
    """Rules 2 and 3: make the interview's policy step what its other steps call for.

    - A step agreed at or before the completion (``carried``: the steps of the request or
      event that completed it, which count as agreed at its completion): no policy step; one
      made before that step was known is removed, so that any arrival order ends the same.
    - Otherwise, when this change completed the interview (``completed_now``), the first
      enabled matching policy with a default_step gives one, agreed at the completion.
      Policies never reach back: an interview completed before is left alone.
    - A step agreed after the completion closes the policy step at that step's agreed_at,
      "Next step agreed: <action>"; the earliest such step decides.

    The policy step is an ordinary commitment (source "policy", external_id the interview's
    id) whose timeline entries the replay orders like any other; its actor is
    ``policy:<id>``. The unique (source, external_id) makes a second one impossible, also
    on another replica; the interview's row lock makes the second writer see the first.
    """
    completed_at = completion_instant(interview)
    if completed_at is None:
        return
    steps = list(session.exec(select(Commitment).where(Commitment.interview_id == interview.id)))
    key = policy_step_key(interview)
    policy_step = next(
        (s for s in steps if s.source == POLICY_SOURCE and s.external_id == key), None
    )
    real = [s for s in steps if s is not policy_step]
    if any(s.agreed_at <= completed_at or (completed_now and s.id in carried) for s in real):
        if policy_step is not None:
            session.delete(policy_step)  # its entries and versions go with it
            session.flush()
        return
    if policy_step is None:
        if not completed_now:
            return
        policy_step = _agree_default_step(session, interview, completed_at, now, delivery_id)
        if policy_step is None or not real:
            return  # nothing to close it (yet)
    _close_by_later_step(session, policy_step, real, now, delivery_id)


def _agree_default_step(
    session: Session,
    interview: Interview,
    completed_at: datetime,
    now: datetime,
    delivery_id: uuid.UUID | None,
) -> Commitment | None:
    found = default_step(session, interview_facts(interview), completed_at)
    if found is None:
        return None
    policy, values, computed = found
    origin = Origin(
        effective_at=completed_at,
        actor=f"policy:{policy.id}",
        now=now,
        tiebreak=f"policy:{interview.id}",
        delivery_id=delivery_id,
    )
    commitment = ledger.agree(
        session,
        interview,
        values,
        origin,
        source=POLICY_SOURCE,
        external_id=policy_step_key(interview),
    )
    computed.stamp(commitment)
    session.add(commitment)
    return commitment


def default_step(
    session: Session, facts: InterviewFacts, completed_at: datetime
) -> tuple[DeadlinePolicy, dict[str, Any], Computed] | None:
    """The policy whose default step an interview completed at ``completed_at`` without a
    step gets, the step's values as agreed, and how its due time was computed."""
    policy = matching_default_step_policy(enabled_policies(session), facts)
    if policy is None or policy.default_step is None:
        return None
    step = policy.default_step
    owner = step["owner"]
    computed = _computed(session, policy, step["rule"], owner["id"], completed_at)
    values = {
        "action": step["action"],
        "owner_id": owner["id"],
        "owner_name": owner.get("name"),
        "owner_role": owner["role"],
        "owed_by": None,
        "channel": step.get("channel"),
        "due_at": computed.due_at,
        "promised_by": None,
        DUE_BASIS_KEY: DeadlineBasis.policy.value,
    }
    return policy, values, computed


def _first_action(session: Session, step: Commitment) -> str:
    """The action a step was agreed with (its later rewording does not change the outcome)."""
    entry = session.exec(
        select(TimelineEntry)
        .where(
            TimelineEntry.commitment_id == step.id,
            TimelineEntry.kind == TimelineKind.agreed,
        )
        .order_by(col(TimelineEntry.effective_at), col(TimelineEntry.tiebreak))
        .limit(1)
    ).first()
    action = entry.changes.get("action") if entry is not None else None
    return action if isinstance(action, str) else step.action


def _close_by_later_step(
    session: Session,
    policy_step: Commitment,
    real: Sequence[Commitment],
    now: datetime,
    delivery_id: uuid.UUID | None,
) -> None:
    later = min(real, key=lambda s: (s.agreed_at, str(s.id)), default=None)
    wanted: tuple[datetime, str] | None = None
    if later is not None:
        wanted = (later.agreed_at, f"Next step agreed: {_first_action(session, later)}")
    actor_prefix = "policy:"
    entries = list(
        session.exec(
            select(TimelineEntry).where(
                TimelineEntry.commitment_id == policy_step.id,
                TimelineEntry.kind == TimelineKind.completed,
                col(TimelineEntry.actor).startswith(actor_prefix),
            )
        )
    )
    found = {(e.effective_at, e.changes.get("outcome")) for e in entries}
    if found == ({wanted} if wanted else set()):
        return
    for entry in entries:
        session.delete(entry)
    if wanted is None:
        session.flush()
        ledger.rebuild_commitment(session, policy_step, now)
        return
    origin = Origin(
        effective_at=wanted[0],
        actor=f"policy:{policy_step.deadline_policy_id}",
        now=now,
        tiebreak=f"policy:{policy_step.interview_id}:closed",
        delivery_id=delivery_id,
    )
    ledger.change(session, policy_step, TimelineKind.completed, {"outcome": wanted[1]}, origin)


def prepare_replay(
    session: Session, interview_ids: Collection[uuid.UUID], step_ids: Collection[uuid.UUID]
) -> None:
    """Before a delivery is applied again, once its timeline entries are gone: its
    interviews stand as their remaining history says, so that a completion it brings counts
    as one again (and meets the policies of now); a policy step it made is removed."""
    for step_id in step_ids:
        step = session.get(Commitment, step_id)
        if step is None or step.source != POLICY_SOURCE:
            continue
        agreed = session.exec(
            select(func.count()).where(
                TimelineEntry.commitment_id == step_id, TimelineEntry.kind == TimelineKind.agreed
            )
        ).one()
        if not agreed:
            session.delete(step)
    for interview_id in interview_ids:
        interview = session.get(Interview, interview_id)
        if interview is None:
            continue
        remaining = session.exec(
            select(func.count()).where(
                TimelineEntry.interview_id == interview_id,
                col(TimelineEntry.kind).in_(
                    [TimelineKind.interview_recorded, TimelineKind.interview_updated]
                ),
            )
        ).one()
        if remaining:
            ledger.rebuild_interview(session, interview, interview.updated_at)
        else:  # the delivery recorded it: as good as new until it is applied again
            interview.status, interview.completed_at = InterviewStatus.scheduled, None
            session.add(interview)
    session.flush()

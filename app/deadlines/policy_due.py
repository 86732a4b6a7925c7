"""The due times deadline policies give steps (API.md, "Deadline policies"): which enabled
policy applies, on which calendar its rule counts, and the due time it computes, with how
it was computed. Writing the steps is the commitments package's
(``app.commitments.policy_steps``); nothing here writes.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app import deadlines
from app.db import transaction_cache
from app.deadlines import service
from app.deadlines.policies import (
    InterviewFacts,
    matching_due_policy,
    may_match_once_known,
)
from app.deadlines.service import DeadlineError
from app.models import (
    Calendar,
    Commitment,
    DeadlineBasis,
    DeadlinePolicy,
    Interview,
    InterviewStatus,
    Owner,
)


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


def _policies(session: Session) -> list[DeadlinePolicy]:
    statement = (
        select(DeadlinePolicy)
        .where(col(DeadlinePolicy.enabled))
        .order_by(
            col(DeadlinePolicy.position),
            col(DeadlinePolicy.created_at),
            col(DeadlinePolicy.id),
        )
    )
    return list(session.exec(statement))


def enabled_policies(session: Session) -> list[DeadlinePolicy]:
    """The enabled policies in the order they apply, as this transaction first read them
    (a batch of deliveries shares one transaction: bench/ingest_policy.py)."""
    return transaction_cache(session, "deadlines.policies", lambda: _policies(session))


def _calendar_for(session: Session, owner_id: str, policy: DeadlinePolicy) -> Calendar:
    """The owner's calendar if set, else the policy's, else the default (each read once per
    transaction)."""
    owners: dict[str, uuid.UUID | None] = transaction_cache(session, "deadlines.owners", dict)
    calendars: dict[uuid.UUID | None, Calendar | None] = transaction_cache(
        session, "deadlines.calendars", dict
    )
    if owner_id not in owners:
        own = session.get(Owner, owner_id)
        owners[owner_id] = own.calendar_id if own is not None else None
    calendar_id = owners[owner_id] or policy.calendar_id
    if calendar_id not in calendars:
        calendars[calendar_id] = (
            session.get(Calendar, calendar_id)
            if calendar_id is not None
            else service.default_calendar(session)
        )
    row = calendars[calendar_id]
    if row is None and calendar_id is not None:  # deleted since: the default
        row = service.default_calendar(session)
    if row is None:
        raise NoCalendar(
            f"Deadline policy {policy.id} applies, but there is no calendar to count its rule "
            "on: create a calendar (the first becomes the default).",
            errors=[{"loc": ["body"], "msg": "no calendar to count the policy's rule on"}],
        )
    return row


def computed_due(
    session: Session,
    policy: DeadlinePolicy,
    rule_json: dict[str, Any],
    owner_id: str,
    start: datetime,
) -> Computed:
    """The due time ``rule_json`` (one of ``policy``'s rules) gives a step of ``owner_id``
    counted from ``start``, and how it was computed."""
    calendar = _calendar_for(session, owner_id, policy)
    rule = deadlines.parse_rule(rule_json)
    result = service.compute_due(calendar, start, rule, ["body", "due_at"])
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
    return computed_due(session, policy, policy.due_rule, owner_id, agreed_at)


def waits_for_interview_facts(session: Session, interview: Interview, owner_role: str) -> bool:
    """Rule 4 for rule 1: a step without a due time that no policy matches yet waits while
    its interview is scheduled and a policy would match once the stage or job it names is
    known. Once the interview is completed (or cancelled) it waits no longer."""
    if interview.status != InterviewStatus.scheduled:
        return False
    facts = interview_facts(interview)
    return may_match_once_known(enabled_policies(session), facts, owner_role)

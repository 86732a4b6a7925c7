"""Deadline policies at work on the write paths: due times for steps agreed without one,
and the default step of an interview completed without one (API.md, "Deadline policies").

Called from two places in each write path (REST: commitments/service.py; events:
events/applier.py, and events/bulk.py for new interviews): ``due_from_policy`` where a
step without due_at is agreed, and ``settle_policy_step`` after a change that completes
an interview or agrees a step on it. Every call runs while the caller holds the
interview's row lock (or has just created it), so that the decisions below see every
step of it.
"""

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from app import deadlines
from app.commitments import ledger
from app.commitments.history import DUE_BASIS_KEY, replay_commitment
from app.commitments.ledger import Origin, as_change
from app.deadlines import service
from app.deadlines.policies import (
    InterviewFacts,
    matching_default_step_policy,
    matching_due_policy,
    may_match_once_known,
)
from app.deadlines.service import DeadlineError
from app.models import (
    Calendar,
    Commitment,
    CommitmentStatus,
    DeadlineBasis,
    DeadlinePolicy,
    Interview,
    InterviewStatus,
    Owner,
    TimelineEntry,
    TimelineKind,
)

POLICY_SOURCE = "policy"
# In a policy step's agreement: the policy's {"from": role, "fallback": owner}.
OWNER_FROM_KEY = "owner_from"


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
        own = session.get(Owner, owner_id)
        looked.owners[owner_id] = own.calendar_id if own is not None else None
    calendar_id = looked.owners[owner_id] or policy.calendar_id
    if calendar_id not in looked.calendars:
        looked.calendars[calendar_id] = (
            session.get(Calendar, calendar_id)
            if calendar_id is not None
            else service.default_calendar(session)
        )
    row = looked.calendars[calendar_id]
    if row is None and calendar_id is not None:  # deleted since: the default
        row = service.default_calendar(session)
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
    return _computed(session, policy, policy.due_rule, owner_id, agreed_at)


def waits_for_interview_facts(session: Session, interview: Interview, owner_role: str) -> bool:
    """Rule 4 for rule 1: a step without a due time that no policy matches yet waits while
    its interview is scheduled and a policy would match once the stage or job it names is
    known. Once the interview is completed (or cancelled) it waits no longer."""
    if interview.status != InterviewStatus.scheduled:
        return False
    facts = interview_facts(interview)
    return may_match_once_known(enabled_policies(session), facts, owner_role)


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
    else:
        _reresolve_owner(session, interview, policy_step, now)
    _close_by_later_step(session, policy_step, real, now, delivery_id)


def _agree_default_step(
    session: Session,
    interview: Interview,
    completed_at: datetime,
    now: datetime,
    delivery_id: uuid.UUID | None,
) -> Commitment | None:
    found = default_step(
        session,
        interview_facts(interview),
        completed_at,
        lambda: named_at_completion(session, interview),
    )
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
    session: Session,
    facts: InterviewFacts,
    completed_at: datetime,
    named: Callable[[], Mapping[str, Any]] = dict,
) -> tuple[DeadlinePolicy, dict[str, Any], Computed] | None:
    """The policy whose default step an interview completed at ``completed_at`` without a
    step gets, the step's values as agreed, and how its due time was computed.

    ``named()`` gives the people the interview's source had named by role when it
    completed (``{"recruiter": {"id", "name", ...}}``), asked only by a policy whose step
    belongs to one of them."""
    policy = matching_default_step_policy(enabled_policies(session), facts)
    if policy is None or policy.default_step is None:
        return None
    step = policy.default_step
    owner = step_owner(step["owner"], facts.source, named() if "from" in step["owner"] else {})
    computed = _computed(session, policy, step["rule"], owner["owner_id"], completed_at)
    values = {
        "action": step["action"],
        **owner,
        "owed_by": None,
        "channel": step.get("channel"),
        "due_at": computed.due_at,
        "promised_by": None,
        DUE_BASIS_KEY: DeadlineBasis.policy.value,
    }
    if "from" in step["owner"]:
        # Kept with the agreement, so that a late event naming that person puts them there.
        values[OWNER_FROM_KEY] = step["owner"]
    return policy, values, computed


def step_owner(owner: Mapping[str, Any], source: str, named: Mapping[str, Any]) -> dict[str, Any]:
    """A default step's owner values: the owner the policy names, or for ``{"from": role,
    "fallback": owner}`` the person the source named in that role (``<source>:<their
    id>``), else the fallback."""
    if "from" in owner:
        role, person = owner["from"], named.get(owner["from"])
        person_id = person.get("id") if isinstance(person, Mapping) else None
        owner_id = f"{source}:{person_id}"
        if isinstance(person, Mapping) and person_id not in (None, "") and len(owner_id) <= 200:
            name = person.get("name")
            return {
                "owner_id": owner_id,
                "owner_name": name[:300] if isinstance(name, str) else None,
                "owner_role": role,
            }
        owner = owner["fallback"]
    return {"owner_id": owner["id"], "owner_name": owner.get("name"), "owner_role": owner["role"]}


def named_at_completion(session: Session, interview: Interview) -> dict[str, Any]:
    """The people the interview's source had named by role (its ``default_owners``) when the
    interview was marked completed: events that happened later do not count, whenever
    they arrived."""
    if interview.completed_at is None:
        return {}
    entries = session.exec(
        select(TimelineEntry)
        .where(
            TimelineEntry.interview_id == interview.id,
            col(TimelineEntry.commitment_id).is_(None),
            col(TimelineEntry.effective_at) <= interview.completed_at,
        )
        .order_by(col(TimelineEntry.effective_at), col(TimelineEntry.tiebreak))
    )
    named: dict[str, Any] = {}
    for entry in entries:
        if isinstance(entry.changes.get("default_owners"), dict):
            named = entry.changes["default_owners"]
    return named


def _reresolve_owner(
    session: Session, interview: Interview, policy_step: Commitment, now: datetime
) -> None:
    """A policy step owned by a role: when an event that arrived later says who held that
    role at the completion, the step is as if it had been agreed knowing it (its agreement
    rewritten, its history replayed; a change made to it since still applies)."""
    agreed = session.exec(
        select(TimelineEntry).where(
            TimelineEntry.commitment_id == policy_step.id,
            TimelineEntry.kind == TimelineKind.agreed,
        )
    ).first()
    if agreed is None or not isinstance(agreed.changes.get(OWNER_FROM_KEY), dict):
        return
    owner = step_owner(
        agreed.changes[OWNER_FROM_KEY], interview.source, named_at_completion(session, interview)
    )
    if all(agreed.changes.get(k) == v for k, v in owner.items()):
        return
    changes = {**agreed.changes, **owner}
    policy = session.get(DeadlinePolicy, policy_step.deadline_policy_id)
    rule = policy_step.deadline_rule
    if policy is not None and rule is not None:
        # Counted on the new owner's calendar, as it would have been from the start.
        computed = _computed(session, policy, rule, owner["owner_id"], agreed.effective_at)
        changes["due_at"] = ledger.encode_values({"due_at": computed.due_at})["due_at"]
        computed.stamp(policy_step)
    agreed.changes = changes
    session.add(agreed)
    session.flush()
    ledger.rebuild_commitment(session, policy_step, now)


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


def _is_policy_closure(entry: TimelineEntry) -> bool:
    return entry.kind == TimelineKind.completed and entry.actor.startswith("policy:")


def _open_at(history: Sequence[TimelineEntry], at: datetime) -> bool:
    """Whether the policy step, as people left it (its own closures aside), was open at
    ``at``: one that someone cancelled or completed before the later step was agreed is
    theirs, and no later step closes it (rule 3 closes open policy steps only)."""
    states = replay_commitment([as_change(e) for e in history if not _is_policy_closure(e)])
    standing = [state for state in states if state.valid_from <= at] or states[:1]
    return standing[-1].status == CommitmentStatus.open


def _close_by_later_step(
    session: Session,
    policy_step: Commitment,
    real: Sequence[Commitment],
    now: datetime,
    delivery_id: uuid.UUID | None,
) -> None:
    later = min(real, key=lambda s: (s.agreed_at, str(s.id)), default=None)
    history = list(
        session.exec(select(TimelineEntry).where(TimelineEntry.commitment_id == policy_step.id))
    )
    entries = [e for e in history if _is_policy_closure(e)]
    wanted: tuple[datetime, str] | None = None
    if later is not None and _open_at(history, later.agreed_at):
        wanted = (later.agreed_at, f"Next step agreed: {_first_action(session, later)}")
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

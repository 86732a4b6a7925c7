"""Deadline policies on the write paths: the steps they date and the steps they make.

A step agreed without due_at is due by the first matching policy (rule 1); an interview
completed without a step gets a policy's default step, which the next step agreed after
the completion closes (rules 2 and 3; API.md, "Deadline policies"). Computing a due time is
the deadlines package's (``app.deadlines.policy_due``); writing the steps is the ledger's, here.

Both write paths call these (REST: service.py; events: events/applier.py, and
events/bulk.py for new interviews): ``agree_step`` where a step is agreed, and
``settle_policy_step`` after a change that completes an interview or agrees a step on it.
Every call runs while the caller holds the interview's row lock (or has just created it),
so that the decisions below see every step of it.
"""

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.commitments import ledger
from app.commitments.history import DUE_BASIS_KEY, replay_commitment
from app.commitments.ledger import Origin, as_change
from app.deadlines.policies import InterviewFacts, matching_default_step_policy
from app.deadlines.policy_due import (
    Computed,
    computed_due,
    due_from_policy,
    enabled_policies,
    interview_facts,
)
from app.models import (
    Commitment,
    CommitmentStatus,
    DeadlineBasis,
    DeadlinePolicy,
    Interview,
    InterviewStatus,
    TimelineEntry,
    TimelineKind,
)

POLICY_SOURCE = "policy"
# In a policy step's agreement: the policy's {"from": role, "fallback": owner}.
OWNER_FROM_KEY = "owner_from"
# How a step agreed without a due time gets one: (session, interview, owner id, owner role,
# agreed at) -> the due time and how it was computed.
DueFromPolicy = Callable[[Session, Interview, str, str, datetime], Computed]


def agree_step(
    session: Session,
    interview: Interview,
    values: Mapping[str, Any],
    origin: Origin,
    *,
    source: str | None,
    external_id: str | None,
    due: DueFromPolicy = due_from_policy,
) -> Commitment:
    """Agree a step under ``interview``; without due_at, due by the first matching policy
    (rule 1), counted from its agreement, and the commitment keeps how it was computed.
    ``due`` finds that due time (the event path's may make the delivery wait first)."""
    computed = None
    if values.get("due_at") is None:
        computed = due(
            session, interview, values["owner_id"], values["owner_role"], origin.effective_at
        )
        values = {**values, "due_at": computed.due_at, DUE_BASIS_KEY: "policy"}
    commitment = ledger.agree(
        session, interview, values, origin, source=source, external_id=external_id
    )
    if computed is not None:
        computed.stamp(commitment)
    return commitment


def agree_again(
    session: Session,
    interview: Interview,
    step: Commitment,
    values: dict[str, Any],
    origin: Origin,
) -> None:
    """The same step stated again: another agreement, which the history orders."""
    if values.get("due_at") is None:
        values = _policy_due(session, interview, step, values, origin.effective_at)
    ledger.change(session, step, TimelineKind.agreed, values, origin)


def _policy_due(
    session: Session,
    interview: Interview,
    step: Commitment,
    values: dict[str, Any],
    agreed_at: datetime,
) -> dict[str, Any]:
    """A repeated agreement without due_at: the due time a policy gives from this agreement.

    It counts only if this agreement turns out to be the step's first (see history.py): then
    the commitment keeps how it was computed. Either way the values carry one, so that the
    step's first agreement has a due time whichever copy arrived first.
    """
    computed = due_from_policy(
        session, interview, values["owner_id"], values["owner_role"], agreed_at
    )
    if agreed_at <= step.agreed_at:
        computed.stamp(step)
    return {**values, "due_at": computed.due_at, DUE_BASIS_KEY: "policy"}


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
    origin = default_step_origin(policy.id, interview.id, completed_at, now, delivery_id)
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


def default_step_origin(
    policy_id: uuid.UUID,
    interview_id: uuid.UUID,
    completed_at: datetime,
    now: datetime,
    delivery_id: uuid.UUID | None,
) -> Origin:
    """Where an interview's default step comes from: its policy, agreed at the completion."""
    return Origin(
        effective_at=completed_at,
        actor=f"policy:{policy_id}",
        now=now,
        tiebreak=f"policy:{interview_id}",
        delivery_id=delivery_id,
    )


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
    computed = computed_due(session, policy, step["rule"], owner["owner_id"], completed_at)
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
        computed = computed_due(session, policy, rule, owner["owner_id"], agreed.effective_at)
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
        if not ledger.has_agreement(session, step_id):
            session.delete(step)
    for interview_id in interview_ids:
        interview = session.get(Interview, interview_id)
        if interview is None:
            continue
        if ledger.has_interview_history(session, interview_id):
            ledger.rebuild_interview(session, interview, interview.updated_at)
        else:  # the delivery recorded it: as good as new until it is applied again
            interview.status, interview.completed_at = InterviewStatus.scheduled, None
            session.add(interview)
    session.flush()

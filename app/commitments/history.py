"""Pure replay of a subject's history: entries in effect order in, states out.

Both interviews and commitments are rebuilt this way after every change, so the
state never depends on the order in which changes arrived, only on when each took
effect (ties broken by a stable key).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.models import CommitmentStatus, InterviewStatus, OwedBy, OwnerRole, TimelineKind

COMMITMENT_FIELDS = (
    "action",
    "owner_id",
    "owner_name",
    "owner_role",
    "owed_by",
    "channel",
    "due_at",
    "promised_by",
    "candidate_note",
)
INTERVIEW_FIELDS = (
    "candidate_external_id",
    "candidate_name",
    "candidate_email",
    "job_external_id",
    "job_title",
    "stage",
    "status",
    "interviewers",
    "default_owners",
    "starts_at",
    "ends_at",
)
# Set in an agreement's values when a deadline policy computed its due_at.
DUE_BASIS_KEY = "due_basis"
INSTANT_FIELDS = frozenset({"due_at", "promised_by", "starts_at", "ends_at"})


@dataclass(frozen=True)
class Change:
    """One timeline entry as the replay sees it. Instants in ``values`` are datetimes."""

    kind: str
    effective_at: datetime
    tiebreak: str
    values: dict[str, Any]
    reason: str | None = None


def default_owed_by(role: str) -> str:
    return OwedBy.candidate if role == OwnerRole.candidate else OwedBy.company


def effect_order(changes: Iterable[Change]) -> list[Change]:
    """Changes in the order they took effect, ties broken by their stable key.

    The earliest agreement comes first: a commitment exists from then on. A later
    agreement of the same step (a sender repeating it) counts as an update.
    """
    ordered = sorted(changes, key=lambda c: (c.effective_at, c.tiebreak))
    agreements = [c for c in ordered if c.kind == TimelineKind.agreed]
    if not agreements:
        return ordered
    first = agreements[0]
    return [first, *(c for c in ordered if c is not first)]


@dataclass
class CommitmentState:
    valid_from: datetime
    fields: dict[str, Any]
    status: str = CommitmentStatus.open
    outcome: str | None = None
    reason: str | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    version: int = 1
    diff: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.fields,
            "status": self.status,
            "outcome": self.outcome,
            "reason": self.reason,
            "completed_at": self.completed_at,
            "cancelled_at": self.cancelled_at,
            "version": self.version,
        }


def _next_commitment_state(state: CommitmentState, change: Change, at: datetime) -> CommitmentState:
    before = state.snapshot()
    fields = dict(state.fields)
    status, outcome, reason = state.status, state.outcome, state.reason
    completed_at, cancelled_at = state.completed_at, state.cancelled_at
    if change.kind in (TimelineKind.updated, TimelineKind.agreed):
        values = change.values
        if change.kind == TimelineKind.agreed and values.get(DUE_BASIS_KEY) == "policy":
            # A due time a policy computed counts only in the first agreement: a step
            # stated again never moves it, whichever of the two arrived first.
            values = {k: v for k, v in values.items() if k != "due_at"}
        fields.update({k: v for k, v in values.items() if k in COMMITMENT_FIELDS})
        if "owner_role" in change.values and change.values.get("owed_by") is None:
            fields["owed_by"] = default_owed_by(fields["owner_role"])
    elif change.kind == TimelineKind.completed:
        status, outcome, completed_at = CommitmentStatus.done, change.values.get("outcome"), at
        cancelled_at = None
    elif change.kind == TimelineKind.cancelled:
        status, reason, cancelled_at = CommitmentStatus.cancelled, change.reason, at
        completed_at = None
    elif change.kind == TimelineKind.reopened:
        status, reason, outcome = CommitmentStatus.open, change.reason, None
        completed_at = cancelled_at = None
    after = CommitmentState(
        valid_from=at,
        fields=fields,
        status=status,
        outcome=outcome,
        reason=reason,
        completed_at=completed_at,
        cancelled_at=cancelled_at,
        version=state.version + 1,
    )
    new = after.snapshot()
    after.diff = {k: (before[k], new[k]) for k in new if k != "version" and before[k] != new[k]}
    return after


def replay_commitment(changes: Sequence[Change]) -> list[CommitmentState]:
    """Every state the commitment went through, oldest first.

    A change that took effect before the agreement (an event stamped earlier than the
    step it updates) is applied at the agreement's instant.
    """
    ordered = effect_order(changes)
    if not ordered or ordered[0].kind != TimelineKind.agreed:
        raise ValueError("a commitment's history starts with its agreement")
    first = ordered[0]
    initial: dict[str, Any] = {k: first.values.get(k) for k in COMMITMENT_FIELDS}
    if initial["owed_by"] is None:
        initial["owed_by"] = default_owed_by(initial["owner_role"])
    states = [CommitmentState(valid_from=first.effective_at, fields=initial)]
    states[0].diff = {k: (None, v) for k, v in initial.items() if v is not None}
    for change in ordered[1:]:
        at = max(change.effective_at, first.effective_at)
        states.append(_next_commitment_state(states[-1], change, at))
    return states


@dataclass
class InterviewState:
    fields: dict[str, Any]
    completed_at: datetime | None
    diff: dict[str, tuple[Any, Any]]


def replay_interview(changes: Sequence[Change]) -> list[InterviewState]:
    """Every state the interview went through: each field takes the latest value by effect time."""
    states: list[InterviewState] = []
    fields: dict[str, Any] = {
        "status": InterviewStatus.scheduled,
        "interviewers": [],
        "default_owners": {},
    }
    completed_at: datetime | None = None
    for change in effect_order(changes):
        before = dict(fields)
        fields.update({k: v for k, v in change.values.items() if k in INTERVIEW_FIELDS})
        if fields["status"] == InterviewStatus.completed:
            if before.get("status") != InterviewStatus.completed or completed_at is None:
                completed_at = change.effective_at
        else:
            completed_at = None
        diff = {k: (before.get(k), v) for k, v in fields.items() if before.get(k) != v}
        states.append(InterviewState(fields=dict(fields), completed_at=completed_at, diff=diff))
    return states

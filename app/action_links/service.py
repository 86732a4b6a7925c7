"""A step's action page and the answers it takes: done, needs more time, hand over.

The link (app/owners/links.py) is bound to one step and to the owner it was e-mailed to.
While the step is open and still theirs, the page shows it with three forms; an answer
makes the change the REST call makes (commitments.service: the same validation, timeline,
outbox messages and reminders), with the actor ``link:<owner id>``. Once the step is done,
cancelled or someone else's, the page says what happened and takes no answer. Reading the
page changes nothing: mail scanners open links.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, func, select

from app.action_links.forms import Change, Done, MoreTime, Op, Refusal, read_change
from app.commitments import service as commitments
from app.commitments.clock import waiting_clock
from app.commitments.schemas import CommitmentPatch
from app.models import ActionLink, Commitment, CommitmentStatus, Interview, Owner
from app.owners.links import active_action_link
from app.owners.service import owner_time_zone
from app.schemas import Owner as StepOwner
from app.status_page.wording import (
    written_date,
    written_instant,
    written_length,
    zone_name,
)

ACTOR_PREFIX = "link:"
# Up to this many owners, "hand over" offers a list to choose from; past it, an owner id.
OWNERS_LISTED = 200


@dataclass(frozen=True)
class StepView:
    """The step as its owner reads it, times in their zone."""

    action: str
    candidate: str
    job: str | None
    due: str
    due_at: str
    late_by: str | None
    waiting_for: str | None
    waiting_since: str | None
    unanswered: int


@dataclass(frozen=True)
class Taker:
    """An owner the step may be handed to."""

    id: str
    label: str


@dataclass(frozen=True)
class ActionPage:
    """What the page shows: the step, and either what happened to it (``moved_on``) or the
    forms (the owners it may be handed to, and the earliest new deadline)."""

    owner: str
    step: StepView
    moved_on: str | None
    takers: list[Taker] | None
    earliest: str
    time_zone: str


@dataclass(frozen=True)
class Applied:
    op: Op


@dataclass(frozen=True)
class MovedOn:
    page: ActionPage


@dataclass(frozen=True)
class Refused:
    page: ActionPage
    refusal: Refusal


def _label(owner: Owner) -> str:
    return f"{owner.name} ({owner.id})" if owner.name else owner.id


def _written(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _takers(session: Session, owner_id: str) -> list[Taker] | None:
    """The owners the step may be handed to, by name; None when there are too many to list."""
    others = col(Owner.id) != owner_id
    count = session.exec(select(func.count()).select_from(Owner).where(others)).one()
    if count > OWNERS_LISTED:
        return None
    rows = session.exec(
        select(Owner)
        .where(others)
        .order_by(func.coalesce(col(Owner.name), col(Owner.id)), col(Owner.id))
    ).all()
    return [Taker(row.id, _label(row)) for row in rows]


def _moved_on(session: Session, step: Commitment, owner_id: str, zone: ZoneInfo) -> str | None:
    """What happened to a step that no longer takes this owner's answer; None while it does."""
    if step.status == CommitmentStatus.done and step.completed_at is not None:
        return f"Completed on {written_date(step.completed_at, zone)}."
    if step.status == CommitmentStatus.cancelled and step.cancelled_at is not None:
        return f"Cancelled on {written_date(step.cancelled_at, zone)}."
    if step.status != CommitmentStatus.open:
        return f"No longer open: it is {step.status}."
    if step.owner_id != owner_id:
        taker = session.get(Owner, step.owner_id)
        name = step.owner_name or (taker.name if taker is not None else None) or step.owner_id
        return f"Handed over to {name}."
    return None


def _step_view(session: Session, step: Commitment, zone: ZoneInfo, now: datetime) -> StepView:
    interview = commitments.get_interview(session, step.interview_id)
    since, unanswered = waiting_clock(session, interview, now)
    return StepView(
        action=step.action,
        candidate=_candidate(interview),
        job=interview.job_title or interview.job_external_id,
        due=written_instant(step.due_at, zone),
        due_at=_written(step.due_at),
        late_by=written_length(now - step.due_at) if step.due_at < now else None,
        waiting_for=written_length(now - since) if since is not None else None,
        waiting_since=written_instant(since, zone) if since is not None else None,
        unanswered=unanswered,
    )


def _candidate(interview: Interview) -> str:
    return interview.candidate_name or f"candidate {interview.candidate_external_id}"


def _earliest(zone: ZoneInfo, now: datetime) -> str:
    # The first whole minute after now, as a datetime-local input's min.
    later = (now + timedelta(minutes=1)).astimezone(zone)
    return f"{later:%Y-%m-%dT%H:%M}"


def _page(
    session: Session, link: ActionLink, owner: Owner, step: Commitment, now: datetime
) -> ActionPage:
    zone = owner_time_zone(session, owner)
    moved_on = _moved_on(session, step, link.held_by, zone)
    return ActionPage(
        owner=owner.name or owner.id,
        step=_step_view(session, step, zone, now),
        moved_on=moved_on,
        takers=_takers(session, link.held_by) if moved_on is None else [],
        earliest=_earliest(zone, now),
        time_zone=zone_name(zone),
    )


def _opened(
    session: Session, token: str, now: datetime, *, lock: bool = False
) -> tuple[ActionLink, Owner, Commitment] | None:
    link = active_action_link(session, token, now)
    owner = session.get(Owner, link.owner_id) if link is not None else None
    if link is None or owner is None:
        return None
    # Locked, the step is read again: an answer that waited for another sees its result.
    return link, owner, commitments.get_commitment(session, link.commitment_id, lock=lock)


def action_page(session: Session, token: str, now: datetime) -> ActionPage | None:
    """The page a token opens at ``now``; None for a link that is unknown or expired, or
    whose owner has left the directory (alike)."""
    opened = _opened(session, token, now)
    return _page(session, *opened, now) if opened is not None else None


def answer(
    session: Session, token: str, fields: dict[str, str], now: datetime
) -> Applied | MovedOn | Refused | None:
    """Apply one form's answer to the link's step, as the REST call would, and commit.

    The step is locked first, so that two answers sent at once (a double click) are taken
    one after the other: the second finds the step done or handed over (``MovedOn``) or,
    for the same new deadline, changes nothing. A wrong field changes nothing either.
    """
    opened = _opened(session, token, now, lock=True)
    if opened is None:
        session.rollback()
        return None
    link, owner, step = opened
    zone = owner_time_zone(session, owner)
    if _moved_on(session, step, link.held_by, zone) is not None:
        result: MovedOn | Refused = MovedOn(_page(session, link, owner, step, now))
        session.rollback()
        return result

    def may_take(owner_id: str) -> str | None:
        if owner_id == link.held_by:
            return "already holds it: choose someone else"
        if session.get(Owner, owner_id) is None:
            return "is not in the owner directory"
        return None

    change = read_change(fields, zone, now, may_take)
    if isinstance(change, Refusal):
        result = Refused(_page(session, link, owner, step, now), change)
        session.rollback()
        return result
    return Applied(_apply(session, step, change, f"{ACTOR_PREFIX}{link.owner_id}", now))


def _apply(session: Session, step: Commitment, change: Change, actor: str, now: datetime) -> Op:
    """The REST use case for the change; it commits. The step is locked, so its current
    version is the one changed ("*")."""
    if isinstance(change, Done):
        commitments.complete_commitment(session, step.id, change.outcome, None, actor, now)
        return Op.complete
    if isinstance(change, MoreTime):
        patch = CommitmentPatch(due_at=change.due_at, reason=change.reason)
        commitments.update_commitment(session, step.id, patch, "*", actor, now)
        return Op.redate
    taker = session.get(Owner, change.owner_id)
    # The step changes hands, not kind: the role and who owes it stay as they were.
    new_owner = StepOwner.model_validate(
        {"id": change.owner_id, "name": taker.name if taker else None, "role": step.owner_role}
    )
    patch = CommitmentPatch(owner=new_owner, owed_by=step.owed_by, reason=change.reason)
    commitments.update_commitment(session, step.id, patch, "*", actor, now)
    return Op.reassign

"""Read-side use cases: single resources, lists, overdue, summary, timeline.

Every computed field (overdue, waiting clock) is computed at an instant passed in
by the caller; nothing here reads the clock.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, literal_column, or_, tuple_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.commitments.history import effect_order, replay_commitment, replay_interview
from app.commitments.schemas import (
    CandidateOut,
    CommitmentOut,
    CommitmentQuery,
    ContactOut,
    FieldChange,
    InterviewDetail,
    InterviewOut,
    InterviewQuery,
    JobOut,
    MissingNextStepQuery,
    OverdueFilters,
    OverdueItem,
    OverdueQuery,
    OwnerOut,
    SummaryItem,
    SummaryQuery,
    TimelineEntryOut,
    iso_duration,
)
from app.commitments.service import as_change, get_interview
from app.models import (
    Commitment,
    CommitmentStatus,
    CommitmentVersion,
    Contact,
    ContactDirection,
    Interview,
    InterviewStatus,
    OwedBy,
    TimelineEntry,
    TimelineKind,
)
from app.pagination import aware_instant, encode_cursor, keyset

OWNER_FIELDS = frozenset({"owner_id", "owner_name", "owner_role", "owed_by"})


def _overdue(status: str, due_at: datetime, as_of: datetime) -> tuple[bool, str | None, int | None]:
    if status != CommitmentStatus.open or due_at >= as_of:
        return False, None, None
    late = as_of - due_at
    return True, iso_duration(late), int(late.total_seconds())


def commitment_out(
    commitment: Commitment, as_of: datetime, state: CommitmentVersion | None = None
) -> CommitmentOut:
    """The commitment as the API shows it; ``state`` overrides it with a past version."""
    s: Commitment | CommitmentVersion = state or commitment
    is_overdue, overdue_by, overdue_seconds = _overdue(s.status, s.due_at, as_of)
    return CommitmentOut(
        id=commitment.id,
        interview_id=commitment.interview_id,
        source=commitment.source,
        external_id=commitment.external_id,
        action=s.action,
        owner=OwnerOut(id=s.owner_id, name=s.owner_name, role=s.owner_role),
        owed_by=s.owed_by,
        channel=s.channel,
        agreed_at=commitment.agreed_at,
        due_at=s.due_at,
        promised_by=s.promised_by,
        status=s.status,
        outcome=s.outcome,
        reason=s.reason,
        completed_at=s.completed_at,
        cancelled_at=s.cancelled_at,
        is_overdue=is_overdue,
        overdue_by=overdue_by,
        overdue_seconds=overdue_seconds,
        version=s.version,
        created_at=commitment.created_at,
        updated_at=commitment.updated_at,
    )


def _valid_at(as_of: datetime) -> ColumnElement[bool]:
    return and_(
        col(CommitmentVersion.valid_from) <= as_of,
        or_(col(CommitmentVersion.valid_to).is_(None), col(CommitmentVersion.valid_to) > as_of),
    )


# A literal, not a bound parameter, so that both databases use the partial indexes.
_OPEN_VERSION = col(CommitmentVersion.status) == literal_column("'open'")


def waiting_clocks(
    session: Session, interviews: Sequence[Interview], as_of: datetime
) -> dict[uuid.UUID, tuple[datetime | None, int]]:
    """For each interview: since when the candidate has been waiting, and how often they chased.

    Only interviews with a company-owed step open at ``as_of`` have a clock.
    """
    by_id = {i.id: i for i in interviews}
    clocks: dict[uuid.UUID, tuple[datetime | None, int]] = dict.fromkeys(by_id, (None, 0))
    if not by_id:
        return clocks
    first_open = dict(
        session.exec(
            select(CommitmentVersion.interview_id, func.min(CommitmentVersion.valid_from))
            .where(
                col(CommitmentVersion.interview_id).in_(by_id),
                # commitment_version has no index on interview_id: reaching the versions
                # through the interviews' commitments keeps this from scanning them all.
                col(CommitmentVersion.commitment_id).in_(
                    select(Commitment.id).where(col(Commitment.interview_id).in_(by_id))
                ),
                _OPEN_VERSION,
                col(CommitmentVersion.owed_by) == OwedBy.company,
                _valid_at(as_of),
            )
            .group_by(col(CommitmentVersion.interview_id))
        ).all()
    )
    if not first_open:
        return clocks
    contacts: dict[uuid.UUID, list[tuple[str, datetime]]] = defaultdict(list)
    for interview_id, direction, at in session.exec(
        select(Contact.interview_id, Contact.direction, Contact.at).where(
            col(Contact.interview_id).in_(first_open), col(Contact.at) <= as_of
        )
    ).all():
        contacts[interview_id].append((direction, at))
    for interview_id, opened in first_open.items():
        interview = by_id[interview_id]
        since = interview.ends_at or interview.completed_at or opened
        outbound = [at for d, at in contacts[interview_id] if d == ContactDirection.outbound]
        if outbound:
            since = max(since, *outbound)
        unanswered = sum(
            1 for d, at in contacts[interview_id] if d == ContactDirection.inbound and at > since
        )
        clocks[interview_id] = (since, unanswered)
    return clocks


def _candidate(i: Interview) -> CandidateOut:
    return CandidateOut(
        external_id=i.candidate_external_id, name=i.candidate_name, email=i.candidate_email
    )


def _job(i: Interview) -> JobOut:
    return JobOut(external_id=i.job_external_id, title=i.job_title)


def interview_out(i: Interview, clock: tuple[datetime | None, int]) -> InterviewOut:
    return InterviewOut(
        id=i.id,
        source=i.source,
        external_id=i.external_id,
        candidate=_candidate(i),
        job=_job(i),
        stage=i.stage,
        status=i.status,
        interviewers=i.interviewers,
        starts_at=i.starts_at,
        ends_at=i.ends_at,
        completed_at=i.completed_at,
        waiting_since=clock[0],
        unanswered_contacts=clock[1],
        version=i.version,
        created_at=i.created_at,
        updated_at=i.updated_at,
    )


def interview_detail(session: Session, interview_id: uuid.UUID, as_of: datetime) -> InterviewDetail:
    interview = get_interview(session, interview_id)
    commitments = session.exec(
        select(Commitment)
        .where(Commitment.interview_id == interview.id)
        .order_by(col(Commitment.agreed_at), col(Commitment.id))
    ).all()
    clock = waiting_clocks(session, [interview], as_of)[interview.id]
    return InterviewDetail(
        **interview_out(interview, clock).model_dump(),
        commitments=[commitment_out(c, as_of) for c in commitments],
    )


def _page(
    rows: Sequence[Any], limit: int, key: Any, params: dict[str, Any]
) -> tuple[list[Any], str | None]:
    if len(rows) <= limit:
        return list(rows), None
    rows = list(rows[:limit])
    return rows, encode_cursor([str(v) for v in key(rows[-1])], params)


def _after(columns: Sequence[Any], values: Sequence[Any], descending: bool = False) -> Any:
    if descending:
        return tuple_(*columns) < tuple_(*values)
    return tuple_(*columns) > tuple_(*values)


def _ended(i: type[Interview]) -> Any:
    return func.coalesce(col(i.ends_at), col(i.completed_at))


def list_interviews(
    session: Session, query: InterviewQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[InterviewOut], str | None]:
    statement = select(Interview)
    if query.candidate_id is not None:
        statement = statement.where(Interview.candidate_external_id == query.candidate_id)
    if query.job_id is not None:
        statement = statement.where(Interview.job_external_id == query.job_id)
    if query.status is not None:
        statement = statement.where(Interview.status == query.status)
    if query.source is not None:
        statement = statement.where(Interview.source == query.source)
    if query.ended_after is not None:
        statement = statement.where(_ended(Interview) > query.ended_after)
    if query.ended_before is not None:
        statement = statement.where(_ended(Interview) < query.ended_before)
    keys = (col(Interview.created_at), col(Interview.id))
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(_after(keys, mark))
    rows = session.exec(statement.order_by(*keys).limit(query.limit + 1)).all()
    params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    page, cursor = _page(rows, query.limit, lambda i: (i.created_at.isoformat(), i.id), params)
    clocks = waiting_clocks(session, page, as_of)
    return [interview_out(i, clocks[i.id]) for i in page], cursor


def missing_next_step(
    session: Session,
    query: MissingNextStepQuery,
    ended_before: datetime,
    after: list[str] | None,
) -> tuple[list[InterviewOut], str | None]:
    """Completed interviews that ended before ``ended_before`` with no commitment at all."""
    ended = _ended(Interview)
    statement = select(Interview).where(
        Interview.status == InterviewStatus.completed,
        ended < ended_before,
        ~select(Commitment.id).where(Commitment.interview_id == Interview.id).exists(),
    )
    if query.source is not None:
        statement = statement.where(Interview.source == query.source)
    keys = (ended, col(Interview.id))
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(_after(keys, mark))
    rows = session.exec(statement.order_by(*keys).limit(query.limit + 1)).all()
    params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    params["ended_before"] = ended_before.isoformat()
    page, cursor = _page(
        rows,
        query.limit,
        lambda i: ((i.ends_at or i.completed_at).isoformat(), i.id),
        params,
    )
    return [interview_out(i, (None, 0)) for i in page], cursor


def _join_interview_filters(
    statement: SelectOfScalar[Commitment],
    candidate_id: str | None,
    job_id: str | None,
    source: str | None,
) -> SelectOfScalar[Commitment]:
    if candidate_id is not None:
        statement = statement.where(col(Interview.candidate_external_id) == candidate_id)
    if job_id is not None:
        statement = statement.where(col(Interview.job_external_id) == job_id)
    if source is not None:
        statement = statement.where(col(Interview.source) == source)
    return statement


def list_commitments(
    session: Session, query: CommitmentQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[CommitmentOut], str | None]:
    statement = select(Commitment).join(Interview, col(Interview.id) == Commitment.interview_id)
    c = Commitment
    if query.status is not None:
        statement = statement.where(col(c.status) == query.status)
    if query.overdue is not None:
        is_late = and_(col(c.status) == CommitmentStatus.open, col(c.due_at) < as_of)
        statement = statement.where(is_late if query.overdue else ~is_late)
    if query.owner_id is not None:
        statement = statement.where(col(c.owner_id) == query.owner_id)
    if query.owner_role is not None:
        statement = statement.where(col(c.owner_role) == query.owner_role)
    if query.owed_by is not None:
        statement = statement.where(col(c.owed_by) == query.owed_by)
    if query.due_before is not None:
        statement = statement.where(col(c.due_at) < query.due_before)
    if query.due_after is not None:
        statement = statement.where(col(c.due_at) > query.due_after)
    statement = _join_interview_filters(statement, query.candidate_id, query.job_id, query.source)
    descending = query.sort == "-due_at"
    keys = (col(c.due_at), col(c.id))
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(_after(keys, mark, descending))
    order = [k.desc() for k in keys] if descending else list(keys)
    rows = session.exec(statement.order_by(*order).limit(query.limit + 1)).all()
    params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    params["as_of"] = as_of.isoformat()
    page, cursor = _page(rows, query.limit, lambda r: (r.due_at.isoformat(), r.id), params)
    return [commitment_out(r, as_of) for r in page], cursor


def _overdue_where(filters: OverdueFilters, as_of: datetime) -> list[ColumnElement[bool]]:
    """What "open and late at ``as_of``" means for a commitment version, with the filters."""
    v = CommitmentVersion
    late_since = col(v.promised_by) if filters.broken_promise else col(v.due_at)
    conditions = [
        _OPEN_VERSION,
        _valid_at(as_of),
        col(v.owed_by) == filters.owed_by,
        late_since < as_of,
    ]
    if filters.min_overdue is not None:
        try:
            cutoff = as_of - filters.min_overdue
        except OverflowError:  # before the first representable instant: nothing is that late
            conditions.append(false())
        else:
            conditions.append(col(v.due_at) <= cutoff)
    if filters.owner_id is not None:
        conditions.append(col(v.owner_id) == filters.owner_id)
    if filters.owner_role is not None:
        conditions.append(col(v.owner_role) == filters.owner_role)
    return conditions


def list_overdue(
    session: Session, query: OverdueQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[OverdueItem], str | None]:
    """Open steps late at ``as_of``, as they stood then, most overdue first."""
    v = CommitmentVersion
    statement = (
        select(v, Commitment, Interview)
        .join(Commitment, col(Commitment.id) == v.commitment_id)
        .join(Interview, col(Interview.id) == v.interview_id)
        .where(*_overdue_where(query, as_of))
    )
    sort_column = col(v.promised_by) if query.broken_promise else col(v.due_at)
    keys = (sort_column, col(v.commitment_id))
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(_after(keys, mark))
    rows = session.exec(statement.order_by(*keys).limit(query.limit + 1)).all()
    params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    params["as_of"] = as_of.isoformat()
    sort_attr = "promised_by" if query.broken_promise else "due_at"
    page, cursor = _page(
        rows,
        query.limit,
        lambda r: (getattr(r[0], sort_attr).isoformat(), r[0].commitment_id),
        params,
    )
    clocks = waiting_clocks(session, [r[2] for r in page], as_of)
    items = []
    for version, commitment, interview in page:
        since, unanswered = clocks[interview.id]
        items.append(
            OverdueItem(
                **commitment_out(commitment, as_of, version).model_dump(),
                candidate=_candidate(interview),
                job=_job(interview),
                waiting_since=since,
                unanswered_contacts=unanswered,
            )
        )
    return items, cursor


def _epoch_seconds(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return func.extract("epoch", column)


def overdue_summary(session: Session, query: SummaryQuery, as_of: datetime) -> list[SummaryItem]:
    """Overdue steps at ``as_of`` grouped by owner, role or job, largest count first."""
    v = CommitmentVersion
    group = {
        "owner": col(v.owner_id),
        "owner_role": col(v.owner_role),
        "job": col(Interview.job_external_id),
    }[query.group_by]
    count = func.count().label("n")
    statement = (
        select(group, count, func.min(v.due_at), func.sum(_epoch_seconds(session, v.due_at)))
        .select_from(v)
        .join(Interview, col(Interview.id) == v.interview_id)
        .where(*_overdue_where(query, as_of))
        .group_by(group)
        .order_by(count.desc(), group)
    )
    as_of_epoch = as_of.timestamp()
    return [
        SummaryItem(
            group=key,
            count=n,
            oldest_due_at=oldest,
            overdue_seconds_total=round(n * as_of_epoch - float(due_total)),
        )
        for key, n, oldest, due_total in session.exec(statement).all()
    ]


def _entry_kind(
    entry: TimelineEntry, diff: dict[str, tuple[Any, Any]], first_interview_entry: uuid.UUID | None
) -> str:
    if entry.kind in (TimelineKind.interview_recorded, TimelineKind.interview_updated):
        # Which event recorded the interview depends on effect time, not on arrival.
        recorded = entry.id == first_interview_entry
        return TimelineKind.interview_recorded if recorded else TimelineKind.interview_updated
    if entry.kind != TimelineKind.updated or not diff:
        return entry.kind
    keys = set(diff)
    if "owner_id" in keys and keys <= OWNER_FIELDS:
        return "reassigned"
    if keys <= {"due_at", "promised_by"} and "due_at" in keys:
        return "deadline_moved"
    return "updated"


def _jsonable(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def timeline(
    session: Session, interview_id: uuid.UUID, limit: int, after: list[str] | None
) -> tuple[list[TimelineEntryOut], str | None]:
    """The interview's history in effect order, each change with before and after."""
    get_interview(session, interview_id)
    entries = list(
        session.exec(select(TimelineEntry).where(TimelineEntry.interview_id == interview_id)).all()
    )
    diffs: dict[uuid.UUID, dict[str, tuple[Any, Any]]] = {}
    subjects: dict[uuid.UUID | None, list[TimelineEntry]] = defaultdict(list)
    first_interview_entry: uuid.UUID | None = None
    for entry in entries:
        if entry.kind != TimelineKind.contact:
            subjects[entry.commitment_id].append(entry)
        else:
            diffs[entry.id] = {k: (None, v) for k, v in entry.changes.items() if v is not None}
    for commitment_id, group in subjects.items():
        ordered = _in_effect_order(group)
        states: Iterable[Any] = (
            replay_commitment([as_change(e) for e in ordered])
            if commitment_id
            else replay_interview([as_change(e) for e in ordered])
        )
        for entry, state in zip(ordered, states, strict=True):
            diffs[entry.id] = state.diff
        if commitment_id is None and ordered:
            first_interview_entry = ordered[0].id
    entries.sort(key=lambda e: (e.effective_at, e.recorded_at, e.id))
    mark = keyset(after, aware_instant, aware_instant, uuid.UUID)
    if mark is not None:
        entries = [e for e in entries if (e.effective_at, e.recorded_at, e.id) > mark]
    page, cursor = _page(
        entries, limit, lambda e: (e.effective_at.isoformat(), e.recorded_at.isoformat(), e.id), {}
    )
    return [
        TimelineEntryOut(
            id=e.id,
            interview_id=e.interview_id,
            commitment_id=e.commitment_id,
            kind=_entry_kind(e, diffs[e.id], first_interview_entry),
            effective_at=e.effective_at,
            recorded_at=e.recorded_at,
            actor=e.actor,
            reason=e.reason,
            changes={
                k: FieldChange(before=_jsonable(b), after=_jsonable(a))
                for k, (b, a) in diffs[e.id].items()
            },
            delivery_id=e.delivery_id,
        )
        for e in page
    ], cursor


def _in_effect_order(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    keyed = [(as_change(e), e) for e in entries]
    position = {id(c): e for c, e in keyed}
    return [position[id(c)] for c in effect_order([c for c, _ in keyed])]


def contact_out(contact: Contact) -> ContactOut:
    return ContactOut.model_validate(contact, from_attributes=True)

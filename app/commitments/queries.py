"""Read-side use cases: single resources and the lists of interviews, missing next steps
and commitments. Overdue lives in overdue.py, the timeline in timeline.py.
"""

import uuid
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
)
from sqlalchemy import (
    select as sa_select,
)
from sqlmodel import Session, col, select

from app.commitments.clock import Clock, clock_columns, clock_from, waiting_clock
from app.commitments.rows import (
    LIMIT,
    Fields,
    Item,
    after_mark,
    commitment_item,
    commitment_out,
    commitment_out_columns,
    fetch_rows,
    mark_params,
    page_of,
    present_filters,
    valid_at,
)
from app.commitments.schemas import (
    CommitmentQuery,
    ContactOut,
    InterviewDetail,
    InterviewOut,
    InterviewQuery,
    MissingNextStepQuery,
)
from app.commitments.service import get_interview
from app.models import (
    Commitment,
    CommitmentStatus,
    CommitmentVersion,
    Contact,
    Interview,
    InterviewStatus,
    UTCDateTime,
)
from app.pagination import aware_instant, keyset

# InterviewOut's fields as columns, in its order (candidate and job spread out).
INTERVIEW_OUT_FIELDS = (
    "id",
    "source",
    "external_id",
    "candidate_external_id",
    "candidate_name",
    "candidate_email",
    "job_external_id",
    "job_title",
    "stage",
    "status",
    "interviewers",
    "starts_at",
    "ends_at",
    "completed_at",
    "version",
    "created_at",
    "updated_at",
)
INTERVIEW_OUT_COLUMNS = tuple(col(getattr(Interview, name)) for name in INTERVIEW_OUT_FIELDS)


def interview_item(row: Fields, clock: Clock) -> Item:
    """An InterviewOut as a dict, from a row (or a mapping) holding ``INTERVIEW_OUT_FIELDS``."""
    return {
        "id": row["id"],
        "source": row["source"],
        "external_id": row["external_id"],
        "candidate": {
            "external_id": row["candidate_external_id"],
            "name": row["candidate_name"],
            "email": row["candidate_email"],
        },
        "job": {"external_id": row["job_external_id"], "title": row["job_title"]},
        "stage": row["stage"],
        "status": row["status"],
        # As InterviewerOut shows them: its three fields, nothing else.
        "interviewers": [
            {"external_id": i.get("external_id"), "name": i.get("name"), "email": i.get("email")}
            for i in row["interviewers"]
        ],
        "starts_at": row["starts_at"],
        "ends_at": row["ends_at"],
        "completed_at": row["completed_at"],
        "waiting_since": clock[0],
        "unanswered_contacts": clock[1],
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def interview_out(i: Interview, clock: Clock) -> InterviewOut:
    values = {name: getattr(i, name) for name in INTERVIEW_OUT_FIELDS}
    return InterviewOut.model_validate(interview_item(values, clock))


def interview_detail(session: Session, interview_id: uuid.UUID, as_of: datetime) -> InterviewDetail:
    interview = get_interview(session, interview_id)
    commitments = session.exec(
        select(Commitment)
        .where(Commitment.interview_id == interview.id)
        .order_by(col(Commitment.agreed_at), col(Commitment.id))
    ).all()
    clock = waiting_clock(session, interview, as_of)
    return InterviewDetail(
        **interview_out(interview, clock).model_dump(),
        commitments=[commitment_out(c, as_of) for c in commitments],
    )


def _ended(i: type[Interview]) -> Any:
    return func.coalesce(col(i.ends_at), col(i.completed_at))


_INTERVIEW_FILTERS: dict[str, Callable[[], ColumnElement[bool]]] = {
    "candidate_id": lambda: col(Interview.candidate_external_id) == bindparam("candidate_id"),
    "job_id": lambda: col(Interview.job_external_id) == bindparam("job_id"),
    "status": lambda: col(Interview.status) == bindparam("status"),
    "source": lambda: col(Interview.source) == bindparam("source"),
    "ended_after": lambda: _ended(Interview) > bindparam("ended_after", type_=UTCDateTime),
    "ended_before": lambda: _ended(Interview) < bindparam("ended_before", type_=UTCDateTime),
}


@cache
def _interviews_statement(filters: tuple[str, ...], after: bool) -> Select[Any]:
    keys = (col(Interview.created_at), col(Interview.id))
    statement = sa_select(*INTERVIEW_OUT_COLUMNS).where(
        *(_INTERVIEW_FILTERS[name]() for name in filters)
    )
    if after:
        statement = statement.where(after_mark(keys))
    # The clock is computed for the page's rows only, after the limit, on both databases.
    page = statement.order_by(*keys).limit(LIMIT).subquery("page")
    clock = clock_columns(page.c.id, page.c.ends_at, page.c.completed_at)
    return sa_select(page, *clock).order_by(page.c.created_at, page.c.id)


def list_interviews(
    session: Session, query: InterviewQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[Item], str | None]:
    """Interviews, oldest recorded first, each shaped like InterviewOut."""
    filters = present_filters(query, _INTERVIEW_FILTERS)
    mark = keyset(after, aware_instant, uuid.UUID)
    params = {name: getattr(query, name) for name in filters}
    params.update(as_of=as_of, limit=query.limit + 1, **mark_params(mark))
    rows = fetch_rows(session, _interviews_statement(filters, mark is not None), params)
    cursor_params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    rows, cursor = page_of(
        rows, query.limit, lambda r: (r.created_at.isoformat(), r.id), cursor_params
    )
    items = []
    for row in rows:
        values = row._mapping
        clock = clock_from(row.ends_at, row.completed_at, values)
        items.append(interview_item(values, clock))
    return items, cursor


def missing_next_step(
    session: Session,
    query: MissingNextStepQuery,
    ended_before: datetime,
    after: list[str] | None,
) -> tuple[list[Item], str | None]:
    """Completed interviews that ended before ``ended_before`` with no commitment at all."""
    ended = _ended(Interview)
    statement = sa_select(*INTERVIEW_OUT_COLUMNS).where(
        col(Interview.status) == InterviewStatus.completed,
        ended < ended_before,
        ~select(Commitment.id).where(Commitment.interview_id == Interview.id).exists(),
    )
    if query.source is not None:
        statement = statement.where(col(Interview.source) == query.source)
    keys = (ended, col(Interview.id))
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(after_mark(keys))
    statement = statement.order_by(*keys).limit(query.limit + 1)
    rows = fetch_rows(session, statement, mark_params(mark))
    params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    params["ended_before"] = ended_before.isoformat()
    page, cursor = page_of(
        rows,
        query.limit,
        lambda r: ((r.ends_at or r.completed_at).isoformat(), r.id),
        params,
    )
    return [interview_item(row._mapping, (None, 0)) for row in page], cursor


def _join_interview_filters(
    statement: Select[Any],
    candidate_id: str | None,
    job_id: str | None,
    source: str | None,
) -> Select[Any]:
    if candidate_id is not None:
        statement = statement.where(col(Interview.candidate_external_id) == candidate_id)
    if job_id is not None:
        statement = statement.where(col(Interview.job_external_id) == job_id)
    if source is not None:
        statement = statement.where(col(Interview.source) == source)
    return statement


# A commitment as it stood: the fields a version changes from the version.
_COMMITMENT_COLUMNS = commitment_out_columns(Commitment, CommitmentVersion)


def list_commitments(
    session: Session, query: CommitmentQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[Item], str | None]:
    """Commitments by due time as they stood at ``as_of`` (as the overdue list shows them),
    each shaped like CommitmentOut: their versions valid then, filtered on what they said
    then. A commitment agreed after ``as_of`` is not listed yet."""
    v, c = CommitmentVersion, Commitment
    statement = (
        sa_select(*_COMMITMENT_COLUMNS)
        .select_from(v)
        .join(c, col(c.id) == v.commitment_id)
        .join(Interview, col(Interview.id) == v.interview_id)
        .where(valid_at(v, as_of))
    )
    if query.status is not None:
        statement = statement.where(col(v.status) == query.status)
    if query.overdue is not None:
        is_late = and_(col(v.status) == CommitmentStatus.open, col(v.due_at) < as_of)
        statement = statement.where(is_late if query.overdue else ~is_late)
    if query.owner_id is not None:
        statement = statement.where(col(v.owner_id) == query.owner_id)
    if query.owner_role is not None:
        statement = statement.where(col(v.owner_role) == query.owner_role)
    if query.owed_by is not None:
        statement = statement.where(col(v.owed_by) == query.owed_by)
    if query.due_before is not None:
        statement = statement.where(col(v.due_at) < query.due_before)
    if query.due_after is not None:
        statement = statement.where(col(v.due_at) > query.due_after)
    statement = _join_interview_filters(statement, query.candidate_id, query.job_id, query.source)
    descending = query.sort == "-due_at"
    keys = (col(v.due_at), col(v.commitment_id))
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(after_mark(keys, descending))
    order = [k.desc() for k in keys] if descending else list(keys)
    statement = statement.order_by(*order).limit(query.limit + 1)
    rows = fetch_rows(session, statement, mark_params(mark))
    params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    params["as_of"] = as_of.isoformat()
    page, cursor = page_of(rows, query.limit, lambda r: (r.due_at.isoformat(), r.id), params)
    return [commitment_item(row._mapping, as_of) for row in page], cursor


def contact_out(contact: Contact) -> ContactOut:
    return ContactOut.model_validate(contact, from_attributes=True)

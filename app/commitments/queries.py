"""Read-side use cases: single resources, lists, overdue, summary, timeline.

Every computed field (overdue, waiting clock) is computed at an instant passed in
by the caller; nothing here reads the clock.
"""

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, TypeAdapter
from sqlalchemy import (
    ColumnElement,
    Executable,
    Integer,
    Label,
    Row,
    Select,
    and_,
    bindparam,
    false,
    func,
    literal_column,
    or_,
    tuple_,
    union_all,
)
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.commitments.history import effect_order, replay_commitment, replay_interview
from app.commitments.ledger import as_change
from app.commitments.schemas import (
    CommitmentOut,
    CommitmentQuery,
    ContactOut,
    FieldChange,
    InterviewDetail,
    InterviewOut,
    InterviewQuery,
    MissingNextStepQuery,
    OverdueFilters,
    OverdueItem,
    OverdueQuery,
    SummaryItem,
    SummaryQuery,
    TimelineEntryOut,
    iso_duration,
)
from app.commitments.service import get_interview
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
    UTCDateTime,
)
from app.pagination import aware_instant, encode_cursor, keyset

OWNER_FIELDS = frozenset({"owner_id", "owner_name", "owner_role", "owed_by"})


def _overdue(status: str, due_at: datetime, as_of: datetime) -> tuple[bool, str | None, int | None]:
    if status != CommitmentStatus.open or due_at >= as_of:
        return False, None, None
    late = as_of - due_at
    return True, iso_duration(late), int(late.total_seconds())


# The list endpoints read plain rows (Core selects of the columns they show, no ORM
# objects) and turn each into a plain dict with exactly the fields of its response model,
# in the model's order, holding values the model would serialise unchanged (UUIDs, UTC
# instants, strings). The router serialises those dicts in one pass; `list_overdue` and the
# single-resource reads validate them into models. tests/test_lists.py checks that the
# JSON is byte for byte what the response model writes.
Item = dict[str, Any]

# CommitmentOut's fields as columns, in its order (the owner is spread into three).
_COMMITMENT_FIELDS = (
    "id",
    "interview_id",
    "source",
    "external_id",
    "action",
    "owner_id",
    "owner_name",
    "owner_role",
    "owed_by",
    "channel",
    "agreed_at",
    "due_at",
    "promised_by",
    "candidate_note",
    "status",
    "outcome",
    "reason",
    "completed_at",
    "cancelled_at",
    "version",
    "created_at",
    "updated_at",
)
# What a version does not change: shown from the commitment itself.
_FIXED = frozenset(
    {"id", "interview_id", "source", "external_id", "agreed_at", "created_at", "updated_at"}
)


def _commitment_item(values: Sequence[Any], as_of: datetime) -> Item:
    """A CommitmentOut as a dict, from values in ``_COMMITMENT_FIELDS`` order."""
    (
        id_,
        interview_id,
        source,
        external_id,
        action,
        owner_id,
        owner_name,
        owner_role,
        owed_by,
        channel,
        agreed_at,
        due_at,
        promised_by,
        candidate_note,
        status,
        outcome,
        reason,
        completed_at,
        cancelled_at,
        version,
        created_at,
        updated_at,
    ) = values
    is_overdue, overdue_by, overdue_seconds = _overdue(status, due_at, as_of)
    return {
        "id": id_,
        "interview_id": interview_id,
        "source": source,
        "external_id": external_id,
        "action": action,
        "owner": {"id": owner_id, "name": owner_name, "role": owner_role},
        "owed_by": owed_by,
        "channel": channel,
        "agreed_at": agreed_at,
        "due_at": due_at,
        "promised_by": promised_by,
        "candidate_note": candidate_note,
        "status": status,
        "outcome": outcome,
        "reason": reason,
        "completed_at": completed_at,
        "cancelled_at": cancelled_at,
        "is_overdue": is_overdue,
        "overdue_by": overdue_by,
        "overdue_seconds": overdue_seconds,
        "version": version,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def commitment_out(
    commitment: Commitment, as_of: datetime, state: CommitmentVersion | None = None
) -> CommitmentOut:
    """The commitment as the API shows it; ``state`` overrides it with a past version."""
    s: Commitment | CommitmentVersion = state or commitment
    values = [getattr(commitment if n in _FIXED else s, n) for n in _COMMITMENT_FIELDS]
    return CommitmentOut.model_validate(_commitment_item(values, as_of))


# The list statements are built once per combination of filters, with the values as
# bound parameters: building SQLAlchemy expressions cost more than running them.
_AS_OF = bindparam("as_of", type_=UTCDateTime)
_LIMIT = bindparam("limit", type_=Integer)


def _after(columns: Sequence[Any], descending: bool = False) -> ColumnElement[bool]:
    """Rows after the keyset mark, which is bound as ``after_0``, ``after_1``..."""
    marks = tuple_(*(bindparam(f"after_{n}", type_=c.type) for n, c in enumerate(columns)))
    return tuple_(*columns) < marks if descending else tuple_(*columns) > marks


def _mark(values: tuple[Any, ...] | None) -> dict[str, Any]:
    return {f"after_{n}": value for n, value in enumerate(values or ())}


def _valid_at(v: type[CommitmentVersion], as_of: Any) -> ColumnElement[bool]:
    return and_(col(v.valid_from) <= as_of, or_(col(v.valid_to).is_(None), col(v.valid_to) > as_of))


def _open(v: type[CommitmentVersion]) -> ColumnElement[bool]:
    # A literal, not a bound parameter, so that both databases use the partial indexes.
    return col(v.status) == literal_column("'open'")


Clock = tuple[datetime | None, int]
AnyRow = Row[*tuple[Any, ...]]


def _clock_columns(interview_id: Any, ends_at: Any, completed_at: Any) -> list[Any]:
    """The waiting clock at ``as_of`` as three correlated subqueries on an interview's columns.

    ``first_open``: when the interview's first company-owed step open at ``as_of`` was
    agreed (NULL: no clock). ``last_outbound``: the last time the company reached the
    candidate. ``unanswered``: inbound contacts after the clock's start, the later of the
    interview's end (without one, ``first_open``) and ``last_outbound``; that is, after the
    end with no outbound contact at or after them. ``_clock`` puts the three together.
    """
    # Each subquery names its own tables: everything else (the interview's columns, which
    # may sit two levels up) is correlated, never joined in. Short aliases keep the SQL
    # under the length up to which psycopg caches its parsing.
    v = aliased(CommitmentVersion, name="ov")
    first_open = (
        sa_select(func.min(col(v.valid_from)))
        .where(
            col(v.interview_id) == interview_id,
            _open(v),
            col(v.owed_by) == OwedBy.company,
            _valid_at(v, _AS_OF),
        )
        .correlate_except(v)
        .scalar_subquery()
    )

    def outbound_contacts(contact: type[Contact]) -> list[ColumnElement[bool]]:
        return [
            col(contact.interview_id) == interview_id,
            col(contact.direction) == ContactDirection.outbound,
            col(contact.at) <= _AS_OF,
        ]

    outbound = aliased(Contact, name="co")
    last_outbound = (
        sa_select(func.max(col(outbound.at)))
        .where(*outbound_contacts(outbound))
        .correlate_except(outbound)
        .scalar_subquery()
    )
    inbound = aliased(Contact, name="ci")
    answer = aliased(Contact, name="ca")
    answered = (
        sa_select(col(answer.id))
        .where(*outbound_contacts(answer), col(answer.at) >= col(inbound.at))
        .correlate_except(answer)
        .exists()
    )
    unanswered = (
        sa_select(func.count())
        .select_from(inbound)
        .where(
            col(inbound.interview_id) == interview_id,
            col(inbound.direction) == ContactDirection.inbound,
            col(inbound.at) <= _AS_OF,
            col(inbound.at) > func.coalesce(ends_at, completed_at, first_open),
            ~answered,
        )
        .correlate_except(inbound)
        .scalar_subquery()
    )
    return [
        first_open.label("first_open"),
        last_outbound.label("last_outbound"),
        unanswered.label("unanswered"),
    ]


def _clock(
    ends_at: datetime | None,
    completed_at: datetime | None,
    first_open: datetime | None,
    last_outbound: datetime | None,
    unanswered: int,
) -> Clock:
    """Since when the candidate has been waiting, and how often they chased.

    Only interviews with a company-owed step open at the instant have a clock.
    """
    if first_open is None:
        return None, 0
    since = ends_at or completed_at or first_open
    if last_outbound is not None and last_outbound > since:
        since = last_outbound
    return since, unanswered


@cache
def _waiting_clock_statement() -> Select[Any]:
    columns = (col(Interview.id), col(Interview.ends_at), col(Interview.completed_at))
    return sa_select(*_clock_columns(*columns)).where(columns[0] == bindparam("interview_id"))


def waiting_clock(session: Session, interview: Interview, as_of: datetime) -> Clock:
    """The interview's waiting clock at ``as_of``."""
    params = {"interview_id": interview.id, "as_of": as_of}
    first_open, last_outbound, unanswered = _rows(session, _waiting_clock_statement(), params)[0]
    return _clock(interview.ends_at, interview.completed_at, first_open, last_outbound, unanswered)


# InterviewOut's fields as columns, in its order (candidate and job spread out).
_INTERVIEW_FIELDS = (
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
_INTERVIEW_COLUMNS = tuple(col(getattr(Interview, name)) for name in _INTERVIEW_FIELDS)


def _interview_item(values: Sequence[Any], clock: Clock) -> Item:
    """An InterviewOut as a dict, from values in ``_INTERVIEW_FIELDS`` order."""
    (
        id_,
        source,
        external_id,
        candidate_external_id,
        candidate_name,
        candidate_email,
        job_external_id,
        job_title,
        stage,
        status,
        interviewers,
        starts_at,
        ends_at,
        completed_at,
        version,
        created_at,
        updated_at,
    ) = values
    return {
        "id": id_,
        "source": source,
        "external_id": external_id,
        "candidate": {
            "external_id": candidate_external_id,
            "name": candidate_name,
            "email": candidate_email,
        },
        "job": {"external_id": job_external_id, "title": job_title},
        "stage": stage,
        "status": status,
        # As InterviewerOut shows them: its three fields, nothing else.
        "interviewers": [
            {"external_id": i.get("external_id"), "name": i.get("name"), "email": i.get("email")}
            for i in interviewers
        ],
        "starts_at": starts_at,
        "ends_at": ends_at,
        "completed_at": completed_at,
        "waiting_since": clock[0],
        "unanswered_contacts": clock[1],
        "version": version,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def interview_out(i: Interview, clock: Clock) -> InterviewOut:
    values = [getattr(i, name) for name in _INTERVIEW_FIELDS]
    return InterviewOut.model_validate(_interview_item(values, clock))


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


def _page(
    rows: Sequence[Any], limit: int, key: Any, params: dict[str, Any]
) -> tuple[list[Any], str | None]:
    if len(rows) <= limit:
        return list(rows), None
    rows = list(rows[:limit])
    return rows, encode_cursor([str(v) for v in key(rows[-1])], params)


def _ended(i: type[Interview]) -> Any:
    return func.coalesce(col(i.ends_at), col(i.completed_at))


def _rows(session: Session, statement: Executable, params: dict[str, Any]) -> Sequence[AnyRow]:
    """Plain rows: a Core execution, without the ORM's entity loading and identity map."""
    return session.connection().execute(statement, params).all()


def _present(query: BaseModel, names: Iterable[str]) -> tuple[str, ...]:
    """The filters the query sets (not None): what the shape of its statement depends on."""
    return tuple(name for name in names if getattr(query, name) is not None)


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
    statement = sa_select(*_INTERVIEW_COLUMNS).where(
        *(_INTERVIEW_FILTERS[name]() for name in filters)
    )
    if after:
        statement = statement.where(_after(keys))
    # The clock is computed for the page's rows only, after the limit, on both databases.
    page = statement.order_by(*keys).limit(_LIMIT).subquery("page")
    clock = _clock_columns(page.c.id, page.c.ends_at, page.c.completed_at)
    return sa_select(page, *clock).order_by(page.c.created_at, page.c.id)


def list_interviews(
    session: Session, query: InterviewQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[Item], str | None]:
    """Interviews, oldest recorded first, each shaped like InterviewOut."""
    filters = _present(query, _INTERVIEW_FILTERS)
    mark = keyset(after, aware_instant, uuid.UUID)
    params = {name: getattr(query, name) for name in filters}
    params.update(as_of=as_of, limit=query.limit + 1, **_mark(mark))
    rows = _rows(session, _interviews_statement(filters, mark is not None), params)
    cursor_params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    rows, cursor = _page(
        rows, query.limit, lambda r: (r.created_at.isoformat(), r.id), cursor_params
    )
    n = len(_INTERVIEW_FIELDS)
    items = []
    for row in rows:
        ends_at, completed_at = row.ends_at, row.completed_at
        first_open, last_outbound, unanswered = row[n:]
        clock = _clock(ends_at, completed_at, first_open, last_outbound, unanswered)
        items.append(_interview_item(row[:n], clock))
    return items, cursor


def missing_next_step(
    session: Session,
    query: MissingNextStepQuery,
    ended_before: datetime,
    after: list[str] | None,
) -> tuple[list[Item], str | None]:
    """Completed interviews that ended before ``ended_before`` with no commitment at all."""
    ended = _ended(Interview)
    statement = sa_select(*_INTERVIEW_COLUMNS).where(
        col(Interview.status) == InterviewStatus.completed,
        ended < ended_before,
        ~select(Commitment.id).where(Commitment.interview_id == Interview.id).exists(),
    )
    if query.source is not None:
        statement = statement.where(col(Interview.source) == query.source)
    keys = (ended, col(Interview.id))
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(_after(keys))
    statement = statement.order_by(*keys).limit(query.limit + 1)
    rows = _rows(session, statement, _mark(mark))
    params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    params["ended_before"] = ended_before.isoformat()
    page, cursor = _page(
        rows,
        query.limit,
        lambda r: ((r.ends_at or r.completed_at).isoformat(), r.id),
        params,
    )
    return [_interview_item(row, (None, 0)) for row in page], cursor


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


_COMMITMENT_COLUMNS = tuple(col(getattr(Commitment, name)) for name in _COMMITMENT_FIELDS)


def list_commitments(
    session: Session, query: CommitmentQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[Item], str | None]:
    """Commitments by due time, each shaped like CommitmentOut."""
    statement = sa_select(*_COMMITMENT_COLUMNS).join(
        Interview, col(Interview.id) == Commitment.interview_id
    )
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
        statement = statement.where(_after(keys, descending))
    order = [k.desc() for k in keys] if descending else list(keys)
    statement = statement.order_by(*order).limit(query.limit + 1)
    rows = _rows(session, statement, _mark(mark))
    params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    params["as_of"] = as_of.isoformat()
    page, cursor = _page(rows, query.limit, lambda r: (r.due_at.isoformat(), r.id), params)
    return [_commitment_item(row, as_of) for row in page], cursor


class _OverdueShape(NamedTuple):
    """Which of the optional overdue conditions apply."""

    broken_promise: bool
    # "cutoff": due at or before the bound cutoff; "never": the cutoff is out of range.
    min_overdue: Literal["cutoff", "never"] | None
    owner_id: bool
    owner_role: bool

    @property
    def sort(self) -> Literal["promised_by", "due_at"]:
        """What the list is ordered by, and late since."""
        return "promised_by" if self.broken_promise else "due_at"


def _overdue_filters(
    filters: OverdueFilters, as_of: datetime
) -> tuple[_OverdueShape, dict[str, Any]]:
    """The shape of the overdue conditions for these filters, and the values they bind."""
    params: dict[str, Any] = {
        "as_of": as_of,
        "owed_by": filters.owed_by,
        "owner_id": filters.owner_id,
        "owner_role": filters.owner_role,
    }
    min_overdue: Literal["cutoff", "never"] | None = None
    if filters.min_overdue is not None:
        try:
            params["cutoff"] = as_of - filters.min_overdue
            min_overdue = "cutoff"
        except OverflowError:  # before the first representable instant: nothing is that late
            min_overdue = "never"
    shape = _OverdueShape(
        filters.broken_promise,
        min_overdue,
        filters.owner_id is not None,
        filters.owner_role is not None,
    )
    return shape, params


# The versions valid at ``as_of`` are the current ones (``valid_to`` NULL) that began by
# then, and the closed ones that began by then and closed after it. Asked apart, each uses
# its own partial index (migration 0003): the current open versions by due time, the closed
# ones by when they closed. Together they would walk every closed version in due order.
Branch = Literal["current", "closed"]


def _overdue_where(
    shape: _OverdueShape, branch: Branch, v: type[CommitmentVersion] = CommitmentVersion
) -> list[ColumnElement[bool]]:
    """What "open and late at ``as_of``" means for a commitment version of the branch, with
    the filters."""
    valid_to = col(v.valid_to)
    valid: list[ColumnElement[bool]]
    if branch == "current":
        valid = [valid_to.is_(None)]
    else:
        valid = [valid_to.is_not(None), valid_to > _AS_OF]
    conditions = [
        _open(v),
        *valid,
        col(v.valid_from) <= _AS_OF,
        col(v.owed_by) == bindparam("owed_by"),
        col(getattr(v, shape.sort)) < _AS_OF,
    ]
    if shape.min_overdue == "cutoff":
        conditions.append(col(v.due_at) <= bindparam("cutoff", type_=UTCDateTime))
    elif shape.min_overdue == "never":
        conditions.append(false())
    if shape.owner_id:
        conditions.append(col(v.owner_id) == bindparam("owner_id"))
    if shape.owner_role:
        conditions.append(col(v.owner_role) == bindparam("owner_role"))
    return conditions


def _sort_keys(shape: _OverdueShape, v: type[CommitmentVersion]) -> tuple[Any, Any]:
    return col(getattr(v, shape.sort)), col(v.commitment_id)


@cache
def _closed_overdue_statement(shape: _OverdueShape, after: bool) -> Select[Any]:
    """The closed versions of the page: their ids, at most ``limit``, in page order."""
    v = aliased(CommitmentVersion, name="v")
    keys = _sort_keys(shape, v)
    statement = sa_select(col(v.id)).where(*_overdue_where(shape, "closed", v))
    if after:
        statement = statement.where(_after(keys))
    return statement.order_by(*keys).limit(_LIMIT)


@cache
def _overdue_statement(shape: _OverdueShape, after: bool, branch: Branch) -> Select[Any]:
    """A page of overdue steps: the current versions' or (``branch="closed"``) those of the
    closed versions bound as ``closed_ids``, with the interviews' fields and clocks."""
    v = aliased(CommitmentVersion, name="v")
    c = aliased(Commitment, name="c")
    i = aliased(Interview, name="i")
    # The commitment as it stood at ``as_of`` (the version's fields, except those a version
    # does not change), the interview's fields; the clock comes after the limit.
    columns = (
        *(col(getattr(c if name in _FIXED else v, name)) for name in _COMMITMENT_FIELDS),
        col(i.candidate_external_id),
        col(i.candidate_name),
        col(i.candidate_email),
        col(i.job_external_id),
        col(i.job_title),
        col(i.ends_at),
        col(i.completed_at).label("interview_completed_at"),
    )
    statement = (
        sa_select(*columns)
        .select_from(v)
        .join(c, col(c.id) == v.commitment_id)
        .join(i, col(i.id) == v.interview_id)
    )
    if branch == "current":
        statement = statement.where(*_overdue_where(shape, "current", v))
    else:
        statement = statement.where(col(v.id).in_(bindparam("closed_ids", expanding=True)))
    keys = _sort_keys(shape, v)
    if after:
        statement = statement.where(_after(keys))
    # The clock is computed for the page's rows only, after the limit, on both databases.
    page = statement.order_by(*keys).limit(_LIMIT).subquery("page")
    clock = _clock_columns(page.c.interview_id, page.c.ends_at, page.c.interview_completed_at)
    return sa_select(page, *clock).order_by(page.c[shape.sort], page.c.id)


def _overdue_item(row: AnyRow, as_of: datetime) -> Item:
    n = len(_COMMITMENT_FIELDS)
    (
        candidate_external_id,
        candidate_name,
        candidate_email,
        job_external_id,
        job_title,
        ends_at,
        completed_at,
        first_open,
        last_outbound,
        unanswered,
    ) = row[n:]
    item = _commitment_item(row[:n], as_of)
    item["candidate"] = {
        "external_id": candidate_external_id,
        "name": candidate_name,
        "email": candidate_email,
    }
    item["job"] = {"external_id": job_external_id, "title": job_title}
    item["waiting_since"], item["unanswered_contacts"] = _clock(
        ends_at, completed_at, first_open, last_outbound, unanswered
    )
    return item


def overdue_items(
    session: Session, query: OverdueQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[Item], str | None]:
    """Open steps late at ``as_of``, as they stood then, most overdue first.

    Each is shaped like OverdueItem.
    """
    shape, params = _overdue_filters(query, as_of)
    mark = keyset(after, aware_instant, uuid.UUID)
    params.update(limit=query.limit + 1, **_mark(mark))
    rows = list(_rows(session, _overdue_statement(shape, mark is not None, "current"), params))
    sort = shape.sort
    # Versions closed after as_of: none for "now", unless an event took effect later.
    closed = [
        r.id for r in _rows(session, _closed_overdue_statement(shape, mark is not None), params)
    ]
    if closed:
        statement = _overdue_statement(shape, False, "closed")
        rows += _rows(session, statement, {**params, "closed_ids": closed})
        rows.sort(key=lambda r: (getattr(r, sort), r.id))
        del rows[query.limit + 1 :]
    cursor_params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    cursor_params["as_of"] = as_of.isoformat()
    rows, cursor = _page(
        rows, query.limit, lambda r: (getattr(r, sort).isoformat(), r.id), cursor_params
    )
    return [_overdue_item(row, as_of) for row in rows], cursor


_OVERDUE_ITEMS = TypeAdapter(list[OverdueItem])


def list_overdue(
    session: Session, query: OverdueQuery, after: list[str] | None, as_of: datetime
) -> tuple[list[OverdueItem], str | None]:
    """``overdue_items`` as models."""
    items, cursor = overdue_items(session, query, after, as_of)
    return _OVERDUE_ITEMS.validate_python(items), cursor


def _epoch_seconds(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return func.extract("epoch", column)


def overdue_summary(session: Session, query: SummaryQuery, as_of: datetime) -> list[SummaryItem]:
    """Overdue steps at ``as_of`` grouped by owner, role or job, largest count first."""
    v = CommitmentVersion
    shape, params = _overdue_filters(query, as_of)
    group = {
        "owner": col(v.owner_id),
        "owner_role": col(v.owner_role),
        "job": col(Interview.job_external_id),
    }[query.group_by]

    columns: list[Label[Any]] = [group.label("grp"), col(v.due_at).label("due_at")]

    def late_in(branch: Branch) -> Select[Any]:
        statement = sa_select(*columns).select_from(v)
        if query.group_by == "job":
            statement = statement.join(Interview, col(Interview.id) == v.interview_id)
        return statement.where(*_overdue_where(shape, branch))

    late = union_all(late_in("current"), late_in("closed")).subquery("late")
    count = func.count().label("n")
    statement = (
        sa_select(
            late.c.grp,
            count,
            func.min(late.c.due_at),
            func.sum(_epoch_seconds(session, late.c.due_at)),
        )
        .group_by(late.c.grp)
        .order_by(count.desc(), late.c.grp)
    )
    as_of_epoch = as_of.timestamp()
    return [
        SummaryItem(
            group=key,
            count=n,
            oldest_due_at=oldest,
            overdue_seconds_total=round(n * as_of_epoch - float(due_total)),
        )
        for key, n, oldest, due_total in _rows(session, statement, params)
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

"""What was open and late at an instant, as it stood then: the overdue list and summary."""

import uuid
from datetime import datetime
from functools import cache
from typing import Any, Literal, NamedTuple

from pydantic import TypeAdapter
from sqlalchemy import (
    ColumnElement,
    Label,
    Select,
    bindparam,
    false,
    func,
    union_all,
)
from sqlalchemy import (
    select as sa_select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, col

from app.commitments.clock import clock_columns, clock_from
from app.commitments.rows import (
    AS_OF,
    LIMIT,
    AnyRow,
    Item,
    after_mark,
    commitment_item,
    commitment_out_columns,
    fetch_rows,
    is_open,
    mark_params,
    page_of,
)
from app.commitments.schemas import (
    OverdueFilters,
    OverdueItem,
    OverdueQuery,
    SummaryItem,
    SummaryQuery,
)
from app.models import (
    Commitment,
    CommitmentVersion,
    Interview,
    UTCDateTime,
)
from app.pagination import aware_instant, keyset


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


class _NotIndexed(FunctionElement[Any]):
    """A column that SQLite must not look up or walk by index: ``+column`` there, as is
    elsewhere. The closed branch is served by its partial index on ``valid_to``; with the
    report's index on ``due_at`` (migration 0005) SQLite preferred walking every version in
    due order instead: 118 ms against 1.5 ms at 100k commitments (bench/overdue.py)."""

    name = "not_indexed"
    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(_NotIndexed)
def _as_is(element: _NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_NotIndexed, "sqlite")
def _unary_plus(element: _NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


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
        valid = [valid_to.is_not(None), valid_to > AS_OF]
    sort_key, due_at = _sort_keys(shape, v, branch)[0], _due_at(v, branch)
    conditions = [
        is_open(v),
        *valid,
        col(v.valid_from) <= AS_OF,
        col(v.owed_by) == bindparam("owed_by"),
        sort_key < AS_OF,
    ]
    if shape.min_overdue == "cutoff":
        conditions.append(due_at <= bindparam("cutoff", type_=UTCDateTime))
    elif shape.min_overdue == "never":
        conditions.append(false())
    if shape.owner_id:
        conditions.append(col(v.owner_id) == bindparam("owner_id"))
    if shape.owner_role:
        conditions.append(col(v.owner_role) == bindparam("owner_role"))
    return conditions


def _due_at(v: type[CommitmentVersion], branch: Branch) -> Any:
    due_at = col(v.due_at)
    return due_at if branch == "current" else _NotIndexed(due_at)


def _sort_keys(
    shape: _OverdueShape, v: type[CommitmentVersion], branch: Branch = "current"
) -> tuple[Any, Any]:
    key = col(getattr(v, shape.sort))
    return (key if branch == "current" else _NotIndexed(key)), col(v.commitment_id)


@cache
def _closed_overdue_statement(shape: _OverdueShape, after: bool) -> Select[Any]:
    """The closed versions of the page: their ids, at most ``limit``, in page order."""
    v = aliased(CommitmentVersion, name="v")
    keys = _sort_keys(shape, v, "closed")
    statement = sa_select(col(v.id)).where(*_overdue_where(shape, "closed", v))
    if after:
        statement = statement.where(after_mark(keys))
    return statement.order_by(*keys).limit(LIMIT)


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
        *commitment_out_columns(c, v),
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
        statement = statement.where(after_mark(keys))
    # The clock is computed for the page's rows only, after the limit, on both databases.
    page = statement.order_by(*keys).limit(LIMIT).subquery("page")
    clock = clock_columns(page.c.interview_id, page.c.ends_at, page.c.interview_completed_at)
    return sa_select(page, *clock).order_by(page.c[shape.sort], page.c.id)


def _overdue_item(row: AnyRow, as_of: datetime) -> Item:
    values = row._mapping
    item = commitment_item(values, as_of)
    item["candidate"] = {
        "external_id": values["candidate_external_id"],
        "name": values["candidate_name"],
        "email": values["candidate_email"],
    }
    item["job"] = {"external_id": values["job_external_id"], "title": values["job_title"]}
    item["waiting_since"], item["unanswered_contacts"] = clock_from(
        values["ends_at"], values["interview_completed_at"], values
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
    params.update(limit=query.limit + 1, **mark_params(mark))
    rows = list(fetch_rows(session, _overdue_statement(shape, mark is not None, "current"), params))
    sort = shape.sort
    # Versions closed after as_of: none for "now", unless an event took effect later.
    closed = [
        r.id
        for r in fetch_rows(session, _closed_overdue_statement(shape, mark is not None), params)
    ]
    if closed:
        statement = _overdue_statement(shape, False, "closed")
        rows += fetch_rows(session, statement, {**params, "closed_ids": closed})
        rows.sort(key=lambda r: (getattr(r, sort), r.id))
        del rows[query.limit + 1 :]
    cursor_params = query.model_dump(mode="json", exclude={"limit", "cursor"})
    cursor_params["as_of"] = as_of.isoformat()
    rows, cursor = page_of(
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
        for key, n, oldest, due_total in fetch_rows(session, statement, params)
    ]

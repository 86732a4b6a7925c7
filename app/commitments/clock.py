"""The waiting clock: since when the candidate has been waiting, and how often they chased."""

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    func,
)
from sqlalchemy import (
    select as sa_select,
)
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from app.commitments.rows import AS_OF, Fields, fetch_rows, is_open, valid_at
from app.models import (
    CommitmentVersion,
    Contact,
    ContactDirection,
    Interview,
    OwedBy,
)

Clock = tuple[datetime | None, int]


def clock_columns(interview_id: Any, ends_at: Any, completed_at: Any) -> list[Any]:
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
            is_open(v),
            col(v.owed_by) == OwedBy.company,
            valid_at(v, AS_OF),
        )
        .correlate_except(v)
        .scalar_subquery()
    )

    def outbound_contacts(contact: type[Contact]) -> list[ColumnElement[bool]]:
        return [
            col(contact.interview_id) == interview_id,
            col(contact.direction) == ContactDirection.outbound,
            col(contact.at) <= AS_OF,
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
            col(inbound.at) <= AS_OF,
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


def clock_from(ends_at: datetime | None, completed_at: datetime | None, row: Fields) -> Clock:
    """Since when the candidate has been waiting, and how often they chased, from the
    interview's end and a row holding the columns of ``clock_columns``, by name.

    Only interviews with a company-owed step open at the instant have a clock.
    """
    first_open, last_outbound = row["first_open"], row["last_outbound"]
    if first_open is None:
        return None, 0
    since = ends_at or completed_at or first_open
    if last_outbound is not None and last_outbound > since:
        since = last_outbound
    return since, row["unanswered"]


@cache
def _waiting_clock_statement() -> Select[Any]:
    columns = (col(Interview.id), col(Interview.ends_at), col(Interview.completed_at))
    return sa_select(*clock_columns(*columns)).where(columns[0] == bindparam("interview_id"))


def waiting_clock(session: Session, interview: Interview, as_of: datetime) -> Clock:
    """The interview's waiting clock at ``as_of``."""
    params = {"interview_id": interview.id, "as_of": as_of}
    row = fetch_rows(session, _waiting_clock_statement(), params)[0]
    return clock_from(interview.ends_at, interview.completed_at, row._mapping)

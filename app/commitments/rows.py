"""The pieces every read is built from: bound parameters, keyset marks, pages, and the
rows of a commitment shaped like its response model.

Every computed field is computed at an instant passed in by the caller; nothing here reads
the clock.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    ColumnElement,
    Executable,
    Integer,
    Row,
    and_,
    bindparam,
    literal_column,
    or_,
    tuple_,
)
from sqlmodel import Session, col

from app.commitments.schemas import CommitmentOut
from app.fields import iso_duration
from app.models import (
    Commitment,
    CommitmentStatus,
    CommitmentVersion,
    UTCDateTime,
)
from app.pagination import encode_cursor


def overdue_fields(
    status: str, due_at: datetime, as_of: datetime
) -> tuple[bool, str | None, int | None]:
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
# What an item is made from, read by column name: a row's ``_mapping``, or a dict.
Fields = Mapping[Any, Any]

# CommitmentOut's fields as columns, in its order (the owner is spread into three).
COMMITMENT_FIELDS = (
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
FIXED_FIELDS = frozenset(
    {"id", "interview_id", "source", "external_id", "agreed_at", "created_at", "updated_at"}
)


def commitment_out_columns(commitment: Any, state: Any | None = None) -> tuple[Any, ...]:
    """``COMMITMENT_FIELDS`` as columns of a commitment table (or alias), labelled by name;
    with ``state`` (a commitment_version), the fields a version changes come from it."""
    shown = commitment if state is None else state
    return tuple(
        col(getattr(commitment if name in FIXED_FIELDS else shown, name))
        for name in COMMITMENT_FIELDS
    )


def commitment_item(row: Fields, as_of: datetime) -> Item:
    """A CommitmentOut as a dict, from a row (or a mapping) holding ``COMMITMENT_FIELDS``."""
    status, due_at = row["status"], row["due_at"]
    is_overdue, overdue_by, overdue_seconds = overdue_fields(status, due_at, as_of)
    return {
        "id": row["id"],
        "interview_id": row["interview_id"],
        "source": row["source"],
        "external_id": row["external_id"],
        "action": row["action"],
        "owner": {"id": row["owner_id"], "name": row["owner_name"], "role": row["owner_role"]},
        "owed_by": row["owed_by"],
        "channel": row["channel"],
        "agreed_at": row["agreed_at"],
        "due_at": due_at,
        "promised_by": row["promised_by"],
        "candidate_note": row["candidate_note"],
        "status": status,
        "outcome": row["outcome"],
        "reason": row["reason"],
        "completed_at": row["completed_at"],
        "cancelled_at": row["cancelled_at"],
        "is_overdue": is_overdue,
        "overdue_by": overdue_by,
        "overdue_seconds": overdue_seconds,
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def commitment_out(
    commitment: Commitment, as_of: datetime, state: CommitmentVersion | None = None
) -> CommitmentOut:
    """The commitment as the API shows it; ``state`` overrides it with a past version."""
    s: Commitment | CommitmentVersion = state or commitment
    values = {n: getattr(commitment if n in FIXED_FIELDS else s, n) for n in COMMITMENT_FIELDS}
    return CommitmentOut.model_validate(commitment_item(values, as_of))


# The list statements are built once per combination of filters, with the values as
# bound parameters: building SQLAlchemy expressions cost more than running them.
AS_OF = bindparam("as_of", type_=UTCDateTime)
LIMIT = bindparam("limit", type_=Integer)


def after_mark(columns: Sequence[Any], descending: bool = False) -> ColumnElement[bool]:
    """Rows after the keyset mark, which is bound as ``after_0``, ``after_1``..."""
    marks = tuple_(*(bindparam(f"after_{n}", type_=c.type) for n, c in enumerate(columns)))
    return tuple_(*columns) < marks if descending else tuple_(*columns) > marks


def mark_params(values: tuple[Any, ...] | None) -> dict[str, Any]:
    return {f"after_{n}": value for n, value in enumerate(values or ())}


def valid_at(v: type[CommitmentVersion], as_of: Any) -> ColumnElement[bool]:
    return and_(col(v.valid_from) <= as_of, or_(col(v.valid_to).is_(None), col(v.valid_to) > as_of))


def is_open(v: type[CommitmentVersion]) -> ColumnElement[bool]:
    # A literal, not a bound parameter, so that both databases use the partial indexes.
    return col(v.status) == literal_column("'open'")


AnyRow = Row[*tuple[Any, ...]]


def page_of(
    rows: Sequence[Any], limit: int, key: Any, params: dict[str, Any]
) -> tuple[list[Any], str | None]:
    if len(rows) <= limit:
        return list(rows), None
    rows = list(rows[:limit])
    return rows, encode_cursor([str(v) for v in key(rows[-1])], params)


def fetch_rows(session: Session, statement: Executable, params: dict[str, Any]) -> Sequence[AnyRow]:
    """Plain rows: a Core execution, without the ORM's entity loading and identity map."""
    return session.connection().execute(statement, params).all()


def present_filters(query: BaseModel, names: Iterable[str]) -> tuple[str, ...]:
    """The filters the query sets (not None): what the shape of its statement depends on."""
    return tuple(name for name in names if getattr(query, name) is not None)

"""What every table is built with: the metadata naming convention, the instant column type,
primary keys, enum CHECK constraints, and the clock."""

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Dialect
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: every instant must carry a zone")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware instant, stored in UTC, returned aware on every database.

    SQLite has no zone-aware type, so values are stored as naive UTC text of fixed
    width (which sorts correctly) and the zone is put back on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    # PostgreSQL: aware instants both ways. Its sessions run in UTC (see db.py), so psycopg
    # returns values already in UTC.
    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)

    # SQLite: the text is written and read here in one step, in the format of SQLAlchemy's
    # SQLite DATETIME (2026-11-26 01:56:00.171240): a list page reads hundreds of instants,
    # and chaining the two conversions cost several times more.
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_text(value: datetime | None) -> str | None:
            # Cut before the "+00:00" that an aware instant's ISO form ends with.
            return None if value is None else _as_utc(value).isoformat(" ", "microseconds")[:26]

        return to_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def from_text(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value + "+00:00")

        return from_text


# A JSON column whose None is SQL NULL (not the JSON text 'null'), as a bulk INSERT that
# leaves the column out writes it.
_NULLABLE_JSON = JSON(none_as_null=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def enum_check(column: str, enum: type[StrEnum], *, nullable: bool = False) -> CheckConstraint:
    """A named CHECK constraint that keeps a string column inside an enum."""
    values = ", ".join(f"'{member.value}'" for member in enum)
    condition = f"{column} IN ({values})"
    if nullable:
        condition = f"{column} IS NULL OR {condition}"
    return CheckConstraint(condition, name=column)


def _uuid_pk(factory: Callable[[], uuid.UUID] = uuid.uuid4) -> Any:
    return Field(default_factory=factory, primary_key=True)


_last_ordered = 0
_ordered_lock = threading.Lock()


def ordered_uuid() -> uuid.UUID:
    """A UUID in the version 7 layout (milliseconds first) that sorts after every one this
    process made before, even within one millisecond.

    Timeline entries take these ids, so that changes recorded at the same instant (an
    interview and the steps agreed with it) are listed in the order they were made.
    """
    global _last_ordered
    with _ordered_lock:
        # 48 bits of milliseconds, then 74 bits of a counter that starts at a random point
        # in its lower half each millisecond, so that it cannot run out within it.
        raw = (time.time_ns() // 1_000_000) << 74 | secrets.randbits(73)
        raw = _last_ordered = max(raw, _last_ordered + 1)
    millis, rand_a, rand_b = raw >> 74, (raw >> 62) & 0xFFF, raw & ((1 << 62) - 1)
    return uuid.UUID(int=millis << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def _instant_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None if nullable else ..., sa_type=UTCDateTime, nullable=nullable, index=index
    )

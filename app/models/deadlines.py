"""Calendars and deadline policies (the calendar an owner works by: owners.py)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, text
from sqlmodel import Field, SQLModel

from app.models.base import _NULLABLE_JSON, _instant_column, _uuid_pk


class Calendar(SQLModel, table=True):
    """When a team works (see app.deadlines): hours, holidays and closures in a time zone.

    ``version`` counts its changes; a due time computed on it names the version it used.
    """

    __tablename__ = "calendar"
    __table_args__ = (
        # Exactly one default: at most one here, at least one kept by the service.
        Index(
            "uq_calendar_is_default",
            "is_default",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    id: uuid.UUID = _uuid_pk()
    name: str = Field(sa_type=String(200))
    time_zone: str = Field(sa_type=String(64))
    hours: dict[str, list[list[str]]] = Field(sa_type=JSON)
    holidays: dict[str, str | None] | None = Field(default=None, sa_type=_NULLABLE_JSON)
    closed_dates: list[str] = Field(default_factory=list, sa_type=JSON)
    is_default: bool = Field(default=False, sa_type=Boolean)
    version: int = 1
    created_at: datetime = _instant_column()
    updated_at: datetime = _instant_column()


class DeadlinePolicy(SQLModel, table=True):
    """A rule for due times and default steps; the first enabled match by position applies."""

    __tablename__ = "deadline_policy"
    __table_args__ = (
        Index("ix_deadline_policy_position", "position", "id"),
        Index("ix_deadline_policy_calendar_id", "calendar_id"),
    )

    id: uuid.UUID = _uuid_pk()
    name: str = Field(sa_type=String(200))
    position: int = 0
    enabled: bool = Field(default=True, sa_type=Boolean)
    match: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    calendar_id: uuid.UUID | None = Field(default=None, sa_column_args=[ForeignKey("calendar.id")])
    due_rule: dict[str, Any] | None = Field(default=None, sa_type=_NULLABLE_JSON)
    default_step: dict[str, Any] | None = Field(default=None, sa_type=_NULLABLE_JSON)
    version: int = 1
    created_at: datetime = _instant_column()
    updated_at: datetime = _instant_column()

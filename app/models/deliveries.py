"""Inbound webhook deliveries, stored raw."""

import uuid
from datetime import datetime

from sqlalchemy import JSON, Index, LargeBinary, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.models.base import _instant_column, _uuid_pk, enum_check
from app.models.enums import DeliveryResult


class Delivery(SQLModel, table=True):
    """One inbound webhook delivery, stored raw so it can be inspected and replayed."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("source", "delivery_key"),
        enum_check("result", DeliveryResult),
        Index("ix_delivery_received_at", "received_at"),
        Index(
            "ix_delivery_pending_subject",
            "subject",
            sqlite_where=text("result = 'pending'"),
            postgresql_where=text("result = 'pending'"),
        ),
    )

    id: uuid.UUID = _uuid_pk()
    source: str = Field(sa_type=String(100))
    delivery_key: str = Field(sa_type=String(300))
    kind: str = Field(sa_type=String(30))
    event_type: str | None = Field(default=None, sa_type=String(100))
    occurred_at: datetime | None = _instant_column(nullable=True)
    body: bytes = Field(sa_type=LargeBinary)
    body_sha256: str = Field(sa_type=String(64))
    headers: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    received_at: datetime = _instant_column()
    result: str = Field(sa_type=String(20))
    error: str | None = Field(default=None, sa_type=Text)
    # What a pending delivery waits for, e.g. "commitment:acme-ats:ns-1".
    subject: str | None = Field(default=None, sa_type=String(400))
    applied_at: datetime | None = _instant_column(nullable=True)
    duplicates: int = 0

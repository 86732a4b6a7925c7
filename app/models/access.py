"""API keys, and the answers stored under an Idempotency-Key."""

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import _instant_column, _uuid_pk


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: uuid.UUID = _uuid_pk()
    name: str = Field(sa_type=String(200))
    prefix: str = Field(sa_type=String(32))
    key_hash: str = Field(sa_type=String(64), unique=True)
    scopes: list[str] = Field(sa_type=JSON)
    created_at: datetime = _instant_column()
    revoked_at: datetime | None = _instant_column(nullable=True)
    last_used_at: datetime | None = _instant_column(nullable=True)


class IdempotencyRecord(SQLModel, table=True):
    """A POST create answered under an Idempotency-Key, kept for replay."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("api_key_id", "key"),)

    id: uuid.UUID = _uuid_pk()
    api_key_id: uuid.UUID = Field(sa_column_args=[ForeignKey("api_key.id", ondelete="CASCADE")])
    key: str = Field(sa_type=String(300))
    request_hash: str = Field(sa_type=String(64))
    status_code: int | None = None
    response_body: bytes | None = Field(default=None, sa_type=LargeBinary)
    response_headers: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _instant_column()
    completed_at: datetime | None = _instant_column(nullable=True)

"""Idempotency-Key on POST creates: replay, refuse a changed body, refuse while in flight."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from app.errors import Conflict, InvalidInput
from app.models import IdempotencyRecord

# A claim older than this belongs to a request that died; a retry may take it over.
STALE_CLAIM = timedelta(seconds=60)
KEEP_FOR = timedelta(hours=48)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


def claim(
    session: Session, api_key_id: uuid.UUID, key: str, request_hash: str, now: datetime
) -> uuid.UUID | StoredResponse:
    """Claim ``key`` for this request, or return the response stored under it."""
    record = IdempotencyRecord(
        api_key_id=api_key_id, key=key, request_hash=request_hash, created_at=now
    )
    session.add(record)
    try:
        session.commit()
        return record.id
    except IntegrityError:
        session.rollback()
    existing = session.exec(
        select(IdempotencyRecord)
        .where(col(IdempotencyRecord.api_key_id) == api_key_id, col(IdempotencyRecord.key) == key)
        .with_for_update()
    ).one()
    if existing.request_hash != request_hash:
        session.rollback()
        raise InvalidInput(
            "This Idempotency-Key was used with a different request body.",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "reused with another body"}],
        )
    if existing.status_code is not None and existing.response_body is not None:
        session.rollback()
        return StoredResponse(
            existing.status_code, existing.response_body, existing.response_headers
        )
    if now - existing.created_at < STALE_CLAIM:
        session.rollback()
        raise Conflict(
            "A request with this Idempotency-Key is still in flight; retry later.",
            headers={"Retry-After": "1"},
        )
    existing.created_at = now
    session.add(existing)
    session.commit()
    return existing.id


def finish(session: Session, record_id: uuid.UUID, response: StoredResponse, now: datetime) -> None:
    record = session.get(IdempotencyRecord, record_id)
    if record is None:
        return
    record.status_code = response.status_code
    record.response_body = response.body
    record.response_headers = response.headers
    record.completed_at = now
    session.add(record)
    session.exec(
        delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < now - KEEP_FOR)
    )
    session.commit()


def release(session: Session, record_id: uuid.UUID) -> None:
    """Forget a claim whose request failed, so that the client can retry."""
    session.rollback()
    session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.id) == record_id))
    session.commit()

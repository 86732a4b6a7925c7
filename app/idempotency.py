"""Idempotency-Key on POST creates: replay, refuse a changed body, refuse while in flight.

The key, the resource and the stored answer commit in one transaction: a request that
dies half way leaves nothing behind, so a retry creates the resource exactly once.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from app.errors import Conflict, InvalidInput
from app.models import IdempotencyRecord

KEEP_FOR = timedelta(hours=48)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


def _in_flight() -> Conflict:
    return Conflict(
        "A request with this Idempotency-Key is still in flight; retry later.",
        headers={"Retry-After": "1"},
    )


def _stored(
    session: Session, api_key_id: uuid.UUID, key: str, request_hash: str
) -> StoredResponse | None:
    """The answer stored under ``key``; None if there is none yet."""
    existing = session.exec(
        select(IdempotencyRecord).where(
            col(IdempotencyRecord.api_key_id) == api_key_id, col(IdempotencyRecord.key) == key
        )
    ).first()
    if existing is None:
        return None
    if existing.request_hash != request_hash:
        raise InvalidInput(
            "This Idempotency-Key was used with a different request body.",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "reused with another body"}],
        )
    if existing.status_code is None or existing.response_body is None:
        # Only a claim committed before answers were stored with their resource can be
        # here: its request is long gone, and this one takes its place.
        session.delete(existing)
        session.flush()
        return None
    return StoredResponse(existing.status_code, existing.response_body, existing.response_headers)


def create_once(
    session: Session,
    api_key_id: uuid.UUID,
    key: str,
    request_hash: str,
    now: datetime,
    create: Callable[[], StoredResponse],
) -> tuple[StoredResponse, bool]:
    """The answer to a create sent with ``key``: the stored one (True) or a new one (False).

    ``create`` writes without committing and returns its answer; the answer is stored
    under the key and everything commits together. While another request with the same
    key is in its transaction, this one gets a 409 (PostgreSQL) or waits for it (SQLite,
    which has one writer at a time) and then replays its answer.
    """
    try:
        if session.get_bind().dialect.name == "postgresql":
            owner = f"idempotency:{api_key_id}:{key}"
            locked = session.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"), {"k": owner}
            ).scalar_one()
            if not locked:
                raise _in_flight()
        stored = _stored(session, api_key_id, key, request_hash)
        if stored is not None:
            session.rollback()
            return stored, True
        record = IdempotencyRecord(
            api_key_id=api_key_id, key=key, request_hash=request_hash, created_at=now
        )
        session.add(record)
        session.flush()
        answer = create()
        record.status_code = answer.status_code
        record.response_body = answer.body
        record.response_headers = answer.headers
        record.completed_at = now
        session.add(record)
        session.exec(
            delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < now - KEEP_FOR)
        )
        session.commit()
    except IntegrityError:
        # The same key committed by a request that started before this one's look-up.
        session.rollback()
        stored = _stored(session, api_key_id, key, request_hash)
        session.rollback()
        if stored is None:
            raise _in_flight() from None
        return stored, True
    except BaseException:
        session.rollback()
        raise
    return answer, False

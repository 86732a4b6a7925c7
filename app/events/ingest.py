"""Stores each inbound delivery and applies it, in one transaction: one at a time, or a
batch of those that arrived together (see batching.py).

The delivery row is written first, so that what is acknowledged can be inspected and
replayed; then it is applied (applier.py), and whatever waited for what it created.
"""

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, col, select

from app import tracing
from app.errors import Conflict, is_connection_error
from app.events import bulk
from app.events.applier import apply_and_release
from app.events.inbound import (
    Inbound,
    InvalidDelivery,
    Mapping,
    Receipt,
    delivery_values,
    map_inbound,
)
from app.models import Delivery, DeliveryResult

log = logging.getLogger("nextstep.events")


def _duplicate(session: Session, existing: Delivery, inbound: Inbound) -> tuple[Delivery, str]:
    if existing.body_sha256 != hashlib.sha256(inbound.body).hexdigest():
        raise Conflict(
            f"Delivery {inbound.delivery_key!r} from {inbound.source!r} was received before "
            "with a different body.",
            delivery_id=str(existing.id),
        )
    # Atomic: concurrent copies must each be counted.
    session.exec(
        update(Delivery)
        .where(col(Delivery.id) == existing.id)
        .values(duplicates=col(Delivery.duplicates) + 1)
    )
    return existing, DeliveryResult.duplicate.value


def _find(session: Session, source: str, key: str) -> Delivery | None:
    return session.exec(
        select(Delivery).where(Delivery.source == source, Delivery.delivery_key == key)
    ).first()


def _store(
    session: Session, inbound: Inbound, now: datetime, mapping: Mapping | None = None
) -> tuple[Delivery, str]:
    """Store and apply one delivery (``mapping``: what it maps to, if already known), or
    count it as a duplicate; no commit.

    Raises Conflict, having written nothing, for a known id with another body.
    """
    with tracing.resumed(inbound.trace):
        existing = _find(session, inbound.source, inbound.delivery_key)
        if existing is not None:
            return _duplicate(session, existing, inbound)
        return _store_and_apply(session, inbound, now, mapping or map_inbound(inbound))


def _answer(delivery: Delivery, status: str) -> tuple[Delivery, str]:
    """Once committed: a delivery stored as rejected (now or before) is refused."""
    if delivery.result == DeliveryResult.rejected:
        raise InvalidDelivery(delivery.error or "invalid event", delivery_id=str(delivery.id))
    return delivery, status


def ingest(session: Session, inbound: Inbound, now: datetime) -> tuple[Delivery, str]:
    """Store and apply one delivery; returns it and its answer (applied, duplicate, …).

    The delivery and its effects commit together, or not at all.
    """
    for attempt in range(3):
        try:
            delivery, status = _store(session, inbound, now)
            session.commit()
        except Conflict:
            session.rollback()
            raise
        except IntegrityError:
            # Another request stored the same delivery, or created the same subject,
            # first: look again with its work visible.
            session.rollback()
            if attempt == 2:
                raise
            continue
        except DBAPIError as exc:
            # Deadlocked with a concurrent copy (SQLSTATE class 40): PostgreSQL undid this
            # attempt, so make another rather than answer 503.
            _rollback(session)
            if attempt == 2 or not (getattr(exc.orig, "sqlstate", None) or "").startswith("40"):
                raise
            continue
        return _answer(delivery, status)
    raise AssertionError("unreachable")


def _store_and_apply(
    session: Session, inbound: Inbound, now: datetime, mapping: Mapping
) -> tuple[Delivery, str]:
    mapped, _error = mapping
    delivery = Delivery(**delivery_values(inbound, mapping))
    session.add(delivery)
    session.flush()
    if mapped is not None and mapped.commands:
        apply_and_release(session, delivery, mapped, now)
    return delivery, delivery.result


def ingest_batch(
    session: Session, inbounds: Sequence[Inbound], now: datetime
) -> list[Receipt | Exception]:
    """Store and apply deliveries that arrived together; a receipt, or the error, for each.

    They share one transaction and get the effects and answers of ingesting them one after
    another. Those that record a new interview with new next steps (most of the traffic)
    are written with one INSERT per table for all of them. If the shared transaction
    fails, each delivery is ingested on its own, so that one bad delivery costs no other
    its answer; only an unreachable database is everyone's error at once.
    """
    try:
        return _ingest_together(session, inbounds, now)
    except Exception as exc:
        _rollback(session)
        if _everyones_error(exc):
            return [exc for _ in inbounds]
        log.warning(
            "storing %d deliveries in one transaction failed (%s); storing them one by one",
            len(inbounds),
            type(exc).__name__,
        )
    answers: list[Receipt | Exception] = []
    for inbound in inbounds:
        if answers and isinstance(answers[-1], Exception) and _everyones_error(answers[-1]):
            answers.append(answers[-1])
            continue
        try:
            delivery, status = ingest(session, inbound, now)
        except Exception as exc:  # this delivery's own answer
            _rollback(session)
            answers.append(exc)
        else:
            answers.append(Receipt(delivery.id, status))
    return answers


def _everyones_error(exc: Exception) -> bool:
    """The database is unreachable or stuck: each delivery on its own would wait for the
    same error. A deadlock or serialisation failure (SQLSTATE class 40) is not."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    return is_connection_error(exc) and not sqlstate.startswith("40")


def _rollback(session: Session) -> None:
    try:
        session.rollback()
    except DBAPIError:
        log.warning("rollback failed: the database connection is gone")


def _key_order(inbound: Inbound) -> tuple[str, str]:
    return inbound.source, inbound.delivery_key


def _ingest_together(
    session: Session, inbounds: Sequence[Inbound], now: datetime
) -> list[Receipt | Exception]:
    mappings = [map_inbound(inbound) for inbound in inbounds]
    new = bulk.new_interviews(session, inbounds, mappings)
    answers: dict[int, Receipt | Exception] = dict(
        bulk.store_new_interviews(session, inbounds, new, now)
    )
    stored: dict[int, tuple[Delivery, str]] = {}
    # In key order, as the bulk path does: replicas storing copies of the same deliveries
    # then take their unique-key locks in the same order and never deadlock.
    for index in sorted(range(len(inbounds)), key=lambda i: _key_order(inbounds[i])):
        inbound = inbounds[index]
        if index in answers:
            continue
        try:
            with session.begin_nested():
                stored[index] = _store(session, inbound, now, mappings[index])
        except Conflict as exc:
            answers[index] = exc
    session.commit()
    for index, (delivery, status) in stored.items():
        try:
            _answer(delivery, status)
        except InvalidDelivery as exc:
            answers[index] = exc
        else:
            answers[index] = Receipt(delivery.id, status)
    return [answers[index] for index in range(len(inbounds))]

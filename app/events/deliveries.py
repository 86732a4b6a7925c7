"""Stored deliveries: listing them, applying one again, and the sweep's safety net."""

import logging
import uuid
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from app.commitments import ledger, policy_steps
from app.db import get_or_not_found, keyset_page
from app.events.applier import apply_and_release
from app.events.commands import MappingError
from app.events.mapping import map_delivery
from app.events.pending import PENDING, lock_subjects, subject_exists
from app.models import (
    Commitment,
    Contact,
    Delivery,
    DeliveryResult,
    Interview,
    TimelineEntry,
)
from app.pagination import aware_instant

log = logging.getLogger("nextstep.events")


def _apply_again(session: Session, delivery: Delivery, now: datetime) -> None:
    """Map a stored delivery with today's mapping and apply it, or store why it cannot be."""
    try:
        mapped = map_delivery(delivery.kind, delivery.body, delivery.received_at)
    except MappingError as exc:
        delivery.result, delivery.subject = DeliveryResult.rejected, None
        delivery.error = str(exc)[:2000]
        session.add(delivery)
        return
    delivery.error = None
    delivery.event_type = mapped.event_type[:100]
    delivery.occurred_at = mapped.occurred_at
    if mapped.commands:
        apply_and_release(session, delivery, mapped, now)
    else:
        delivery.result, delivery.subject = DeliveryResult.ignored, None
    session.add(delivery)


def _undo(session: Session, delivery: Delivery) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Remove what a delivery did; returns the interviews and steps to rebuild."""
    entries = session.exec(
        select(TimelineEntry).where(TimelineEntry.delivery_id == delivery.id)
    ).all()
    interviews = {e.interview_id for e in entries if e.commitment_id is None}
    steps = {e.commitment_id for e in entries if e.commitment_id is not None}
    session.exec(delete(TimelineEntry).where(col(TimelineEntry.delivery_id) == delivery.id))
    session.exec(delete(Contact).where(col(Contact.delivery_id) == delivery.id))
    session.flush()
    return interviews, steps


def _rebuild_after_replay(
    session: Session, interviews: set[uuid.UUID], steps: set[uuid.UUID], now: datetime
) -> None:
    for step_id in steps:
        step = session.get(Commitment, step_id)
        if step is None:
            continue
        if ledger.has_agreement(session, step_id):
            ledger.rebuild_commitment(session, step, now)
        else:
            session.delete(step)  # no event agrees to it any more
    for interview_id in interviews:
        interview = session.get(Interview, interview_id)
        if interview is not None and ledger.has_interview_history(session, interview_id):
            ledger.rebuild_interview(session, interview, now)


def replay(session: Session, delivery_id: uuid.UUID, now: datetime) -> Delivery:
    """Apply a stored delivery again with today's mapping. Replaying twice changes nothing more."""
    delivery = get_or_not_found(session, Delivery, delivery_id, "delivery", lock=True)
    interviews, steps = _undo(session, delivery)
    policy_steps.prepare_replay(session, interviews, steps)
    _apply_again(session, delivery, now)
    session.flush()
    _rebuild_after_replay(session, interviews, steps, now)
    session.commit()
    return delivery


def apply_ready_pending(session: Session, now: datetime, limit: int = 200) -> int:
    """Apply pending deliveries whose subject exists; returns how many were applied.

    Creating a subject releases what waits for it in the same transaction (pending.py), so
    this finds nothing unless that guarantee failed, or the subject was created over REST:
    it is the safety net that makes sure no acknowledged delivery waits for good. Each
    delivery commits on its own.
    """
    waiting = session.exec(
        select(Delivery.id, Delivery.subject)
        .where(col(Delivery.result) == PENDING)
        .order_by(col(Delivery.occurred_at), col(Delivery.delivery_key))
        .limit(limit)
    ).all()
    ready = [(i, s) for i, s in waiting if s is not None and subject_exists(session, s)]
    session.rollback()
    applied = 0
    for delivery_id, subject in ready:
        lock_subjects(session, subject)
        delivery = session.exec(
            select(Delivery)
            .where(Delivery.id == delivery_id, col(Delivery.result) == PENDING)
            .with_for_update()
        ).first()
        if delivery is None:  # applied meanwhile
            session.rollback()
            continue
        _apply_again(session, delivery, now)
        session.commit()
        if delivery.result == DeliveryResult.applied:
            applied += 1
            log.warning(
                "pending delivery %s (%s) applied by the sweep: its subject %s existed",
                delivery.id,
                delivery.source,
                subject,
            )
    return applied


def list_deliveries(
    session: Session,
    source: str | None,
    result: DeliveryResult | None,
    received_after: datetime | None,
    limit: int,
    after: list[str] | None,
) -> tuple[list[Delivery], list[str] | None]:
    """Stored deliveries, oldest first; returns the page and the key to continue after."""
    where = []
    if source is not None:
        where.append(col(Delivery.source) == source)
    if result is not None:
        where.append(col(Delivery.result) == result)
    if received_after is not None:
        where.append(col(Delivery.received_at) > received_after)
    keys = (col(Delivery.received_at), col(Delivery.id))
    return keyset_page(session, Delivery, keys, (aware_instant, uuid.UUID), after, limit, where)

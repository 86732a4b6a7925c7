"""Deliveries that wait for their subject, and the one locking rule that keeps them from
waiting for good.

A delivery about an interview or a step not stored yet is kept ``pending`` on that
subject. The rule: **marking a delivery pending on S and creating S both hold S's lock
until their transaction ends** (a PostgreSQL transaction-level advisory lock; SQLite has
one writer at a time). Whoever creates S then looks for what waits for S after the
pending mark has committed, or the pending delivery sees S once its creator has
committed: either way the delivery is applied. ``applier`` and ``bulk`` take the lock only
through ``lock_subjects``.
"""

from datetime import datetime

from sqlalchemy import func, literal, text
from sqlmodel import Session, col, select

from app.commitments.ledger import find_commitment, find_interview
from app.models import Delivery, DeliveryResult, InterviewStatus

# Rendered inline: a partial index on pending subjects serves only a query that names
# the value (SQLite does not match a bound parameter against the index's WHERE).
PENDING = literal(DeliveryResult.pending.value, literal_execute=True)


class Pending(Exception):
    """The delivery waits for ``subject``, which is not stored yet."""

    def __init__(self, subject: str) -> None:
        super().__init__(subject)
        self.subject = subject


def interview_subject(source: str, external_id: str) -> str:
    return f"interview:{source}:{external_id}"


def step_subject(source: str, external_id: str) -> str:
    return f"step:{source}:{external_id}"


def facts_subject(source: str, external_id: str) -> str:
    """What a step without a due time waits for: its interview's stage, job and status,
    which the deadline policies match on (see applier._due_or_wait)."""
    return f"facts:{source}:{external_id}"


def locks_subjects(session: Session) -> bool:
    """PostgreSQL serialises subjects with advisory locks; SQLite has one writer at a time."""
    return session.get_bind().dialect.name == "postgresql"


_LOCK_SUBJECTS = text(
    "SELECT pg_advisory_xact_lock(hashtext(s)) FROM unnest(CAST(:s AS text[])) AS s"
)


def lock_subjects(session: Session, *subjects: str) -> None:
    """Hold these subjects' locks until the transaction ends, taken in a fixed order.

    A lock taken inside a savepoint that is rolled back is released with it: a delivery
    that goes pending takes its subject's lock again after its savepoint (see
    ``applier.apply_delivery``).
    """
    if subjects and locks_subjects(session):
        session.connection().execute(_LOCK_SUBJECTS, {"s": sorted(set(subjects))})


def subject_exists(session: Session, subject: str) -> bool:
    """Whether the interview or step a pending delivery waits for is stored.

    A subject reads ``kind:source:external_id``; either name may hold a colon, so every
    split is tried (one index look-up each, and there is rarely more than one).
    """
    kind, _, rest = subject.partition(":")
    splits = [i for i, char in enumerate(rest) if char == ":"]
    if kind == "facts":
        # Facts known (the interview has a stage or is past scheduled): the step may meet
        # its policy now, or be refused.
        return any(
            found is not None
            and (found.stage is not None or found.status != InterviewStatus.scheduled)
            for found in (find_interview(session, rest[:i], rest[i + 1 :]) for i in splits)
        )
    find = {"interview": find_interview, "step": find_commitment}.get(kind)
    if find is None:
        return False
    return any(find(session, rest[:i], rest[i + 1 :]) is not None for i in splits)


def oldest_pending_received_at(session: Session) -> datetime | None:
    """When the oldest delivery still pending was received, for the metrics endpoint."""
    return session.exec(
        select(func.min(Delivery.received_at)).where(col(Delivery.result) == PENDING)
    ).one()

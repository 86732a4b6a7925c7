"""The tables of outbound delivery: endpoints, reminder rules, scheduled reminders, and the
outbox of messages with their attempts.

A message is written in the transaction of the change that causes it (the outbox); the
worker (``app.outbound.worker``) sends it later, at least once, and records every attempt.
"""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, text
from sqlmodel import Field, SQLModel

from app.models.base import _NULLABLE_JSON, _instant_column, _uuid_pk, enum_check
from app.models.owners import OWNER_ID_TYPE


class EndpointKind(StrEnum):
    webhook = "webhook"
    slack = "slack"


class EventType(StrEnum):
    due_soon = "next_step.due_soon"
    overdue = "next_step.overdue"
    escalated = "next_step.escalated"
    agreed = "next_step.agreed"
    updated = "next_step.updated"
    completed = "next_step.completed"
    cancelled = "next_step.cancelled"
    endpoint_test = "endpoint.test"


class MessageType(StrEnum):
    """What a message is about: the event types endpoints take, and the e-mail-only ones."""

    due_soon = "next_step.due_soon"
    overdue = "next_step.overdue"
    escalated = "next_step.escalated"
    agreed = "next_step.agreed"
    updated = "next_step.updated"
    completed = "next_step.completed"
    cancelled = "next_step.cancelled"
    endpoint_test = "endpoint.test"
    owner_digest = "owner.digest"
    email_test = "email.test"


class MessageChannel(StrEnum):
    """How a message travels: to an endpoint (webhook, slack), or by e-mail to an owner."""

    webhook = "webhook"
    slack = "slack"
    email = "email"


# What a reminder rule's steps may send.
REMINDER_TYPES = (EventType.due_soon, EventType.overdue, EventType.escalated)


class MessageStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class ReminderState(StrEnum):
    scheduled = "scheduled"
    sent = "sent"
    skipped = "skipped"


class Endpoint(SQLModel, table=True):
    """Where messages go. The secret signs them and is never shown after it is made; after a
    rotation the previous one signs beside it until ``previous_secret_expires_at``."""

    __tablename__ = "endpoint"
    __table_args__ = (enum_check("kind", EndpointKind),)

    id: uuid.UUID = _uuid_pk()
    kind: str = Field(sa_type=String(20))
    url: str = Field(sa_type=String(2000))
    description: str | None = Field(default=None, sa_type=String(500))
    event_types: list[str] = Field(sa_type=JSON)
    enabled: bool = Field(default=True, sa_type=Boolean)
    disabled_reason: str | None = Field(default=None, sa_type=String(500))
    secret: str | None = Field(default=None, sa_type=String(200))
    previous_secret: str | None = Field(default=None, sa_type=String(200))
    previous_secret_expires_at: datetime | None = _instant_column(nullable=True)
    version: int = 1
    created_at: datetime = _instant_column()
    updated_at: datetime = _instant_column()


class ReminderRule(SQLModel, table=True):
    """A ladder of reminders as data: each step fires at the step's due time plus an offset."""

    __tablename__ = "reminder_rule"
    __table_args__ = (Index("ix_reminder_rule_position", "position", "id"),)

    id: uuid.UUID = _uuid_pk()
    name: str = Field(sa_type=String(200))
    position: int = 0
    enabled: bool = Field(default=True, sa_type=Boolean)
    match: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    steps: list[dict[str, Any]] = Field(sa_type=JSON)
    quiet_hours: bool = Field(default=True, sa_type=Boolean)
    # Each firing is also e-mailed to the step's owner (an escalation to its `to` person).
    email_owner: bool = Field(default=False, sa_type=Boolean)
    version: int = 1
    created_at: datetime = _instant_column()
    updated_at: datetime = _instant_column()
    # The worker schedules a created or changed rule for the open steps that exist, in
    # batches (reminders.schedule_changed_rule): pending until it is done; the commitment id
    # it has reached, in id order.
    schedule_pending: bool = Field(default=False, sa_type=Boolean)
    schedule_after: uuid.UUID | None = None


_SCHEDULED = "state = 'scheduled'"
_PENDING = "status = 'pending'"


class Reminder(SQLModel, table=True):
    """One step of a rule for one commitment: when it fires, and what became of it.

    It keeps the due time and owner it was scheduled for: when it fires, a step that was
    re-dated or reassigned since sends nothing. A rule may be deleted later: no foreign key.
    """

    __tablename__ = "reminder"
    __table_args__ = (
        enum_check("state", ReminderState),
        Index("ix_reminder_commitment_id", "commitment_id", "fire_at"),
        Index(
            "ix_reminder_due",
            "fire_at",
            sqlite_where=text(_SCHEDULED),
            postgresql_where=text(_SCHEDULED),
        ),
    )

    id: uuid.UUID = _uuid_pk()
    commitment_id: uuid.UUID = Field(
        sa_column_args=[ForeignKey("commitment.id", ondelete="CASCADE")]
    )
    rule_id: uuid.UUID
    rule_version: int
    step: int
    type: str = Field(sa_type=String(40))
    escalate_to: dict[str, Any] | None = Field(default=None, sa_type=_NULLABLE_JSON)
    due_at: datetime = _instant_column()
    owner_id: str = Field(sa_type=String(200))
    fire_at: datetime = _instant_column()
    state: str = Field(default=ReminderState.scheduled, sa_type=String(20))
    reason: str | None = Field(default=None, sa_type=String(200))
    created_at: datetime = _instant_column()
    settled_at: datetime | None = _instant_column(nullable=True)


class Message(SQLModel, table=True):
    """One message to one endpoint, or one e-mail to one owner (``recipient``, with no
    endpoint); its id is the webhook-id (an e-mail's Message-ID), the same on every attempt.

    ``body`` is the exact text sent (an e-mail's whole RFC 5322 text), so that every attempt
    sends the same bytes. While an
    attempt is in flight, ``next_attempt_at`` is the end of its lease: a process that dies
    mid-send leaves the message to be claimed again when the lease runs out.
    """

    __tablename__ = "message"
    __table_args__ = (
        enum_check("status", MessageStatus),
        enum_check("channel", MessageChannel),
        Index(
            "ix_message_next_attempt",
            "next_attempt_at",
            sqlite_where=text(_PENDING),
            postgresql_where=text(_PENDING),
        ),
        Index("ix_message_endpoint_id", "endpoint_id", "created_at"),
        Index("ix_message_commitment_id", "commitment_id"),
        Index("ix_message_created_at", "created_at", "id"),
        Index("ix_message_recipient", "recipient", "created_at"),
    )

    id: uuid.UUID = _uuid_pk()
    endpoint_id: uuid.UUID | None = None
    channel: str = Field(default=MessageChannel.webhook, sa_type=String(20))
    # The owner id an e-mail went to; None for an endpoint's message.
    recipient: str | None = Field(default=None, sa_type=OWNER_ID_TYPE)
    type: str = Field(sa_type=String(40))
    commitment_id: uuid.UUID | None = None
    reminder_id: uuid.UUID | None = None
    body: str = Field(sa_type=Text)
    status: str = Field(default=MessageStatus.pending, sa_type=String(20))
    attempts: int = Field(default=0, sa_type=Integer)
    next_attempt_at: datetime | None = _instant_column(nullable=True)
    created_at: datetime = _instant_column()
    updated_at: datetime = _instant_column()
    # The W3C traceparent of the change that wrote it, when traced (app/tracing.py).
    trace_context: str | None = Field(default=None, sa_type=String(64))


class DigestRun(SQLModel, table=True):
    """The scheduled digest of one owner for one local date: written before the digest, so
    that however many processes look at the same morning, one writes it (the primary key).
    ``message_id`` is None when there was nothing to list."""

    __tablename__ = "digest_run"

    owner_id: str = Field(sa_type=OWNER_ID_TYPE, primary_key=True)
    on_date: date = Field(sa_type=Date, primary_key=True)
    message_id: uuid.UUID | None = None
    created_at: datetime = _instant_column()


class MessageAttempt(SQLModel, table=True):
    """One try at sending a message: what the endpoint answered, or why there was no answer."""

    __tablename__ = "message_attempt"

    id: uuid.UUID = _uuid_pk()
    message_id: uuid.UUID = Field(
        sa_column_args=[ForeignKey("message.id", ondelete="CASCADE")], index=True
    )
    n: int
    at: datetime = _instant_column()
    response_status: int | None = None
    error: str | None = Field(default=None, sa_type=String(500))
    duration_ms: int

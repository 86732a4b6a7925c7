"""Every table of nextstep, its enums, and the metadata naming convention.

Current state lives in ``interview`` and ``commitment``; their history lives in
``timeline_entry`` (every change, with the instant it took effect). The history is
the truth: after any change the subject's state is recomputed by replaying its
entries in effect order, which is what makes event application order-independent.
``commitment_version`` keeps one row per state a commitment was in, with
``valid_from``/``valid_to`` in effect time, so "what was overdue at T" is one
indexed query, the same one that answers "what is overdue now".
"""

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Dialect,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
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


class InterviewStatus(StrEnum):
    scheduled = "scheduled"
    completed = "completed"
    cancelled = "cancelled"


class CommitmentStatus(StrEnum):
    open = "open"
    done = "done"
    cancelled = "cancelled"


class OwnerRole(StrEnum):
    recruiter = "recruiter"
    coordinator = "coordinator"
    hiring_manager = "hiring_manager"
    interviewer = "interviewer"
    hr = "hr"
    candidate = "candidate"
    other = "other"


class OwedBy(StrEnum):
    company = "company"
    candidate = "candidate"


class Channel(StrEnum):
    call = "call"
    email = "email"
    video = "video"
    in_person = "in_person"
    ats_message = "ats_message"
    sms = "sms"
    other = "other"


class ContactChannel(StrEnum):
    """How a contact happened: the channels of a step, and ``web``, the candidate's nudge
    from the status page (a contact only: no step is promised "by web")."""

    call = "call"
    email = "email"
    video = "video"
    in_person = "in_person"
    ats_message = "ats_message"
    sms = "sms"
    other = "other"
    web = "web"


class ContactDirection(StrEnum):
    inbound = "inbound"
    outbound = "outbound"


class DeliveryResult(StrEnum):
    applied = "applied"
    duplicate = "duplicate"
    ignored = "ignored"
    pending = "pending"
    rejected = "rejected"


class Scope(StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


class DeadlineBasis(StrEnum):
    explicit = "explicit"
    policy = "policy"


class TimelineKind(StrEnum):
    interview_recorded = "interview_recorded"
    interview_updated = "interview_updated"
    agreed = "agreed"
    updated = "updated"
    completed = "completed"
    cancelled = "cancelled"
    reopened = "reopened"
    contact = "contact"


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


class Interview(SQLModel, table=True):
    __tablename__ = "interview"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        enum_check("status", InterviewStatus),
        Index("ix_interview_candidate_external_id", "candidate_external_id"),
        Index("ix_interview_job_external_id", "job_external_id"),
    )

    id: uuid.UUID = _uuid_pk()
    source: str = Field(sa_type=String(100))
    external_id: str | None = Field(default=None, sa_type=String(200))
    candidate_external_id: str = Field(sa_type=String(200))
    candidate_name: str | None = Field(default=None, sa_type=String(300))
    candidate_email: str | None = Field(default=None, sa_type=String(320))
    job_external_id: str | None = Field(default=None, sa_type=String(200))
    job_title: str | None = Field(default=None, sa_type=String(300))
    stage: str | None = Field(default=None, sa_type=String(300))
    status: str = Field(default=InterviewStatus.scheduled, sa_type=String(20))
    interviewers: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    default_owners: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    starts_at: datetime | None = _instant_column(nullable=True)
    ends_at: datetime | None = _instant_column(nullable=True)
    completed_at: datetime | None = _instant_column(nullable=True)
    version: int = 1
    created_at: datetime = _instant_column()
    updated_at: datetime = _instant_column()


class Commitment(SQLModel, table=True):
    __tablename__ = "commitment"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        enum_check("status", CommitmentStatus),
        enum_check("owner_role", OwnerRole),
        enum_check("owed_by", OwedBy),
        enum_check("channel", Channel, nullable=True),
        enum_check("deadline_basis", DeadlineBasis, nullable=True),
        Index("ix_commitment_status_due_at", "status", "due_at", "id"),
        Index("ix_commitment_owner_id", "owner_id"),
    )

    id: uuid.UUID = _uuid_pk()
    interview_id: uuid.UUID = Field(
        sa_column_args=[ForeignKey("interview.id", ondelete="CASCADE")], index=True
    )
    source: str | None = Field(default=None, sa_type=String(100))
    external_id: str | None = Field(default=None, sa_type=String(200))
    action: str = Field(sa_type=String(500))
    owner_id: str = Field(sa_type=String(200))
    owner_name: str | None = Field(default=None, sa_type=String(300))
    owner_role: str = Field(sa_type=String(20))
    owed_by: str = Field(sa_type=String(20))
    channel: str | None = Field(default=None, sa_type=String(20))
    agreed_at: datetime = _instant_column()
    due_at: datetime = _instant_column()
    promised_by: datetime | None = _instant_column(nullable=True)
    # What the candidate may read about the step on the status page.
    candidate_note: str | None = Field(default=None, sa_type=String(280))
    status: str = Field(default=CommitmentStatus.open, sa_type=String(20))
    outcome: str | None = Field(default=None, sa_type=Text)
    reason: str | None = Field(default=None, sa_type=Text)
    completed_at: datetime | None = _instant_column(nullable=True)
    cancelled_at: datetime | None = _instant_column(nullable=True)
    version: int = 1
    created_at: datetime = _instant_column()
    updated_at: datetime = _instant_column()
    # How the due time was made, kept as it was then so that GET .../deadline can show it
    # after the policy or calendar has changed. Null for an explicit due_at. A policy or
    # calendar may be deleted later: no foreign keys.
    deadline_basis: str | None = Field(default=None, sa_type=String(20))
    deadline_policy_id: uuid.UUID | None = None
    deadline_calendar_id: uuid.UUID | None = None
    deadline_calendar_version: int | None = None
    deadline_time_zone: str | None = Field(default=None, sa_type=String(64))
    deadline_start: datetime | None = _instant_column(nullable=True)
    deadline_rule: dict[str, Any] | None = Field(default=None, sa_type=_NULLABLE_JSON)
    deadline_skipped: list[dict[str, str]] | None = Field(default=None, sa_type=_NULLABLE_JSON)
    # The due time the policy computed: while due_at still equals it, the basis is the policy.
    deadline_computed_at: datetime | None = _instant_column(nullable=True)


_OPEN_VERSION_FILTERS = ("valid_from", "owed_by")
_CURRENT_OPEN = "status = 'open' AND valid_to IS NULL"
_CLOSED_OPEN = "status = 'open' AND valid_to IS NOT NULL"


class CommitmentVersion(SQLModel, table=True):
    """One state of a commitment, valid in effect time from ``valid_from`` to ``valid_to``."""

    __tablename__ = "commitment_version"
    __table_args__ = (
        enum_check("status", CommitmentStatus),
        enum_check("owner_role", OwnerRole),
        enum_check("owed_by", OwedBy),
        # Current open versions by due and by promised time, the overdue filters' columns
        # after the sort key; closed open versions by when they closed: those valid at an
        # instant are the few closed after it. See migration 0003.
        Index(
            "ix_commitment_version_current_open_due_at",
            "due_at",
            "commitment_id",
            *_OPEN_VERSION_FILTERS,
            sqlite_where=text(_CURRENT_OPEN),
            postgresql_where=text(_CURRENT_OPEN),
        ),
        Index(
            "ix_commitment_version_current_open_promised_by",
            "promised_by",
            "commitment_id",
            *_OPEN_VERSION_FILTERS,
            sqlite_where=text(f"{_CURRENT_OPEN} AND promised_by IS NOT NULL"),
            postgresql_where=text(f"{_CURRENT_OPEN} AND promised_by IS NOT NULL"),
        ),
        Index(
            "ix_commitment_version_closed_open_valid_to",
            "valid_to",
            sqlite_where=text(_CLOSED_OPEN),
            postgresql_where=text(_CLOSED_OPEN),
        ),
        Index("ix_commitment_version_commitment_id", "commitment_id", "valid_from"),
        # The waiting clock looks up the open versions of a page's interviews.
        Index("ix_commitment_version_interview_id", "interview_id"),
        Index("ix_commitment_version_owner_id", "owner_id"),
        # The responsiveness report: the versions due in its window (migration 0004).
        Index("ix_commitment_version_due_at", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    commitment_id: uuid.UUID = Field(
        sa_column_args=[ForeignKey("commitment.id", ondelete="CASCADE")]
    )
    interview_id: uuid.UUID = Field(sa_column_args=[ForeignKey("interview.id", ondelete="CASCADE")])
    valid_from: datetime = _instant_column()
    valid_to: datetime | None = _instant_column(nullable=True)
    action: str = Field(sa_type=String(500))
    owner_id: str = Field(sa_type=String(200))
    owner_name: str | None = Field(default=None, sa_type=String(300))
    owner_role: str = Field(sa_type=String(20))
    owed_by: str = Field(sa_type=String(20))
    channel: str | None = Field(default=None, sa_type=String(20))
    due_at: datetime = _instant_column()
    promised_by: datetime | None = _instant_column(nullable=True)
    candidate_note: str | None = Field(default=None, sa_type=String(280))
    status: str = Field(sa_type=String(20))
    outcome: str | None = Field(default=None, sa_type=Text)
    reason: str | None = Field(default=None, sa_type=Text)
    completed_at: datetime | None = _instant_column(nullable=True)
    cancelled_at: datetime | None = _instant_column(nullable=True)
    version: int = 1


class Contact(SQLModel, table=True):
    __tablename__ = "contact"
    __table_args__ = (
        enum_check("direction", ContactDirection),
        enum_check("channel", ContactChannel),
        Index("ix_contact_interview_id_at", "interview_id", "at"),
    )

    id: uuid.UUID = _uuid_pk()
    interview_id: uuid.UUID = Field(sa_column_args=[ForeignKey("interview.id", ondelete="CASCADE")])
    direction: str = Field(sa_type=String(20))
    channel: str = Field(sa_type=String(20))
    at: datetime = _instant_column()
    note: str | None = Field(default=None, sa_type=Text)
    actor: str = Field(sa_type=String(300))
    created_at: datetime = _instant_column()
    delivery_id: uuid.UUID | None = Field(
        default=None, sa_column_args=[ForeignKey("delivery.id", ondelete="SET NULL")]
    )


class StatusLink(SQLModel, table=True):
    """A private, expiring link to an interview's status page, sent to the candidate.

    Only the SHA-256 of its token is stored: the URL is shown once, when it is created.
    """

    __tablename__ = "status_link"
    __table_args__ = (Index("ix_status_link_interview_id", "interview_id", "created_at"),)

    id: uuid.UUID = _uuid_pk()
    interview_id: uuid.UUID = Field(sa_column_args=[ForeignKey("interview.id", ondelete="CASCADE")])
    token_hash: str = Field(sa_type=String(64), unique=True)
    created_at: datetime = _instant_column()
    expires_at: datetime = _instant_column()
    revoked_at: datetime | None = _instant_column(nullable=True)
    # The candidate may nudge once a day per link (UTC days).
    last_nudged_at: datetime | None = _instant_column(nullable=True)
    actor: str = Field(sa_type=String(300))


class TimelineEntry(SQLModel, table=True):
    """One change to an interview or a commitment. Append-only."""

    __tablename__ = "timeline_entry"
    __table_args__ = (
        enum_check("kind", TimelineKind),
        Index("ix_timeline_entry_interview_id", "interview_id", "effective_at"),
        Index("ix_timeline_entry_commitment_id", "commitment_id", "effective_at"),
    )

    id: uuid.UUID = _uuid_pk(ordered_uuid)
    interview_id: uuid.UUID = Field(sa_column_args=[ForeignKey("interview.id", ondelete="CASCADE")])
    commitment_id: uuid.UUID | None = Field(
        default=None, sa_column_args=[ForeignKey("commitment.id", ondelete="CASCADE")]
    )
    kind: str = Field(sa_type=String(30))
    effective_at: datetime = _instant_column()
    # Breaks ties between changes that took effect at the same instant, the same way
    # whatever order they arrived in: the delivery id for events, the entry id for calls.
    tiebreak: str = Field(sa_type=String(300))
    recorded_at: datetime = _instant_column()
    actor: str = Field(sa_type=String(300))
    reason: str | None = Field(default=None, sa_type=Text)
    changes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    delivery_id: uuid.UUID | None = Field(
        default=None, sa_column_args=[ForeignKey("delivery.id", ondelete="SET NULL")]
    )


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


class OwnerCalendar(SQLModel, table=True):
    """The calendar an owner (by the owner id the steps carry) works by."""

    __tablename__ = "owner_calendar"
    __table_args__ = (Index("ix_owner_calendar_calendar_id", "calendar_id"),)

    owner_id: str = Field(sa_type=String(200), primary_key=True)
    calendar_id: uuid.UUID = Field(sa_column_args=[ForeignKey("calendar.id")])
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

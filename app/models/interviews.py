"""Interviews, their commitments (current state and versions in effect time), contacts,
status links, and the timeline every change is appended to."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.models.base import _NULLABLE_JSON, _instant_column, _uuid_pk, enum_check, ordered_uuid
from app.models.enums import (
    Channel,
    CommitmentStatus,
    ContactChannel,
    ContactDirection,
    DeadlineBasis,
    InterviewStatus,
    OwedBy,
    OwnerRole,
    TimelineKind,
)


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
# What the responsiveness report reads of a version besides its due and closing times.
REPORT_COLUMNS = (
    "valid_from",
    "agreed_at",
    "owner_since",
    "status",
    "completed_at",
    "owed_by",
    "owner_id",
    "owner_role",
    "commitment_id",
    "interview_id",
)


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
        # The responsiveness report: the current versions due in its window, and the
        # closed ones valid at its judging instant (closed after it), with every column it
        # reads (PostgreSQL: index-only scans). Migration 0012.
        Index(
            "ix_commitment_version_current_due_at_report",
            "due_at",
            postgresql_include=list(REPORT_COLUMNS),
            sqlite_where=text("valid_to IS NULL"),
            postgresql_where=text("valid_to IS NULL"),
        ),
        Index(
            "ix_commitment_version_closed_valid_to_report",
            "valid_to",
            postgresql_include=["due_at", *REPORT_COLUMNS],
            sqlite_where=text("valid_to IS NOT NULL"),
            postgresql_where=text("valid_to IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    commitment_id: uuid.UUID = Field(
        sa_column_args=[ForeignKey("commitment.id", ondelete="CASCADE")]
    )
    interview_id: uuid.UUID = Field(sa_column_args=[ForeignKey("interview.id", ondelete="CASCADE")])
    valid_from: datetime = _instant_column()
    valid_to: datetime | None = _instant_column(nullable=True)
    # The commitment's agreed_at, the same in all its versions; since when the owner (id,
    # role, owed_by) of this version has held the step without a change (ledger.py).
    agreed_at: datetime = _instant_column()
    owner_since: datetime = _instant_column()
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

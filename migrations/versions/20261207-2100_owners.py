"""The owner directory: one row per owner, holding the calendar they work by.

``owner_calendar`` becomes the ``calendar_id`` of ``owner``: each of its rows turns into an
owner written over the API (``learned_from = 'api'``) with that calendar, so that the
calendar an owner works by has one place to live.

Revision ID: 0009_owners
Revises: 0008_rule_scheduling
Create Date: 2026-12-07 21:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "0009_owners"
down_revision: str | None = "0008_rule_scheduling"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNER_ID = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "owner",
        sa.Column("id", _OWNER_ID, nullable=False),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("calendar_id", sa.Uuid(), nullable=True),
        sa.Column("email_reminders", sa.Boolean(), nullable=False),
        sa.Column("digest_enabled", sa.Boolean(), nullable=False),
        sa.Column("digest_at", sa.String(length=5), nullable=False),
        sa.Column("learned_from", sa.String(length=200), nullable=False),
        sa.Column("learned_at", app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("learned_key", sa.String(length=300), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"], ["calendar.id"], name=op.f("fk_owner_calendar_id_calendar")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_owner")),
    )
    op.create_index("ix_owner_calendar_id", "owner", ["calendar_id"], unique=False)
    op.execute(
        "INSERT INTO owner (id, calendar_id, email_reminders, digest_enabled, digest_at, "
        "learned_from, version, created_at, updated_at) "
        "SELECT owner_id, calendar_id, true, false, '07:00', 'api', 1, updated_at, updated_at "
        "FROM owner_calendar"
    )
    op.drop_index("ix_owner_calendar_calendar_id", table_name="owner_calendar")
    op.drop_table("owner_calendar")


def downgrade() -> None:
    op.create_table(
        "owner_calendar",
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("calendar_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"], ["calendar.id"], name=op.f("fk_owner_calendar_calendar_id_calendar")
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_owner_calendar")),
    )
    op.create_index(
        "ix_owner_calendar_calendar_id", "owner_calendar", ["calendar_id"], unique=False
    )
    op.execute(
        "INSERT INTO owner_calendar (owner_id, calendar_id, updated_at) "
        "SELECT id, calendar_id, updated_at FROM owner WHERE calendar_id IS NOT NULL"
    )
    op.drop_index("ix_owner_calendar_id", table_name="owner")
    op.drop_table("owner")

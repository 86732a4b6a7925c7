"""Calendar feeds: private iCalendar feeds of an owner's steps.

``calendar_feed`` holds only the SHA-256 of each feed's token; a feed goes with its owner
(ON DELETE CASCADE). On SQLite, with foreign keys on, a later migration that rebuilds
``owner`` in batch mode would delete every feed: copy them aside first.

Revision ID: 0011_calendar_feeds
Revises: 0010_message_trace_context
Create Date: 2026-12-07 22:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "0011_calendar_feeds"
down_revision: str | None = "0010_message_trace_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNER_ID = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "calendar_feed",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", _OWNER_ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["owner.id"],
            name=op.f("fk_calendar_feed_owner_id_owner"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feed")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_feed_token_hash")),
    )
    op.create_index(
        "ix_calendar_feed_owner_id", "calendar_feed", ["owner_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_calendar_feed_owner_id", table_name="calendar_feed")
    op.drop_table("calendar_feed")

"""Links in e-mails to owners: action links (answer a step from a page) and one-click
unsubscribe links. Both hold only the SHA-256 of their token, and go with their owner
(ON DELETE CASCADE).

Revision ID: 0012_owner_links
Revises: 0011_calendar_feeds
Create Date: 2026-12-08 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "0012_owner_links"
down_revision: str | None = "0011_calendar_feeds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNER_ID = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "action_link",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("commitment_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", _OWNER_ID, nullable=False),
        sa.Column("held_by", _OWNER_ID, nullable=False),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["commitment_id"],
            ["commitment.id"],
            name=op.f("fk_action_link_commitment_id_commitment"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["owner.id"],
            name=op.f("fk_action_link_owner_id_owner"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_link")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_action_link_token_hash")),
    )
    op.create_index("ix_action_link_owner_id", "action_link", ["owner_id"], unique=False)
    op.create_table(
        "unsubscribe_link",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("owner_id", _OWNER_ID, nullable=False),
        sa.Column("topic", sa.String(length=20), nullable=False),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "topic IN ('reminders', 'digest')", name=op.f("ck_unsubscribe_link_topic")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["owner.id"],
            name=op.f("fk_unsubscribe_link_owner_id_owner"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unsubscribe_link")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_unsubscribe_link_token_hash")),
    )
    op.create_index("ix_unsubscribe_link_owner_id", "unsubscribe_link", ["owner_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_unsubscribe_link_owner_id", table_name="unsubscribe_link")
    op.drop_table("unsubscribe_link")
    op.drop_index("ix_action_link_owner_id", table_name="action_link")
    op.drop_table("action_link")

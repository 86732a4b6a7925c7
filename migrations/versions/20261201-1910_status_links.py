"""Status links for candidates, the candidate's note on a step, and the contact channel web.

``status_link`` holds the links sent to candidates: only the SHA-256 of each token, its
expiry, its revocation and the last nudge (one a day). ``candidate_note`` is what the
candidate may read about a step, on the commitment and on each of its versions. The
channel ``web`` (a nudge from the status page) joins the CHECK constraint of contacts.

Only ``contact`` is rebuilt for its CHECK constraint on SQLite: no table refers to it.
Rebuilding ``commitment`` there would drop the old table, and with foreign keys on, that
deletes (ON DELETE CASCADE) every version and timeline entry of every commitment.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHANNELS = ("call", "email", "video", "in_person", "ats_message", "sms", "other")


def _replace_contact_channel_check(channels: Sequence[str]) -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_contact_channel"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_contact_channel"),
            "channel IN ({})".format(", ".join(f"'{c}'" for c in channels)),
        )


def upgrade() -> None:
    op.create_table(
        "status_link",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("interview_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_nudged_at", app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["interview_id"],
            ["interview.id"],
            name=op.f("fk_status_link_interview_id_interview"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_link")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_status_link_token_hash")),
    )
    with op.batch_alter_table("status_link", schema=None) as batch_op:
        batch_op.create_index(
            "ix_status_link_interview_id", ["interview_id", "created_at"], unique=False
        )
    for table in ("commitment", "commitment_version"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("candidate_note", sa.String(length=280), nullable=True))
    _replace_contact_channel_check((*_CHANNELS, "web"))


def downgrade() -> None:
    # Nudges from the status page become contacts of channel "other".
    op.execute("UPDATE contact SET channel = 'other' WHERE channel = 'web'")
    _replace_contact_channel_check(_CHANNELS)
    for table in ("commitment_version", "commitment"):
        # Not in batch mode, which would rebuild (drop) the referenced commitment table on
        # SQLite: ALTER TABLE ... DROP COLUMN on both databases (SQLite 3.35 and later).
        op.drop_column(table, "candidate_note")
    with op.batch_alter_table("status_link", schema=None) as batch_op:
        batch_op.drop_index("ix_status_link_interview_id")
    op.drop_table("status_link")

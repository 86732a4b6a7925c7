"""The responsiveness report reads a window's steps from one index.

Every commitment version now carries its commitment's ``agreed_at`` (the same in all of
them), and the index of versions by due time is replaced by one that also holds what the
report reads of a version (on PostgreSQL, INCLUDE columns): a month of a million steps is
then an index-only range scan, where the report read most of the versions' pages and
hashed the whole commitment table to find each step's agreement.

The backfill rewrites every version row once (PostgreSQL keeps the old row versions until
the next VACUUM).

Revision ID: 0012_report_indexes
Revises: 0011_calendar_feeds
Create Date: 2026-12-07 23:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "0012_report_indexes"
down_revision: str | None = "0011_calendar_feeds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As they stand in app.models.interviews.REPORT_COLUMNS at this revision.
_REPORT_COLUMNS = [
    "valid_from",
    "valid_to",
    "agreed_at",
    "status",
    "completed_at",
    "owed_by",
    "owner_id",
    "owner_role",
    "commitment_id",
    "interview_id",
]


def upgrade() -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("agreed_at", app.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute(
        "UPDATE commitment_version SET agreed_at = commitment.agreed_at "
        "FROM commitment WHERE commitment.id = commitment_version.commitment_id"
    )
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.alter_column(
            "agreed_at", existing_type=app.models.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.drop_index("ix_commitment_version_due_at")
        batch_op.create_index(
            "ix_commitment_version_due_at_report",
            ["due_at"],
            unique=False,
            postgresql_include=_REPORT_COLUMNS,
        )


def downgrade() -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.drop_index("ix_commitment_version_due_at_report")
        batch_op.create_index("ix_commitment_version_due_at", ["due_at"], unique=False)
        batch_op.drop_column("agreed_at")

"""The responsiveness report reads a window's steps from two partial covering indexes.

Every commitment version now carries its commitment's ``agreed_at`` (the same in all of
them) and ``owner_since``, since when its owner (id, role, owed_by) has held the step
without a change; the index of versions by due time is replaced by two partial ones that also hold what
the report reads of a version (on PostgreSQL, INCLUDE columns): the current versions by
due time, the closed ones by closing time. A month of a million steps is then an
index-only range scan over that month's current versions, where the report read most of
the versions' pages, hashed the whole commitment table to find each step's agreement and
looked up the earlier version of every step completed late to find who held it when it
fell due.

The backfill rewrites every version row once (PostgreSQL keeps the old row versions until
the next VACUUM): minutes over a million steps, during which the versions are locked.

Revision ID: 0014_report_indexes
Revises: 0013_email
Create Date: 2026-12-08 02:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "0014_report_indexes"
down_revision: str | None = "0013_email"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As they stand in app.models.interviews.REPORT_COLUMNS at this revision.
_REPORT_COLUMNS = [
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
]

_NEW_COLUMNS = ("agreed_at", "owner_since")
_INSTANT = app.models.UTCDateTime(timezone=True)
# A version's owner_since is the valid_from of the latest version, up to it, that began
# with another owner than the one before it (or began the step).
_BACKFILL = """
UPDATE commitment_version
SET agreed_at = since.agreed_at, owner_since = since.owner_since
FROM (
    SELECT id, min(valid_from) OVER earlier AS agreed_at, max(owner_from) OVER earlier AS owner_since
    FROM (
        SELECT id, commitment_id, valid_from,
            CASE WHEN lag(owner_id) OVER steps = owner_id
                AND lag(owner_role) OVER steps = owner_role
                AND lag(owed_by) OVER steps = owed_by
            THEN NULL ELSE valid_from END AS owner_from
        FROM commitment_version
        WINDOW steps AS (PARTITION BY commitment_id ORDER BY valid_from)
    ) AS changes
    WINDOW earlier AS (PARTITION BY commitment_id ORDER BY valid_from ROWS UNBOUNDED PRECEDING)
) AS since
WHERE since.id = commitment_version.id
"""


def _without_statement_timeout() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The backfill and the indexes read every version: over a million steps they take
        # longer than the statement timeout the app's connections carry (app/db.py).
        op.execute("SET LOCAL statement_timeout = 0")


def upgrade() -> None:
    _without_statement_timeout()
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        for name in _NEW_COLUMNS:
            batch_op.add_column(sa.Column(name, _INSTANT, nullable=True))
    op.execute(_BACKFILL)
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        for name in _NEW_COLUMNS:
            batch_op.alter_column(name, existing_type=_INSTANT, nullable=False)
        batch_op.drop_index("ix_commitment_version_due_at")
        batch_op.create_index(
            "ix_commitment_version_current_due_at_report",
            ["due_at"],
            unique=False,
            postgresql_include=_REPORT_COLUMNS,
            sqlite_where=sa.text("valid_to IS NULL"),
            postgresql_where=sa.text("valid_to IS NULL"),
        )
        batch_op.create_index(
            "ix_commitment_version_closed_valid_to_report",
            ["valid_to"],
            unique=False,
            postgresql_include=["due_at", *_REPORT_COLUMNS],
            sqlite_where=sa.text("valid_to IS NOT NULL"),
            postgresql_where=sa.text("valid_to IS NOT NULL"),
        )


def downgrade() -> None:
    _without_statement_timeout()
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.drop_index("ix_commitment_version_closed_valid_to_report")
        batch_op.drop_index("ix_commitment_version_current_due_at_report")
        batch_op.create_index("ix_commitment_version_due_at", ["due_at"], unique=False)
        for name in _NEW_COLUMNS:
            batch_op.drop_column(name)

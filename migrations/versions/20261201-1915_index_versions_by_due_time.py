"""Index commitment versions by due time, for the responsiveness report.

The report reads the versions valid at its judging instant whose due time lies in its
window; without this index each report read every version of every step (a year of a
million steps: 1.75M rows) to keep a month of them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:45:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.create_index("ix_commitment_version_due_at", ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.drop_index("ix_commitment_version_due_at")

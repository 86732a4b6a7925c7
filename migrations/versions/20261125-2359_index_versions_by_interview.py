"""Index commitment versions by interview, for the waiting clock.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:59:00.477725+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.create_index("ix_commitment_version_interview_id", ["interview_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.drop_index("ix_commitment_version_interview_id")

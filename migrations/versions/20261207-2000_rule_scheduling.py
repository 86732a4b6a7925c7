"""Reminder rules are scheduled for existing open steps by the worker, in batches: what is
still to do is kept on the rule.

Revision ID: 0008_rule_scheduling
Revises: 0007
Create Date: 2026-12-07 20:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_rule_scheduling"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reminder_rule", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("schedule_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("schedule_after", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reminder_rule", schema=None) as batch_op:
        batch_op.drop_column("schedule_after")
        batch_op.drop_column("schedule_pending")

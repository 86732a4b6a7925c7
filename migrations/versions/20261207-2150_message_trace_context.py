"""Messages keep the trace context of the change that wrote them.

A W3C ``traceparent`` (55 characters), or NULL when tracing is off: the worker starts each
attempt's span under it, so that the attempt joins the trace of the event that caused it.

Revision ID: 0010_message_trace_context
Revises: 0009_owners
Create Date: 2026-12-07 23:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_message_trace_context"
down_revision: str | None = "0009_owners"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_context", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("trace_context")

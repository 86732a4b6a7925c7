"""Index current open versions apart from closed ones.

Every step that was ever open keeps an open version, closed (``valid_to`` set) once the
step was done, cancelled or changed. An index of all open versions by due time makes the
first page of overdue steps walk past every closed one due before the oldest overdue step:
with years of finished steps behind a few late ones, the whole history. Now the current
open versions (``valid_to IS NULL``) have their own indexes by due time and by promised
time, and the closed ones an index by ``valid_to``: those valid at an instant are the few
closed after it. The current-version indexes carry ``valid_from`` and ``owed_by`` after the
sort key, so that the overdue filters are checked in the index entry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 02:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILTERS = ["valid_from", "owed_by"]
_CURRENT = "status = 'open' AND valid_to IS NULL"
_CLOSED = "status = 'open' AND valid_to IS NOT NULL"


def _create(batch_op: BatchOperations, name: str, columns: list[str], where: str) -> None:
    batch_op.create_index(
        name, columns, unique=False, sqlite_where=sa.text(where), postgresql_where=sa.text(where)
    )


def upgrade() -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.drop_index("ix_commitment_version_open_due_at")
        batch_op.drop_index("ix_commitment_version_open_promised_by")
        _create(
            batch_op,
            "ix_commitment_version_current_open_due_at",
            ["due_at", "commitment_id", *_FILTERS],
            _CURRENT,
        )
        _create(
            batch_op,
            "ix_commitment_version_current_open_promised_by",
            ["promised_by", "commitment_id", *_FILTERS],
            f"{_CURRENT} AND promised_by IS NOT NULL",
        )
        _create(batch_op, "ix_commitment_version_closed_open_valid_to", ["valid_to"], _CLOSED)


def downgrade() -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        batch_op.drop_index("ix_commitment_version_closed_open_valid_to")
        batch_op.drop_index("ix_commitment_version_current_open_promised_by")
        batch_op.drop_index("ix_commitment_version_current_open_due_at")
        _create(
            batch_op,
            "ix_commitment_version_open_due_at",
            ["due_at", "commitment_id"],
            "status = 'open'",
        )
        _create(
            batch_op,
            "ix_commitment_version_open_promised_by",
            ["promised_by", "commitment_id"],
            "status = 'open' AND promised_by IS NOT NULL",
        )

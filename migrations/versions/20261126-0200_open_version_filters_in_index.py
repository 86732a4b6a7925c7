"""Carry what the overdue filters test in the open-version indexes.

A page of overdue steps walks the open versions by due time and skips those not valid at
the instant asked, or owed by the other party. With ``valid_to``, ``valid_from`` and
``owed_by`` in the index, both databases decide that from the index entry, without reading
the table row first (SQLite for all three; PostgreSQL for the last two).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 02:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILTERS = ["valid_to", "valid_from", "owed_by"]
_INDEXES = {
    "ix_commitment_version_open_due_at": ("due_at", "status = 'open'"),
    "ix_commitment_version_open_promised_by": (
        "promised_by",
        "status = 'open' AND promised_by IS NOT NULL",
    ),
}


def _recreate(extra: list[str]) -> None:
    with op.batch_alter_table("commitment_version", schema=None) as batch_op:
        for name, (sort, where) in _INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(
                name,
                [sort, "commitment_id", *extra],
                unique=False,
                sqlite_where=sa.text(where),
                postgresql_where=sa.text(where),
            )


def upgrade() -> None:
    _recreate(_FILTERS)


def downgrade() -> None:
    _recreate([])

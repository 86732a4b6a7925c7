"""Calendars, owner calendars and deadline policies; how a commitment's deadline was made.

A calendar carries a version that counts its changes. Exactly one calendar is the default:
a partial unique index keeps it to at most one, the service to at least one while any
exist. A commitment keeps, beside its due time, how it was computed (policy, calendar and
its version and zone, start, rule, the days skipped and the computed instant), so that the
answer of GET /v1/commitments/{id}/deadline does not change when the policy or calendar
does. Those columns are added in place (ALTER TABLE ... ADD COLUMN), never by rebuilding
the table: on SQLite a rebuild drops the old table, which with foreign keys on would
cascade to the timeline and the versions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BASIS_CHECK = "deadline_basis IS NULL OR deadline_basis IN ('explicit', 'policy')"
_IS_DEFAULT = "is_default"

_COMMITMENT_COLUMNS = (
    ("deadline_policy_id", sa.Uuid()),
    ("deadline_calendar_id", sa.Uuid()),
    ("deadline_calendar_version", sa.Integer()),
    ("deadline_time_zone", sa.String(length=64)),
    ("deadline_start", app.models.UTCDateTime(timezone=True)),
    ("deadline_rule", sa.JSON()),
    ("deadline_skipped", sa.JSON()),
    ("deadline_computed_at", app.models.UTCDateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "calendar",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=True),
        sa.Column("closed_dates", sa.JSON(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar")),
    )
    op.create_index(
        "uq_calendar_is_default",
        "calendar",
        ["is_default"],
        unique=True,
        sqlite_where=sa.text(_IS_DEFAULT),
        postgresql_where=sa.text(_IS_DEFAULT),
    )
    op.create_table(
        "deadline_policy",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("match", sa.JSON(), nullable=False),
        sa.Column("calendar_id", sa.Uuid(), nullable=True),
        sa.Column("due_rule", sa.JSON(), nullable=True),
        sa.Column("default_step", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["calendar.id"],
            name=op.f("fk_deadline_policy_calendar_id_calendar"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deadline_policy")),
    )
    op.create_index(
        "ix_deadline_policy_position", "deadline_policy", ["position", "id"], unique=False
    )
    op.create_index(
        "ix_deadline_policy_calendar_id", "deadline_policy", ["calendar_id"], unique=False
    )
    op.create_table(
        "owner_calendar",
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("calendar_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["calendar.id"],
            name=op.f("fk_owner_calendar_calendar_id_calendar"),
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_owner_calendar")),
    )
    op.create_index(
        "ix_owner_calendar_calendar_id", "owner_calendar", ["calendar_id"], unique=False
    )

    if op.get_bind().dialect.name == "sqlite":
        # A column's own CHECK, so that SQLite can also drop the column in place later.
        op.execute(
            "ALTER TABLE commitment ADD COLUMN deadline_basis VARCHAR(20) "
            f"CONSTRAINT ck_commitment_deadline_basis CHECK ({_BASIS_CHECK})"
        )
    else:
        op.add_column("commitment", sa.Column("deadline_basis", sa.String(20), nullable=True))
        op.create_check_constraint(
            op.f("ck_commitment_deadline_basis"), "commitment", sa.text(_BASIS_CHECK)
        )
    for name, type_ in _COMMITMENT_COLUMNS:
        op.add_column("commitment", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # Dropped in place (SQLite 3.35+ drops a column whose CHECK is its own).
    for name, _type in reversed(_COMMITMENT_COLUMNS):
        op.drop_column("commitment", name)
    op.drop_column("commitment", "deadline_basis")
    op.drop_index("ix_owner_calendar_calendar_id", table_name="owner_calendar")
    op.drop_table("owner_calendar")
    op.drop_index("ix_deadline_policy_calendar_id", table_name="deadline_policy")
    op.drop_index("ix_deadline_policy_position", table_name="deadline_policy")
    op.drop_table("deadline_policy")
    op.drop_index(
        "uq_calendar_is_default",
        table_name="calendar",
        sqlite_where=sa.text(_IS_DEFAULT),
        postgresql_where=sa.text(_IS_DEFAULT),
    )
    op.drop_table("calendar")

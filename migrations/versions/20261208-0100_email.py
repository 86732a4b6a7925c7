"""E-mail as a channel of the outbox: a message has a channel and, for e-mail, a recipient
(an owner id) and no endpoint; reminder rules can e-mail the owner; one scheduled digest per
owner and local date (``digest_run``'s primary key).

On SQLite, making ``message.endpoint_id`` nullable rebuilds ``message`` in batch mode, and
with foreign keys on, dropping the old table deletes every ``message_attempt`` (ON DELETE
CASCADE): the attempts are copied aside first and put back after.

Revision ID: 0013_email
Revises: 0012_owner_links
Create Date: 2026-12-08 01:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "0013_email"
down_revision: str | None = "0012_owner_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNER_ID = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")
_ATTEMPTS_ASIDE = "_message_attempt_aside"


def _keep_attempts() -> bool:
    """On SQLite, copy the attempts aside before ``message`` is rebuilt; whether it did."""
    if op.get_bind().dialect.name != "sqlite":
        return False
    op.execute(f"CREATE TEMP TABLE {_ATTEMPTS_ASIDE} AS SELECT * FROM message_attempt")
    return True


def _restore_attempts(kept: bool) -> None:
    if not kept:
        return
    op.execute(
        "INSERT INTO message_attempt SELECT * FROM "
        f"{_ATTEMPTS_ASIDE} WHERE message_id IN (SELECT id FROM message) "
        "AND id NOT IN (SELECT id FROM message_attempt)"
    )
    op.execute(f"DROP TABLE {_ATTEMPTS_ASIDE}")


def upgrade() -> None:
    kept = _keep_attempts()
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=20), nullable=False, server_default="webhook")
        )
        batch_op.add_column(sa.Column("recipient", _OWNER_ID, nullable=True))
        batch_op.alter_column("endpoint_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.create_check_constraint("channel", "channel IN ('webhook', 'slack', 'email')")
        batch_op.create_index("ix_message_recipient", ["recipient", "created_at"], unique=False)
    _restore_attempts(kept)
    # Every message so far went to an endpoint: its channel is the endpoint's kind.
    op.execute(
        "UPDATE message SET channel = 'slack' WHERE endpoint_id IN "
        "(SELECT id FROM endpoint WHERE kind = 'slack')"
    )
    with op.batch_alter_table("reminder_rule", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email_owner", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "digest_run",
        sa.Column("owner_id", _OWNER_ID, nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "on_date", name=op.f("pk_digest_run")),
    )


def downgrade() -> None:
    op.drop_table("digest_run")
    with op.batch_alter_table("reminder_rule", schema=None) as batch_op:
        batch_op.drop_column("email_owner")
    # E-mails have no endpoint: they cannot stay once endpoint_id is required again.
    op.execute("DELETE FROM message WHERE endpoint_id IS NULL")
    kept = _keep_attempts()
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index("ix_message_recipient")
        batch_op.drop_constraint(op.f("ck_message_channel"), type_="check")
        batch_op.alter_column("endpoint_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column("recipient")
        batch_op.drop_column("channel")
    _restore_attempts(kept)

"""Alembic environment: one metadata, batch mode for SQLite, an advisory lock on PostgreSQL."""

from alembic import context
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

import app.models  # noqa: F401  (the one import that registers every table)
from app.config import get_settings
from app.db import build_engine

# Any constant works; it only has to be the same for every replica.
MIGRATION_LOCK_ID = 0x6E657874

target_metadata = SQLModel.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        url = get_settings().database_url
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = build_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Several replicas may run `nextstep migrate` at once: one migrates,
                # the others wait here and then find nothing left to do.
                connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
                connection.commit()
            try:
                _configure_and_run(connection)
            finally:
                if connection.dialect.name == "postgresql":
                    connection.rollback()
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                    )
                    connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported; run `nextstep migrate`.")
run_migrations_online()

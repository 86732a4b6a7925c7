"""The migrations build the schema the models describe, and can be undone."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.migrate import downgrade, upgrade
from tests.conftest import require_postgres_admin_url


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own, so that downgrading harms no other test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/scratch.db"
        return
    admin_url = require_postgres_admin_url()
    name = f"nextstep_scratch_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    upgrade(scratch_url)
    assert set(SQLModel.metadata.tables) <= _tables(scratch_url)
    downgrade(scratch_url, "base")
    assert _tables(scratch_url) <= {"alembic_version"}
    upgrade(scratch_url)
    assert set(SQLModel.metadata.tables) <= _tables(scratch_url)


def test_models_and_migrations_agree(scratch_url: str) -> None:
    upgrade(scratch_url)
    engine = create_engine(scratch_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert diff == []

"""Shared fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

Each database is built once per test session by the migrations; every test starts
from empty tables.
"""

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from app import config, db
from app.auth import create_key
from app.main import create_app
from app.migrate import upgrade
from app.models import Scope, utcnow
from app.outbound import outbox

# Apps made at import time (the fuzz tests' schemas) start no outbound worker either: tests
# drive the worker themselves, or start servers that run it.
os.environ.setdefault("NEXTSTEP_WORKER", "false")
# Tests that call the services without an app publish step changes as the app does.
outbox.install()
POSTGRES_URL = os.environ.get("NEXTSTEP_TEST_POSTGRES_URL")
# Real secrets in Standard Webhooks form (whsec_ + base64) and plain vendor secrets.
WEBHOOK_SECRETS = {
    "acme-ats": [
        "whsec_dGVzdC1zZWNyZXQtb25lLWZvci1hY21lLWF0cw==",
        "whsec_cm90YXRlZC1zZWNyZXQtdHdvLWZvci1hY21l",
    ],
    "greenhouse": ["greenhouse-test-secret"],
    "lever": ["lever-signature-token"],
    "ashby": ["ashby-test-secret"],
}
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def require_postgres_admin_url() -> str:
    """The PostgreSQL URL to create test databases with; skips (fails under CI) without one."""
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail("CI=true but NEXTSTEP_TEST_POSTGRES_URL is not set")
        pytest.skip("NEXTSTEP_TEST_POSTGRES_URL is not set")
    return _postgres_admin_url(POSTGRES_URL)


@pytest.fixture(scope="session")
def postgresql_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    admin_url = require_postgres_admin_url()
    name = f"nextstep_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL at NEXTSTEP_TEST_POSTGRES_URL is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "nextstep.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


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


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point the settings and the engines at ``url``."""
    monkeypatch.setenv("NEXTSTEP_DATABASE_URL", url)
    monkeypatch.setenv("NEXTSTEP_WEBHOOK_SECRETS", json.dumps(WEBHOOK_SECRETS))
    # The outbound worker runs where a test starts it, not in every app a test makes.
    monkeypatch.setenv("NEXTSTEP_WORKER", "false")
    reset_caches()


def reset_caches() -> None:
    if db.get_engine.cache_info().currsize:
        db.get_engine().dispose()
    config.get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_write_engine.cache_clear()
    db.get_read_engine.cache_clear()


def empty_tables(url: str) -> None:
    engine = db.get_engine()
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        if url.startswith("postgresql"):
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL of an empty, migrated database; the app's engine points at it."""
    url = request.getfixturevalue(f"{request.param}_database")
    use_database(monkeypatch, url)
    empty_tables(url)
    yield url
    reset_caches()


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def make_key(*scopes: Scope, name: str = "test") -> str:
    with db.new_session(write=True) as session:
        _key, token = create_key(session, name, list(scopes), utcnow())
    return token


@pytest.fixture
def admin_headers(database_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(Scope.admin, name='admin')}"}


@pytest.fixture
def write_headers(database_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(Scope.write, name='writer')}"}


@pytest.fixture
def read_headers(database_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(Scope.read, name='reader')}"}

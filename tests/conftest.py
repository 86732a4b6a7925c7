"""Shared fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

Each test process (each pytest-xdist worker) builds its own databases once, by the
migrations; every test starts from empty tables. The markers (pyproject.toml) say what a
test needs, so that `make check` can leave out what is slow to start and the parallel run
can keep what would starve apart:

- ``one_database``: the test's logic cannot differ by database; it runs once, on
  PostgreSQL when the run has it (the stricter one: NUL characters, ranges), else SQLite
  (`make fuzz` sets NEXTSTEP_TEST_ONE_DATABASE=each to run them on both).
- ``process``, ``browser``, ``timing``: the test starts real processes, drives Chromium, or
  measures elapsed time; under xdist they all run in one group, one after the other.
- ``postgresql``: added here to every test that runs on PostgreSQL.

Hypothesis profiles: ``dev`` (the default), ``ci`` (`make test`, and any run with CI=true)
and ``fuzz`` (`make fuzz`), chosen with NEXTSTEP_HYPOTHESIS_PROFILE.
"""

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
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

# Apps the tests make (the fuzz tests' schema among them) start no outbound worker either:
# tests drive the worker themselves, or start servers that run it.
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
    # Every vendor mid-rotation: its old secret and its new one both verify.
    "greenhouse": ["greenhouse-test-secret", "greenhouse-rotated-secret"],
    "lever": ["lever-signature-token", "lever-rotated-token"],
    "ashby": ["ashby-test-secret", "ashby-rotated-secret"],
}
IN_CI = os.environ.get("CI", "").lower() == "true"
# Which databases the run parametrises over; `make check` takes SQLite alone.
DATABASES = tuple(os.environ.get("NEXTSTEP_TEST_DATABASES", "sqlite,postgresql").split(","))
if not DATABASES or not set(DATABASES) <= {"sqlite", "postgresql"}:
    raise RuntimeError("NEXTSTEP_TEST_DATABASES takes sqlite, postgresql or both, comma-separated")
# `make fuzz` runs the tests marked one_database on each database all the same.
ONE_DATABASE_EACH = os.environ.get("NEXTSTEP_TEST_ONE_DATABASE") == "each"
# Groups of tests that xdist's --dist loadgroup keeps on one worker, one after the other.
SERIAL_MARKERS = ("process", "browser", "timing")

# Example counts come from the profile, not from each test. A test whose examples each go
# through a database or HTTP takes DATABASE_EXAMPLES: a quarter of the profile's count.
hypothesis.settings.register_profile("dev", max_examples=20)
hypothesis.settings.register_profile("ci", max_examples=160, print_blob=True)
# `make fuzz`: 500 schemathesis cases per operation (a sixteenth, tests/test_fuzz.py).
hypothesis.settings.register_profile("fuzz", max_examples=8000, print_blob=True)
hypothesis.settings.load_profile(
    os.environ.get("NEXTSTEP_HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev")
)
DATABASE_EXAMPLES = hypothesis.settings(
    max_examples=max(5, hypothesis.settings().max_examples // 4)
)


def one_database() -> str:
    """Where a test marked ``one_database`` runs."""
    if "postgresql" in DATABASES and (POSTGRES_URL or IN_CI or "sqlite" not in DATABASES):
        return "postgresql"
    return "sqlite"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``database_url`` and ``scratch_url`` run on each database, or on one when marked."""
    marker = metafunc.definition.get_closest_marker("one_database")
    if marker is not None and not marker.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: one_database(reason) says why")
    single = marker is not None and not ONE_DATABASE_EACH
    for name in ("database_url", "scratch_url"):
        if name in metafunc.fixturenames:
            metafunc.parametrize(
                name, [one_database()] if single else list(DATABASES), indirect=True
            )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        on_postgresql = "postgresql" in (params.get("database_url"), params.get("scratch_url"))
        if on_postgresql or "postgresql_database" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgresql)
        if any(item.get_closest_marker(name) for name in SERIAL_MARKERS):
            item.add_marker(pytest.mark.xdist_group("serial"))


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


@pytest.fixture
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
    """Every table emptied, children first.

    On PostgreSQL one query finds the few tables that hold rows and only those are
    emptied: TRUNCATE of all 17 costs more than the test it follows (bench/RESULTS.md).
    """
    engine = db.get_engine()
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        if url.startswith("postgresql"):
            holding = set(
                conn.execute(
                    text(
                        " UNION ALL ".join(
                            f"SELECT '{t}' WHERE EXISTS (SELECT FROM {t})" for t in tables
                        )
                    )
                ).scalars()
            )
            tables = [t for t in tables if t in holding]
        for table in tables:
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
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

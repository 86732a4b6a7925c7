"""Settings, health, errors, keys: the base every endpoint stands on."""

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlmodel import SQLModel, col, select

from app import db
from app.config import SettingsError, load_settings
from app.main import create_app
from app.models import ApiKey, Contact, Delivery, Interview, utcnow
from app.observability import metrics_of
from tests.conftest import DATABASE_EXAMPLES, use_database

PROBLEM = "application/problem+json"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
        cwd="/",
    )


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTSTEP_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="NEXTSTEP_PORT"):
        load_settings()


@pytest.mark.process
def test_bad_setting_fails_the_command_with_one_line() -> None:
    result = run_cli("migrate", env={"NEXTSTEP_WEBHOOK_SECRETS": "{not json"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "NEXTSTEP_WEBHOOK_SECRETS" in result.stderr


@pytest.mark.one_database("/healthz reads no table")
def test_health_does_not_need_a_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


@pytest.mark.one_database("routing, before any query")
def test_unknown_path_is_problem_json(client: TestClient) -> None:
    response = client.get("/v1/nothing-here", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "abc-123"
    body = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == 404
    assert body["instance"] == "/v1/nothing-here"


@pytest.mark.one_database("routing, before any query")
def test_wrong_method_is_problem_json(client: TestClient) -> None:
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.one_database("refused before the body is read")
def test_body_just_over_one_mebibyte_is_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    response = client.post(
        "/v1/interviews",
        content=body,
        headers={**admin_headers, "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "https://nextstep.dev/problems/payload-too-large"


@pytest.mark.one_database("the request is validated before any query")
def test_validation_error_lists_fields(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.post("/v1/interviews", json={"candidate": {}}, headers=admin_headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    errors = response.json()["errors"]
    assert any(e["loc"][-1] == "external_id" for e in errors)


@pytest.mark.one_database("the error handler, whatever raised")
def test_unexpected_error_hides_the_trace(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-boom"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "req-boom" in response.json()["detail"]
    assert response.headers["x-request-id"] == "req-boom"
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)


def test_a_database_error_that_is_not_an_outage_is_the_same_plain_500(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app()

    @app.get("/bad-sql")
    def bad_sql() -> None:
        raise ProgrammingError("SELECT nothing", {}, Exception("secret column name"))

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/bad-sql", headers={"X-Request-ID": "req-sql"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "secret column name" not in response.text
    assert "req-sql" in response.json()["detail"]
    assert any("secret column name" in (r.exc_text or "") for r in caplog.records)


def test_readiness_is_503_when_the_database_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    use_database(monkeypatch, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) > 0


def test_an_app_that_never_used_the_database_leaves_none_behind_at_shutdown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_database(monkeypatch, f"sqlite:///{tmp_path}/var/nextstep.db")
    with TestClient(create_app()) as client:
        assert client.get("/healthz").status_code == 200
    assert not (tmp_path / "var").exists()
    assert db.get_engine.cache_info().currsize == 0


@pytest.mark.one_database("the metrics registry, not the database")
def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.get("/healthz")
    text_body = client.get("/metrics").text
    assert 'nextstep_http_requests_total{method="GET",route="/healthz",status="200"}' in text_body
    assert "nextstep_commitments_open" in text_body


@pytest.mark.one_database("the metrics registry, not the database")
def test_each_app_counts_its_own_requests(database_url: str) -> None:
    healthz = 'nextstep_http_requests_total{method="GET",route="/healthz",status="200"}'
    with TestClient(create_app()) as first, TestClient(create_app()) as second:
        for _ in range(3):
            first.get("/healthz")
        second.get("/healthz")
        assert f"{healthz} 3.0" in first.get("/metrics").text
        assert f"{healthz} 1.0" in second.get("/metrics").text


@pytest.mark.one_database("the metrics registry, not the database")
def test_a_module_adds_its_metrics_to_the_apps_registry(database_url: str) -> None:
    def sent(registry: CollectorRegistry) -> Counter:
        return Counter("nextstep_test_sent", "Sent by a module of its own.", registry=registry)

    app = create_app()
    metrics = metrics_of(app)
    assert metrics.of(sent) is metrics.of(sent)  # made once per app
    metrics.of(sent).inc(2)
    with TestClient(app) as client:
        assert "nextstep_test_sent_total 2.0" in client.get("/metrics").text
    with TestClient(create_app()) as other:
        assert "nextstep_test_sent" not in other.get("/metrics").text


@settings(
    DATABASE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
        ),
    )
)
def test_instants_round_trip_aware_and_utc(database_url: str, moment: datetime) -> None:
    with db.new_session(write=True) as session:
        interview = Interview(
            source="prop",
            candidate_external_id="c",
            starts_at=moment,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(interview)
        session.commit()
        interview_id = interview.id
    with db.new_session() as session:
        stored = session.get(Interview, interview_id)
        assert stored is not None
        assert stored.starts_at is not None
        assert stored.starts_at.utcoffset() == timedelta(0)
        assert stored.starts_at == moment
        session.delete(stored)
        session.commit()


def delivery_rows(count: int) -> list[dict[str, Any]]:
    """Deliveries as plain rows: bytes, JSON, nullable and aware instants."""
    received = datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=2)))
    return [
        {
            "id": uuid.uuid4(),
            "source": "acme",
            "delivery_key": f"key-{n}",
            "kind": "canonical",
            "event_type": None if n % 2 else "interview.completed",
            "occurred_at": None if n % 2 else received - timedelta(hours=n),
            "body": b'{"n": %d}\x00\xff\\' % n,
            "body_sha256": "0" * 64,
            "headers": {} if n % 2 else {"webhook-id": f"key-{n}", "tab": "a\tb"},
            "received_at": received,
            "result": "applied",
            "error": None if n % 3 else "line one\nline two",
            "subject": None,
            "applied_at": received,
            "duplicates": n,
        }
        for n in range(count)
    ]


@pytest.mark.parametrize("count", [2, 300])
def test_rows_inserted_together_read_back_as_written(database_url: str, count: int) -> None:
    rows = delivery_rows(count)
    with db.new_session(write=True) as session:
        db.insert_rows(session, SQLModel.metadata.tables["delivery"], rows)
        session.commit()
    with db.new_session() as session:
        stored = session.exec(select(Delivery).order_by(col(Delivery.duplicates))).all()
    assert [delivery.model_dump() for delivery in stored] == rows


@pytest.mark.parametrize("count", [2, 300])
def test_rows_inserted_together_fail_as_one_insert_would(database_url: str, count: int) -> None:
    with db.new_session(write=True) as session:
        db.insert_rows(session, SQLModel.metadata.tables["delivery"], delivery_rows(count))
        session.commit()
        # The same keys again: the unique key refuses them all, and the session goes on.
        with pytest.raises(IntegrityError):
            db.insert_rows(session, SQLModel.metadata.tables["delivery"], delivery_rows(count))
        session.rollback()
        assert len(session.exec(select(Delivery.id)).all()) == count


def test_naive_instant_is_refused_by_the_model(database_url: str) -> None:
    with db.new_session(write=True) as session:
        session.add(
            Contact(
                interview_id=uuid.uuid4(),
                direction="inbound",
                channel="call",
                at=datetime(2026, 1, 1),
                actor="x",
                created_at=utcnow(),
            )
        )
        with pytest.raises(Exception, match="naive"):
            session.commit()


@pytest.mark.one_database(
    "the CLI's output; keys are written on both databases by every test's fixtures"
)
@pytest.mark.process
def test_key_cli_prints_key_alone_on_last_line(database_url: str) -> None:
    env = {"NEXTSTEP_DATABASE_URL": database_url}
    created = run_cli(
        "keys", "create", "--name", "ops", "--scope", "read", "--scope", "write", env=env
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("nsk_")
    assert " " not in token
    assert len(token) > 40
    listed = run_cli("keys", "list", env=env)
    assert "ops" in listed.stdout
    assert token not in listed.stdout
    with db.new_session() as session:
        key = session.exec(select(ApiKey)).one()
        assert key.key_hash != token
        assert token not in key.key_hash
    revoked = run_cli("keys", "revoke", str(key.id), env=env)
    assert revoked.returncode == 0
    assert "revoked" in run_cli("keys", "list", env=env).stdout


def test_missing_bad_and_revoked_keys_get_401(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    for headers in ({}, {"Authorization": "Bearer nsk_wrong"}, {"Authorization": "Basic abc"}):
        response = client.get("/v1/commitments", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == PROBLEM
    assert client.get("/v1/commitments", headers=read_headers).status_code == 200
    with db.new_session(write=True) as session:
        key = session.exec(select(ApiKey)).one()
        key.revoked_at = utcnow()
        session.add(key)
        session.commit()
    assert client.get("/v1/commitments", headers=read_headers).status_code == 401


def test_read_key_cannot_write(client: TestClient, read_headers: dict[str, str]) -> None:
    response = client.post(
        "/v1/interviews", json={"candidate": {"external_id": "c"}}, headers=read_headers
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM


def test_key_use_is_recorded(client: TestClient, read_headers: dict[str, str]) -> None:
    client.get("/v1/commitments", headers=read_headers)
    with db.new_session() as session:
        assert session.exec(select(ApiKey)).one().last_used_at is not None


def test_sqlite_runs_in_wal_with_foreign_keys(
    sqlite_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_database(monkeypatch, sqlite_database)
    with db.get_engine().connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10000

"""The e-mail migration keeps every message and attempt: on SQLite, making
``message.endpoint_id`` nullable rebuilds ``message``, and dropping the old table would
cascade to ``message_attempt`` without the copy the migration keeps aside."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from app.db import build_engine
from app.migrate import downgrade, upgrade

AT = "2026-11-20 15:00:00.000000"
BEFORE, AFTER = "0012_owner_links", "0013_email"


def _counts(url: str) -> tuple[int, int, list[str]]:
    engine = build_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            messages = conn.execute(text("SELECT count(*) FROM message")).scalar_one()
            tried = conn.execute(text("SELECT count(*) FROM message_attempt")).scalar_one()
            channels = conn.execute(text("SELECT channel FROM message ORDER BY type")).scalars()
            return messages, tried, list(channels)
    finally:
        engine.dispose()


def test_messages_and_their_attempts_survive_the_migration_both_ways(scratch_url: str) -> None:
    upgrade(scratch_url, BEFORE)
    engine = build_engine(scratch_url, pool_size=1)
    sqlite = engine.dialect.name == "sqlite"
    ids = {kind: uuid.uuid4() for kind in ("webhook", "slack")}
    try:
        with engine.begin() as conn:
            for kind, endpoint in ids.items():
                conn.execute(
                    text(
                        "INSERT INTO endpoint (id, kind, url, event_types, enabled, version, "
                        "created_at, updated_at) VALUES (:id, :kind, 'https://x.test/', '[]', "
                        ":on, 1, :at, :at)"
                    ),
                    {
                        "id": endpoint.hex if sqlite else endpoint,
                        "kind": kind,
                        "on": True,
                        "at": AT if sqlite else datetime(2026, 11, 20, tzinfo=UTC),
                    },
                )
                message = uuid.uuid4()
                conn.execute(
                    text(
                        "INSERT INTO message (id, endpoint_id, type, body, status, attempts, "
                        "created_at, updated_at) VALUES (:id, :endpoint, :type, '{}', "
                        "'failed', 1, :at, :at)"
                    ),
                    {
                        "id": message.hex if sqlite else message,
                        "endpoint": endpoint.hex if sqlite else endpoint,
                        "type": f"{kind}.type",
                        "at": AT if sqlite else datetime(2026, 11, 20, tzinfo=UTC),
                    },
                )
                conn.execute(
                    text(
                        "INSERT INTO message_attempt (id, message_id, n, at, response_status, "
                        "duration_ms) VALUES (:id, :message, 1, :at, 500, 3)"
                    ),
                    {
                        "id": uuid.uuid4().hex if sqlite else uuid.uuid4(),
                        "message": message.hex if sqlite else message,
                        "at": AT if sqlite else datetime(2026, 11, 20, tzinfo=UTC),
                    },
                )
    finally:
        engine.dispose()

    upgrade(scratch_url, AFTER)
    assert _counts(scratch_url) == (2, 2, ["slack", "webhook"])
    downgrade(scratch_url, BEFORE)
    engine = build_engine(scratch_url, pool_size=1)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM message_attempt")).scalar_one() == 2
    finally:
        engine.dispose()
    upgrade(scratch_url, AFTER)
    assert _counts(scratch_url)[:2] == (2, 2)

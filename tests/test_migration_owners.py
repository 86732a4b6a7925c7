"""The owners migration turns each owner calendar into an owner that holds it, and back."""

import importlib.util
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, MetaData, String, Table, Uuid, text
from sqlmodel import SQLModel

import app.models
from app.db import build_engine
from app.migrate import downgrade, upgrade

AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
# The table as it stood before the migration (no model holds it any more).
OWNER_CALENDAR = Table(
    "owner_calendar",
    MetaData(),
    Column("owner_id", String(200), primary_key=True),
    Column("calendar_id", Uuid()),
    Column("updated_at", app.models.UTCDateTime()),
)
_PATH = Path(__file__).parents[1] / "migrations" / "versions" / "20261207-2100_owners.py"
_SPEC = importlib.util.spec_from_file_location("owners_migration", _PATH)
assert _SPEC is not None
assert _SPEC.loader is not None
MIGRATION = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(MIGRATION)


def test_owner_calendars_become_owners_and_come_back(scratch_url: str) -> None:
    before, after = MIGRATION.down_revision, MIGRATION.revision
    upgrade(scratch_url, before)
    engine = build_engine(scratch_url, pool_size=1)
    calendar = uuid.uuid4()
    hours = {"mon": [["09:00", "17:00"]]}
    try:
        with engine.begin() as conn:
            conn.execute(
                SQLModel.metadata.tables["calendar"]
                .insert()
                .values(
                    id=calendar,
                    name="NY",
                    time_zone="America/New_York",
                    hours=hours,
                    closed_dates=[],
                    is_default=True,
                    version=1,
                    created_at=AT,
                    updated_at=AT,
                )
            )
            for owner in ("hr-1", "greenhouse:4080"):
                conn.execute(
                    OWNER_CALENDAR.insert().values(
                        owner_id=owner, calendar_id=calendar, updated_at=AT
                    )
                )
        upgrade(scratch_url, after)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, calendar_id, learned_from, email_reminders, digest_enabled, "
                    "digest_at, version FROM owner ORDER BY id"
                )
            ).all()
        assert [
            (r[0], uuid.UUID(str(r[1])), r[2], bool(r[3]), bool(r[4]), *r[5:]) for r in rows
        ] == [
            ("greenhouse:4080", calendar, "api", True, False, "07:00", 1),
            ("hr-1", calendar, "api", True, False, "07:00", 1),
        ]
        with engine.begin() as conn:
            conn.execute(
                SQLModel.metadata.tables["owner"]
                .insert()
                .values(
                    id="no-calendar",
                    email_reminders=True,
                    digest_enabled=False,
                    digest_at="07:00",
                    learned_from="api",
                    version=1,
                    created_at=AT,
                    updated_at=AT,
                )
            )
        downgrade(scratch_url, before)
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT owner_id FROM owner_calendar ORDER BY owner_id"))
            assert [r[0] for r in kept] == ["greenhouse:4080", "hr-1"]
    finally:
        engine.dispose()

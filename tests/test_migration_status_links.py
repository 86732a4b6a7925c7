"""Migration 0004 (status links) keeps every row: on SQLite, rebuilding a table that others
refer to with ON DELETE CASCADE would delete their rows, so it rebuilds only `contact`."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.db import build_engine
from app.migrate import downgrade, upgrade

T = SQLModel.metadata.tables
AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
HISTORY = ("interview", "commitment", "commitment_version", "timeline_entry", "contact")


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(select(func.count()).select_from(T[t])).scalar_one() for t in HISTORY
        }


def _seed(engine: Engine) -> None:
    """One interview, one step with its version and timeline entry, one contact: the
    columns of revision 0003 only."""
    interview, step = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            T["interview"]
            .insert()
            .values(
                id=interview,
                source="api",
                candidate_external_id="c",
                status="completed",
                interviewers=[],
                default_owners={},
                version=1,
                created_at=AT,
                updated_at=AT,
            )
        )
        fields = {
            "interview_id": interview,
            "action": "Call",
            "owner_id": "hr-1",
            "owner_role": "hr",
            "owed_by": "company",
            "due_at": AT,
            "status": "open",
            "version": 1,
        }
        conn.execute(
            T["commitment"]
            .insert()
            .values(id=step, agreed_at=AT, created_at=AT, updated_at=AT, **fields)
        )
        conn.execute(
            T["commitment_version"].insert().values(commitment_id=step, valid_from=AT, **fields)
        )
        conn.execute(
            T["timeline_entry"]
            .insert()
            .values(
                id=uuid.uuid4(),
                interview_id=interview,
                commitment_id=step,
                kind="agreed",
                effective_at=AT,
                tiebreak="t",
                recorded_at=AT,
                actor="test",
                changes={},
            )
        )
        conn.execute(
            T["contact"]
            .insert()
            .values(
                id=uuid.uuid4(),
                interview_id=interview,
                direction="inbound",
                channel="call",
                at=AT,
                actor="test",
                created_at=AT,
            )
        )


def test_status_links_migration_keeps_every_row_both_ways(scratch_url: str) -> None:
    upgrade(scratch_url, "0003")
    engine = build_engine(scratch_url, pool_size=1)  # foreign keys on, as the app runs SQLite
    try:
        _seed(engine)
        before = _counts(engine)
        assert set(before.values()) == {1}
        upgrade(scratch_url, "0004")
        assert _counts(engine) == before
        with engine.begin() as conn:
            contact = conn.execute(select(T["contact"].c.id)).scalar_one()
            conn.execute(T["contact"].update().values(channel="web"))
        downgrade(scratch_url, "0003")
        assert _counts(engine) == before
        with engine.connect() as conn:
            channel = conn.execute(
                select(T["contact"].c.channel).where(T["contact"].c.id == contact)
            ).scalar_one()
        assert channel == "other"
    finally:
        engine.dispose()

"""The report migration fills every version's agreement and owner_since exactly as the
ledger writes them for new histories."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import select
from sqlmodel import Session, SQLModel

from app.commitments import service
from app.commitments.schemas import Candidate, CommitmentPatch, InterviewCreate, Job, NextStepIn
from app.db import build_engine
from app.migrate import alembic_config, downgrade, upgrade
from app.models import OwnerRole
from app.schemas import Owner
from app.versions import etag

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
ACTOR = "key:migration"
REVISION = "0014_report_indexes"

_V = SQLModel.metadata.tables["commitment_version"].c
VERSIONS = select(_V.commitment_id, _V.valid_from, _V.agreed_at, _V.owner_since, _V.owner_id)
VERSIONS = VERSIONS.order_by(_V.commitment_id, _V.valid_from)


@pytest.fixture
def engine(scratch_url: str) -> Iterator[Any]:
    upgrade(scratch_url)
    engine = build_engine(scratch_url, pool_size=1)
    yield engine
    engine.dispose()


def _owner(owner_id: str, role: str = "recruiter") -> Owner:
    return Owner(id=owner_id, role=OwnerRole(role))


def _hand_over(owner: Owner) -> CommitmentPatch:
    return CommitmentPatch(owner=owner, reason="Handed over")


def _patch(session: Session, cid: Any, patch: CommitmentPatch, at: datetime) -> None:
    current = service.get_commitment(session, cid)
    service.update_commitment(session, cid, patch, etag(current), ACTOR, at)


def test_backfill_equals_what_the_ledger_writes(scratch_url: str, engine: Any) -> None:
    with Session(engine) as session:
        body = InterviewCreate(source="api", candidate=Candidate(external_id="c-1"), job=Job())
        interview = service.create_interview(session, body, ACTOR, AT)
        steps = []
        for n, owner in enumerate(("ann", "ben", "cy")):
            agreed = AT + n * HOUR
            step = NextStepIn(
                action="Call back", owner=_owner(owner), due_at=AT + 48 * HOUR, agreed_at=agreed
            )
            steps.append(service.create_commitment(session, interview.id, step, ACTOR, agreed).id)
        plain, handed_over, back_and_forth = steps
        service.complete_commitment(session, plain, "Done", AT + 60 * HOUR, ACTOR, AT + 60 * HOUR)
        # A reassignment after the due time, a move, then a completion: owner_since stays
        # at the reassignment.
        _patch(session, handed_over, _hand_over(_owner("dee")), AT + 50 * HOUR)
        _patch(session, handed_over, CommitmentPatch(due_at=AT + 90 * HOUR), AT + 55 * HOUR)
        service.complete_commitment(
            session, handed_over, "Done", AT + 70 * HOUR, ACTOR, AT + 70 * HOUR
        )
        # Away and back to the same owner, then to another role: each begins again.
        _patch(session, back_and_forth, _hand_over(_owner("ann")), AT + 10 * HOUR)
        _patch(session, back_and_forth, _hand_over(_owner("cy")), AT + 20 * HOUR)
        _patch(session, back_and_forth, _hand_over(_owner("cy", "hr")), AT + 30 * HOUR)
        session.commit()
    with engine.connect() as conn:
        written = conn.execute(VERSIONS).all()
    scripts = ScriptDirectory.from_config(alembic_config(scratch_url))
    before = scripts.get_revision(REVISION).down_revision
    assert isinstance(before, str)
    downgrade(scratch_url, before)
    upgrade(scratch_url, REVISION)
    with engine.connect() as conn:
        backfilled = conn.execute(VERSIONS).all()
    assert backfilled == written
    by_step: dict[Any, list[Any]] = {}
    for row in written:
        by_step.setdefault(row.commitment_id, []).append(row)
    assert [(r.owner_id, r.owner_since) for r in by_step[handed_over]] == [
        ("ben", AT + HOUR),
        ("dee", AT + 50 * HOUR),
        ("dee", AT + 50 * HOUR),
        ("dee", AT + 50 * HOUR),
    ]
    assert [r.owner_since for r in by_step[back_and_forth]] == [
        AT + 2 * HOUR,
        AT + 10 * HOUR,
        AT + 20 * HOUR,
        AT + 30 * HOUR,
    ]
    assert {r.agreed_at for r in written} == {AT, AT + HOUR, AT + 2 * HOUR}
    assert all(r.agreed_at == rows[0].valid_from for rows in by_step.values() for r in rows)

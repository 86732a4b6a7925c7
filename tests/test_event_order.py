"""Any order, any number of duplicate deliveries: the same final state."""

from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from app import db
from app.events import ingest as service
from app.events.inbound import Inbound
from app.models import Commitment, CommitmentVersion, Contact, Interview, utcnow
from tests.conftest import empty_tables
from tests.signing import event_body

T0 = datetime.fromisoformat("2026-11-02T15:00:00+00:00")
H = timedelta(hours=1)


def _step(external_id: str, action: str, owner: str, role: str, due: datetime) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "action": action,
        "due_at": due.isoformat(),
        "owner": {"id": owner, "role": role},
        "channel": "call",
    }


CANDIDATE = {"external_id": "cand-1", "name": "Casey"}
STORY: list[tuple[str, bytes]] = [
    (
        "d01",
        event_body(
            "interview.scheduled",
            T0 - 48 * H,
            {
                "external_id": "int-1",
                "candidate": CANDIDATE,
                "stage": "First interview",
                "starts_at": (T0 - H).isoformat(),
                "ends_at": T0.isoformat(),
            },
        ),
    ),
    (
        "d02",
        event_body(
            "interview.completed",
            T0,
            {
                "external_id": "int-1",
                "candidate": CANDIDATE,
                "stage": "First interview",
                "ends_at": T0.isoformat(),
                "next_steps": [_step("s1", "Call Casey", "hr-1", "hr", T0 + 72 * H)],
            },
        ),
    ),
    (
        "d03",
        event_body(
            "candidate.contacted",
            T0 + 48 * H,
            {"interview_external_id": "int-1", "direction": "inbound", "channel": "call"},
        ),
    ),
    (
        "d04",
        event_body(
            "next_step.updated",
            T0 + 50 * H,
            {
                "external_id": "s1",
                "changes": {"owner": {"id": "rec-1", "role": "recruiter"}},
                "reason": "HR is away",
            },
        ),
    ),
    (
        "d05",
        event_body(
            "next_step.updated",
            T0 + 49 * H,
            {"external_id": "s1", "changes": {"due_at": (T0 + 80 * H).isoformat()}},
        ),
    ),
    (
        "d06",
        event_body(
            "next_step.updated",
            T0 + 51 * H,
            {"external_id": "s1", "changes": {"due_at": (T0 + 90 * H).isoformat()}},
        ),
    ),
    (
        "d07",
        event_body("next_step.completed", T0 + 100 * H, {"external_id": "s1", "outcome": "Booked"}),
    ),
    (
        "d08",
        event_body(
            "next_step.updated",
            T0 + 60 * H,
            {"external_id": "s1", "changes": {"action": "Call Casey back"}},
        ),
    ),
    (
        "d09",
        event_body(
            "candidate.contacted",
            T0 + 99 * H,
            {"interview_external_id": "int-1", "direction": "outbound", "channel": "call"},
        ),
    ),
    (
        "d10",
        event_body(
            "next_step.agreed",
            T0 + 100 * H,
            {
                "interview_external_id": "int-1",
                "next_step": _step(
                    "s2", "Second interview", "hm-1", "hiring_manager", T0 + 200 * H
                ),
            },
        ),
    ),
    (
        "d11",
        event_body(
            "next_step.cancelled", T0 + 150 * H, {"external_id": "s2", "reason": "Role closed"}
        ),
    ),
    (
        "d12",
        event_body(
            "interview.scheduled",
            T0 - 72 * H,
            {"external_id": "int-1", "candidate": CANDIDATE, "stage": "Phone screen"},
        ),
    ),
]


def _deliver(key: str, body: bytes) -> None:
    with db.new_session(write=True) as session:
        inbound = Inbound("acme-ats", "canonical", key, body, {}, utcnow())
        service.ingest(session, inbound, utcnow())


def _state() -> dict[str, Any]:
    with db.new_session() as session:
        interviews = [
            (
                i.external_id,
                i.candidate_external_id,
                i.candidate_name,
                i.stage,
                i.status,
                i.starts_at,
                i.ends_at,
                i.completed_at,
            )
            for i in session.exec(select(Interview).order_by(col(Interview.external_id)))
        ]
        steps = [
            (
                c.external_id,
                c.action,
                c.owner_id,
                c.owner_role,
                c.owed_by,
                c.due_at,
                c.status,
                c.outcome,
                c.reason,
                c.agreed_at,
                c.completed_at,
                c.cancelled_at,
                c.version,
            )
            for c in session.exec(select(Commitment).order_by(col(Commitment.external_id)))
        ]
        versions = sorted(
            (
                (v.valid_from, v.valid_to, v.status, v.owner_id, v.due_at, v.action)
                for v in session.exec(select(CommitmentVersion))
            ),
            key=repr,
        )
        contacts = sorted((c.direction, c.channel, c.at) for c in session.exec(select(Contact)))
    return {"interviews": interviews, "steps": steps, "versions": versions, "contacts": contacts}


def _run(order: list[int], url: str) -> dict[str, Any]:
    empty_tables(url)
    for index in order:
        _deliver(*STORY[index])
    return _state()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(len(STORY))),
    repeats=st.lists(st.integers(0, len(STORY) - 1), max_size=6),
    positions=st.lists(st.integers(0, 100), min_size=6, max_size=6),
)
def test_any_order_with_duplicates_ends_in_the_same_state(
    database_url: str, order: list[int], repeats: list[int], positions: list[int]
) -> None:
    expected = _run(list(range(len(STORY))), database_url)
    shuffled = list(order)
    for repeat, position in zip(repeats, positions, strict=False):
        shuffled.insert(position % (len(shuffled) + 1), repeat)
    assert _run(shuffled, database_url) == expected


def test_the_story_ends_as_told(database_url: str) -> None:
    state = _run(list(range(len(STORY))), database_url)
    (interview,) = state["interviews"]
    assert interview[3:5] == ("First interview", "completed")
    s1, s2 = state["steps"]
    assert s1[:4] == ("s1", "Call Casey back", "rec-1", "recruiter")
    assert (s1[5], s1[6], s1[7]) == (T0 + 90 * H, "done", "Booked")
    assert (s2[0], s2[6], s2[8]) == ("s2", "cancelled", "Role closed")
    assert len(state["contacts"]) == 2

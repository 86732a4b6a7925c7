"""Any order, any number of duplicate deliveries: the same final state."""

import contextlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from app import db
from app.events import ingest as service
from app.events.inbound import Inbound, InvalidDelivery
from app.models import (
    Calendar,
    Commitment,
    CommitmentVersion,
    Contact,
    DeadlinePolicy,
    Delivery,
    Interview,
    Owner,
    utcnow,
)
from tests.conftest import DATABASE_EXAMPLES, empty_tables
from tests.signing import event_body

FIXTURES = Path(__file__).parent / "fixtures"
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
    DATABASE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
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


# --- the same, with a deadline policy active ---------------------------------------------

POLICY_STORY: list[tuple[str, bytes]] = [
    ("p01", STORY[0][1]),  # scheduled
    (
        "p02",
        event_body(
            "interview.completed",
            T0 + H,
            {
                "external_id": "int-1",
                "candidate": CANDIDATE,
                "stage": "First interview",
                "ends_at": T0.isoformat(),
            },
        ),
    ),
    (
        "p03",
        event_body(
            "next_step.agreed",
            T0 + 50 * H,
            {
                "interview_external_id": "int-1",
                "next_step": {
                    "external_id": "s1",
                    "action": "Call Casey",
                    "owner": {"id": "hr-1", "role": "hr"},
                },
            },
        ),
    ),
    (
        "p04",
        event_body(
            "next_step.agreed",
            T0 + 60 * H,
            {
                "interview_external_id": "int-1",
                "next_step": {
                    "external_id": "s1",
                    "action": "Call Casey again",
                    "owner": {"id": "hr-1", "role": "hr"},
                },
            },
        ),
    ),
    (
        "p05",
        event_body(
            "next_step.updated",
            T0 + 55 * H,
            {"external_id": "s1", "changes": {"owner": {"id": "rec-1", "role": "recruiter"}}},
        ),
    ),
    ("p06", STORY[2][1]),  # the candidate calls
    (
        "p07",
        event_body("next_step.completed", T0 + 100 * H, {"external_id": "s1", "outcome": "Done"}),
    ),
    ("p08", STORY[11][1]),  # an earlier stage, told late
]


def _create_policy(match: dict[str, Any] | None = None) -> None:
    hours = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    now = utcnow()
    with db.new_session(write=True) as session:
        calendar = Calendar(
            name="NY",
            time_zone="America/New_York",
            hours=hours,
            holidays={"country": "US", "subdivision": None},
            is_default=True,
            created_at=now,
            updated_at=now,
        )
        session.add(calendar)
        session.flush()
        session.add(
            DeadlinePolicy(
                name="acme-ats",
                # By source: a stage can change over the interview's life, and a policy meets
                # the stage known when the step is processed.
                match=match or {"source": "acme-ats"},
                due_rule={"business_days": 3, "at": "end_of_day"},
                default_step={
                    "action": "Tell the candidate the decision",
                    "owner": {"id": "hm-1", "name": None, "role": "hiring_manager"},
                    "channel": None,
                    "rule": {"business_hours": 8},
                },
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()


def _policy_state() -> dict[str, Any]:
    state = _state()
    with db.new_session() as session:
        steps = [
            (
                "policy" if c.source == "policy" else c.external_id,
                c.deadline_basis,
                c.deadline_start,
                c.deadline_rule,
                c.deadline_computed_at,
            )
            for c in session.exec(select(Commitment))
        ]
    state["steps"] = sorted(
        ("policy" if s[0] not in ("s1",) else s[0], *s[1:]) for s in state["steps"]
    )
    state["deadlines"] = sorted(steps, key=repr)
    return state


def _run_with_policy(order: list[int], url: str) -> dict[str, Any]:
    empty_tables(url)
    _create_policy()
    for index in order:
        _deliver(*POLICY_STORY[index])
    return _policy_state()


@settings(
    DATABASE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    order=st.permutations(range(len(POLICY_STORY))),
    repeats=st.lists(st.integers(0, len(POLICY_STORY) - 1), max_size=4),
    positions=st.lists(st.integers(0, 100), min_size=4, max_size=4),
)
def test_any_order_with_a_policy_ends_in_the_same_state(
    database_url: str, order: list[int], repeats: list[int], positions: list[int]
) -> None:
    expected = _run_with_policy(list(range(len(POLICY_STORY))), database_url)
    shuffled = list(order)
    for repeat, position in zip(repeats, positions, strict=False):
        shuffled.insert(position % (len(shuffled) + 1), repeat)
    assert _run_with_policy(shuffled, database_url) == expected


def test_the_policy_story_ends_as_told(database_url: str) -> None:
    state = _run_with_policy(list(range(len(POLICY_STORY))), database_url)
    steps = {step[0]: step for step in state["steps"]}
    policy, s1 = steps["policy"], steps["s1"]
    # The default step: agreed at the interview's end (Monday 10:00 New York), due 8 business
    # hours later (Tuesday 10:00 New York), done when s1 was agreed.
    assert policy[1] == "Tell the candidate the decision"
    assert (policy[5], policy[6], policy[7]) == (
        T0 + 24 * H,
        "done",
        "Next step agreed: Call Casey",
    )
    assert (policy[9], policy[10]) == (T0, T0 + 50 * H)
    # s1: first agreed Wednesday 4 November 12:00 New York, due 3 business days later at the
    # close (Monday 9 November 17:00 New York), never moved by the repeated agreement.
    assert s1[1] == "Call Casey again"
    assert (s1[5], s1[6], s1[9]) == (T0 + 7 * 24 * H + 7 * H, "done", T0 + 50 * H)
    deadlines = {d[0]: d for d in state["deadlines"]}
    assert deadlines["s1"][1:3] == ("policy", T0 + 50 * H)
    assert deadlines["s1"][4] == s1[5]


# --- the same, with a policy that matches on a stage told only at the end -----------------


def _agreed_without_due(interview: str, step: str, at: datetime) -> bytes:
    data = {
        "interview_external_id": interview,
        "next_step": {
            "external_id": step,
            "action": f"Do {step}",
            "owner": {"id": "hr-1", "role": "hr"},
        },
    }
    return event_body("next_step.agreed", at, data)


def _completed(interview: str, candidate: dict[str, Any], stage: str) -> bytes:
    data = {
        "external_id": interview,
        "candidate": candidate,
        "stage": stage,
        "ends_at": T0.isoformat(),
    }
    return event_body("interview.completed", T0 + H, data)


OTHER = {"external_id": "cand-2", "name": "Dana"}
STAGE_STORY: list[tuple[str, bytes]] = [
    # int-1: scheduled without a stage; a step agreed during it and one after; the
    # completion names the stage the policy matches.
    (
        "q01",
        event_body(
            "interview.scheduled", T0 - 48 * H, {"external_id": "int-1", "candidate": CANDIDATE}
        ),
    ),
    ("q02", _agreed_without_due("int-1", "s1", T0 - H / 2)),
    ("q03", _completed("int-1", CANDIDATE, "First interview")),
    ("q04", _agreed_without_due("int-1", "s2", T0 + 50 * H)),
    (
        "q05",
        event_body(
            "next_step.updated",
            T0 + 55 * H,
            {"external_id": "s1", "changes": {"owner": {"id": "rec-1", "role": "recruiter"}}},
        ),
    ),
    ("q06", STORY[2][1]),  # the candidate calls
    # int-2: the same, but the stage it completes with matches no policy: s3 is refused.
    (
        "q07",
        event_body(
            "interview.scheduled", T0 - 48 * H, {"external_id": "int-2", "candidate": OTHER}
        ),
    ),
    ("q08", _agreed_without_due("int-2", "s3", T0 - H / 2)),
    ("q09", _completed("int-2", OTHER, "Final interview")),
]


def _run_with_stage_policy(order: list[int], url: str) -> dict[str, Any]:
    empty_tables(url)
    _create_policy({"stage": "First interview"})
    for index in order:
        # A refusal (422) is stored as rejected: compared below.
        with contextlib.suppress(InvalidDelivery):
            _deliver(*STAGE_STORY[index])
    state = _state()
    named = ("s1", "s2", "s3")
    state["steps"] = sorted((s[0] if s[0] in named else "policy", *s[1:]) for s in state["steps"])
    with db.new_session() as session:
        state["deadlines"] = sorted(
            (
                c.external_id if c.external_id in named else "policy",
                c.deadline_basis,
                c.deadline_start,
                c.deadline_rule,
                c.deadline_computed_at,
            )
            for c in session.exec(select(Commitment))
        )
        state["deliveries"] = sorted(
            (d.delivery_key, d.result, d.error) for d in session.exec(select(Delivery))
        )
    return state


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(len(STAGE_STORY))),
    repeats=st.lists(st.integers(0, len(STAGE_STORY) - 1), max_size=4),
    positions=st.lists(st.integers(0, 100), min_size=4, max_size=4),
)
def test_any_order_with_a_stage_policy_ends_in_the_same_state(
    database_url: str, order: list[int], repeats: list[int], positions: list[int]
) -> None:
    expected = _run_with_stage_policy(list(range(len(STAGE_STORY))), database_url)
    shuffled = list(order)
    for repeat, position in zip(repeats, positions, strict=False):
        shuffled.insert(position % (len(shuffled) + 1), repeat)
    assert _run_with_stage_policy(shuffled, database_url) == expected


def test_the_stage_policy_story_ends_as_told(database_url: str) -> None:
    state = _run_with_stage_policy(list(range(len(STAGE_STORY))), database_url)
    steps = {step[0]: step for step in state["steps"]}
    # s1 was agreed before the completion: no default step; s1 and s2 are due by the policy.
    assert sorted(steps) == ["s1", "s2"]
    deadlines = {d[0]: d for d in state["deadlines"]}
    assert deadlines["s1"][1:3] == ("policy", T0 - H / 2)
    assert deadlines["s2"][1:3] == ("policy", T0 + 50 * H)
    results = {key: (result, error) for key, result, error in state["deliveries"]}
    assert results["q08"][0] == "rejected"
    assert "no deadline policy applies" in (results["q08"][1] or "")
    assert {r for k, (r, _e) in results.items() if k != "q08"} == {"applied"}


# --- the same, with vendor events naming the recruiter a policy step belongs to -------------

GH = datetime.fromisoformat("2026-11-02T15:00:00+00:00")
ALICIA = {"id": 3128, "name": "Alicia Flopple", "email": "alicia.flopple.3128@example.com"}


def _stage_change(at: datetime, status: str, recruiter: dict[str, Any] | None) -> bytes:
    payload = json.loads((FIXTURES / "greenhouse" / "candidate_stage_change.json").read_bytes())
    application = payload["payload"]["application"]
    application["last_activity_at"] = at.isoformat()
    application["current_stage"]["interviews"][0]["status"] = status
    application["candidate"]["recruiter"] = recruiter
    application["candidate"]["coordinator"] = None
    return json.dumps(payload).encode()


RECRUITER_STORY: list[tuple[str, bytes]] = [
    # Someone else was the recruiter long before.
    ("g1", _stage_change(GH - 72 * H, "scheduled", {"id": 55, "name": "Old", "email": "o@x.io"})),
    ("g2", _stage_change(GH - 48 * H, "scheduled", ALICIA)),
    # Alicia's new name, still before the completion.
    ("g3", _stage_change(GH - 24 * H, "scheduled", {**ALICIA, "name": "Alicia Smith"})),
    # The completion names nobody.
    ("g4", _stage_change(GH, "complete", None)),
]


def _recruiter_policy() -> None:
    _create_policy()
    with db.new_session(write=True) as session:
        session.add(
            DeadlinePolicy(
                name="greenhouse",
                match={"source": "greenhouse"},
                default_step={
                    "action": "Tell the candidate the decision",
                    "owner": {
                        "from": "recruiter",
                        "fallback": {"id": "recruiting-team", "name": None, "role": "hr"},
                    },
                    "channel": None,
                    "rule": {"business_hours": 8},
                },
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        session.commit()


def _run_recruiter_story(order: list[int], url: str) -> dict[str, Any]:
    empty_tables(url)
    _recruiter_policy()
    for index in order:
        key, body = RECRUITER_STORY[index]
        with db.new_session(write=True) as session:
            inbound = Inbound("greenhouse", "greenhouse", key, body, {}, utcnow())
            service.ingest(session, inbound, utcnow())
    with db.new_session() as session:
        steps = [
            (c.source, c.owner_id, c.owner_name, c.owner_role, c.agreed_at, c.due_at, c.status)
            for c in session.exec(select(Commitment))
        ]
        owners = [
            (o.id, o.name, o.email, o.learned_from)
            for o in session.exec(select(Owner).order_by(col(Owner.id)))
        ]
    return {"steps": steps, "owners": owners, "interviews": _state()["interviews"]}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(len(RECRUITER_STORY))),
    repeats=st.lists(st.integers(0, len(RECRUITER_STORY) - 1), max_size=3),
    positions=st.lists(st.integers(0, 100), min_size=3, max_size=3),
)
def test_any_order_gives_the_policy_step_to_the_recruiter_named_at_completion(
    database_url: str, order: list[int], repeats: list[int], positions: list[int]
) -> None:
    expected = _run_recruiter_story(list(range(len(RECRUITER_STORY))), database_url)
    shuffled = list(order)
    for repeat, position in zip(repeats, positions, strict=False):
        shuffled.insert(position % (len(shuffled) + 1), repeat)
    assert _run_recruiter_story(shuffled, database_url) == expected


def test_the_recruiter_story_ends_as_told(database_url: str) -> None:
    state = _run_recruiter_story(list(range(len(RECRUITER_STORY))), database_url)
    (step,) = state["steps"]
    assert step[:5] == ("policy", "greenhouse:3128", "Alicia Smith", "recruiter", GH)
    assert state["owners"] == [
        ("greenhouse:3128", "Alicia Smith", ALICIA["email"], "greenhouse"),
        ("greenhouse:55", "Old", "o@x.io", "greenhouse"),
    ]

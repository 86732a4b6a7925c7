"""Instants near the ends of the calendar (years 1 and 9999): every one the API accepts is
computed, or refused with a 422 that says why; never a 500."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import PROBLEM, Headers, Json, create_step
from tests.signing import event_body, standard_headers
from tests.test_calendars import create_calendar
from tests.test_reminder_rules_api import create_rule, reminders, schedule_changed_rules

ACME_SECRET = "whsec_dGVzdC1zZWNyZXQtb25lLWZvci1hY21lLWF0cw=="
FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
RULES = st.one_of(
    st.builds(lambda n: {"business_days": n}, st.integers(1, 60)),
    st.builds(
        lambda n, at: {"business_days": n, "at": at},
        st.integers(1, 60),
        st.sampled_from(["end_of_day", "00:00", "09:00", "16:59", "23:59"]),
    ),
    st.builds(lambda h: {"business_hours": h}, st.integers(1, 720)),
)
# Starts within a few months of either end, written with offsets from -12:00 to +14:00.
STARTS = st.one_of(
    st.timedeltas(timedelta(0), timedelta(days=90)).map(lambda d: FIRST + d),
    st.timedeltas(timedelta(0), timedelta(days=90)).map(lambda d: LAST - d),
).flatmap(
    lambda at: st.integers(-12, 14).map(
        lambda hours: at.astimezone(UTC).replace(tzinfo=None).isoformat() + (f"{hours:+03d}:00")
    )
)


def _compute(client: TestClient, headers: Headers, calendar: str, start: str, rule: Json) -> Any:
    return client.post(
        f"/v1/calendars/{calendar}/compute", json={"start": start, "rule": rule}, headers=headers
    )


@pytest.mark.parametrize(
    ("start", "rule"),
    [
        ("9999-12-20T12:00:00Z", {"business_days": 60}),
        ("9999-12-31T18:00:00Z", {"business_days": 1, "at": "end_of_day"}),
        ("9999-12-31T23:00:00Z", {"business_hours": 1}),
        ("9999-12-31T23:59:59-12:00", {"business_hours": 720}),
        ("0001-01-01T00:00:00Z", {"business_days": 1}),
        ("0001-01-01T00:00:00-05:00", {"business_days": 1, "at": "09:00"}),
        ("0001-01-01T00:00:00+14:00", {"business_days": 3}),
        ("0001-01-01T03:00:00Z", {"business_hours": 8}),
    ],
)
def test_a_compute_at_the_ends_of_time_answers_or_says_why(
    client: TestClient, admin_headers: Headers, start: str, rule: Json
) -> None:
    calendar = create_calendar(client, admin_headers)
    response = _compute(client, admin_headers, calendar["id"], start, rule)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.headers["content-type"] == PROBLEM
        assert "year" in response.json()["detail"] or "range" in response.json()["detail"]
        assert response.json()["errors"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=STARTS, rule=RULES)
def test_any_start_near_the_ends_of_time_computes_or_is_a_422(
    client: TestClient, admin_headers: Headers, start: str, rule: Json
) -> None:
    calendars = client.get("/v1/calendars", headers=admin_headers).json()["items"]
    calendar = calendars[0] if calendars else create_calendar(client, admin_headers)
    response = _compute(client, admin_headers, calendar["id"], start, rule)
    assert response.status_code in (200, 422), (start, rule, response.text)
    if response.status_code == 200:
        due = datetime.fromisoformat(response.json()["due_at"])
        assert due >= datetime.fromisoformat(start)
    else:
        assert response.headers["content-type"] == PROBLEM


FAR = [
    pytest.param("P99W", "9999-12-31T23:59:59Z", id="after-9999"),
    pytest.param("-P99W", "0001-01-01T00:00:00Z", id="before-year-1"),
]


def _ladder(offset: str) -> Json:
    return {"name": "far", "steps": [{"offset": offset, "type": "next_step.overdue"}]}


@pytest.mark.parametrize(("offset", "due_at"), FAR)
def test_a_reminder_beyond_the_ends_of_time_is_kept_in_range(
    client: TestClient, admin_headers: Headers, offset: str, due_at: str
) -> None:
    due = datetime.fromisoformat(due_at)
    # The rule first, then a step (scheduled on the step's write)...
    create_rule(client, admin_headers, **_ladder(offset))
    step = create_step(client, admin_headers, due_at=due)
    # ...and a step first, then a rule (scheduled for the open steps it matches).
    other = create_step(client, admin_headers, due_at=due, candidate_id="cand-2")
    create_rule(client, admin_headers, **{**_ladder(offset), "name": "later"})
    schedule_changed_rules()
    for commitment in (step, other):
        items = reminders(client, admin_headers, commitment["id"])
        assert items, commitment
        for item in items:
            fire_at = datetime.fromisoformat(item["fire_at"])
            if offset.startswith("-"):
                # Before year 1: long past, so not waiting to fire.
                assert item["state"] != "scheduled" or fire_at.year == 1
            else:
                assert (fire_at.year, item["state"]) == (9999, "scheduled")


@pytest.mark.parametrize(("offset", "due_at"), FAR)
def test_a_signed_event_due_at_the_ends_of_time_is_applied(
    client: TestClient, admin_headers: Headers, offset: str, due_at: str
) -> None:
    create_rule(client, admin_headers, **_ladder(offset))
    data = {
        "external_id": "int-far",
        "candidate": {"external_id": "c-far"},
        "next_steps": [
            {
                "external_id": "s-far",
                "action": "Call back",
                "owner": {"id": "rec-1", "role": "recruiter"},
                "due_at": due_at,
            }
        ],
    }
    body = event_body("interview.completed", datetime.now(UTC), data)
    response = client.post(
        "/v1/events/acme-ats", content=body, headers=standard_headers(body, ACME_SECRET)
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "applied"
    [step] = client.get("/v1/commitments", headers=admin_headers).json()["items"]
    assert reminders(client, admin_headers, step["id"])

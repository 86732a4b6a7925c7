"""Reminders as a receiver sees them: each step of a rule fires at the step's due time plus
its offset, checked again when it fires, collapsed when several are already past, and held
back outside the owner's calendar hours. The worker runs on an injected clock."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app import db
from app.models import Commitment, utcnow
from app.outbound.models import ReminderState
from tests.factories import create_commitment, create_interview, days, iso, patch_commitment
from tests.outbound_helpers import (
    LADDER,
    REMINDER_TYPES,
    Receiver,
    drain,
    make_endpoint,
    make_rule,
    reminders,
)

Headers = dict[str, str]
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
OVERDUE_AT_DUE = [{"offset": "PT0S", "type": "next_step.overdue"}]


@pytest.fixture
def receiver() -> Any:
    with Receiver() as running:
        yield running


def _step(
    client: TestClient,
    headers: Headers,
    due_at: datetime,
    candidate_id: str = "cand-1",
    **fields: Any,
) -> str:
    interview = create_interview(
        client, headers, candidate_id=candidate_id, candidate_name="Casey Candidate"
    )
    step = create_commitment(client, headers, interview["id"], due_at=due_at, **fields)
    return str(step["id"])


def _received(receiver: Receiver) -> list[tuple[str, str]]:
    """(type, commitment id) of each delivery, in the order received."""
    return [(d.json()["type"], d.json()["data"]["commitment"]["id"]) for d in receiver.deliveries]


def test_each_step_of_a_rule_fires_at_due_plus_its_offset(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url(), REMINDER_TYPES, receiver=receiver)
    rule = make_rule(quiet_hours=False)
    due = utcnow() + days(3)
    step = _step(client, admin_headers, due)

    assert [(r.type, r.fire_at) for r in reminders(step)] == [
        ("next_step.due_soon", due - 24 * HOUR),
        ("next_step.overdue", due),
        ("next_step.escalated", due + 24 * HOUR),
    ]
    assert drain(due - 24 * HOUR - SECOND) == 0
    assert drain(due - 24 * HOUR) == 1
    assert drain(due - SECOND) == 0
    assert drain(due) == 1
    assert drain(due + 24 * HOUR - SECOND) == 0
    assert drain(due + 24 * HOUR) == 1

    assert _received(receiver) == [
        ("next_step.due_soon", step),
        ("next_step.overdue", step),
        ("next_step.escalated", step),
    ]
    soon, overdue, escalated = (d.json() for d in receiver.deliveries)
    assert all(d.verified_by for d in receiver.deliveries)
    assert soon["data"]["rule_id"] == overdue["data"]["rule_id"] == str(rule.id)
    assert "escalate_to" not in soon["data"]
    assert soon["data"]["commitment"]["is_overdue"] is False
    assert soon["timestamp"] == iso(due - 24 * HOUR)
    assert escalated["data"]["escalate_to"] == LADDER[2]["to"]
    assert escalated["data"]["commitment"]["is_overdue"] is True
    assert escalated["data"]["commitment"]["overdue_seconds"] == 24 * 3600
    assert escalated["data"]["interview"]["candidate"]["name"] == "Casey Candidate"
    assert [r.state for r in reminders(step)] == [ReminderState.sent] * 3


def test_changes_to_a_step_skip_its_reminders_with_the_reason(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url(), REMINDER_TYPES, receiver=receiver)
    make_rule(OVERDUE_AT_DUE, quiet_hours=False)
    due = utcnow() + days(2)
    done, cancelled, redated, reassigned = (
        _step(client, admin_headers, due, candidate_id=f"cand-{n}") for n in range(4)
    )
    response = client.post(f"/v1/commitments/{done}/complete", json={}, headers=admin_headers)
    assert response.status_code == 200
    response = client.post(
        f"/v1/commitments/{cancelled}/cancel", json={"reason": "Withdrew"}, headers=admin_headers
    )
    assert response.status_code == 200
    patch_commitment(client, admin_headers, redated, {"due_at": iso(due + days(1))})
    new_owner = {"id": "rec-2", "name": "Rick Recruiter", "role": "recruiter"}
    patch_commitment(client, admin_headers, reassigned, {"owner": new_owner})

    drain(due + HOUR)
    assert _received(receiver) == [("next_step.overdue", reassigned)]
    assert receiver.deliveries[0].json()["data"]["commitment"]["owner"] == new_owner
    drain(due + days(1))
    assert _received(receiver)[1:] == [("next_step.overdue", redated)]

    def states(step: str) -> list[tuple[str, str | None]]:
        return [(r.state, r.reason) for r in reminders(step)]

    assert states(done) == [("skipped", "step done")]
    assert states(cancelled) == [("skipped", "step cancelled")]
    assert states(redated) == [("skipped", "due time changed"), ("sent", None)]
    assert states(reassigned) == [("skipped", "owner changed"), ("sent", None)]


def test_a_reminder_checks_the_step_again_when_it_fires(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url(), REMINDER_TYPES, receiver=receiver)
    make_rule(OVERDUE_AT_DUE, quiet_hours=False)
    due = utcnow() + days(2)
    steps = [_step(client, admin_headers, due, candidate_id=f"cand-{n}") for n in range(4)]
    # Changes the outbox did not see (written behind the ledger's back): only the check at
    # firing time stands between them and a wrong reminder.
    changes: list[dict[str, Any]] = [
        {"status": "done"},
        {"due_at": due + days(5)},
        {"owner_id": "someone-else"},
        {},
    ]
    with db.new_session(write=True) as session:
        for step, values in zip(steps, changes, strict=True):
            if values:
                session.exec(
                    update(Commitment)
                    .where(Commitment.id == uuid.UUID(step))  # type: ignore[arg-type]
                    .values(**values)
                )
        session.commit()

    drain(due + HOUR)

    assert _received(receiver) == [("next_step.overdue", steps[3])]
    assert [(r.state, r.reason) for s in steps for r in reminders(s)] == [
        ("skipped", "step done"),
        ("skipped", "due time changed"),
        ("skipped", "owner changed"),
        ("sent", None),
    ]


def test_only_the_latest_past_step_of_a_rule_fires(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url(), REMINDER_TYPES, receiver=receiver)
    make_rule(quiet_hours=False)
    now = utcnow()
    # Agreed already 3 h late (an import, a late event): due_soon and overdue are past.
    step = _step(client, admin_headers, now - 3 * HOUR)
    drain(now + SECOND)
    assert _received(receiver) == [("next_step.overdue", step)]

    # Re-dated two days back: all three are past; only the escalation fires.
    patch_commitment(client, admin_headers, step, {"due_at": iso(now - days(2))})
    drain(now + 2 * SECOND)
    assert _received(receiver) == [("next_step.overdue", step), ("next_step.escalated", step)]

    # And nothing more, however long one waits.
    drain(now + days(30))
    assert len(receiver.deliveries) == 2
    first, second = (
        [(r.type, r.state, r.reason) for r in reminders(step) if r.due_at == due]
        for due in (now - 3 * HOUR, now - days(2))
    )
    assert first == [
        ("next_step.due_soon", "skipped", "collapsed"),
        ("next_step.overdue", "sent", None),
        ("next_step.escalated", "skipped", "due time changed"),
    ]
    assert second == [
        ("next_step.due_soon", "skipped", "collapsed"),
        ("next_step.overdue", "skipped", "collapsed"),
        ("next_step.escalated", "sent", None),
    ]


# --- quiet hours -------------------------------------------------------------------------

OFFICE = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def _next_saturday_noon() -> datetime:
    """A Saturday 12:00 UTC at least two days ahead."""
    day = (utcnow() + days(2)).date()
    day += timedelta(days=(5 - day.weekday()) % 7)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _calendar(client: TestClient, headers: Headers, name: str, hours: Any) -> str:
    body = {"name": name, "time_zone": "UTC", "hours": hours}
    response = client.post("/v1/calendars", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_outside_the_owners_hours_a_reminder_waits_for_the_next_opening(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url(), REMINDER_TYPES, receiver=receiver)
    make_rule(OVERDUE_AT_DUE)  # quiet_hours by default
    _calendar(client, admin_headers, "Office", OFFICE)  # the first one: the default
    weekend = _calendar(client, admin_headers, "Weekend desk", {"sat": [["13:00", "15:00"]]})
    response = client.put(
        "/v1/owners/hr-weekend/calendar", json={"calendar_id": weekend}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    saturday = _next_saturday_noon()
    monday_nine = saturday + days(2) - 3 * HOUR
    office = _step(client, admin_headers, saturday, owner_id="hr-office", candidate_id="c-1")
    own = _step(client, admin_headers, saturday, owner_id="hr-weekend", candidate_id="c-2")

    assert [r.fire_at for r in reminders(office)] == [monday_nine]
    assert [r.fire_at for r in reminders(own)] == [saturday + HOUR]
    assert drain(saturday) == 0
    assert drain(saturday + HOUR) == 1
    assert drain(monday_nine - SECOND) == 0
    assert drain(monday_nine) == 1
    assert _received(receiver) == [("next_step.overdue", own), ("next_step.overdue", office)]


@pytest.mark.parametrize("calendar", [False, True], ids=["no calendar", "quiet_hours off"])
def test_without_a_calendar_or_quiet_hours_a_reminder_fires_on_time(
    client: TestClient, admin_headers: Headers, receiver: Receiver, calendar: bool
) -> None:
    make_endpoint(receiver.url(), REMINDER_TYPES, receiver=receiver)
    make_rule(OVERDUE_AT_DUE, quiet_hours=not calendar)
    if calendar:
        _calendar(client, admin_headers, "Office", OFFICE)
    saturday = _next_saturday_noon()
    step = _step(client, admin_headers, saturday)

    assert [r.fire_at for r in reminders(step)] == [saturday]
    assert drain(saturday - SECOND) == 0
    assert drain(saturday) == 1
    assert _received(receiver) == [("next_step.overdue", step)]

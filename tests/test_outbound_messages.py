"""Messages about changes to steps, as a receiver sees them: which endpoints get them, what
the body says, how it is signed, and that they are written in the change's transaction."""

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from app import db
from app.commitments import changes, ledger, service
from app.models import utcnow
from app.models.outbound import Message, MessageStatus, Reminder, ReminderState
from tests.factories import (
    create_commitment,
    create_interview,
    days,
    etag,
    iso,
    parse,
    patch_commitment,
)
from tests.outbound_helpers import (
    CHANGE_TYPES,
    Answer,
    Receiver,
    attempts,
    drain,
    make_endpoint,
    make_rule,
    messages,
    new_secret,
    reminders,
    run_pass,
)

Headers = dict[str, str]
INTERVIEW_FIELDS = [
    "id",
    "source",
    "external_id",
    "candidate",
    "job",
    "stage",
    "waiting_since",
    "unanswered_contacts",
]


@pytest.fixture
def receiver() -> Any:
    with Receiver() as running:
        yield running


def _shown(client: TestClient, headers: Headers, commitment_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/commitments/{commitment_id}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _interview_shown(client: TestClient, headers: Headers, interview_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/interviews/{interview_id}", headers=headers)
    assert response.status_code == 200, response.text
    return {name: response.json()[name] for name in INTERVIEW_FIELDS}


def _post(client: TestClient, headers: Headers, path: str, body: dict[str, Any]) -> None:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text


def test_each_change_sends_its_type_to_the_endpoints_that_take_it(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    everything = make_endpoint(receiver.url("/all"), CHANGE_TYPES, receiver=receiver)
    make_endpoint(receiver.url("/completed"), ["next_step.completed"], receiver=receiver)
    make_endpoint(receiver.url("/off"), CHANGE_TYPES, enabled=False, receiver=receiver)
    started = utcnow()
    interview = create_interview(client, admin_headers, candidate_name="Casey Candidate")
    expected: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def shown_now(type_: str, commitment_id: str) -> None:
        # What the API shows right after the change is what its message must carry.
        expected.append(
            (
                type_,
                _shown(client, admin_headers, commitment_id),
                _interview_shown(client, admin_headers, interview["id"]),
            )
        )

    step = create_commitment(client, admin_headers, interview["id"], due_at=started + days(3))
    shown_now("next_step.agreed", step["id"])
    patch_commitment(client, admin_headers, step["id"], {"due_at": iso(started + days(5))})
    shown_now("next_step.updated", step["id"])
    _post(client, admin_headers, f"/v1/commitments/{step['id']}/complete", {"outcome": "Called"})
    shown_now("next_step.completed", step["id"])
    other = create_commitment(client, admin_headers, interview["id"], due_at=started + days(2))
    shown_now("next_step.agreed", other["id"])
    _post(client, admin_headers, f"/v1/commitments/{other['id']}/cancel", {"reason": "Withdrew"})
    shown_now("next_step.cancelled", other["id"])
    finished = utcnow()

    # The outbox holds them before any worker runs: one row per change and endpoint.
    assert [m.type for m in messages() if m.endpoint_id == everything.id] == [
        t for t, _, _ in expected
    ]
    assert drain(utcnow() + timedelta(seconds=1)) == 6

    assert receiver.at("/off") == []
    assert [d.json()["type"] for d in receiver.at("/completed")] == ["next_step.completed"]
    delivered = receiver.at("/all")
    assert len(delivered) == len(expected)
    assert len({d.webhook_id for d in receiver.deliveries}) == 6
    for delivery, (type_, commitment, interview_shown) in zip(
        sorted(delivered, key=lambda d: d.json()["timestamp"]), expected, strict=True
    ):
        assert delivery.verified_by == (everything.secret,)
        body = delivery.json()
        assert set(body) == {"type", "timestamp", "data"}
        assert body["type"] == type_
        assert started <= parse(body["timestamp"]) <= finished
        assert body["timestamp"].endswith("Z")
        assert set(body["data"]) == {"commitment", "interview"}
        assert body["data"]["commitment"] == commitment
        assert body["data"]["interview"] == interview_shown
    assert delivered[0].headers["content-type"] == "application/json"
    assert delivered[0].json()["data"]["interview"]["candidate"]["name"] == "Casey Candidate"


def test_a_step_agreed_by_an_event_sends_agreed(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    from tests.conftest import WEBHOOK_SECRETS
    from tests.signing import event_body, standard_headers

    make_endpoint(receiver.url(), ["next_step.agreed"], receiver=receiver)
    ended = utcnow() - timedelta(hours=1)
    body = event_body(
        "interview.completed",
        ended,
        {
            "external_id": "ev-1",
            "candidate": {"external_id": "cand-ev", "name": "Eve Event"},
            "job": {"external_id": "job-9", "title": "Analyst"},
            "stage": "Onsite",
            "ends_at": ended.isoformat(),
            "next_steps": [
                {
                    "external_id": "ev-step-1",
                    "action": "Send the offer",
                    "owner": {"id": "rec-1", "name": "Rita", "role": "recruiter"},
                    "due_at": (ended + days(2)).isoformat(),
                }
            ],
        },
    )
    secret = WEBHOOK_SECRETS["acme-ats"][0]
    response = client.post(
        "/v1/events/acme-ats", content=body, headers=standard_headers(body, secret)
    )
    assert response.status_code in (200, 202), response.text

    drain(utcnow() + timedelta(seconds=1))
    [delivery] = receiver.deliveries
    data = delivery.json()["data"]
    assert delivery.json()["type"] == "next_step.agreed"
    assert data["commitment"]["action"] == "Send the offer"
    assert data["commitment"]["external_id"] == "ev-step-1"
    assert data["interview"]["source"] == "acme-ats"
    assert data["interview"]["external_id"] == "ev-1"
    assert data["interview"]["stage"] == "Onsite"
    assert _shown(client, admin_headers, data["commitment"]["id"]) == data["commitment"]


def test_retries_send_the_same_bytes_and_id_with_a_fresh_timestamp(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url(), ["next_step.agreed"], receiver=receiver)
    receiver.answer("/hook", Answer(500), Answer(503))
    interview = create_interview(client, admin_headers)
    create_commitment(client, admin_headers, interview["id"])
    start = utcnow() + timedelta(seconds=1)

    run_pass(start)  # signed at the wall clock's instant
    signed = int(receiver.deliveries[0].headers["webhook-timestamp"])
    assert abs(signed - receiver.deliveries[0].received_at) <= 1
    # The retries' signatures a whole second apart each (no need to wait for the wall clock
    # to get there: the receiver allows five minutes of skew).
    for n, at in enumerate((start + timedelta(seconds=5), start + timedelta(seconds=305)), 1):
        run_pass(at, signed_at=partial(datetime.fromtimestamp, signed + n, UTC))

    first, second, third = receiver.deliveries
    assert first.body == second.body == third.body
    assert first.webhook_id == second.webhook_id == third.webhook_id
    stamps = [int(d.headers["webhook-timestamp"]) for d in receiver.deliveries]
    assert stamps == [signed, signed + 1, signed + 2]
    for delivery in receiver.deliveries:
        assert delivery.verified_by  # signed for its own timestamp
    [sent] = messages()
    assert str(sent.id) == first.webhook_id
    assert sent.status == MessageStatus.succeeded
    assert [a.response_status for a in attempts(sent.id)] == [500, 503, 204]


# --- the transactional outbox ------------------------------------------------------------


def _count(model: type[Message] | type[Reminder]) -> int:
    with db.new_session() as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_a_change_that_fails_after_its_messages_takes_them_back(
    client: TestClient,
    admin_headers: Headers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_endpoint(receiver.url(), CHANGE_TYPES, receiver=receiver)
    make_rule()
    interview = create_interview(client, admin_headers)
    seen: dict[str, int] = {}

    def fail_after_the_outbox(session: Any, *args: Any, **kwargs: Any) -> None:
        # Runs after the ledger (and so the outbox) wrote the step, in the same transaction.
        session.flush()
        seen["messages"] = int(session.exec(select(func.count()).select_from(Message)).one())
        seen["reminders"] = int(session.exec(select(func.count()).select_from(Reminder)).one())
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(service, "_settle_policy_step", fail_after_the_outbox)
    due = utcnow() + days(3)
    response = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json={"action": "Call", "owner": {"id": "hr-1", "role": "hr"}, "due_at": iso(due)},
        headers=admin_headers,
    )
    assert response.status_code == 500
    assert seen == {"messages": 1, "reminders": 3}  # written, then rolled back
    shown = client.get(f"/v1/interviews/{interview['id']}", headers=admin_headers).json()
    assert shown["commitments"] == []
    assert (_count(Message), _count(Reminder)) == (0, 0)
    monkeypatch.undo()

    step = create_commitment(client, admin_headers, interview["id"], due_at=due)
    assert [m.type for m in messages(step["id"])] == ["next_step.agreed"]
    assert [r.state for r in reminders(step["id"])] == [ReminderState.scheduled] * 3

    # A PATCH that fails once the ledger has rebuilt the step: its message and the
    # rescheduling go with it.
    def change_then_fail(*args: Any, **kwargs: Any) -> None:
        original_change(*args, **kwargs)
        raise RuntimeError("the connection dropped")

    original_change = ledger.change
    monkeypatch.setattr(service, "change", change_then_fail)
    response = client.patch(
        f"/v1/commitments/{step['id']}",
        json={"due_at": iso(due + days(1))},
        headers={**admin_headers, "If-Match": etag(client, admin_headers, step["id"])},
    )
    assert response.status_code == 500
    monkeypatch.undo()
    assert _shown(client, admin_headers, step["id"])["due_at"] == iso(due)
    assert [m.type for m in messages(step["id"])] == ["next_step.agreed"]
    assert [(r.state, r.due_at) for r in reminders(step["id"])] == [
        (ReminderState.scheduled, due)
    ] * 3

    # Committed changes, each with its message.
    patch_commitment(client, admin_headers, step["id"], {"due_at": iso(due + days(1))})
    _post(client, admin_headers, f"/v1/commitments/{step['id']}/complete", {})
    assert [m.type for m in messages(step["id"])] == [
        "next_step.agreed",
        "next_step.updated",
        "next_step.completed",
    ]
    updated = json.loads(messages(step["id"])[1].body)
    assert updated["data"]["commitment"]["due_at"] == iso(due + days(1))


def test_a_process_without_the_outbox_installed_refuses_to_change_a_step(
    client: TestClient,
    admin_headers: Headers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A process that started without installing the publisher (app/commitments/changes.py)
    # must not record a step whose messages nobody writes.
    make_endpoint(receiver.url(), CHANGE_TYPES, receiver=receiver)
    interview = create_interview(client, admin_headers)
    monkeypatch.setattr(changes, "_installed", [])
    response = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json={
            "action": "Call",
            "owner": {"id": "hr-1", "role": "hr"},
            "due_at": iso(utcnow() + days(3)),
        },
        headers=admin_headers,
    )
    assert response.status_code == 500
    monkeypatch.undo()
    shown = client.get(f"/v1/interviews/{interview['id']}", headers=admin_headers).json()
    assert shown["commitments"] == []
    assert _count(Message) == 0


# --- Slack and secrets -------------------------------------------------------------------


def test_a_slack_endpoint_gets_one_readable_line_unsigned(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    make_endpoint(receiver.url("/slack"), ["next_step.overdue"], kind="slack")
    make_rule([{"offset": "PT0S", "type": "next_step.overdue"}], quiet_hours=False)
    interview = create_interview(client, admin_headers, candidate_name="Casey Candidate")
    create_commitment(
        client,
        admin_headers,
        interview["id"],
        action="Call Casey about the offer",
        owner_id="hr-7",
        owner_name="Harriet HR",
        due_at=utcnow() - timedelta(hours=3, minutes=5),
    )
    drain(utcnow() + timedelta(seconds=1))

    [delivery] = receiver.at("/slack")
    assert set(delivery.json()) == {"text"}
    text = delivery.json()["text"]
    assert "\n" not in text
    assert text.startswith("Overdue: Call Casey about the offer")
    assert "Harriet HR (hr)" in text
    assert "3 h late" in text
    assert "Casey Candidate" in text
    assert not {"webhook-signature", "webhook-id", "webhook-timestamp"} & set(delivery.headers)
    # Listed as the Slack channel's, not as a webhook's.
    listed = client.get("/v1/messages", params={"channel": "slack"}, headers=admin_headers)
    assert [(m["channel"], m["type"]) for m in listed.json()["items"]] == [
        ("slack", "next_step.overdue")
    ]
    webhooks = client.get("/v1/messages", params={"channel": "webhook"}, headers=admin_headers)
    assert webhooks.json()["items"] == []


def test_during_a_rotation_both_secrets_sign_until_the_old_one_expires(
    client: TestClient, admin_headers: Headers, receiver: Receiver
) -> None:
    old, new = new_secret(), new_secret()
    # A minute ahead: the first message must be due by then however slowly it is written.
    now = utcnow() + timedelta(minutes=1)
    make_endpoint(
        receiver.url(),
        ["next_step.agreed"],
        secret=new,
        previous_secret=old,
        previous_secret_expires_at=now + timedelta(hours=24),
    )
    receiver.secrets.extend([old, new])
    interview = create_interview(client, admin_headers)
    create_commitment(client, admin_headers, interview["id"])
    run_pass(now)
    create_commitment(client, admin_headers, interview["id"])
    run_pass(now + timedelta(hours=25))  # the old secret has expired

    during, after = receiver.deliveries
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert set(during.verified_by) == {old, new}  # a receiver knowing either one accepts it
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verified_by == (new,)

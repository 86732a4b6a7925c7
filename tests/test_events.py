"""Signed canonical events: authentication, answers, duplicates, pending, replay."""

import json
import threading
import time
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlmodel import select

from app import db
from app.events import ingest as service
from app.events.inbound import Inbound
from app.models import Delivery, utcnow
from tests.conftest import WEBHOOK_SECRETS
from tests.signing import event_body, standard_headers

SECRET = WEBHOOK_SECRETS["acme-ats"][0]
ROTATED = WEBHOOK_SECRETS["acme-ats"][1]
DAY = timedelta(days=1)
PROBLEM = "application/problem+json"


def completed(ended: datetime, interview: str = "int-1", step: str = "step-1") -> bytes:
    return event_body(
        "interview.completed",
        ended,
        {
            "external_id": interview,
            "candidate": {"external_id": "cand-1", "name": "Casey Candidate"},
            "job": {"external_id": "job-9", "title": "Analyst"},
            "stage": "First interview",
            "ends_at": ended.isoformat(),
            "next_steps": [
                {
                    "external_id": step,
                    "action": "Call Casey to schedule the second interview",
                    "owner": {"id": "hr-1", "name": "Harriet", "role": "hr"},
                    "channel": "call",
                    "due_at": (ended + 3 * DAY).isoformat(),
                }
            ],
        },
    )


def post(
    client: TestClient, body: bytes, secret: str = SECRET, webhook_id: str | None = None
) -> Response:
    """A canonical event to the acme-ats source, signed with ``secret``."""
    headers = standard_headers(body, secret, webhook_id)
    response: Response = client.post("/v1/events/acme-ats", content=body, headers=headers)
    return response


def test_completed_interview_with_a_step_is_applied(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    ended = utcnow() - 5 * DAY
    response = post(client, completed(ended))
    assert response.status_code == 202
    assert response.json()["status"] == "applied"
    overdue = client.get("/v1/commitments/overdue", headers=read_headers).json()["items"]
    assert [i["external_id"] for i in overdue] == ["step-1"]
    assert overdue[0]["source"] == "acme-ats"
    assert overdue[0]["agreed_at"] == ended.isoformat().replace("+00:00", "Z")
    assert overdue[0]["overdue_seconds"] >= 2 * 86400


def test_a_rotated_secret_also_verifies(client: TestClient) -> None:
    body = completed(utcnow())
    response = post(client, body, ROTATED)
    assert response.status_code == 202


def test_same_id_same_body_is_a_duplicate_without_second_effect(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    body = completed(utcnow() - 5 * DAY)
    headers = standard_headers(body, SECRET, "msg-dup")
    first = client.post("/v1/events/acme-ats", content=body, headers=headers)
    second = client.post("/v1/events/acme-ats", content=body, headers=headers)
    assert (first.json()["status"], second.json()["status"]) == ("applied", "duplicate")
    assert first.json()["delivery_id"] == second.json()["delivery_id"]
    items = client.get("/v1/commitments", headers=read_headers).json()["items"]
    assert len(items) == 1
    assert items[0]["version"] == 1


def test_same_id_other_body_is_a_conflict(client: TestClient) -> None:
    body = completed(utcnow())
    assert post(client, body, webhook_id="msg-x").status_code == 202
    other = completed(utcnow(), step="another")
    response = post(client, other, webhook_id="msg-x")
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM


def test_unknown_type_is_ignored_and_recorded(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = event_body("offer.extended", utcnow(), {"anything": 1})
    response = post(client, body)
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    deliveries = client.get("/v1/deliveries?result=ignored", headers=admin_headers).json()
    assert [d["event_type"] for d in deliveries["items"]] == ["offer.extended"]


@pytest.mark.one_database("the source is looked up in the settings, not the database")
def test_unknown_source_is_404(client: TestClient) -> None:
    body = completed(utcnow())
    response = client.post(
        "/v1/events/nobody", content=body, headers=standard_headers(body, SECRET)
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: {**h, "webhook-signature": "v1,AAAA"},
        lambda h: {**h, "webhook-signature": "no-comma-here"},
        lambda h: {**h, "webhook-signature": "v1,%%%not-base64%%%"},
        lambda h: {**h, "webhook-signature": ""},
        lambda h: {**h, "webhook-signature": "v1,"},
        lambda h: {**h, "webhook-signature": ",,,"},
        lambda h: {**h, "webhook-timestamp": "yesterday"},
        lambda h: {**h, "webhook-timestamp": "1e400"},
        lambda h: {**h, "webhook-timestamp": str(int(time.time()) - 600)},
        lambda h: {**h, "webhook-timestamp": str(int(time.time()) + 600)},
        lambda h: {k: v for k, v in h.items() if k != "webhook-id"},
    ],
)
@pytest.mark.one_database("the signature is checked before anything is stored")
def test_bad_or_stale_signatures_are_401_and_not_stored(
    client: TestClient, mangle: "object"
) -> None:
    body = completed(utcnow())
    headers = mangle(standard_headers(body, SECRET))  # type: ignore[operator]
    response = client.post("/v1/events/acme-ats", content=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    with db.new_session() as session:
        assert session.exec(select(Delivery)).all() == []


@pytest.mark.one_database("the signature is checked before anything is stored")
def test_tampered_body_is_401(client: TestClient) -> None:
    body = completed(utcnow())
    headers = standard_headers(body, SECRET)
    response = client.post(
        "/v1/events/acme-ats", content=body.replace(b"Casey", b"Mallory"), headers=headers
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"type": "interview.completed", "occurred_at": "2026-11-20T15:00:00", "data": {}}',
        b'{"type": "next_step.updated", "occurred_at": "2026-11-20T15:00:00Z", "data": {}}',
        b'{"type": "candidate.contacted", "occurred_at": "2026-11-20T15:00:00Z",'
        b' "data": {"interview_external_id": "i", "direction": "sideways", "channel": "call"}}',
    ],
)
def test_signed_but_invalid_event_is_422_and_stored_as_rejected(
    client: TestClient, admin_headers: dict[str, str], body: bytes
) -> None:
    response = post(client, body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    stored = client.get("/v1/deliveries?result=rejected", headers=admin_headers).json()["items"]
    assert len(stored) == 1
    assert stored[0]["error"]
    assert "webhook-signature" not in stored[0]["headers"]


def test_update_before_its_step_waits_then_applies(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    ended = utcnow() - 5 * DAY
    update = event_body(
        "next_step.updated",
        ended + DAY,
        {
            "external_id": "step-1",
            "changes": {"owner": {"id": "rec-7", "name": "Rae", "role": "recruiter"}},
            "reason": "HR is out this week",
        },
    )
    first = post(client, update)
    assert first.json()["status"] == "pending"
    second = post(client, completed(ended))
    assert second.json()["status"] == "applied"
    items = client.get("/v1/commitments", headers=read_headers).json()["items"]
    assert items[0]["owner"] == {"id": "rec-7", "name": "Rae", "role": "recruiter"}


def test_older_update_does_not_overwrite_newer_value(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    ended = utcnow() - 5 * DAY
    post(client, completed(ended))
    newer = event_body(
        "next_step.updated",
        ended + 2 * DAY,
        {"external_id": "step-1", "changes": {"due_at": (ended + 6 * DAY).isoformat()}},
    )
    older = event_body(
        "next_step.updated",
        ended + DAY,
        {"external_id": "step-1", "changes": {"due_at": (ended + 4 * DAY).isoformat()}},
    )
    for body in (newer, older):
        assert post(client, body).status_code == 202
    step = client.get("/v1/commitments", headers=read_headers).json()["items"][0]
    assert step["due_at"] == (ended + 6 * DAY).isoformat().replace("+00:00", "Z")


def test_older_update_does_not_reopen_a_completed_step(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    ended = utcnow() - 5 * DAY
    post(client, completed(ended))
    done = event_body(
        "next_step.completed",
        ended + 2 * DAY,
        {"external_id": "step-1", "outcome": "Second interview booked"},
    )
    late_update = event_body(
        "next_step.updated",
        ended + DAY,
        {"external_id": "step-1", "changes": {"action": "Call Casey (reworded)"}},
    )
    for body in (done, late_update):
        post(client, body)
    step = client.get("/v1/commitments", headers=read_headers).json()["items"][0]
    assert step["status"] == "done"
    assert step["action"] == "Call Casey (reworded)"
    assert step["outcome"] == "Second interview booked"


def test_sixteen_concurrent_copies_have_one_effect(database_url: str) -> None:
    body = completed(utcnow() - 5 * DAY)
    results: list[str] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            with db.new_session(write=True) as session:
                inbound = Inbound("acme-ats", "canonical", "msg-16", body, {}, utcnow())
                results.append(service.ingest(session, inbound, utcnow())[1])
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(results) == ["applied"] + ["duplicate"] * 15
    with db.new_session() as session:
        stored = session.exec(select(Delivery)).one()
        assert stored.duplicates == 15


def test_replay_is_idempotent(client: TestClient, admin_headers: dict[str, str]) -> None:
    ended = utcnow() - 5 * DAY
    accepted = post(client, completed(ended)).json()
    before = client.get("/v1/commitments", headers=admin_headers).json()["items"]
    for _ in range(2):
        replayed = client.post(
            f"/v1/deliveries/{accepted['delivery_id']}/replay", headers=admin_headers
        )
        assert replayed.status_code == 200
        assert replayed.json()["result"] == "applied"
    after = client.get("/v1/commitments", headers=admin_headers).json()["items"]
    assert [(c["id"], c["status"], c["owner"], c["due_at"]) for c in after] == [
        (c["id"], c["status"], c["owner"], c["due_at"]) for c in before
    ]
    interview_id = after[0]["interview_id"]
    timeline = client.get(f"/v1/interviews/{interview_id}/timeline", headers=admin_headers).json()[
        "items"
    ]
    # Replayed, the interview is recorded again before the step agreed with it.
    assert [e["kind"] for e in timeline] == ["interview_recorded", "agreed"]


def test_deliveries_need_admin(client: TestClient, write_headers: dict[str, str]) -> None:
    assert client.get("/v1/deliveries", headers=write_headers).status_code == 403


def test_contact_events_move_the_waiting_clock(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    ended = utcnow() - 5 * DAY
    assert post(client, completed(ended)).status_code == 202
    contacts = (
        ("inbound", ended + DAY),
        ("outbound", ended + 2 * DAY),  # the company answers: the clock restarts here
        ("inbound", ended + 3 * DAY),
        ("inbound", ended + 4 * DAY),
    )
    for direction, at in contacts:
        body = event_body(
            "candidate.contacted",
            at,
            {"interview_external_id": "int-1", "direction": direction, "channel": "email"},
        )
        assert post(client, body).json()["status"] == "applied"
    item = client.get("/v1/commitments/overdue", headers=read_headers).json()["items"][0]
    assert item["waiting_since"] == (ended + 2 * DAY).isoformat().replace("+00:00", "Z")
    assert item["unanswered_contacts"] == 2


def test_body_without_json_object_data_is_rejected(client: TestClient) -> None:
    body = json.dumps(
        {"type": "interview.completed", "occurred_at": "2026-11-20T15:00:00Z", "data": "nope"}
    ).encode()
    response = post(client, body)
    assert response.status_code == 422

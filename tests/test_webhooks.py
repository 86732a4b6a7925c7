"""Vendor webhooks over HTTP, with the payloads the vendors publish, signed with real secrets."""

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import WEBHOOK_SECRETS
from tests.signing import ashby_headers, greenhouse_headers, lever_sign

FIXTURES = Path(__file__).parent / "fixtures"
GREENHOUSE = WEBHOOK_SECRETS["greenhouse"][0]
LEVER = WEBHOOK_SECRETS["lever"][0]
ASHBY = WEBHOOK_SECRETS["ashby"][0]
PROBLEM = "application/problem+json"


def fixture_bytes(vendor: str, name: str) -> bytes:
    return (FIXTURES / vendor / f"{name}.json").read_bytes()


def fixture(vendor: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes(vendor, name))
    return data


def greenhouse_stage_change(status: str) -> bytes:
    payload = fixture("greenhouse", "candidate_stage_change")
    payload["payload"]["application"]["current_stage"]["interviews"][0]["status"] = status
    return json.dumps(payload).encode()


def test_greenhouse_sample_becomes_an_interview(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    body = fixture_bytes("greenhouse", "candidate_stage_change")
    response = client.post(
        "/v1/webhooks/greenhouse",
        content=body,
        headers=greenhouse_headers(body, GREENHOUSE, "gh-1"),
    )
    assert response.status_code == 200
    assert response.json()["status"] == "applied"
    (interview,) = client.get("/v1/interviews", headers=read_headers).json()["items"]
    assert interview["source"] == "greenhouse"
    assert interview["candidate"] == {
        "external_id": "265772",
        "name": "Giuseppe Hurley",
        "email": "giuseppe.hurley@example.com",
    }
    assert interview["job"] == {"external_id": "3485", "title": "Designer"}
    assert interview["stage"] == "Assessment"
    assert interview["status"] == "scheduled"
    assert [i["name"] for i in interview["interviewers"]] == ["Carl Buddha"]


def test_greenhouse_redelivery_is_a_duplicate_answered_200(client: TestClient) -> None:
    body = fixture_bytes("greenhouse", "candidate_stage_change")
    headers = greenhouse_headers(body, GREENHOUSE, "gh-2")
    assert client.post("/v1/webhooks/greenhouse", content=body, headers=headers).status_code == 200
    again = client.post("/v1/webhooks/greenhouse", content=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"


def test_greenhouse_without_event_id_dedupes_on_the_body(client: TestClient) -> None:
    body = fixture_bytes("greenhouse", "candidate_stage_change")
    first = client.post(
        "/v1/webhooks/greenhouse", content=body, headers=greenhouse_headers(body, GREENHOUSE)
    )
    second = client.post(
        "/v1/webhooks/greenhouse", content=body, headers=greenhouse_headers(body, GREENHOUSE)
    )
    assert (first.json()["status"], second.json()["status"]) == ("applied", "duplicate")


@pytest.mark.parametrize("signature", ["sha256 00ff", "sha1 abc", "", "sha256"])
@pytest.mark.one_database("the signature is checked before anything is stored")
def test_greenhouse_bad_signature_is_401(client: TestClient, signature: str) -> None:
    body = fixture_bytes("greenhouse", "candidate_stage_change")
    response = client.post(
        "/v1/webhooks/greenhouse", content=body, headers={"Signature": signature}
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


def test_completed_vendor_interview_shows_as_missing_a_next_step(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    body = greenhouse_stage_change("complete")
    client.post(
        "/v1/webhooks/greenhouse",
        content=body,
        headers=greenhouse_headers(body, GREENHOUSE, "gh-3"),
    )
    missing = client.get("/v1/interviews/missing-next-step", headers=read_headers).json()
    assert [i["candidate"]["external_id"] for i in missing["items"]] == ["265772"]


def test_greenhouse_rejection_cancels_open_company_steps(
    client: TestClient, write_headers: dict[str, str]
) -> None:
    body = greenhouse_stage_change("complete")
    client.post(
        "/v1/webhooks/greenhouse",
        content=body,
        headers=greenhouse_headers(body, GREENHOUSE, "gh-4"),
    )
    (interview,) = client.get("/v1/interviews", headers=write_headers).json()["items"]
    step = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        headers=write_headers,
        json={
            "action": "Call Giuseppe",
            "owner": {"id": "r", "role": "recruiter"},
            "due_at": "2099-01-01T00:00:00Z",
        },
    ).json()
    reject = fixture("greenhouse", "reject_candidate")
    reject["payload"]["application"]["candidate"]["id"] = 265772
    reject_body = json.dumps(reject).encode()
    answer = client.post(
        "/v1/webhooks/greenhouse",
        content=reject_body,
        headers=greenhouse_headers(reject_body, GREENHOUSE, "gh-5"),
    )
    assert answer.json()["status"] == "applied"
    cancelled = client.get(f"/v1/commitments/{step['id']}", headers=write_headers).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["reason"]


def test_lever_sample_restamped_is_applied_once(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    created = lever_sign(fixture("lever", "interviewCreated"), LEVER)
    assert (
        client.post(
            "/v1/webhooks/lever", content=created, headers={"content-type": "application/json"}
        ).json()["status"]
        == "applied"
    )
    stage = lever_sign(fixture("lever", "candidateStageChange"), LEVER)
    first = client.post("/v1/webhooks/lever", content=stage)
    again = client.post("/v1/webhooks/lever", content=stage)
    assert (first.status_code, again.status_code) == (202, 202)
    assert (first.json()["status"], again.json()["status"]) == ("applied", "duplicate")
    (interview,) = client.get("/v1/interviews", headers=read_headers).json()["items"]
    assert interview["stage"] == "7c2690d8-6308-4ed9-ae2a-cbfe7db26593"


def test_lever_repeated_token_with_other_body_is_refused(client: TestClient) -> None:
    payload = fixture("lever", "candidateStageChange")
    first = lever_sign(payload, LEVER, token="tok-1")
    client.post("/v1/webhooks/lever", content=first)
    payload["data"]["toStageId"] = "somewhere-else"
    other = lever_sign(payload, LEVER, token="tok-1")
    assert client.post("/v1/webhooks/lever", content=other).status_code == 409


@pytest.mark.one_database("the signature's age is checked before anything is stored")
def test_lever_published_example_is_too_old(client: TestClient) -> None:
    # Signed correctly, but triggeredAt is from 2015: outside the 72 h window.
    payload = fixture("lever", "candidateStageChange")
    old = lever_sign(payload, LEVER, triggered_at_ms=payload["triggeredAt"])
    response = client.post("/v1/webhooks/lever", content=old)
    assert response.status_code == 401
    assert "older" in response.json()["detail"]


@pytest.mark.one_database("the signature is checked before anything is stored")
def test_lever_bad_signature_is_401(client: TestClient) -> None:
    body = json.loads(lever_sign(fixture("lever", "interviewCreated"), LEVER))
    body["signature"] = "0" * 64
    assert client.post("/v1/webhooks/lever", content=json.dumps(body)).status_code == 401


def test_lever_recent_but_not_fresh_delivery_is_accepted(client: TestClient) -> None:
    # Lever retries for days: a delivery two days old is still inside the window.
    two_days_ago = int((time.time() - 2 * 86400) * 1000)
    body = lever_sign(fixture("lever", "interviewCreated"), LEVER, triggered_at_ms=two_days_ago)
    assert client.post("/v1/webhooks/lever", content=body).status_code == 202


def test_ashby_schedule_becomes_a_scheduled_interview(
    client: TestClient, read_headers: dict[str, str]
) -> None:
    body = json.dumps(fixture("ashby", "interviewScheduleUpdate")).encode()
    response = client.post("/v1/webhooks/ashby", content=body, headers=ashby_headers(body, ASHBY))
    assert response.status_code == 202
    assert response.json()["status"] == "applied"
    again = client.post("/v1/webhooks/ashby", content=body, headers=ashby_headers(body, ASHBY))
    assert again.json()["status"] == "duplicate"
    (interview,) = client.get("/v1/interviews", headers=read_headers).json()["items"]
    assert interview["source"] == "ashby"
    assert interview["status"] == "scheduled"
    assert interview["candidate"]["external_id"] == "f9e52a51-a075-4116-a7b8-484deba69004"
    # Earliest start and latest end of the schedule's events, whatever their order.
    assert interview["starts_at"] == "2026-11-20T14:00:00Z"
    assert interview["ends_at"] == "2026-11-20T16:00:00Z"


@pytest.mark.one_database("the signature is checked before anything is stored")
def test_ashby_bad_signature_is_401(client: TestClient) -> None:
    body = json.dumps(fixture("ashby", "interviewScheduleUpdate")).encode()
    response = client.post(
        "/v1/webhooks/ashby", content=body, headers={"Ashby-Signature": "sha256=deadbeef"}
    )
    assert response.status_code == 401


def test_vendor_payload_that_is_not_an_event_is_rejected_and_stored(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = b'{"action": "candidate_stage_change", "payload": {"application": 7}}'
    response = client.post(
        "/v1/webhooks/greenhouse",
        content=body,
        headers=greenhouse_headers(body, GREENHOUSE, "gh-bad"),
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    stored = client.get("/v1/deliveries?source=greenhouse", headers=admin_headers).json()
    assert [d["result"] for d in stored["items"]] == ["rejected"]


def _vendor_delivery(vendor: str, secret: str, n: int) -> tuple[str, bytes, dict[str, str]]:
    """The path, body and headers of a fresh delivery from ``vendor``, signed with ``secret``."""
    if vendor == "greenhouse":
        body = fixture_bytes("greenhouse", "candidate_stage_change")
        return "/v1/webhooks/greenhouse", body, greenhouse_headers(body, secret, f"gh-rot-{n}")
    if vendor == "lever":
        body = lever_sign(fixture("lever", "interviewCreated"), secret, token=f"tok-rot-{n}")
        return "/v1/webhooks/lever", body, {"content-type": "application/json"}
    # Another event each time: Ashby's deliveries are told apart by what they are about.
    events = ("interviewScheduleUpdate", "candidateHire", "candidateStageChange")
    body = fixture_bytes("ashby", events[n % len(events)])
    return "/v1/webhooks/ashby", body, ashby_headers(body, secret)


@pytest.mark.parametrize("vendor", ["greenhouse", "lever", "ashby"])
def test_during_a_rotation_the_old_and_the_new_secret_verify_and_no_other(
    client: TestClient, vendor: str
) -> None:
    old, new = WEBHOOK_SECRETS[vendor]
    for n, secret in enumerate((old, new)):
        path, body, headers = _vendor_delivery(vendor, secret, n)
        response = client.post(path, content=body, headers=headers)
        assert response.status_code in (200, 202), (secret, response.text)
        assert response.json()["status"] in ("applied", "duplicate")
    for n, secret in enumerate((f"{old}-x", new[:-1], "", "not-a-secret-of-this-vendor"), 2):
        path, body, headers = _vendor_delivery(vendor, secret or "?", n)
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 401, (secret, response.text)
        assert response.headers["content-type"] == PROBLEM

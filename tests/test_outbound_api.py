"""Endpoints and messages over HTTP and from the command line."""

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook
from typer.testing import CliRunner

from app import db
from app.cli import cli
from app.config import get_settings
from app.models.outbound import Endpoint, Message, MessageAttempt
from app.outbound import worker
from tests.factories import PROBLEM, Headers, Json, iso, now, parse

WEBHOOK: Json = {
    "url": "http://127.0.0.1:9/hooks",
    "description": "Ops inbox",
    "event_types": ["next_step.overdue", "next_step.escalated"],
}


def create_endpoint(client: TestClient, headers: Headers, **overrides: Any) -> Json:
    response = client.post("/v1/endpoints", json={**WEBHOOK, **overrides}, headers=headers)
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def stored_endpoint(endpoint_id: str) -> Endpoint:
    with db.new_session() as session:
        row = session.get(Endpoint, uuid.UUID(endpoint_id))
        assert row is not None
        return row


def add_message(
    endpoint_id: str,
    *,
    status: str = "pending",
    created_at: datetime | None = None,
    type_: str = "next_step.overdue",
    commitment_id: uuid.UUID | None = None,
    attempts: int = 0,
) -> str:
    """A message as the outbox and the worker leave it, with one attempt per attempt."""
    created = created_at or now()
    with db.new_session(write=True) as session:
        message = Message(
            endpoint_id=uuid.UUID(endpoint_id),
            type=type_,
            commitment_id=commitment_id,
            body=json.dumps({"type": type_, "timestamp": iso(created), "data": {"n": 1}}),
            status=status,
            attempts=attempts,
            next_attempt_at=created if status == "pending" else None,
            created_at=created,
            updated_at=created,
        )
        session.add(message)
        session.flush()
        for n in range(1, attempts + 1):
            session.add(
                MessageAttempt(
                    message_id=message.id,
                    n=n,
                    at=created + timedelta(minutes=n),
                    response_status=500,
                    error="HTTP 500",
                    duration_ms=12,
                )
            )
        session.commit()
        return str(message.id)


def stored_message(message_id: str) -> Message:
    with db.new_session() as session:
        row = session.get(Message, uuid.UUID(message_id))
        assert row is not None
        return row


# --- endpoints -----------------------------------------------------------------------------


def test_a_webhook_endpoint_shows_its_secret_once(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    response = client.post("/v1/endpoints", json=WEBHOOK, headers=admin_headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/v1/endpoints/{created['id']}"
    assert created["kind"] == "webhook"
    assert created["enabled"] is True
    assert created["disabled_reason"] is None
    assert created["event_types"] == WEBHOOK["event_types"]
    assert created["version"] == 1
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert stored_endpoint(created["id"]).secret == secret
    # Standard Webhooks takes it: what it signs, it verifies.
    hook = Webhook(secret)
    sent_at = datetime.now(UTC)
    signature = hook.sign("msg_1", sent_at, '{"a":1}')
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(sent_at.timestamp()))}
    assert hook.verify('{"a":1}', {**headers, "webhook-signature": signature}) == {"a": 1}

    one = client.get(f"/v1/endpoints/{created['id']}", headers=read_headers)
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert one.json() == {k: v for k, v in created.items() if k != "secret"}
    assert one.headers["etag"] == response.headers["etag"]
    listed = client.get("/v1/endpoints", headers=read_headers).json()["items"]
    assert [set(item) for item in listed] == [set(one.json())]
    as_csv = client.get("/v1/endpoints", headers={**read_headers, "Accept": "text/csv"})
    assert "secret" not in as_csv.text
    assert secret not in as_csv.text


def test_a_slack_endpoint_has_no_secret(client: TestClient, admin_headers: Headers) -> None:
    created = create_endpoint(client, admin_headers, kind="slack")
    assert created["kind"] == "slack"
    assert created["secret"] is None
    assert stored_endpoint(created["id"]).secret is None
    rotated = client.post(f"/v1/endpoints/{created['id']}/rotate-secret", headers=admin_headers)
    assert rotated.status_code == 409
    assert rotated.headers["content-type"] == PROBLEM


def test_each_endpoint_gets_its_own_secret(client: TestClient, admin_headers: Headers) -> None:
    first = create_endpoint(client, admin_headers)
    second = create_endpoint(client, admin_headers)
    assert first["secret"] != second["secret"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "https://hooks.example.com/nextstep?team=ops",
        "http://[::1]:9000/",
        "HTTPS://Hooks.Example.com",
    ],
)
@pytest.mark.one_database("the URL check runs before anything is stored")
def test_loopback_and_ordinary_hosts_are_allowed(
    client: TestClient, admin_headers: Headers, url: str
) -> None:
    assert create_endpoint(client, admin_headers, url=url)["url"] == url


BAD_ENDPOINTS = [
    ({"url": "ftp://example.com/hooks"}, ["body", "url"]),
    ({"url": "file:///etc/passwd"}, ["body", "url"]),
    ({"url": "javascript:alert(1)"}, ["body", "url"]),
    ({"url": "example.com/hooks"}, ["body", "url"]),
    ({"url": "http://"}, ["body", "url"]),
    ({"url": "https:///only/a/path"}, ["body", "url"]),
    ({"url": "http://exa mple.com/"}, ["body", "url"]),
    ({"url": "http://example.com:99999/"}, ["body", "url"]),
    ({"url": "http://169.254.169.254/latest/meta-data"}, ["body", "url"]),
    ({"url": "http://169.254.1.1:8080/"}, ["body", "url"]),
    ({"url": "http://[fe80::1]/"}, ["body", "url"]),
    ({"url": "http://[::ffff:169.254.169.254]/"}, ["body", "url"]),
    ({"url": "http://2852039166/"}, ["body", "url"]),  # 169.254.169.254 as one number
    ({"url": "http://0.0.0.0:8000/"}, ["body", "url"]),
    ({"url": "http://0/"}, ["body", "url"]),
    ({"url": "http://[::]/"}, ["body", "url"]),
    ({"url": ""}, ["body", "url"]),
    ({"event_types": []}, ["body", "event_types"]),
    ({"event_types": ["next_step.lost"]}, ["body", "event_types", 0]),
    ({"event_types": ["next_step.overdue", "next_step.overdue"]}, ["body", "event_types"]),
    ({"kind": "email"}, ["body", "kind"]),
    ({"enabled": "yes"}, ["body", "enabled"]),
    ({"secret": "whsec_mine"}, ["body", "secret"]),
]


@pytest.mark.parametrize(("change", "loc"), BAD_ENDPOINTS)
@pytest.mark.one_database("the request is validated before any query")
def test_a_bad_endpoint_is_a_422_naming_the_field(
    client: TestClient, admin_headers: Headers, change: Json, loc: list[Any]
) -> None:
    response = client.post("/v1/endpoints", json={**WEBHOOK, **change}, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert loc in [error["loc"] for error in response.json()["errors"]]


@pytest.mark.one_database("the request is validated before any query")
def test_missing_event_types_is_a_422(client: TestClient, admin_headers: Headers) -> None:
    response = client.post("/v1/endpoints", json={"url": WEBHOOK["url"]}, headers=admin_headers)
    assert response.status_code == 422
    assert ["body", "event_types"] in [e["loc"] for e in response.json()["errors"]]


def test_endpoint_test_may_be_listed(client: TestClient, admin_headers: Headers) -> None:
    created = create_endpoint(client, admin_headers, event_types=["endpoint.test"])
    assert created["event_types"] == ["endpoint.test"]


@pytest.mark.one_database("the key and scope are checked before any query")
def test_endpoints_need_a_key_and_admin_to_write(
    client: TestClient, read_headers: Headers, write_headers: Headers, admin_headers: Headers
) -> None:
    anonymous = client.get("/v1/endpoints")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.headers["content-type"] == PROBLEM
    bad_key = client.get("/v1/endpoints", headers={"Authorization": "Bearer nsk_nope"})
    assert bad_key.status_code == 401
    assert client.post("/v1/endpoints", json=WEBHOOK).status_code == 401
    for headers in (read_headers, write_headers):
        refused = client.post("/v1/endpoints", json=WEBHOOK, headers=headers)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == PROBLEM
    endpoint = create_endpoint(client, admin_headers)
    url = f"/v1/endpoints/{endpoint['id']}"
    assert client.get(url, headers=read_headers).status_code == 200
    assert client.get("/v1/endpoints", headers=read_headers).status_code == 200
    for headers in (read_headers, write_headers):
        any_match = {**headers, "If-Match": "*"}
        assert client.patch(url, json={"enabled": False}, headers=any_match).status_code == 403
        assert client.delete(url, headers=headers).status_code == 403
        assert client.post(f"{url}/rotate-secret", headers=headers).status_code == 403
        assert client.post(f"{url}/test", headers=headers).status_code == 403
        since = {"since": "2026-01-01T00:00:00Z"}
        assert client.post(f"{url}/recover", json=since, headers=headers).status_code == 403
    assert stored_endpoint(endpoint["id"]).version == 1


def test_an_unknown_endpoint_is_a_404(client: TestClient, admin_headers: Headers) -> None:
    url = f"/v1/endpoints/{uuid.uuid4()}"
    for response in (
        client.get(url, headers=admin_headers),
        client.patch(url, json={"enabled": False}, headers=admin_headers),
        client.delete(url, headers={**admin_headers, "If-Match": "*"}),
        client.post(f"{url}/rotate-secret", headers=admin_headers),
        client.post(f"{url}/test", headers=admin_headers),
        client.post(
            f"{url}/recover", json={"since": "2026-01-01T00:00:00Z"}, headers=admin_headers
        ),
    ):
        assert response.status_code == 404, response.request.method
        assert response.headers["content-type"] == PROBLEM


def test_patch_an_endpoint_needs_a_fresh_if_match(
    client: TestClient, admin_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    url = f"/v1/endpoints/{endpoint['id']}"
    missing = client.patch(url, json={"description": "x"}, headers=admin_headers)
    assert missing.status_code == 428
    assert missing.headers["content-type"] == PROBLEM
    etag = client.get(url, headers=admin_headers).headers["etag"]
    change = {
        "url": "https://hooks.example.com/new",
        "description": None,
        "event_types": ["next_step.agreed"],
    }
    changed = client.patch(url, json=change, headers={**admin_headers, "If-Match": etag})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["url"], body["description"], body["event_types"], body["version"]) == (
        "https://hooks.example.com/new",
        None,
        ["next_step.agreed"],
        2,
    )
    assert "secret" not in body
    assert changed.headers["etag"] != etag
    stale = client.patch(url, json={"enabled": False}, headers={**admin_headers, "If-Match": etag})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == PROBLEM
    # The secret survives every change.
    assert stored_endpoint(endpoint["id"]).secret == endpoint["secret"]


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"url": "http://169.254.169.254/"}, ["body", "url"]),
        ({"url": None}, ["body"]),
        ({"event_types": []}, ["body", "event_types"]),
        ({"kind": "slack"}, ["body", "kind"]),
        ({"enabled": None}, ["body"]),
    ],
)
@pytest.mark.one_database("the request is validated before the row is read")
def test_a_bad_patch_is_a_422(
    client: TestClient, admin_headers: Headers, change: Json, loc: list[Any]
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    response = client.patch(
        f"/v1/endpoints/{endpoint['id']}", json=change, headers={**admin_headers, "If-Match": "*"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert loc in [error["loc"] for error in response.json()["errors"]]


def test_disabling_says_why_and_enabling_clears_it(
    client: TestClient, admin_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    url = f"/v1/endpoints/{endpoint['id']}"
    any_match = {**admin_headers, "If-Match": "*"}
    off = client.patch(url, json={"enabled": False}, headers=any_match).json()
    assert (off["enabled"], off["disabled_reason"]) == (False, "disabled by an admin")
    # A 410 from the receiver disables it with its own reason, which a second "off" keeps.
    with db.new_session(write=True) as session:
        row = session.get(Endpoint, uuid.UUID(endpoint["id"]))
        assert row is not None
        row.disabled_reason = "the endpoint answered 410 Gone"
        session.add(row)
        session.commit()
    again = client.patch(url, json={"enabled": False}, headers=any_match).json()
    assert again["disabled_reason"] == "the endpoint answered 410 Gone"
    on = client.patch(url, json={"enabled": True}, headers=any_match).json()
    assert (on["enabled"], on["disabled_reason"], on["version"]) == (True, None, 3)
    created_off = create_endpoint(client, admin_headers, enabled=False)
    assert created_off["disabled_reason"] == "disabled by an admin"


def test_deleting_an_endpoint_cancels_its_pending_messages(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    other = create_endpoint(client, admin_headers)
    pending = add_message(endpoint["id"])
    delivered = add_message(endpoint["id"], status="succeeded", attempts=1)
    failed = add_message(endpoint["id"], status="failed", attempts=2)
    elsewhere = add_message(other["id"])
    url = f"/v1/endpoints/{endpoint['id']}"
    stale = client.delete(url, headers={**admin_headers, "If-Match": '"stale"'})
    assert stale.status_code == 412
    assert stored_message(pending).status == "pending"
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 204
    assert client.get(url, headers=admin_headers).status_code == 404
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 404
    assert stored_message(pending).status == "cancelled"
    assert stored_message(pending).next_attempt_at is None
    assert stored_message(delivered).status == "succeeded"
    assert stored_message(failed).status == "failed"
    assert stored_message(elsewhere).status == "pending"
    kept = client.get(f"/v1/messages?endpoint_id={endpoint['id']}", headers=read_headers)
    assert {m["id"] for m in kept.json()["items"]} == {pending, delivered, failed}


def test_rotating_a_secret_keeps_the_old_one_for_a_day(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    url = f"/v1/endpoints/{endpoint['id']}/rotate-secret"
    before = now()
    rotated = client.post(url, headers=admin_headers)
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["secret"]
    assert rotated.json() == {"secret": secret}
    assert secret.startswith("whsec_")
    assert secret != endpoint["secret"]
    Webhook(secret)
    row = stored_endpoint(endpoint["id"])
    assert (row.secret, row.previous_secret) == (secret, endpoint["secret"])
    assert row.previous_secret_expires_at is not None
    expires = row.previous_secret_expires_at - before
    assert timedelta(hours=24) <= expires < timedelta(hours=24, minutes=1)
    shown = client.get(f"/v1/endpoints/{endpoint['id']}", headers=read_headers).text
    assert secret not in shown
    assert endpoint["secret"] not in shown
    third = client.post(url, headers=admin_headers).json()["secret"]
    row = stored_endpoint(endpoint["id"])
    assert (row.secret, row.previous_secret) == (third, secret)


def test_an_endpoint_test_is_queued_and_listed(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)  # endpoint.test not among its types
    response = client.post(f"/v1/endpoints/{endpoint['id']}/test", headers=admin_headers)
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    message = client.get(f"/v1/messages/{message_id}", headers=read_headers).json()
    assert (message["type"], message["status"], message["endpoint_id"]) == (
        "endpoint.test",
        "pending",
        endpoint["id"],
    )
    assert message["commitment_id"] is None
    assert message["attempts"] == 0
    assert message["attempt_log"] == []
    assert message["payload"]["type"] == "endpoint.test"
    listed = client.get("/v1/messages?type=endpoint.test", headers=read_headers).json()
    assert [m["id"] for m in listed["items"]] == [message_id]


def test_a_disabled_endpoint_cannot_be_tested(client: TestClient, admin_headers: Headers) -> None:
    endpoint = create_endpoint(client, admin_headers, enabled=False)
    response = client.post(f"/v1/endpoints/{endpoint['id']}/test", headers=admin_headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM


def test_recover_sends_the_failed_messages_since_again(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    other = create_endpoint(client, admin_headers)
    since = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    too_old = add_message(endpoint["id"], status="failed", created_at=since - timedelta(seconds=1))
    at_since = add_message(endpoint["id"], status="failed", created_at=since, attempts=8)
    later = add_message(endpoint["id"], status="failed", created_at=since + timedelta(hours=3))
    delivered = add_message(endpoint["id"], status="succeeded", created_at=since, attempts=1)
    elsewhere = add_message(other["id"], status="failed", created_at=since)
    before = now()
    response = client.post(
        f"/v1/endpoints/{endpoint['id']}/recover",
        json={"since": "2026-11-20T13:00:00+01:00"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"requeued": 2}
    for message_id in (at_since, later):
        row = stored_message(message_id)
        assert row.status == "pending"
        assert row.next_attempt_at is not None
        assert row.next_attempt_at >= before - timedelta(seconds=1)
    assert stored_message(at_since).attempts == 8
    log = client.get(f"/v1/messages/{at_since}", headers=read_headers).json()["attempt_log"]
    assert [a["n"] for a in log] == list(range(1, 9))
    assert stored_message(too_old).status == "failed"
    assert stored_message(delivered).status == "succeeded"
    assert stored_message(elsewhere).status == "failed"
    again = client.post(
        f"/v1/endpoints/{endpoint['id']}/recover",
        json={"since": "2026-11-20T12:00:00Z"},
        headers=admin_headers,
    )
    assert again.json() == {"requeued": 0}


@pytest.mark.parametrize(
    "body", [{}, {"since": "2026-11-20T12:00:00"}, {"since": "yesterday"}, {"since": 1}]
)
@pytest.mark.one_database("the request is validated before any query")
def test_recover_needs_an_instant_with_an_offset(
    client: TestClient, admin_headers: Headers, body: Json
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    response = client.post(
        f"/v1/endpoints/{endpoint['id']}/recover", json=body, headers=admin_headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_creating_an_endpoint_is_idempotent(client: TestClient, admin_headers: Headers) -> None:
    keyed = {**admin_headers, "Idempotency-Key": "endpoint-ops-1"}
    first = client.post("/v1/endpoints", json=WEBHOOK, headers=keyed)
    again = client.post("/v1/endpoints", json=WEBHOOK, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    listed = client.get("/v1/endpoints", headers=admin_headers).json()["items"]
    assert [e["id"] for e in listed] == [first.json()["id"]]
    changed = client.post("/v1/endpoints", json={**WEBHOOK, "description": "other"}, headers=keyed)
    assert changed.status_code == 422
    assert changed.headers["content-type"] == PROBLEM


def test_endpoints_list_in_pages_and_as_csv(client: TestClient, admin_headers: Headers) -> None:
    made = [create_endpoint(client, admin_headers, description=f"n{i}")["id"] for i in range(3)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/endpoints", params=params, headers=admin_headers).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    response = client.get("/v1/endpoints", headers={**admin_headers, "Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert response.text.startswith("id,kind,url,description,event_types,enabled")
    assert [row["id"] for row in rows] == made
    assert json.loads(rows[0]["event_types"]) == WEBHOOK["event_types"]
    too_many = client.get("/v1/endpoints?limit=501", headers=admin_headers)
    assert too_many.status_code == 422


# --- messages ------------------------------------------------------------------------------


def test_messages_list_newest_first_with_filters(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    other = create_endpoint(client, admin_headers)
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    step = uuid.uuid4()
    oldest = add_message(endpoint["id"], status="failed", created_at=start, commitment_id=step)
    middle = add_message(
        endpoint["id"], created_at=start + timedelta(minutes=1), type_="next_step.agreed"
    )
    newest = add_message(other["id"], created_at=start + timedelta(minutes=2), commitment_id=step)

    def ids(query: str = "", headers: Headers = read_headers) -> list[str]:
        response = client.get(f"/v1/messages{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()["items"]]

    assert ids() == [newest, middle, oldest]
    assert ids(f"?endpoint_id={endpoint['id']}") == [middle, oldest]
    assert ids("?status=failed") == [oldest]
    assert ids("?type=next_step.agreed") == [middle]
    assert ids(f"?commitment_id={step}") == [newest, oldest]
    assert ids(f"?commitment_id={step}&status=pending") == [newest]
    first = client.get("/v1/messages?limit=1&status=pending", headers=read_headers).json()
    assert [m["id"] for m in first["items"]] == [newest]
    assert set(first["items"][0]) == {
        "id",
        "endpoint_id",
        "channel",
        "recipient",
        "type",
        "commitment_id",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
    }
    # The cursor carries the filter.
    second = client.get(f"/v1/messages?cursor={first['next_cursor']}", headers=read_headers)
    assert [m["id"] for m in second.json()["items"]] == [middle]
    assert second.json()["next_cursor"] is None
    for bad in ("?status=lost", "?type=nope", "?endpoint_id=12", "?cursor=zzz", "?colour=red"):
        refused = client.get(f"/v1/messages{bad}", headers=read_headers)
        assert refused.status_code == 422, bad
        assert refused.headers["content-type"] == PROBLEM
    assert client.get("/v1/messages").status_code == 401


def test_messages_as_csv(client: TestClient, admin_headers: Headers) -> None:
    endpoint = create_endpoint(client, admin_headers)
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    made = [add_message(endpoint["id"], created_at=start + timedelta(seconds=i)) for i in range(3)]
    add_message(endpoint["id"], status="failed", created_at=start)
    response = client.get(
        "/v1/messages?status=pending&limit=1", headers={**admin_headers, "Accept": "text/csv"}
    )
    assert response.status_code == 200
    assert response.text.startswith(
        "id,endpoint_id,channel,recipient,type,commitment_id,status,attempts,next_attempt_at,"
        "created_at"
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["id"] for row in rows] == made[::-1]
    assert rows[0]["created_at"] == "2026-11-20T12:00:02Z"


def test_a_message_shows_its_attempts_and_body(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    created = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    message_id = add_message(endpoint["id"], status="failed", created_at=created, attempts=2)
    response = client.get(f"/v1/messages/{message_id}", headers=read_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["attempt_log"] == [
        {
            "n": 1,
            "at": "2026-11-20T12:01:00Z",
            "response_status": 500,
            "error": "HTTP 500",
            "duration_ms": 12,
        },
        {
            "n": 2,
            "at": "2026-11-20T12:02:00Z",
            "response_status": 500,
            "error": "HTTP 500",
            "duration_ms": 12,
        },
    ]
    assert body["payload"] == json.loads(stored_message(message_id).body)
    assert (body["status"], body["attempts"], body["next_attempt_at"]) == ("failed", 2, None)
    assert client.get(f"/v1/messages/{uuid.uuid4()}", headers=read_headers).status_code == 404


def test_resend_queues_the_same_message_again(
    client: TestClient, admin_headers: Headers, read_headers: Headers, write_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    message_id = add_message(endpoint["id"], status="failed", attempts=3)
    body = stored_message(message_id).body
    url = f"/v1/messages/{message_id}/resend"
    assert client.post(url, headers=read_headers).status_code == 403
    assert client.post(url, headers=write_headers).status_code == 403
    assert stored_message(message_id).status == "failed"
    before = now()
    response = client.post(url, headers=admin_headers)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["id"], answer["status"], answer["attempts"]) == (message_id, "pending", 3)
    assert parse(answer["next_attempt_at"]) >= before - timedelta(seconds=1)
    row = stored_message(message_id)
    assert (row.status, row.body) == ("pending", body)
    shown = client.get(f"/v1/messages/{message_id}", headers=read_headers).json()
    assert len(shown["attempt_log"]) == 3
    assert client.post(
        f"/v1/messages/{uuid.uuid4()}/resend", headers=admin_headers
    ).status_code == (404)


def test_a_message_of_a_deleted_endpoint_cannot_be_resent(
    client: TestClient, admin_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    message_id = add_message(endpoint["id"], status="failed", attempts=1)
    client.delete(f"/v1/endpoints/{endpoint['id']}", headers={**admin_headers, "If-Match": "*"})
    response = client.post(f"/v1/messages/{message_id}/resend", headers=admin_headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert stored_message(message_id).status == "failed"


# --- command line --------------------------------------------------------------------------


def test_cli_lists_and_resends_messages(client: TestClient, admin_headers: Headers) -> None:
    endpoint = create_endpoint(client, admin_headers)
    failed = add_message(endpoint["id"], status="failed", attempts=8)
    delivered = add_message(endpoint["id"], status="succeeded", attempts=1)
    runner = CliRunner()
    table = runner.invoke(cli, ["messages", "list", "--status", "failed"])
    assert table.exit_code == 0, table.output
    assert failed in table.output
    assert delivered not in table.output
    assert "next_step.overdue" in table.output
    assert "1 messages" in table.output
    as_json = runner.invoke(cli, ["messages", "list", "--format", "json", "--limit", "1"])
    assert as_json.exit_code == 0, as_json.output
    assert len(json.loads(as_json.output)) == 1
    as_csv = runner.invoke(
        cli, ["messages", "list", "--endpoint-id", endpoint["id"], "--format", "csv"]
    )
    assert as_csv.exit_code == 0, as_csv.output
    assert {row["id"] for row in csv.DictReader(io.StringIO(as_csv.output))} == {
        failed,
        delivered,
    }
    by_type = runner.invoke(cli, ["messages", "list", "--type", "endpoint.test"])
    assert "0 messages" in by_type.output
    resent = runner.invoke(cli, ["messages", "resend", failed])
    assert resent.exit_code == 0, resent.output
    assert failed in resent.output
    assert stored_message(failed).status == "pending"
    assert runner.invoke(cli, ["messages", "list", "--status", "lost"]).exit_code != 0
    assert "alone" in runner.invoke(cli, ["worker", "--help"]).output


# --- with the worker -----------------------------------------------------------------------


class Receiver:
    """An endpoint's receiver, in process: answers each request with the next status."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 204)

    def deliver(self, *, retries: bool = True) -> None:
        """One pass of the worker; without ``retries``, a failed attempt fails the message."""
        settings = get_settings()
        if not retries:
            settings = settings.model_copy(update={"outbound_retry_schedule": ()})

        async def one_pass() -> None:
            async with httpx.AsyncClient(transport=httpx.MockTransport(self.answer)) as client:
                await worker.run_once(client, settings=settings)

        asyncio.run(one_pass())

    def verify(self, secret: str, request: httpx.Request | None = None) -> Json:
        sent = request or self.requests[-1]
        verified: Json = Webhook(secret).verify(sent.content, dict(sent.headers))
        return verified


def test_a_test_message_is_signed_with_the_secret_shown_at_creation(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    receiver = Receiver()
    message_id = client.post(f"/v1/endpoints/{endpoint['id']}/test", headers=admin_headers).json()[
        "message_id"
    ]
    receiver.deliver()
    (request,) = receiver.requests
    assert str(request.url) == WEBHOOK["url"]
    assert request.headers["webhook-id"] == message_id
    assert receiver.verify(endpoint["secret"])["type"] == "endpoint.test"
    sent = client.get(f"/v1/messages/{message_id}", headers=read_headers).json()
    assert (sent["status"], sent["attempts"], sent["next_attempt_at"]) == ("succeeded", 1, None)
    assert [(a["n"], a["response_status"], a["error"]) for a in sent["attempt_log"]] == [
        (1, 204, None)
    ]
    # After a rotation, both secrets verify each message for a day.
    old = endpoint["secret"]
    new = client.post(f"/v1/endpoints/{endpoint['id']}/rotate-secret", headers=admin_headers)
    client.post(f"/v1/endpoints/{endpoint['id']}/test", headers=admin_headers)
    receiver.deliver()
    assert len(receiver.requests) == 2
    assert receiver.verify(new.json()["secret"])["type"] == "endpoint.test"
    assert receiver.verify(old)["type"] == "endpoint.test"


def test_resend_and_recover_send_the_same_message_again(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    url = f"/v1/endpoints/{endpoint['id']}"
    receiver = Receiver()
    message_id = client.post(f"{url}/test", headers=admin_headers).json()["message_id"]
    receiver.statuses = [500]
    receiver.deliver(retries=False)
    failed = client.get(f"/v1/messages/{message_id}", headers=read_headers).json()
    assert (failed["status"], failed["attempts"]) == ("failed", 1)

    recovered = client.post(
        f"{url}/recover", json={"since": failed["created_at"]}, headers=admin_headers
    )
    assert recovered.json() == {"requeued": 1}
    receiver.statuses = [503]
    receiver.deliver(retries=False)
    assert client.get(f"/v1/messages/{message_id}", headers=read_headers).json()["status"] == (
        "failed"
    )

    assert client.post(f"/v1/messages/{message_id}/resend", headers=admin_headers).status_code == (
        202
    )
    receiver.deliver()
    sent = client.get(f"/v1/messages/{message_id}", headers=read_headers).json()
    assert (sent["status"], sent["attempts"]) == ("succeeded", 3)
    assert [a["response_status"] for a in sent["attempt_log"]] == [500, 503, 204]
    first, second, third = receiver.requests
    assert {r.headers["webhook-id"] for r in receiver.requests} == {message_id}
    assert first.content == second.content == third.content


def test_a_deleted_endpoint_is_sent_nothing_more(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    endpoint = create_endpoint(client, admin_headers)
    message_id = client.post(f"/v1/endpoints/{endpoint['id']}/test", headers=admin_headers).json()[
        "message_id"
    ]
    client.delete(f"/v1/endpoints/{endpoint['id']}", headers={**admin_headers, "If-Match": "*"})
    receiver = Receiver()
    receiver.deliver()
    assert receiver.requests == []
    message = client.get(f"/v1/messages/{message_id}", headers=read_headers).json()
    assert (message["status"], message["attempt_log"]) == ("cancelled", [])

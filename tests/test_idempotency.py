"""Idempotency-Key on POST creates: replay, refuse another body, refuse while in flight."""

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import col, select

from app import db
from app.models import ApiKey, IdempotencyRecord
from tests.factories import (
    Headers,
    assert_problem,
    create_interview,
    days,
    interview_body,
    now,
    step_body,
)


def _count(client: TestClient, headers: Headers, path: str) -> int:
    return len(client.get(path, params={"limit": 500}, headers=headers).json()["items"])


def test_same_key_and_body_replays_the_response_and_creates_one_interview(
    client: TestClient, write_headers: Headers
) -> None:
    headers = {**write_headers, "Idempotency-Key": "create-interview-1"}
    body = interview_body(next_steps=[step_body(due_at=now() + days(3))])
    first = client.post("/v1/interviews", json=body, headers=headers)
    second = client.post("/v1/interviews", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["content-type"] == "application/json"
    assert _count(client, write_headers, "/v1/interviews") == 1
    assert _count(client, write_headers, "/v1/commitments") == 1


def test_same_key_replays_steps_and_contacts(client: TestClient, write_headers: Headers) -> None:
    interview = create_interview(client, write_headers)
    steps = f"/v1/interviews/{interview['id']}/commitments"
    step = step_body(due_at=now() + days(1))
    headers = {**write_headers, "Idempotency-Key": "step-1"}
    first = client.post(steps, json=step, headers=headers)
    second = client.post(steps, json=step, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["location"] == first.headers["location"]
    assert _count(client, write_headers, "/v1/commitments") == 1

    contacts = f"/v1/interviews/{interview['id']}/contacts"
    contact = {"direction": "inbound", "channel": "email"}
    headers = {**write_headers, "Idempotency-Key": "contact-1"}
    first = client.post(contacts, json=contact, headers=headers)
    second = client.post(contacts, json=contact, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    timeline = client.get(f"/v1/interviews/{interview['id']}/timeline", headers=write_headers)
    assert [e["kind"] for e in timeline.json()["items"]].count("contact") == 1


def test_same_key_with_another_body_is_422_and_writes_nothing(
    client: TestClient, write_headers: Headers
) -> None:
    headers = {**write_headers, "Idempotency-Key": "k-1"}
    first = client.post("/v1/interviews", json=interview_body(stage="One"), headers=headers)
    assert first.status_code == 201
    other = client.post("/v1/interviews", json=interview_body(stage="Two"), headers=headers)
    assert_problem(other, 422, field="Idempotency-Key")
    assert _count(client, write_headers, "/v1/interviews") == 1
    again = client.post("/v1/interviews", json=interview_body(stage="One"), headers=headers)
    assert again.status_code == 201
    assert again.content == first.content


def test_keys_belong_to_their_api_key(
    client: TestClient, write_headers: Headers, admin_headers: Headers
) -> None:
    body = interview_body()
    one = client.post(
        "/v1/interviews", json=body, headers={**write_headers, "Idempotency-Key": "k"}
    )
    two = client.post(
        "/v1/interviews", json=body, headers={**admin_headers, "Idempotency-Key": "k"}
    )
    assert one.status_code == two.status_code == 201
    assert one.json()["id"] != two.json()["id"]


def _claim(key_name: str, idempotency_key: str, request_hash: str, age: timedelta) -> None:
    """A claim row as a request still running (or one that died) leaves it."""
    with db.new_session(write=True) as session:
        api_key = session.exec(select(ApiKey).where(col(ApiKey.name) == key_name)).one()
        session.add(
            IdempotencyRecord(
                api_key_id=api_key.id,
                key=idempotency_key,
                request_hash=request_hash,
                created_at=now() - age,
            )
        )
        session.commit()


def _stored_hash(idempotency_key: str) -> str:
    with db.new_session() as session:
        record = session.exec(
            select(IdempotencyRecord).where(col(IdempotencyRecord.key) == idempotency_key)
        ).one()
        return record.request_hash


def test_key_still_in_flight_is_409_and_a_dead_claim_is_taken_over(
    client: TestClient, write_headers: Headers, admin_headers: Headers
) -> None:
    body = interview_body()
    done = client.post(
        "/v1/interviews", json=body, headers={**admin_headers, "Idempotency-Key": "seen"}
    )
    assert done.status_code == 201
    same_body = _stored_hash("seen")

    _claim("writer", "running", same_body, age=timedelta(seconds=1))
    busy = client.post(
        "/v1/interviews", json=body, headers={**write_headers, "Idempotency-Key": "running"}
    )
    assert_problem(busy, 409)
    assert int(busy.headers["retry-after"]) >= 1
    assert _count(client, write_headers, "/v1/interviews") == 1

    _claim("writer", "crashed", same_body, age=timedelta(minutes=5))
    retried = client.post(
        "/v1/interviews", json=body, headers={**write_headers, "Idempotency-Key": "crashed"}
    )
    assert retried.status_code == 201
    replayed = client.post(
        "/v1/interviews", json=body, headers={**write_headers, "Idempotency-Key": "crashed"}
    )
    assert replayed.content == retried.content
    assert _count(client, write_headers, "/v1/interviews") == 2


def test_failed_request_leaves_the_key_free(client: TestClient, write_headers: Headers) -> None:
    create_interview(client, write_headers, source="acme-ats", external_id="int-1")
    headers = {**write_headers, "Idempotency-Key": "dup"}
    body = interview_body(source="acme-ats", external_id="int-1")
    assert_problem(client.post("/v1/interviews", json=body, headers=headers), 409)
    # The conflict is answered again, not replayed as if it had been stored as a success.
    assert_problem(client.post("/v1/interviews", json=body, headers=headers), 409)
    assert _count(client, write_headers, "/v1/interviews") == 1

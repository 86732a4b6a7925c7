"""Idempotency-Key on POST creates: replay, refuse another body, refuse while in flight."""

import hashlib
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlmodel import col, select

from app import db, idempotency
from app.commitments import service
from app.commitments.schemas import InterviewCreate
from app.idempotency import StoredResponse, create_once
from app.main import create_app
from app.models import ApiKey, IdempotencyRecord
from tests.factories import (
    Headers,
    Json,
    assert_problem,
    create_interview,
    days,
    interview_body,
    now,
    step_body,
)
from tests.test_calendars import NEW_YORK
from tests.test_policies_api import FIRST_INTERVIEW


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


def _claim(key_name: str, idempotency_key: str, request_hash: str) -> None:
    """A claim row without an answer, as a request that died left it before answers were
    stored in the transaction of their resource."""
    with db.new_session(write=True) as session:
        api_key = session.exec(select(ApiKey).where(col(ApiKey.name) == key_name)).one()
        session.add(
            IdempotencyRecord(
                api_key_id=api_key.id,
                key=idempotency_key,
                request_hash=request_hash,
                created_at=now() - timedelta(minutes=5),
            )
        )
        session.commit()


@pytest.mark.timing
def test_a_key_in_flight_is_409_on_postgresql_and_waited_for_on_sqlite(
    client: TestClient, write_headers: Headers, database_url: str
) -> None:
    body = interview_body()
    fingerprint = "POST /v1/interviews " + InterviewCreate.model_validate(body).model_dump_json()
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()
    answers: list[Response] = []

    def same_key_meanwhile() -> Response:
        response: Response = client.post(
            "/v1/interviews", json=body, headers={**write_headers, "Idempotency-Key": "busy"}
        )
        return response

    def create() -> StoredResponse:
        # While this request's transaction is open, the same key arrives again.
        second = pool.submit(same_key_meanwhile)
        if database_url.startswith("postgresql"):
            answers.append(second.result(timeout=30))
        else:
            # One writer at a time: the second waits for this transaction to end.
            time.sleep(0.5)
            assert not second.done()
        waiting.append(second)
        interview = service.create_interview(
            session, InterviewCreate.model_validate(body), "key:writer", now()
        )
        return StoredResponse(201, json.dumps({"id": str(interview.id)}).encode(), {})

    waiting: list[Future[Response]] = []
    pool = ThreadPoolExecutor(1)
    with db.new_session(write=True) as session:
        api_key = session.exec(select(ApiKey).where(col(ApiKey.name) == "writer")).one()
        answer, replayed = create_once(session, api_key.id, "busy", digest, now(), create)
    pool.shutdown()
    assert not replayed
    if database_url.startswith("postgresql"):
        assert_problem(answers[0], 409)
        assert int(answers[0].headers["retry-after"]) >= 1
    else:
        waited = waiting[0].result(timeout=30)
        assert waited.status_code == 201
        assert waited.headers["idempotent-replayed"] == "true"
        assert waited.content == answer.body


def test_a_claim_left_without_an_answer_is_taken_over(
    client: TestClient, write_headers: Headers
) -> None:
    body = interview_body()
    fingerprint = "POST /v1/interviews " + InterviewCreate.model_validate(body).model_dump_json()
    _claim("writer", "crashed", hashlib.sha256(fingerprint.encode()).hexdigest())
    retried = client.post(
        "/v1/interviews", json=body, headers={**write_headers, "Idempotency-Key": "crashed"}
    )
    assert retried.status_code == 201
    replayed = client.post(
        "/v1/interviews", json=body, headers={**write_headers, "Idempotency-Key": "crashed"}
    )
    assert replayed.content == retried.content
    assert _count(client, write_headers, "/v1/interviews") == 1


def test_a_failure_after_the_resource_is_written_leaves_neither_key_nor_resource(
    client: TestClient, write_headers: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = interview_body(next_steps=[step_body(due_at=now() + days(3))])
    headers = {**write_headers, "Idempotency-Key": "dies"}

    def dies(*_args: object) -> None:
        raise ConnectionAbortedError("the process died before the answer was stored")

    # The interview and its step are written; the statement after them fails.
    monkeypatch.setattr(idempotency, "delete", dies)
    failed = client.post("/v1/interviews", json=body, headers=headers)
    assert failed.status_code == 500
    monkeypatch.undo()
    assert _count(client, write_headers, "/v1/interviews") == 0
    assert _count(client, write_headers, "/v1/commitments") == 0

    retried = client.post("/v1/interviews", json=body, headers=headers)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert _count(client, write_headers, "/v1/interviews") == 1


def test_failed_request_leaves_the_key_free(client: TestClient, write_headers: Headers) -> None:
    create_interview(client, write_headers, source="acme-ats", external_id="int-1")
    headers = {**write_headers, "Idempotency-Key": "dup"}
    body = interview_body(source="acme-ats", external_id="int-1")
    assert_problem(client.post("/v1/interviews", json=body, headers=headers), 409)
    # The conflict is answered again, not replayed as if it had been stored as a success.
    assert_problem(client.post("/v1/interviews", json=body, headers=headers), 409)
    assert _count(client, write_headers, "/v1/interviews") == 1


ADMIN_CREATES = [
    pytest.param("/v1/calendars", NEW_YORK, {**NEW_YORK, "name": "Elsewhere"}, id="calendar"),
    pytest.param(
        "/v1/deadline-policies",
        FIRST_INTERVIEW,
        {**FIRST_INTERVIEW, "name": "Second interview"},
        id="deadline-policy",
    ),
]


@pytest.mark.parametrize(("path", "body", "other_body"), ADMIN_CREATES)
def test_calendars_and_policies_replay_a_repeated_key(
    client: TestClient, admin_headers: Headers, path: str, body: Json, other_body: Json
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "admin-create-1"}
    first = client.post(path, json=body, headers=headers)
    second = client.post(path, json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert_problem(
        client.post(path, json=other_body, headers=headers), 422, field="Idempotency-Key"
    )
    assert _count(client, admin_headers, path) == 1


# A status link's and a calendar feed's answer holds its URL, which is kept nowhere else:
# storing it for a replay would keep the token's secret in the database.
NOT_IDEMPOTENT = {"createStatusLink", "createCalendarFeed"}


def test_every_post_create_takes_an_idempotency_key() -> None:
    document = create_app().openapi()
    creates = {
        operation["operationId"]: operation
        for path in document["paths"].values()
        for method, operation in path.items()
        if method == "post" and "201" in operation["responses"]
    }
    assert len(creates) >= 7
    missing = [
        name
        for name, operation in creates.items()
        if name not in NOT_IDEMPOTENT
        and "idempotency-key" not in {p["name"].lower() for p in operation.get("parameters", [])}
    ]
    assert missing == []

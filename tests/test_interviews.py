"""Interviews: create, upsert, read, list, contacts, waiting clock, missing next step."""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import db
from app.commitments import ledger, service
from app.commitments.ledger import Origin
from tests.factories import (
    Headers,
    Json,
    add_contact,
    assert_problem,
    create_commitment,
    create_interview,
    days,
    interview_body,
    iso,
    now,
    step_body,
)


def test_create_interview_answers_201_with_location_and_the_interview(
    client: TestClient, write_headers: Headers
) -> None:
    ends = now() - days(1)
    response = client.post(
        "/v1/interviews",
        json=interview_body(
            source="acme-ats",
            external_id="int-1",
            starts_at=ends - days(1 / 24),
            ends_at=ends,
            interviewers=[{"name": "Ivy", "email": "ivy@example.com"}],
        ),
        headers=write_headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/interviews/{body['id']}"
    assert body["source"] == "acme-ats"
    assert body["external_id"] == "int-1"
    assert body["candidate"] == {
        "external_id": "cand-1",
        "name": "Casey Candidate",
        "email": None,
    }
    assert body["job"] == {"external_id": "job-analyst", "title": "Analyst"}
    assert body["status"] == "completed"
    assert body["ends_at"] == iso(ends)
    assert body["interviewers"] == [
        {"external_id": None, "name": "Ivy", "email": "ivy@example.com"}
    ]
    assert body["commitments"] == []
    assert body["waiting_since"] is None
    assert body["unanswered_contacts"] == 0
    fetched = client.get(response.headers["location"], headers=write_headers)
    assert fetched.json() == body
    bare = client.post(
        "/v1/interviews", json={"candidate": {"external_id": "c"}}, headers=write_headers
    )
    assert bare.status_code == 201
    assert bare.json()["source"] == "api"
    assert bare.json()["status"] == "scheduled"


def test_create_interview_with_next_steps_records_them(
    client: TestClient, write_headers: Headers
) -> None:
    ends = now() - days(1)
    interview = create_interview(
        client,
        write_headers,
        ends_at=ends,
        next_steps=[
            step_body(due_at=ends + days(3), agreed_at=ends, channel="call"),
            step_body(due_at=ends + days(5), action="Send the test", role="candidate"),
        ],
    )
    first, second = interview["commitments"]
    assert first["agreed_at"] == iso(ends)
    assert first["channel"] == "call"
    assert first["owner"] == {"id": "hr-1", "name": "Harriet HR", "role": "hr"}
    assert first["owed_by"] == "company"
    assert second["owed_by"] == "candidate"
    assert {first["status"], second["status"]} == {"open"}
    assert interview["waiting_since"] == iso(ends)


def test_unknown_interview_is_404_and_malformed_id_is_422(
    client: TestClient, write_headers: Headers
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert_problem(client.get(f"/v1/interviews/{missing}", headers=write_headers), 404)
    assert_problem(client.get(f"/v1/interviews/{missing}/timeline", headers=write_headers), 404)
    contact = {"direction": "inbound", "channel": "call"}
    assert_problem(
        client.post(f"/v1/interviews/{missing}/contacts", json=contact, headers=write_headers),
        404,
    )
    response = client.get("/v1/interviews/not-a-uuid", headers=write_headers)
    assert_problem(response, 422, field="interview_id")


def test_duplicate_source_and_external_id_is_409(
    client: TestClient, write_headers: Headers
) -> None:
    create_interview(client, write_headers, source="acme-ats", external_id="int-1")
    again = client.post(
        "/v1/interviews",
        json=interview_body(source="acme-ats", external_id="int-1"),
        headers=write_headers,
    )
    assert_problem(again, 409)
    other_source = client.post(
        "/v1/interviews",
        json=interview_body(source="lever", external_id="int-1"),
        headers=write_headers,
    )
    assert other_source.status_code == 201


def _interview_count(client: TestClient, headers: Headers) -> int:
    return len(client.get("/v1/interviews", headers=headers).json()["items"])


BAD_STEPS: list[tuple[Json, str]] = [
    ({"owner": {"id": "x", "role": "janitor"}}, "next_steps.1.owner.role"),
    ({"channel": "pigeon"}, "next_steps.1.channel"),
    ({"action": "   "}, "next_steps.1.action"),
    ({"due_at": "2026-11-20T15:00:00"}, "next_steps.1.due_at"),
    ({"due_at": "next tuesday"}, "next_steps.1.due_at"),
    ({"agreed_at": iso(now() + days(1))}, "agreed_at"),
]


def test_interview_with_one_bad_next_step_creates_nothing(
    client: TestClient, write_headers: Headers
) -> None:
    good = step_body(due_at=now() + days(3))
    for bad_step, field in BAD_STEPS:
        body = interview_body(next_steps=[good, {**good, **bad_step}])
        response = client.post("/v1/interviews", json=body, headers=write_headers)
        assert_problem(response, 422, field=field)
        put = client.put("/v1/interviews/acme-ats/int-1", json=body, headers=write_headers)
        assert_problem(put, 422, field=field)
    assert _interview_count(client, write_headers) == 0


def test_interview_whose_steps_share_an_external_id_creates_nothing(
    client: TestClient, write_headers: Headers
) -> None:
    step = step_body(due_at=now() + days(3), external_id="ns-1")
    response = client.post(
        "/v1/interviews", json=interview_body(next_steps=[step, step]), headers=write_headers
    )
    assert_problem(response, 409)
    assert _interview_count(client, write_headers) == 0
    assert client.get("/v1/commitments", headers=write_headers).json()["items"] == []


BAD_INTERVIEWS: list[tuple[dict[str, object], str]] = [
    ({"ends_at": "2026-11-20T15:00:00"}, "ends_at"),
    ({"starts_at": "yesterday"}, "starts_at"),
    ({"status": "postponed"}, "status"),
    ({"candidate": {"external_id": ""}}, "candidate.external_id"),
    ({"candidate": {"external_id": "c", "email": "not-an-email"}}, "candidate.email"),
    ({"source": "Not A Source"}, "source"),
    ({"surprise": 1}, "surprise"),
    ({"starts_at": "2026-11-20T15:00:00Z", "ends_at": "2026-11-20T14:00:00Z"}, "body"),
]


def test_bad_interview_is_422_naming_the_field(client: TestClient, write_headers: Headers) -> None:
    for change, field in BAD_INTERVIEWS:
        response = client.post(
            "/v1/interviews", json={**interview_body(), **change}, headers=write_headers
        )
        assert_problem(response, 422, field=field)
    for source, external_id, field in [
        ("Not A Source", "int-1", "source"),
        ("s" * 101, "int-1", "source"),
        ("acme-ats", "i" * 201, "external_id"),
        ("acme-ats", "%20", "external_id"),
    ]:
        response = client.put(
            f"/v1/interviews/{source}/{external_id}", json=interview_body(), headers=write_headers
        )
        assert_problem(response, 422, field=field)
    assert _interview_count(client, write_headers) == 0


def test_put_creates_then_updates_the_interview(client: TestClient, write_headers: Headers) -> None:
    path = "/v1/interviews/acme-ats/int-9"
    created = client.put(path, json=interview_body(stage="Screen"), headers=write_headers)
    assert created.status_code == 201
    assert created.headers["location"] == f"/v1/interviews/{created.json()['id']}"
    assert created.json()["source"] == "acme-ats"
    assert created.json()["external_id"] == "int-9"
    updated = client.put(path, json=interview_body(stage="Onsite"), headers=write_headers)
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["stage"] == "Onsite"
    assert updated.json()["version"] == created.json()["version"] + 1


def test_repeated_put_changes_nothing(client: TestClient, write_headers: Headers) -> None:
    path = "/v1/interviews/acme-ats/int-7"
    ends = now() - days(1)
    body = interview_body(
        ends_at=ends,
        starts_at=ends - days(1 / 24),
        interviewers=[{"external_id": "u-1", "name": "Ivy"}],
        next_steps=[
            step_body(due_at=ends + days(3), external_id="ns-1"),
            step_body(due_at=ends + days(4), action="Email the feedback"),
        ],
    )
    first = client.put(path, json=body, headers=write_headers)
    assert first.status_code == 201
    interview_id = first.json()["id"]
    timeline = client.get(f"/v1/interviews/{interview_id}/timeline", headers=write_headers)
    second = client.put(path, json=body, headers=write_headers)
    assert second.status_code == 200
    assert second.json()["version"] == first.json()["version"]
    assert second.json()["updated_at"] == first.json()["updated_at"]
    assert len(second.json()["commitments"]) == 2
    assert second.json()["commitments"] == first.json()["commitments"]
    again = client.get(f"/v1/interviews/{interview_id}/timeline", headers=write_headers)
    assert again.json()["items"] == timeline.json()["items"]


def test_put_agrees_new_steps_and_keeps_known_ones(
    client: TestClient, write_headers: Headers
) -> None:
    path = "/v1/interviews/acme-ats/int-8"
    known = step_body(due_at=now() + days(3), external_id="ns-1")
    client.put(path, json=interview_body(next_steps=[known]), headers=write_headers)
    new = step_body(due_at=now() + days(5), external_id="ns-2", action="Send the offer")
    response = client.put(path, json=interview_body(next_steps=[known, new]), headers=write_headers)
    assert response.status_code == 200
    steps = response.json()["commitments"]
    assert sorted(c["external_id"] for c in steps) == ["ns-1", "ns-2"]
    assert {c["source"] for c in steps} == {"acme-ats"}


def test_list_interviews_filters(client: TestClient, write_headers: Headers) -> None:
    t = now()
    a = create_interview(
        client, write_headers, candidate_id="c-a", job_id="j-1", ends_at=t - days(3)
    )
    b = create_interview(
        client,
        write_headers,
        candidate_id="c-b",
        job_id="j-2",
        ends_at=t - days(1),
        source="lever",
    )
    c = create_interview(client, write_headers, candidate_id="c-a", status="scheduled")

    def ids(**params: str) -> list[str]:
        response = client.get("/v1/interviews", params=params, headers=write_headers)
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    assert ids() == [a["id"], b["id"], c["id"]]
    assert ids(candidate_id="c-a") == [a["id"], c["id"]]
    assert ids(job_id="j-2") == [b["id"]]
    assert ids(status="scheduled") == [c["id"]]
    assert ids(source="lever") == [b["id"]]
    assert ids(ended_before=iso(t - days(2))) == [a["id"]]
    assert ids(ended_after=iso(t - days(2))) == [b["id"]]
    assert_problem(
        client.get(
            "/v1/interviews", params={"ended_after": "2026-01-01T00:00:00"}, headers=write_headers
        ),
        422,
        field="ended_after",
    )


def test_contact_is_recorded_with_its_actor_and_bad_ones_are_refused(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers, ends_at=now() - days(1))
    at = now() - days(0.5)
    contact = add_contact(client, write_headers, interview["id"], "inbound", at=at, note="Called")
    assert contact["direction"] == "inbound"
    assert contact["channel"] == "call"
    assert contact["at"] == iso(at)
    assert contact["note"] == "Called"
    assert contact["actor"] == "key:writer"
    assert contact["interview_id"] == interview["id"]
    cases: list[tuple[dict[str, str], str]] = [
        ({"direction": "sideways", "channel": "call"}, "direction"),
        ({"direction": "inbound", "channel": "carrier-pigeon"}, "channel"),
        ({"direction": "inbound", "channel": "call", "at": "2026-11-20T15:00:00"}, "at"),
        ({"direction": "outbound", "channel": "call", "at": iso(now() + days(1))}, "at"),
        ({"channel": "call"}, "direction"),
    ]
    for body, field in cases:
        response = client.post(
            f"/v1/interviews/{interview['id']}/contacts", json=body, headers=write_headers
        )
        assert_problem(response, 422, field=field)


def test_waiting_clock_counts_inbound_contacts_since_the_interview_ended(
    client: TestClient, write_headers: Headers
) -> None:
    ends = now() - days(3)
    interview = create_interview(
        client,
        write_headers,
        ends_at=ends,
        next_steps=[step_body(due_at=ends + days(1), agreed_at=ends)],
    )
    add_contact(client, write_headers, interview["id"], "inbound", at=ends + days(1))
    add_contact(client, write_headers, interview["id"], "inbound", at=ends + days(2))
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["waiting_since"] == iso(ends)
    assert detail["unanswered_contacts"] == 2
    reached = ends + days(2.5)
    add_contact(client, write_headers, interview["id"], "outbound", at=reached)
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["waiting_since"] == iso(reached)
    assert detail["unanswered_contacts"] == 0


def test_waiting_clock_of_an_interview_without_end_starts_at_the_agreement(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers, status="scheduled")
    step = create_commitment(client, write_headers, interview["id"], agreed_at=now() - days(2))
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["waiting_since"] == step["agreed_at"]
    add_contact(client, write_headers, interview["id"], "inbound", at=now() - days(1))
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["waiting_since"] == step["agreed_at"]
    assert detail["unanswered_contacts"] == 1
    listed = client.get("/v1/interviews", headers=write_headers).json()["items"]
    assert listed[0]["waiting_since"] == step["agreed_at"]


def test_waiting_clock_is_off_without_an_open_company_step(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(
        client,
        write_headers,
        ends_at=now() - days(2),
        next_steps=[step_body(due_at=now() + days(1), role="candidate", owner_id="cand-1")],
    )
    add_contact(client, write_headers, interview["id"], "inbound", at=now() - days(1))
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["waiting_since"] is None
    assert detail["unanswered_contacts"] == 0


def _missing(client: TestClient, headers: Headers, **params: str) -> list[str]:
    response = client.get("/v1/interviews/missing-next-step", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [i["id"] for i in response.json()["items"]]


def test_missing_next_step_lists_completed_interviews_without_any_step(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    bare = create_interview(client, write_headers, ends_at=t - days(2))
    create_interview(client, write_headers, ends_at=t - days(2), status="scheduled")
    create_interview(
        client,
        write_headers,
        ends_at=t - days(2),
        next_steps=[step_body(due_at=t + days(1))],
    )
    cancelled_step = create_interview(
        client,
        write_headers,
        ends_at=t - days(2),
        next_steps=[step_body(due_at=t + days(1))],
    )
    step_id = cancelled_step["commitments"][0]["id"]
    cancel = client.post(
        f"/v1/commitments/{step_id}/cancel", json={"reason": "x"}, headers=write_headers
    )
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"
    assert _missing(client, write_headers) == [bare["id"]]


def test_missing_next_step_waits_24_hours_by_default(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    old = create_interview(client, write_headers, ends_at=t - days(2))
    recent = create_interview(client, write_headers, ends_at=t - days(0.5))
    assert _missing(client, write_headers) == [old["id"]]
    assert _missing(client, write_headers, ended_before=iso(t)) == [old["id"], recent["id"]]
    naive = client.get(
        "/v1/interviews/missing-next-step",
        params={"ended_before": "2026-01-01T00:00:00"},
        headers=write_headers,
    )
    assert_problem(naive, 422, field="ended_before")


def test_missing_next_step_uses_the_completion_moment_without_an_end(
    client: TestClient, write_headers: Headers
) -> None:
    before = now()
    unknown_end = create_interview(client, write_headers)  # completed now, ends_at unknown
    assert unknown_end["ends_at"] is None
    assert _missing(client, write_headers) == []  # completed less than 24 h ago
    assert _missing(client, write_headers, ended_before=iso(before)) == []
    assert _missing(client, write_headers, ended_before=iso(now() + days(0.01))) == [
        unknown_end["id"]
    ]


def test_timeline_records_the_interview_and_its_contacts(
    client: TestClient, write_headers: Headers
) -> None:
    ends = now() - days(2)
    interview = create_interview(client, write_headers, ends_at=ends)
    add_contact(client, write_headers, interview["id"], "inbound", at=ends + days(1))
    items = client.get(f"/v1/interviews/{interview['id']}/timeline", headers=write_headers).json()[
        "items"
    ]
    assert [i["kind"] for i in items] == ["contact", "interview_recorded"]
    contact, recorded = items
    assert contact["changes"]["direction"] == {"before": None, "after": "inbound"}
    assert recorded["changes"]["status"]["after"] == "completed"
    assert recorded["changes"]["ends_at"]["after"] == iso(ends)
    assert {i["actor"] for i in items} == {"key:writer"}


def _racing(
    client: TestClient, method: str, path: str, body: Json, headers: Headers, external_id: str
) -> Any:
    """Send a request while another transaction is recording the same interview.

    The other transaction commits only once the request had the time to reach the
    database: on PostgreSQL the request's insert then waits on the unique index.
    """
    with db.new_session(write=True) as session:
        ledger.new_interview(
            session,
            "acme-ats",
            external_id,
            {"candidate_external_id": "cand-1", "status": "completed"},
            Origin(effective_at=now(), actor="key:racer", now=now(), tiebreak="racer"),
        )
        with ThreadPoolExecutor(1) as pool:
            request = pool.submit(client.request, method, path, json=body, headers=headers)
            time.sleep(0.3)
            session.commit()
            return request.result(timeout=30)


@pytest.mark.timing
def test_racing_duplicate_create_is_409_and_racing_put_updates(
    client: TestClient, write_headers: Headers, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL the request's insert waits on the unique index and then fails: the race
    # branch runs. SQLite has one writer, so the request looks only once the racer is done.
    raced = database_url.startswith("postgresql")
    body = interview_body(source="acme-ats", external_id="int-1", stage="Onsite")
    response = _racing(client, "POST", "/v1/interviews", body, write_headers, "int-1")
    problem = assert_problem(response, 409)
    assert ("meanwhile" if raced else "use PUT") in problem["detail"]

    attempts: list[str] = []
    upsert = service._upsert_interview

    def counted(*args: Any, **kwargs: Any) -> Any:
        attempts.append("upsert")
        return upsert(*args, **kwargs)

    monkeypatch.setattr(service, "_upsert_interview", counted)
    body = interview_body(stage="Onsite", next_steps=[step_body(due_at=now() + days(1))])
    path = "/v1/interviews/acme-ats/int-2"
    response = _racing(client, "PUT", path, body, write_headers, "int-2")
    assert response.status_code == 200, response.text
    assert len(attempts) == (2 if raced else 1)  # the second, after the race, updates
    assert response.json()["stage"] == "Onsite"
    assert len(response.json()["commitments"]) == 1
    assert _interview_count(client, write_headers) == 2


def test_get_interview_answers_a_strong_etag_that_follows_its_content(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    path = f"/v1/interviews/{interview['id']}"
    first = client.get(path, headers=write_headers)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"')  # strong: no W/ prefix
    assert client.get(path, headers=write_headers).headers["etag"] == tag
    create_commitment(client, write_headers, interview["id"], due_at=now() + days(2))
    assert client.get(path, headers=write_headers).headers["etag"] != tag

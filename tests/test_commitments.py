"""Commitments: agree, read, change under If-Match, complete, cancel, reopen, list."""

from datetime import timedelta, timezone

from fastapi.testclient import TestClient

from tests.factories import (
    Headers,
    assert_problem,
    complete,
    create_commitment,
    create_interview,
    create_step,
    days,
    etag,
    iso,
    now,
    parse,
    patch_commitment,
    step_body,
)

MISSING = "00000000-0000-4000-8000-000000000000"


def test_agreeing_a_step_answers_201_with_location_and_etag(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    due = now() + days(3)
    response = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=step_body(due_at=due, channel="email", promised_by=due + days(1)),
        headers=write_headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/commitments/{body['id']}"
    assert response.headers["etag"] == etag(client, write_headers, body["id"])
    assert body["interview_id"] == interview["id"]
    assert body["action"] == "Call the candidate to schedule the second interview"
    assert body["owner"] == {"id": "hr-1", "name": "Harriet HR", "role": "hr"}
    assert body["owed_by"] == "company"
    assert body["channel"] == "email"
    assert body["due_at"] == iso(due)
    assert body["promised_by"] == iso(due + days(1))
    assert body["status"] == "open"
    assert body["is_overdue"] is False
    assert body["overdue_by"] is None
    assert body["overdue_seconds"] is None
    assert body["version"] == 1
    assert abs(parse(body["agreed_at"]) - now()) < timedelta(minutes=1)
    fetched = client.get(response.headers["location"], headers=write_headers)
    assert fetched.json() == body


def test_owed_by_follows_the_owner_role_unless_given(
    client: TestClient, write_headers: Headers
) -> None:
    due = now() + days(1)
    theirs = create_step(client, write_headers, due_at=due, role="candidate", owner_id="cand-1")
    assert theirs["owed_by"] == "candidate"
    ours = create_step(client, write_headers, due_at=due, role="recruiter")
    assert ours["owed_by"] == "company"
    explicit = create_step(client, write_headers, due_at=due, role="other", owed_by="candidate")
    assert explicit["owed_by"] == "candidate"
    handed_over = patch_commitment(
        client, write_headers, ours["id"], {"owner": {"id": "cand-1", "role": "candidate"}}
    )
    assert handed_over["owed_by"] == "candidate"
    taken_back = patch_commitment(
        client, write_headers, theirs["id"], {"owner": {"id": "rec-1", "role": "recruiter"}}
    )
    assert taken_back["owed_by"] == "company"


def test_past_due_open_step_is_overdue(client: TestClient, write_headers: Headers) -> None:
    step = create_step(client, write_headers, due_at=now() - timedelta(days=1, hours=2))
    assert step["is_overdue"] is True
    assert step["overdue_by"].startswith("P1DT2H")
    assert 93600 <= step["overdue_seconds"] < 93600 + 60


def test_unknown_ids_are_404_everywhere(client: TestClient, write_headers: Headers) -> None:
    path = f"/v1/commitments/{MISSING}"
    assert_problem(client.get(path, headers=write_headers), 404)
    assert_problem(
        client.patch(path, json={"action": "x"}, headers={**write_headers, "If-Match": '"x"'}),
        404,
    )
    assert_problem(client.patch(path, json={"action": "x"}, headers=write_headers), 404)
    assert_problem(client.post(f"{path}/complete", json={}, headers=write_headers), 404)
    assert_problem(client.post(f"{path}/cancel", json={"reason": "r"}, headers=write_headers), 404)
    assert_problem(client.post(f"{path}/reopen", json={"reason": "r"}, headers=write_headers), 404)
    response = client.post(
        f"/v1/interviews/{MISSING}/commitments",
        json=step_body(due_at=now()),
        headers=write_headers,
    )
    assert_problem(response, 404)


BAD_STEPS: list[tuple[dict[str, object], str]] = [
    ({"action": ""}, "action"),
    ({"action": "   "}, "action"),
    ({"action": "x" * 501}, "action"),
    ({"owner": {"id": "u", "role": "janitor"}}, "owner.role"),
    ({"owner": {"role": "hr"}}, "owner.id"),
    ({"channel": "pigeon"}, "channel"),
    ({"owed_by": "nobody"}, "owed_by"),
    ({"due_at": "2026-11-20T15:00:00"}, "due_at"),
    ({"due_at": "soon"}, "due_at"),
    ({"due_at": "0001-01-01T00:00:00+14:00"}, "due_at"),
    ({"due_at": "9999-12-31T23:59:59-05:00"}, "due_at"),
    ({"promised_by": "2026-11-20"}, "promised_by"),
    ({"agreed_at": "2026-11-20T15:00:00"}, "agreed_at"),
    ({"agreed_at": iso(now() + days(1))}, "agreed_at"),
]


def test_bad_step_is_422_naming_the_field_and_writes_nothing(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    for change, field in BAD_STEPS:
        body = {**step_body(due_at=now()), **change}
        response = client.post(
            f"/v1/interviews/{interview['id']}/commitments", json=body, headers=write_headers
        )
        assert_problem(response, 422, field=field)
    assert client.get("/v1/commitments", headers=write_headers).json()["items"] == []


def test_duplicate_step_external_id_is_409(client: TestClient, write_headers: Headers) -> None:
    interview = create_interview(client, write_headers, source="acme-ats")
    create_commitment(client, write_headers, interview["id"], external_id="ns-1")
    again = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=step_body(due_at=now(), external_id="ns-1"),
        headers=write_headers,
    )
    assert_problem(again, 409)
    assert len(client.get("/v1/commitments", headers=write_headers).json()["items"]) == 1


def test_patch_needs_the_current_etag_in_if_match(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    missing = client.patch(
        f"/v1/commitments/{step['id']}", json={"action": "New"}, headers=write_headers
    )
    assert_problem(missing, 428)
    assert client.get(f"/v1/commitments/{step['id']}", headers=write_headers).json() == step
    stale = etag(client, write_headers, step["id"])
    patch_commitment(client, write_headers, step["id"], {"action": "First change"})
    response = client.patch(
        f"/v1/commitments/{step['id']}",
        json={"action": "Second change"},
        headers={**write_headers, "If-Match": stale},
    )
    assert_problem(response, 412)
    weak = client.patch(
        f"/v1/commitments/{step['id']}",
        json={"action": "Third change"},
        headers={**write_headers, "If-Match": "W/" + etag(client, write_headers, step["id"])},
    )
    assert_problem(weak, 412)  # If-Match compares strongly
    current = client.get(f"/v1/commitments/{step['id']}", headers=write_headers).json()
    assert current["action"] == "First change"


def test_patch_reassigns_moves_deadline_and_bumps_the_etag(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1), promised_by=now() + days(2))
    before = etag(client, write_headers, step["id"])
    new_due = now() + days(4)
    response = client.patch(
        f"/v1/commitments/{step['id']}",
        json={
            "owner": {"id": "rec-1", "name": "Rex Recruiter", "role": "recruiter"},
            "due_at": iso(new_due),
            "channel": "email",
            "reason": "HR is out this week",
        },
        headers={**write_headers, "If-Match": before},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["owner"] == {"id": "rec-1", "name": "Rex Recruiter", "role": "recruiter"}
    assert body["due_at"] == iso(new_due)
    assert body["promised_by"] == step["promised_by"]  # what the candidate was told stays
    assert body["channel"] == "email"
    assert body["version"] == step["version"] + 1
    assert response.headers["etag"] != before
    assert response.headers["etag"] == etag(client, write_headers, step["id"])


BAD_PATCHES: list[tuple[dict[str, object], str | None]] = [
    ({}, None),
    ({"reason": "only a reason"}, None),
    ({"due_at": None}, None),
    ({"action": None}, None),
    ({"due_at": "2026-11-20T15:00:00"}, "due_at"),
    ({"owner": {"id": "x", "role": "boss"}}, "owner.role"),
    ({"status": "done"}, "status"),
]


def test_bad_patch_is_422_and_changes_nothing(client: TestClient, write_headers: Headers) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    tag = etag(client, write_headers, step["id"])
    for body, field in BAD_PATCHES:
        response = client.patch(
            f"/v1/commitments/{step['id']}", json=body, headers={**write_headers, "If-Match": tag}
        )
        assert_problem(response, 422, field=field)
    assert client.get(f"/v1/commitments/{step['id']}", headers=write_headers).json() == step


def test_patch_on_a_closed_step_is_409(client: TestClient, write_headers: Headers) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    complete(client, write_headers, step["id"])
    response = client.patch(
        f"/v1/commitments/{step['id']}",
        json={"action": "Too late"},
        headers={**write_headers, "If-Match": etag(client, write_headers, step["id"])},
    )
    assert_problem(response, 409)


def test_complete_records_outcome_and_moment(client: TestClient, write_headers: Headers) -> None:
    step = create_step(client, write_headers, due_at=now() - days(1), agreed_at=now() - days(2))
    done_at = now() - timedelta(hours=1)
    # Reassigned just now, but the call had been made an hour ago: that still counts.
    patch_commitment(client, write_headers, step["id"], {"owner": {"id": "r", "role": "recruiter"}})
    body = complete(client, write_headers, step["id"], outcome="Booked", completed_at=done_at)
    assert body["status"] == "done"
    assert body["outcome"] == "Booked"
    assert body["completed_at"] == iso(done_at)
    assert body["owner"]["id"] == "r"
    assert body["is_overdue"] is False
    assert body["overdue_by"] is None


def test_complete_without_body_uses_now_and_twice_is_409(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    response = client.post(f"/v1/commitments/{step['id']}/complete", headers=write_headers)
    assert response.status_code == 200, response.text
    assert abs(parse(response.json()["completed_at"]) - now()) < timedelta(minutes=1)
    again = client.post(
        f"/v1/commitments/{step['id']}/complete", json={"outcome": "x"}, headers=write_headers
    )
    assert_problem(again, 409)
    current = client.get(f"/v1/commitments/{step['id']}", headers=write_headers).json()
    assert current == response.json()


def test_complete_at_an_impossible_moment_is_422(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    path = f"/v1/commitments/{step['id']}/complete"
    for moment in (iso(now() + days(1)), iso(now() - days(3)), "2026-11-20T15:00:00"):
        response = client.post(path, json={"completed_at": moment}, headers=write_headers)
        assert_problem(response, 422, field="completed_at")
    assert client.get(f"/v1/commitments/{step['id']}", headers=write_headers).json() == step


def test_completion_dated_before_a_reopening_is_422(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() - days(1), agreed_at=now() - days(3))
    complete(client, write_headers, step["id"])
    reopened = client.post(
        f"/v1/commitments/{step['id']}/reopen", json={"reason": "Not done"}, headers=write_headers
    )
    assert reopened.status_code == 200
    backdated = client.post(
        f"/v1/commitments/{step['id']}/complete",
        json={"completed_at": iso(now() - days(2))},
        headers=write_headers,
    )
    assert_problem(backdated, 422)
    current = client.get(f"/v1/commitments/{step['id']}", headers=write_headers).json()
    assert current == reopened.json()
    done = complete(client, write_headers, step["id"], completed_at=now())
    assert done["status"] == "done"


def test_cancel_needs_a_reason_and_closes_the_step(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() - days(1))
    path = f"/v1/commitments/{step['id']}/cancel"
    assert_problem(client.post(path, json={}, headers=write_headers), 422, field="reason")
    assert_problem(client.post(path, json={"reason": " "}, headers=write_headers), 422)
    response = client.post(path, json={"reason": "Candidate withdrew"}, headers=write_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["reason"] == "Candidate withdrew"
    assert body["cancelled_at"] is not None
    assert body["is_overdue"] is False
    assert_problem(client.post(path, json={"reason": "again"}, headers=write_headers), 409)
    completing = client.post(f"/v1/commitments/{step['id']}/complete", headers=write_headers)
    assert_problem(completing, 409)


def test_reopen_brings_a_closed_step_back(client: TestClient, write_headers: Headers) -> None:
    step = create_step(client, write_headers, due_at=now() - days(1))
    path = f"/v1/commitments/{step['id']}/reopen"
    assert_problem(client.post(path, json={"reason": "still open"}, headers=write_headers), 409)
    complete(client, write_headers, step["id"], outcome="Left a voicemail")
    assert_problem(client.post(path, json={}, headers=write_headers), 422, field="reason")
    response = client.post(path, json={"reason": "Voicemail is not a call"}, headers=write_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "open"
    assert body["reason"] == "Voicemail is not a call"
    assert body["outcome"] is None
    assert body["completed_at"] is None
    assert body["is_overdue"] is True
    client.post(
        f"/v1/commitments/{step['id']}/cancel", json={"reason": "Hired"}, headers=write_headers
    )
    again = client.post(path, json={"reason": "Offer declined"}, headers=write_headers)
    assert again.status_code == 200
    assert again.json()["status"] == "open"
    assert again.json()["cancelled_at"] is None


def test_timeline_tells_reassignment_and_deadline_moves_apart(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    patch_commitment(
        client,
        write_headers,
        step["id"],
        {"owner": {"id": "rec-1", "role": "recruiter"}, "reason": "HR is away"},
    )
    new_due = now() + days(5)
    patch_commitment(
        client, write_headers, step["id"], {"due_at": iso(new_due), "reason": "Manager on leave"}
    )
    patch_commitment(client, write_headers, step["id"], {"action": "Email instead"})
    complete(client, write_headers, step["id"], outcome="Sent")
    entries = client.get(
        f"/v1/interviews/{step['interview_id']}/timeline", headers=write_headers
    ).json()["items"]
    mine = [e for e in entries if e["commitment_id"] == step["id"]]
    assert [e["kind"] for e in mine] == [
        "agreed",
        "reassigned",
        "deadline_moved",
        "updated",
        "completed",
    ]
    reassigned, moved = mine[1], mine[2]
    assert reassigned["reason"] == "HR is away"
    assert reassigned["changes"]["owner_id"] == {"before": "hr-1", "after": "rec-1"}
    assert reassigned["changes"]["owner_role"] == {"before": "hr", "after": "recruiter"}
    assert moved["changes"]["due_at"] == {"before": step["due_at"], "after": iso(new_due)}
    assert moved["reason"] == "Manager on leave"
    assert mine[4]["changes"]["status"] == {"before": "open", "after": "done"}


def _ids(client: TestClient, headers: Headers, **params: str) -> list[str]:
    response = client.get("/v1/commitments", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["items"]]


def test_list_commitments_filters(client: TestClient, write_headers: Headers) -> None:
    t = now()
    late = create_step(client, write_headers, due_at=t - days(2), candidate_id="c-1", job_id="j-1")
    soon = create_step(
        client,
        write_headers,
        due_at=t + days(1),
        owner_id="rec-1",
        role="recruiter",
        candidate_id="c-2",
        job_id="j-2",
    )
    theirs = create_step(
        client,
        write_headers,
        due_at=t - days(1),
        owner_id="c-3",
        role="candidate",
        candidate_id="c-3",
        job_id="j-1",
    )
    done = create_step(client, write_headers, due_at=t - days(3), candidate_id="c-4")
    complete(client, write_headers, done["id"])
    other_source = create_interview(client, write_headers, source="lever", candidate_id="c-5")
    lever = create_commitment(client, write_headers, other_source["id"], due_at=t + days(2))

    assert _ids(client, write_headers) == [
        done["id"],
        late["id"],
        theirs["id"],
        soon["id"],
        lever["id"],
    ]
    assert _ids(client, write_headers, sort="-due_at") == [
        lever["id"],
        soon["id"],
        theirs["id"],
        late["id"],
        done["id"],
    ]
    assert _ids(client, write_headers, status="done") == [done["id"]]
    assert _ids(client, write_headers, overdue="true") == [late["id"], theirs["id"]]
    assert _ids(client, write_headers, overdue="false") == [done["id"], soon["id"], lever["id"]]
    assert _ids(client, write_headers, owner_id="rec-1") == [soon["id"]]
    assert _ids(client, write_headers, owner_role="candidate") == [theirs["id"]]
    assert _ids(client, write_headers, owed_by="candidate") == [theirs["id"]]
    assert _ids(client, write_headers, due_before=iso(t)) == [
        done["id"],
        late["id"],
        theirs["id"],
    ]
    assert _ids(client, write_headers, due_after=iso(t)) == [soon["id"], lever["id"]]
    assert _ids(client, write_headers, candidate_id="c-2") == [soon["id"]]
    assert _ids(client, write_headers, job_id="j-1") == [late["id"], theirs["id"]]
    assert _ids(client, write_headers, source="lever") == [lever["id"]]
    # as_of is when the list stands, as on the overdue list: a day and a half on, the step
    # due tomorrow is late too; a day and a half ago, none of these steps was agreed yet.
    assert _ids(client, write_headers, overdue="true", as_of=iso(t + days(1.5))) == [
        late["id"],
        theirs["id"],
        soon["id"],
    ]
    assert _ids(client, write_headers, as_of=iso(t - days(1.5))) == []


def test_bad_list_filter_is_422_naming_it(client: TestClient, read_headers: Headers) -> None:
    cases = [
        ({"status": "late"}, "status"),
        ({"owner_role": "boss"}, "owner_role"),
        ({"sort": "action"}, "sort"),
        ({"due_before": "2026-01-01T00:00:00"}, "due_before"),
        ({"overdue": "maybe"}, "overdue"),
        ({"colour": "blue"}, "colour"),
    ]
    for params, field in cases:
        response = client.get("/v1/commitments", params=params, headers=read_headers)
        assert_problem(response, 422, field=field)


def test_offsets_are_understood_and_answered_in_utc(
    client: TestClient, write_headers: Headers
) -> None:
    due = now() - days(1)
    step = create_step(client, write_headers, due_at=due)
    east = due.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert _ids(client, write_headers, due_before=east) == []
    assert _ids(client, write_headers, due_after=east) == []
    later = (due + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-8))).isoformat()
    assert _ids(client, write_headers, due_before=later) == [step["id"]]
    response = client.post(
        f"/v1/interviews/{step['interview_id']}/commitments",
        json={**step_body(due_at=due), "due_at": "2026-11-20T15:00:00+01:00"},
        headers=write_headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["due_at"] == "2026-11-20T14:00:00Z"


def test_malformed_commitment_id_is_422_and_a_literal_path_keeps_its_methods(
    client: TestClient, write_headers: dict[str, str]
) -> None:
    for method in ("GET", "PATCH"):
        response = client.request(method, "/v1/commitments/not-a-uuid", headers=write_headers)
        assert response.status_code == 422
    response = client.get("/v1/commitments/not-a-uuid", headers=write_headers)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["path", "commitment_id"]
    overdue = client.patch("/v1/commitments/overdue", headers=write_headers, json={})
    assert overdue.status_code == 405
    assert "GET" in overdue.headers["allow"]


def test_patch_restating_the_current_values_changes_nothing(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    before = etag(client, write_headers, step["id"])
    same = patch_commitment(
        client,
        write_headers,
        step["id"],
        {"action": step["action"], "owner": step["owner"], "due_at": step["due_at"]},
    )
    assert same["version"] == step["version"]
    assert etag(client, write_headers, step["id"]) == before
    timeline = client.get(
        f"/v1/interviews/{step['interview_id']}/timeline", headers=write_headers
    ).json()["items"]
    assert [e["kind"] for e in timeline if e["commitment_id"] == step["id"]] == ["agreed"]
    moved = patch_commitment(client, write_headers, step["id"], {"action": "Reworded"})
    assert moved["version"] == step["version"] + 1


def test_a_bad_nested_field_is_one_error_at_the_path_sent(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    tag = etag(client, write_headers, step["id"])
    cases: list[tuple[dict[str, object], list[list[str]]]] = [
        ({"owner": {"id": "x", "role": "boss"}}, [["body", "owner", "role"]]),
        ({"owner": {"id": "x", "role": "hr", "extra": 1}}, [["body", "owner", "extra"]]),
        ({"owner": None}, [["body", "owner"]]),
        ({"due_at": None, "action": None}, [["body", "action"], ["body", "due_at"]]),
    ]
    for body, locs in cases:
        response = client.patch(
            f"/v1/commitments/{step['id']}", json=body, headers={**write_headers, "If-Match": tag}
        )
        problem = assert_problem(response, 422)
        assert sorted(e["loc"] for e in problem["errors"]) == locs, problem["errors"]
        assert not any(e["msg"] == "Input should be None" for e in problem["errors"])

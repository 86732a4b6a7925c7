"""Owners learned from the ATS: what each vendor's published payload names, the newest event
winning whatever the arrival order, replay, and the API's word over an event's; and a
policy's default step owned by the interview's recruiter."""

import copy
import json
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Headers, Json
from tests.signing import ashby_headers, greenhouse_headers, lever_sign
from tests.test_calendars import create_calendar
from tests.test_webhooks import ASHBY, GREENHOUSE, LEVER, fixture

RECRUITER = "greenhouse:3128"


def _greenhouse(
    client: TestClient,
    event_id: str,
    *,
    at: str = "2015-02-09T16:38:36Z",
    status: str = "scheduled",
    recruiter: dict[str, Any] | str | None = "as published",
) -> Json:
    """The published candidate_stage_change, at ``at``, its interview in ``status``, its
    recruiter and coordinator replaced by ``recruiter`` (None: none named)."""
    payload = fixture("greenhouse", "candidate_stage_change")
    application = payload["payload"]["application"]
    application["last_activity_at"] = at
    application["current_stage"]["interviews"][0]["status"] = status
    if recruiter != "as published":
        application["candidate"]["recruiter"] = copy.deepcopy(recruiter)
        application["candidate"]["coordinator"] = copy.deepcopy(recruiter)
    body = json.dumps(payload).encode()
    response = client.post(
        "/v1/webhooks/greenhouse",
        content=body,
        headers=greenhouse_headers(body, GREENHOUSE, event_id),
    )
    assert response.status_code == 200, response.text
    answer: Json = response.json()
    return answer


def _owners(client: TestClient, headers: Headers) -> dict[str, Json]:
    items = client.get("/v1/owners", headers=headers).json()["items"]
    return {o["id"]: o for o in items}


def test_greenhouse_recruiter_and_coordinator_become_owners(
    client: TestClient, read_headers: Headers
) -> None:
    _greenhouse(client, "gh-1")
    owners = _owners(client, read_headers)
    # Recruiter and coordinator are the same person in the published example; its
    # interviewer (Carl Buddha) comes without an e-mail and is not learned.
    assert list(owners) == [RECRUITER]
    owner = owners[RECRUITER]
    assert (owner["name"], owner["email"], owner["learned_from"]) == (
        "Alicia Flopple",
        "alicia.flopple.3128@example.com",
        "greenhouse",
    )
    assert owner["version"] == 1
    assert owner["calendar_id"] is None
    assert owner["digest"] == {"enabled": False, "at": "07:00"}


def test_greenhouse_interviewers_with_an_email_become_owners(
    client: TestClient, read_headers: Headers
) -> None:
    payload = fixture("greenhouse", "candidate_stage_change")
    interview = payload["payload"]["application"]["current_stage"]["interviews"][0]
    interview["interviewers"][0]["email"] = "carl.buddha@example.com"
    body = json.dumps(payload).encode()
    client.post(
        "/v1/webhooks/greenhouse", content=body, headers=greenhouse_headers(body, GREENHOUSE, "x")
    )
    carl = _owners(client, read_headers)["greenhouse:2622"]
    assert (carl["name"], carl["email"]) == ("Carl Buddha", "carl.buddha@example.com")


def test_the_newest_event_wins_whatever_arrives_last(
    client: TestClient, admin_headers: Headers
) -> None:
    newer = {"id": 3128, "name": "Alicia F. Smith", "email": "alicia.smith@example.com"}
    _greenhouse(client, "gh-new", at="2015-03-01T10:00:00Z", recruiter=newer)
    # The older event, delivered late, changes nothing.
    _greenhouse(client, "gh-old", at="2015-02-09T16:38:36Z")
    owner = _owners(client, admin_headers)[RECRUITER]
    assert (owner["name"], owner["email"], owner["version"]) == (
        "Alicia F. Smith",
        "alicia.smith@example.com",
        1,
    )
    # Replaying the older delivery changes nothing either.
    deliveries = client.get("/v1/deliveries", headers=admin_headers).json()["items"]
    old = next(d for d in deliveries if d["delivery_key"] == "gh-old")
    replayed = client.post(f"/v1/deliveries/{old['id']}/replay", headers=admin_headers)
    assert replayed.status_code == 200, replayed.text
    assert _owners(client, admin_headers)[RECRUITER]["email"] == "alicia.smith@example.com"
    # A still newer one moves it on.
    newest = {"id": 3128, "name": "Alicia Smith", "email": "a.smith@example.com"}
    _greenhouse(client, "gh-newest", at="2015-04-01T10:00:00Z", recruiter=newest)
    owner = _owners(client, admin_headers)[RECRUITER]
    assert (owner["name"], owner["email"], owner["version"]) == (
        "Alicia Smith",
        "a.smith@example.com",
        2,
    )


def test_a_deleted_learned_owner_is_learned_again_by_a_replay(
    client: TestClient, admin_headers: Headers
) -> None:
    _greenhouse(client, "gh-1")
    assert client.delete(f"/v1/owners/{RECRUITER}", headers=admin_headers).status_code == 204
    (delivery,) = client.get("/v1/deliveries", headers=admin_headers).json()["items"]
    client.post(f"/v1/deliveries/{delivery['id']}/replay", headers=admin_headers)
    assert _owners(client, admin_headers)[RECRUITER]["learned_from"] == "greenhouse"


def test_an_owner_written_over_the_api_is_never_changed_by_an_event(
    client: TestClient, admin_headers: Headers
) -> None:
    _greenhouse(client, "gh-1")
    tag = client.get(f"/v1/owners/{RECRUITER}", headers=admin_headers).headers["etag"]
    # A PATCH of anything, even a digest setting, makes it the API's.
    patched = client.patch(
        f"/v1/owners/{RECRUITER}",
        json={"digest": {"enabled": True}},
        headers={**admin_headers, "If-Match": tag},
    )
    assert patched.json()["learned_from"] == "api"
    newer = {"id": 3128, "name": "Someone Else", "email": "else@example.com"}
    _greenhouse(client, "gh-2", at="2015-05-01T10:00:00Z", recruiter=newer)
    owner = _owners(client, admin_headers)[RECRUITER]
    assert (owner["name"], owner["email"], owner["learned_from"], owner["version"]) == (
        "Alicia Flopple",
        "alicia.flopple.3128@example.com",
        "api",
        2,
    )
    # Created over the API before any event: the same.
    client.put("/v1/owners/greenhouse:77", json={"name": "Set by hand"}, headers=admin_headers)
    other = {"id": 77, "name": "From Greenhouse", "email": "gh77@example.com"}
    _greenhouse(client, "gh-3", at="2015-06-01T10:00:00Z", recruiter=other)
    owner = _owners(client, admin_headers)["greenhouse:77"]
    assert (owner["name"], owner["email"]) == ("Set by hand", None)


def test_an_address_that_is_not_an_addr_spec_is_not_learned(
    client: TestClient, read_headers: Headers
) -> None:
    odd = {"id": 3128, "name": "Alicia", "email": "Alicia <alicia@example.com>"}
    answer = _greenhouse(client, "gh-1", recruiter=odd)
    assert answer["status"] == "applied"
    assert _owners(client, read_headers) == {}


def test_ashby_interviewers_become_owners(client: TestClient, read_headers: Headers) -> None:
    body = json.dumps(fixture("ashby", "interviewScheduleUpdate")).encode()
    client.post("/v1/webhooks/ashby", content=body, headers=ashby_headers(body, ASHBY))
    owners = _owners(client, read_headers)
    assert {(o["id"], o["name"], o["email"], o["learned_from"]) for o in owners.values()} == {
        (
            "ashby:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "Ines Interviewer",
            "ines.interviewer@example.com",
            "ashby",
        ),
        (
            "ashby:1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e",
            "Sam Shadow",
            "sam.shadow@example.com",
            "ashby",
        ),
    }


def test_ashby_hiring_team_becomes_owners(client: TestClient, read_headers: Headers) -> None:
    body = json.dumps(fixture("ashby", "candidateStageChange")).encode()
    response = client.post("/v1/webhooks/ashby", content=body, headers=ashby_headers(body, ASHBY))
    assert response.status_code == 202, response.text
    owners = _owners(client, read_headers)
    rita = owners["ashby:caea4d97-331d-46b1-a8e3-6b821c2214ef"]
    assert (rita["name"], rita["email"], rita["learned_from"]) == (
        "Rita Recruiter",
        "rita.recruiter@example.com",
        "ashby",
    )


def test_lever_webhooks_name_nobody(client: TestClient, read_headers: Headers) -> None:
    # Lever's interview webhooks carry ids only: no name, no e-mail.
    body = lever_sign(fixture("lever", "interviewCreated"), LEVER)
    response = client.post("/v1/webhooks/lever", content=body)
    assert response.status_code == 202, response.text
    assert _owners(client, read_headers) == {}


# --- a policy's default step owned by the interview's recruiter -----------------------------


def _recruiter_policy(client: TestClient, headers: Headers, role: str = "recruiter") -> Json:
    create_calendar(client, headers)
    response = client.post(
        "/v1/deadline-policies",
        json={
            "name": "Greenhouse interviews",
            "match": {"source": "greenhouse"},
            "default_step": {
                "action": "Tell the candidate the decision",
                "owner": {
                    "from": role,
                    "fallback": {"id": "recruiting-team", "name": "Recruiting", "role": "hr"},
                },
                "rule": {"business_days": 2},
            },
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def _policy_steps(client: TestClient, headers: Headers) -> list[Json]:
    items = client.get("/v1/commitments", headers=headers).json()["items"]
    return [c for c in items if c["source"] == "policy"]


def test_a_policy_shows_and_keeps_its_owner_from(
    client: TestClient, admin_headers: Headers
) -> None:
    policy = _recruiter_policy(client, admin_headers, "coordinator")
    owner = policy["default_step"]["owner"]
    assert owner == {
        "from": "coordinator",
        "fallback": {"id": "recruiting-team", "name": "Recruiting", "role": "hr"},
    }
    got = client.get(f"/v1/deadline-policies/{policy['id']}", headers=admin_headers).json()
    assert got["default_step"]["owner"] == owner


def test_a_policy_owner_from_an_unknown_role_is_a_422(
    client: TestClient, admin_headers: Headers
) -> None:
    response = client.post(
        "/v1/deadline-policies",
        json={
            "name": "p",
            "default_step": {
                "action": "x",
                "owner": {"from": "hiring_manager", "fallback": {"id": "hr", "role": "hr"}},
                "rule": {"business_days": 2},
            },
        },
        headers=admin_headers,
    )
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["errors"]]
    assert any(loc[:4] == ["body", "default_step", "owner", "OwnerFromRole"] for loc in locs), locs


def test_the_default_step_belongs_to_the_recruiter_the_event_names(
    client: TestClient, admin_headers: Headers
) -> None:
    _recruiter_policy(client, admin_headers)
    _greenhouse(client, "gh-1", status="awaiting_feedback")
    (step,) = _policy_steps(client, admin_headers)
    assert step["owner"] == {"id": RECRUITER, "name": "Alicia Flopple", "role": "recruiter"}


def test_without_a_recruiter_the_default_step_goes_to_the_fallback(
    client: TestClient, admin_headers: Headers
) -> None:
    _recruiter_policy(client, admin_headers)
    _greenhouse(client, "gh-1", status="awaiting_feedback", recruiter=None)
    (step,) = _policy_steps(client, admin_headers)
    assert step["owner"] == {"id": "recruiting-team", "name": "Recruiting", "role": "hr"}


def test_a_recruiter_named_before_the_completion_but_told_late_owns_the_step(
    client: TestClient, admin_headers: Headers
) -> None:
    _recruiter_policy(client, admin_headers)
    _greenhouse(client, "gh-done", at="2015-02-10T10:00:00Z", status="complete", recruiter=None)
    (step,) = _policy_steps(client, admin_headers)
    assert step["owner"]["id"] == "recruiting-team"
    # The scheduling event, from before the completion, arrives now.
    _greenhouse(client, "gh-scheduled", at="2015-02-09T16:38:36Z")
    (step,) = _policy_steps(client, admin_headers)
    assert step["owner"] == {"id": RECRUITER, "name": "Alicia Flopple", "role": "recruiter"}
    # One named after the completion does not move it.
    later = {"id": 99, "name": "Later Person", "email": "later@example.com"}
    _greenhouse(client, "gh-later", at="2015-03-01T10:00:00Z", status="complete", recruiter=later)
    (step,) = _policy_steps(client, admin_headers)
    assert step["owner"]["id"] == RECRUITER

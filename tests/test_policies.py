"""Deadline policies at work, through HTTP: REST, canonical events and vendor webhooks."""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import PROBLEM, Headers, Json, iso
from tests.signing import ashby_headers, event_body, greenhouse_headers, standard_headers
from tests.test_calendars import NEW_YORK, create_calendar
from tests.test_policies_api import create_policy
from tests.test_webhooks import greenhouse_stage_change

# A Friday afternoon before Thanksgiving, New York.
FRIDAY = datetime.fromisoformat("2026-11-20T15:00:00+00:00")
FIXTURES = Path(__file__).parent / "fixtures"
ACME_SECRET = "whsec_dGVzdC1zZWNyZXQtb25lLWZvci1hY21lLWF0cw=="


def _interview(**overrides: Any) -> Json:
    body: Json = {
        "candidate": {"external_id": "cand-1", "name": "Casey"},
        "job": {"external_id": "job-analyst", "title": "Analyst"},
        "stage": "First interview",
        "status": "completed",
        "starts_at": iso(FRIDAY.replace(hour=14)),
        "ends_at": iso(FRIDAY),
    }
    body.update(overrides)
    return body


def _step(**overrides: Any) -> Json:
    step: Json = {
        "action": "Call Casey to schedule the second interview",
        "owner": {"id": "hr-1", "name": "Harriet", "role": "hr"},
        "channel": "call",
    }
    step.update(overrides)
    return step


@pytest.fixture
def setup(client: TestClient, admin_headers: Headers) -> Json:
    """The New York calendar (the default) and the "First interview" policy."""
    calendar = create_calendar(client, admin_headers)
    policy = create_policy(client, admin_headers, position=10)
    return {"calendar": calendar, "policy": policy}


def _create(client: TestClient, headers: Headers, **overrides: Any) -> Json:
    response = client.post("/v1/interviews", json=_interview(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def _deadline(client: TestClient, headers: Headers, commitment_id: str) -> Json:
    response = client.get(f"/v1/commitments/{commitment_id}/deadline", headers=headers)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


# --- rule 1: a step agreed without due_at ----------------------------------------------------


def test_a_step_without_due_at_is_due_by_the_policy(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    interview = _create(client, admin_headers, status="scheduled")
    response = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=_step(agreed_at=iso(FRIDAY)),
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    step = response.json()
    assert step["due_at"] == "2026-11-25T22:00:00Z"
    deadline = _deadline(client, admin_headers, step["id"])
    assert deadline == {
        "basis": "policy",
        "policy_id": setup["policy"]["id"],
        "rule": {"business_days": 3, "at": "end_of_day"},
        "calendar": {
            "id": setup["calendar"]["id"],
            "version": 1,
            "time_zone": "America/New_York",
        },
        "start": "2026-11-20T15:00:00Z",
        "due_at": "2026-11-25T22:00:00Z",
        "skipped": [],
    }


def test_an_explicit_due_at_wins(client: TestClient, admin_headers: Headers, setup: Json) -> None:
    interview = _create(client, admin_headers, status="scheduled")
    due = "2026-12-01T12:00:00Z"
    step = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=_step(due_at=due),
        headers=admin_headers,
    ).json()
    assert step["due_at"] == due
    deadline = _deadline(client, admin_headers, step["id"])
    assert (deadline["basis"], deadline["policy_id"], deadline["due_at"]) == ("explicit", None, due)


def test_without_a_matching_policy_due_at_is_required(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    interview = _create(client, admin_headers, status="scheduled", stage="Final interview")
    response = client.post(
        f"/v1/interviews/{interview['id']}/commitments", json=_step(), headers=admin_headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert "no deadline policy applies" in response.json()["detail"]
    assert response.json()["errors"][0]["loc"] == ["body", "due_at"]
    refused = client.post(
        "/v1/interviews",
        json=_interview(stage="Final interview", next_steps=[_step()]),
        headers=admin_headers,
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "next_steps", 0, "due_at"]


def test_the_owner_calendar_counts_before_the_policy_calendar(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    berlin = create_calendar(
        client, admin_headers, name="Berlin", time_zone="Europe/Berlin", holidays=None
    )
    client.put(
        "/v1/owners/hr-1/calendar", json={"calendar_id": berlin["id"]}, headers=admin_headers
    )
    interview = _create(client, admin_headers, status="scheduled")
    step = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=_step(agreed_at=iso(FRIDAY)),
        headers=admin_headers,
    ).json()
    # Wednesday 25 November, 17:00 in Berlin (no Thanksgiving there).
    assert step["due_at"] == "2026-11-25T16:00:00Z"
    assert _deadline(client, admin_headers, step["id"])["calendar"]["id"] == berlin["id"]


def test_a_computed_due_time_stays_when_the_calendar_changes(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    interview = _create(client, admin_headers, status="scheduled")
    step = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=_step(agreed_at=iso(FRIDAY)),
        headers=admin_headers,
    ).json()
    calendar_url = f"/v1/calendars/{setup['calendar']['id']}"
    client.patch(
        calendar_url,
        json={"closed_dates": ["2026-11-23", "2026-11-24"]},
        headers={**admin_headers, "If-Match": "*"},
    )
    policy_url = f"/v1/deadline-policies/{setup['policy']['id']}"
    client.patch(
        policy_url,
        json={"due_rule": {"business_days": 10}},
        headers={**admin_headers, "If-Match": "*"},
    )
    again = client.get(f"/v1/commitments/{step['id']}", headers=admin_headers).json()
    assert again["due_at"] == "2026-11-25T22:00:00Z"
    deadline = _deadline(client, admin_headers, step["id"])
    assert deadline["calendar"]["version"] == 1
    assert deadline["rule"] == {"business_days": 3, "at": "end_of_day"}
    # Only a PATCH moves it, and then it is explicit.
    moved = client.patch(
        f"/v1/commitments/{step['id']}",
        json={"due_at": "2026-12-02T12:00:00Z"},
        headers={**admin_headers, "If-Match": "*"},
    )
    assert moved.status_code == 200
    assert _deadline(client, admin_headers, step["id"])["basis"] == "explicit"


def test_policies_match_by_owner_role_for_due_times(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    create_policy(
        client,
        admin_headers,
        name="recruiters are quick",
        position=0,
        match={"owner_role": "recruiter"},
        due_rule={"business_hours": 8},
        default_step=None,
    )
    interview = _create(client, admin_headers, status="scheduled")
    url = f"/v1/interviews/{interview['id']}/commitments"
    recruiter = client.post(
        url,
        json=_step(owner={"id": "rec-1", "role": "recruiter"}, agreed_at=iso(FRIDAY)),
        headers=admin_headers,
    ).json()
    assert recruiter["due_at"] == "2026-11-23T15:00:00Z"
    hr = client.post(url, json=_step(agreed_at=iso(FRIDAY)), headers=admin_headers).json()
    assert hr["due_at"] == "2026-11-25T22:00:00Z"


# --- rule 2 and 3: the default step --------------------------------------------------------


def _policy_steps(detail: Json) -> list[Json]:
    return [c for c in detail["commitments"] if c["source"] == "policy"]


def test_an_interview_completed_without_a_step_gets_the_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    interview = _create(client, admin_headers)
    (step,) = interview["commitments"]
    assert step["source"] == "policy"
    assert step["action"] == "Tell the candidate the decision"
    assert step["owner"] == {"id": "hm-1", "name": "Hana Manager", "role": "hiring_manager"}
    assert step["owed_by"] == "company"
    assert step["agreed_at"] == iso(FRIDAY)
    assert step["due_at"] == "2026-11-25T22:00:00Z"  # 3 business days at 17:00 New York
    timeline = client.get(f"/v1/interviews/{interview['id']}/timeline", headers=admin_headers)
    agreed = [e for e in timeline.json()["items"] if e["kind"] == "agreed"]
    assert agreed[0]["actor"] == f"policy:{setup['policy']['id']}"
    deadline = _deadline(client, admin_headers, step["id"])
    assert deadline["basis"] == "policy"
    assert deadline["rule"] == {"business_days": 3, "at": "17:00"}
    missing = client.get(
        "/v1/interviews/missing-next-step?ended_before=2026-12-31T00:00:00Z", headers=admin_headers
    )
    assert missing.json()["items"] == []


def test_steps_sent_with_the_completion_leave_no_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    interview = _create(client, admin_headers, next_steps=[_step(due_at=iso(FRIDAY))])
    assert [c["source"] for c in interview["commitments"]] == ["api"] or all(
        c["source"] != "policy" for c in interview["commitments"]
    )


def test_a_later_step_closes_the_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    interview = _create(client, admin_headers)
    (policy_step,) = interview["commitments"]
    agreed_at = "2026-11-27T10:00:00Z"
    client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=_step(action="Second interview on Friday", agreed_at=agreed_at, due_at=agreed_at),
        headers=admin_headers,
    )
    closed = client.get(f"/v1/commitments/{policy_step['id']}", headers=admin_headers).json()
    assert closed["status"] == "done"
    assert closed["completed_at"] == agreed_at
    assert closed["outcome"] == "Next step agreed: Second interview on Friday"
    # Its lateness until then stays visible.
    late = client.get(
        "/v1/commitments/overdue?as_of=2026-11-26T12:00:00Z", headers=admin_headers
    ).json()
    assert [i["id"] for i in late["items"]] == [policy_step["id"]]


def test_a_cancelled_default_step_stays_cancelled_when_a_step_is_agreed_later(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    interview = _create(client, admin_headers)
    (policy_step,) = interview["commitments"]
    url = f"/v1/commitments/{policy_step['id']}"
    cancelled = client.post(
        f"{url}/cancel", json={"reason": "handled by phone"}, headers=admin_headers
    )
    assert cancelled.status_code == 200, cancelled.text
    later = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=_step(action="Second interview on Friday", due_at="2099-01-01T00:00:00Z"),
        headers=admin_headers,
    )
    assert later.status_code == 201, later.text
    after = client.get(url, headers=admin_headers).json()
    assert (after["status"], after["reason"], after["completed_at"]) == (
        "cancelled",
        "handled by phone",
        None,
    )
    timeline = client.get(f"/v1/interviews/{interview['id']}/timeline", headers=admin_headers)
    kinds = [
        e["kind"] for e in timeline.json()["items"] if e.get("commitment_id") == policy_step["id"]
    ]
    assert "completed" not in kinds


def test_a_step_agreed_before_the_completion_removes_the_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    interview = _create(client, admin_headers)
    assert _policy_steps(interview)
    before = iso(FRIDAY.replace(hour=14, minute=30))
    client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json=_step(agreed_at=before, due_at=iso(FRIDAY.replace(day=24))),
        headers=admin_headers,
    )
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=admin_headers).json()
    assert _policy_steps(detail) == []
    assert len(detail["commitments"]) == 1


def test_policies_do_not_reach_back(client: TestClient, admin_headers: Headers) -> None:
    create_calendar(client, admin_headers)
    interview = _create(client, admin_headers)
    assert interview["commitments"] == []
    create_policy(client, admin_headers)
    updated = client.put(
        f"/v1/interviews/api/{interview['id']}",
        json=_interview(stage="First interview"),
        headers=admin_headers,
    )
    assert updated.status_code in (200, 201)
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=admin_headers).json()
    assert detail["commitments"] == []


def test_put_completing_an_interview_gives_one_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    url = "/v1/interviews/acme-ats/int-9"
    client.put(url, json=_interview(status="scheduled"), headers=admin_headers)
    for _ in range(2):
        response = client.put(url, json=_interview(), headers=admin_headers)
        assert response.status_code == 200
        assert len(_policy_steps(response.json())) == 1


def test_a_disabled_or_unmatched_policy_gives_no_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    assert _create(client, admin_headers, stage="Final interview")["commitments"] == []
    client.patch(
        f"/v1/deadline-policies/{setup['policy']['id']}",
        json={"enabled": False},
        headers={**admin_headers, "If-Match": "*"},
    )
    assert _create(client, admin_headers)["commitments"] == []


# --- events ----------------------------------------------------------------------------------


def _post_event(client: TestClient, body: bytes) -> Json:
    response = client.post(
        "/v1/events/acme-ats", content=body, headers=standard_headers(body, ACME_SECRET)
    )
    assert response.status_code in (200, 202), response.text
    answer: Json = response.json()
    return answer


def _steps(client: TestClient, headers: Headers) -> list[Json]:
    items: list[Json] = client.get("/v1/commitments?limit=500", headers=headers).json()["items"]
    return items


def test_a_completion_event_without_steps_gets_the_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    data = {
        "external_id": "int-1",
        "candidate": {"external_id": "cand-1"},
        "stage": "first interview",
        "ends_at": iso(FRIDAY),
    }
    _post_event(client, event_body("interview.completed", FRIDAY.replace(minute=5), data))
    (step,) = _steps(client, admin_headers)
    assert (step["source"], step["agreed_at"], step["due_at"]) == (
        "policy",
        iso(FRIDAY),
        "2026-11-25T22:00:00Z",
    )
    agreed = {
        "interview_external_id": "int-1",
        "next_step": _step(external_id="s-1"),
    }
    later = FRIDAY.replace(day=23)
    answer = _post_event(client, event_body("next_step.agreed", later, agreed))
    assert answer["status"] == "applied"
    steps = {s["source"]: s for s in _steps(client, admin_headers)}
    assert steps["policy"]["status"] == "done"
    assert steps["policy"]["completed_at"] == iso(later)
    # The agreed step had no due_at: 3 business days from Monday, Thanksgiving skipped.
    assert steps["acme-ats"]["due_at"] == "2026-11-30T22:00:00Z"
    deadline = _deadline(client, admin_headers, steps["acme-ats"]["id"])
    assert deadline["skipped"] == [
        {"date": "2026-11-26", "why": "holiday: Thanksgiving Day"},
        {"date": "2026-11-27", "why": "closed"},
    ]


def test_an_event_step_without_due_at_and_no_policy_is_rejected(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    data = {
        "external_id": "int-2",
        "candidate": {"external_id": "cand-2"},
        "stage": "Final interview",
        "next_steps": [_step()],
    }
    body = event_body("interview.completed", FRIDAY, data)
    response = client.post(
        "/v1/events/acme-ats", content=body, headers=standard_headers(body, ACME_SECRET)
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert "no deadline policy applies" in response.json()["detail"]
    deliveries = client.get("/v1/deliveries", headers=admin_headers).json()["items"]
    assert [d["result"] for d in deliveries] == ["rejected"]


def test_a_step_event_waiting_for_its_interview_meets_the_policy_when_applied(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    agreed = {"interview_external_id": "int-3", "next_step": _step(external_id="s-3")}
    assert _post_event(client, event_body("next_step.agreed", FRIDAY, agreed))["status"] == (
        "pending"
    )
    data = {"external_id": "int-3", "candidate": {"external_id": "c"}, "ends_at": iso(FRIDAY)}
    data["stage"] = "First interview"
    _post_event(client, event_body("interview.completed", FRIDAY.replace(minute=1), data))
    (step,) = _steps(client, admin_headers)
    assert (step["external_id"], step["due_at"]) == ("s-3", "2026-11-25T22:00:00Z")


def _stage_story(stage: str) -> dict[str, bytes]:
    """Scheduled without a stage, a step agreed without due_at during the interview, and
    the completion that names the stage."""
    interview = {"external_id": "int-5", "candidate": {"external_id": "c-5"}}
    agreed = {"interview_external_id": "int-5", "next_step": _step(external_id="s-5")}
    completed = {**interview, "stage": stage, "ends_at": iso(FRIDAY)}
    return {
        "scheduled": event_body("interview.scheduled", FRIDAY.replace(hour=10), interview),
        "agreed": event_body("next_step.agreed", FRIDAY.replace(hour=14, minute=30), agreed),
        "completed": event_body("interview.completed", FRIDAY.replace(minute=1), completed),
    }


@pytest.mark.parametrize(
    "order",
    [("scheduled", "agreed", "completed"), ("scheduled", "completed", "agreed")],
    ids=["stage-told-last", "stage-told-first"],
)
def test_a_step_waits_for_the_stage_its_policy_matches(
    client: TestClient, admin_headers: Headers, setup: Json, order: tuple[str, ...]
) -> None:
    story = _stage_story("First interview")
    answers = {name: _post_event(client, story[name])["status"] for name in order}
    if order[1] == "agreed":
        assert answers["agreed"] == "pending"
    (step,) = _steps(client, admin_headers)
    # 3 business days from Friday morning New York: Wednesday's close, before Thanksgiving.
    assert (step["external_id"], step["due_at"]) == ("s-5", "2026-11-25T22:00:00Z")
    assert _deadline(client, admin_headers, step["id"])["basis"] == "policy"
    deliveries = client.get("/v1/deliveries", headers=admin_headers).json()["items"]
    assert {d["result"] for d in deliveries} == {"applied"}


@pytest.mark.parametrize(
    "order",
    [("scheduled", "agreed", "completed"), ("scheduled", "completed", "agreed")],
    ids=["stage-told-last", "stage-told-first"],
)
def test_a_waiting_step_is_refused_when_the_interview_completes_without_a_policy(
    client: TestClient, admin_headers: Headers, setup: Json, order: tuple[str, ...]
) -> None:
    story = _stage_story("Final interview")
    for name in order:
        response = client.post(
            "/v1/events/acme-ats",
            content=story[name],
            headers=standard_headers(story[name], ACME_SECRET),
        )
        if name == "agreed" and order[1] == "agreed":
            assert response.json()["status"] == "pending"
    assert _steps(client, admin_headers) == []
    deliveries = client.get("/v1/deliveries", headers=admin_headers).json()["items"]
    refused = [d for d in deliveries if d["result"] == "rejected"]
    assert len(refused) == 1
    assert "no deadline policy applies" in refused[0]["error"]
    assert "Final interview" in refused[0]["error"]


def test_a_replayed_completion_keeps_one_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    data = {"external_id": "int-4", "candidate": {"external_id": "c"}, "stage": "First interview"}
    delivery = _post_event(client, event_body("interview.completed", FRIDAY, data))
    for _ in range(2):
        replayed = client.post(
            f"/v1/deliveries/{delivery['delivery_id']}/replay", headers=admin_headers
        )
        assert replayed.status_code == 200, replayed.text
        steps = _steps(client, admin_headers)
        assert [s["source"] for s in steps] == ["policy"]


# --- vendors ---------------------------------------------------------------------------------


def test_a_greenhouse_completion_gets_the_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    body = greenhouse_stage_change("complete")
    stage = json.loads(body)["payload"]["application"]["current_stage"]
    client.patch(
        f"/v1/deadline-policies/{setup['policy']['id']}",
        json={"match": {"source": "greenhouse"}},
        headers={**admin_headers, "If-Match": "*"},
    )
    response = client.post(
        "/v1/webhooks/greenhouse",
        content=body,
        headers=greenhouse_headers(body, "greenhouse-test-secret", "gh-1"),
    )
    assert response.status_code in (200, 202), response.text
    steps = _steps(client, admin_headers)
    assert len(steps) == len(stage["interviews"])
    assert {s["source"] for s in steps} == {"policy"}
    assert {s["action"] for s in steps} == {"Tell the candidate the decision"}


def test_an_ashby_completion_gets_the_default_step(
    client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    client.patch(
        f"/v1/deadline-policies/{setup['policy']['id']}",
        json={"match": {"source": "ashby"}},
        headers={**admin_headers, "If-Match": "*"},
    )
    payload = json.loads((FIXTURES / "ashby" / "interviewScheduleUpdate.json").read_text())
    payload["data"]["interviewSchedule"]["status"] = "Complete"
    body = json.dumps(payload).encode()
    response = client.post(
        "/v1/webhooks/ashby", content=body, headers=ashby_headers(body, "ashby-test-secret")
    )
    assert response.status_code in (200, 202), response.text
    (step,) = _steps(client, admin_headers)
    assert step["source"] == "policy"
    assert step["owner"]["role"] == "hiring_manager"
    assert step["agreed_at"] is not None
    assert (
        NEW_YORK["time_zone"]
        == _deadline(client, admin_headers, step["id"])["calendar"]["time_zone"]
    )


# --- the bulk path -------------------------------------------------------------------------


def test_a_batch_makes_the_policy_steps_one_by_one_would(
    database_url: str, client: TestClient, admin_headers: Headers, setup: Json
) -> None:
    from tests import test_ingest_batch as batch
    from tests.conftest import empty_tables
    from tests.test_event_order import _create_policy

    # Stepless completions (policy steps), completions with steps, and one the policy
    # does not match.
    inbounds = [batch._inbound(f"msg-{i}", batch._interview(i, i % 2)) for i in range(8)]
    inbounds.append(batch._inbound("msg-9", batch._interview(9, 0), source="other-ats"))

    def fresh() -> None:
        empty_tables(database_url)
        _create_policy()  # matches the source acme-ats

    def rows() -> dict[str, list[dict[str, Any]]]:
        # A policy step's external_id is its interview's id, which differs from run to run.
        found = batch._rows()
        renamed = {
            row["id"]: f"policy step of {row['interview_id']}"
            for row in found["commitment"]
            if row["source"] == "policy"
        }
        for table, table_rows in found.items():
            for row in table_rows:
                for column, value in row.items():
                    if isinstance(value, str) and value in renamed:
                        row[column] = renamed[value]
                if table == "commitment" and row["source"] == "policy":
                    row["external_id"] = row["id"]
                    # The policy and the calendar are made anew for each run.
                    row["deadline_policy_id"] = row["deadline_calendar_id"] = "made anew"
                for column in ("actor", "tiebreak"):
                    if str(row.get(column, "")).startswith("policy:"):
                        row[column] = "policy:<id>"
            table_rows.sort(key=repr)
        return found

    fresh()
    assert batch._one_by_one(inbounds) == ["applied"] * 9
    expected = rows()
    assert sum(1 for row in expected["commitment"] if row["source"] == "policy") == 4
    fresh()
    assert batch._together(inbounds) == ["applied"] * 9
    got = rows()
    for table in expected:
        for a, b in zip(expected[table], got[table], strict=True):
            assert {k: v for k, v in a.items() if v != b[k]} == {}, (table, b)

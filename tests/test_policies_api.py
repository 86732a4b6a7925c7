"""Deadline policies over HTTP, and the pure choice of the policy that applies."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.deadlines.policies import (
    InterviewFacts,
    matching_default_step_policy,
    matching_due_policy,
)
from tests.factories import PROBLEM, Headers, Json
from tests.test_calendars import create_calendar
from tests.test_outbound_api import create_endpoint
from tests.test_reminder_rules_api import create_rule

FIRST_INTERVIEW: Json = {
    "name": "First interview",
    "match": {"stage": "First interview"},
    "due_rule": {"business_days": 3},
    "default_step": {
        "action": "Tell the candidate the decision",
        "owner": {"id": "hm-1", "name": "Hana Manager", "role": "hiring_manager"},
        "channel": "email",
        "rule": {"business_days": 3, "at": "17:00"},
    },
}


def create_policy(client: TestClient, headers: Headers, **overrides: Any) -> Json:
    response = client.post(
        "/v1/deadline-policies", json={**FIRST_INTERVIEW, **overrides}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def test_a_policy_is_stored_with_its_rules_written_out(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    policy = create_policy(client, admin_headers)
    assert policy["due_rule"] == {"business_days": 3, "at": "end_of_day"}
    assert policy["default_step"]["rule"] == {"business_days": 3, "at": "17:00"}
    assert policy["default_step"]["owner"]["role"] == "hiring_manager"
    assert policy["enabled"] is True
    assert policy["calendar_id"] is None
    assert policy["version"] == 1
    response = client.get(f"/v1/deadline-policies/{policy['id']}", headers=read_headers)
    assert response.json() == policy
    assert response.headers["etag"].endswith('-1"')


def test_policies_list_by_position(client: TestClient, admin_headers: Headers) -> None:
    create_policy(client, admin_headers, name="late", position=5)
    create_policy(client, admin_headers, name="early", position=1)
    create_policy(client, admin_headers, name="appended")
    items = client.get("/v1/deadline-policies", headers=admin_headers).json()["items"]
    assert [(p["name"], p["position"]) for p in items] == [
        ("early", 1),
        ("late", 5),
        ("appended", 6),
    ]
    csv = client.get("/v1/deadline-policies", headers={**admin_headers, "Accept": "text/csv"})
    rows = csv.text.strip().splitlines()
    assert rows[0].startswith("id,name,position")
    assert [row.split(",")[1] for row in rows[1:]] == ["early", "late", "appended"]


BAD_POLICIES = [
    ({"due_rule": {"business_days": 61}}, ["body", "due_rule", "business_days"]),
    ({"due_rule": {"hours": 3}}, ["body", "due_rule", "hours"]),
    ({"due_rule": None, "default_step": None}, ["body"]),
    ({"match": {"owner_role": "boss"}}, ["body", "match", "owner_role"]),
    ({"match": {"team": "x"}}, ["body", "match", "team"]),
    ({"calendar_id": "00000000-0000-0000-0000-000000000000"}, ["body", "calendar_id"]),
    (
        {"default_step": {**FIRST_INTERVIEW["default_step"], "rule": {"business_hours": 0}}},
        ["body", "default_step", "rule", "business_hours"],
    ),
    (
        {"default_step": {"action": "x", "owner": {"id": "a", "role": "hr"}}},
        ["body", "default_step", "rule"],
    ),
    ({"position": -1}, ["body", "position"]),
]


@pytest.mark.parametrize(("change", "loc"), BAD_POLICIES)
@pytest.mark.one_database("the request is validated before any query")
def test_a_bad_policy_is_a_422_naming_the_field(
    client: TestClient, admin_headers: Headers, change: Json, loc: list[Any]
) -> None:
    response = client.post(
        "/v1/deadline-policies", json={**FIRST_INTERVIEW, **change}, headers=admin_headers
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert loc in [error["loc"] for error in response.json()["errors"]]


def test_patch_a_policy_needs_a_fresh_if_match(client: TestClient, admin_headers: Headers) -> None:
    policy = create_policy(client, admin_headers)
    url = f"/v1/deadline-policies/{policy['id']}"
    assert client.patch(url, json={"enabled": False}, headers=admin_headers).status_code == 428
    etag = client.get(url, headers=admin_headers).headers["etag"]
    changed = client.patch(
        url, json={"enabled": False}, headers={**admin_headers, "If-Match": etag}
    )
    assert changed.status_code == 200
    assert (changed.json()["enabled"], changed.json()["version"]) == (False, 2)
    stale = client.patch(url, json={"enabled": True}, headers={**admin_headers, "If-Match": etag})
    assert stale.status_code == 412
    same = client.patch(
        url, json={"enabled": False}, headers={**admin_headers, "If-Match": changed.headers["etag"]}
    )
    assert same.json()["version"] == 2  # nothing changed, no new version


def test_patch_cannot_leave_a_policy_without_rules(
    client: TestClient, admin_headers: Headers
) -> None:
    policy = create_policy(client, admin_headers, default_step=None)
    response = client.patch(
        f"/v1/deadline-policies/{policy['id']}",
        json={"due_rule": None},
        headers={**admin_headers, "If-Match": "*"},
    )
    assert response.status_code == 422


def test_patch_to_an_unknown_calendar_is_a_422(client: TestClient, admin_headers: Headers) -> None:
    policy = create_policy(client, admin_headers)
    response = client.patch(
        f"/v1/deadline-policies/{policy['id']}",
        json={"calendar_id": str(uuid.uuid4())},
        headers={**admin_headers, "If-Match": "*"},
    )
    assert response.status_code == 422
    assert ["body", "calendar_id"] in [e["loc"] for e in response.json()["errors"]]


def test_a_policy_on_a_calendar(client: TestClient, admin_headers: Headers) -> None:
    calendar = create_calendar(client, admin_headers)
    policy = create_policy(client, admin_headers, calendar_id=calendar["id"])
    assert policy["calendar_id"] == calendar["id"]


def test_delete_a_policy(client: TestClient, admin_headers: Headers) -> None:
    policy = create_policy(client, admin_headers)
    url = f"/v1/deadline-policies/{policy['id']}"
    assert client.delete(url, headers={**admin_headers, "If-Match": '"x"'}).status_code == 412
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 204
    assert client.get(url, headers=admin_headers).status_code == 404
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 404


@pytest.mark.one_database("the key and scope are checked before any query")
def test_writing_policies_needs_admin(client: TestClient, write_headers: Headers) -> None:
    response = client.post("/v1/deadline-policies", json=FIRST_INTERVIEW, headers=write_headers)
    assert response.status_code == 403
    assert client.get("/v1/deadline-policies", headers=write_headers).status_code == 200


# --- the pure choice -----------------------------------------------------------------------

T = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class P:
    position: int
    match: dict[str, Any] = field(default_factory=dict)
    due_rule: dict[str, Any] | None = field(default_factory=lambda: {"business_days": 1})
    default_step: dict[str, Any] | None = None
    enabled: bool = True
    created_at: datetime = T
    id: uuid.UUID = field(default_factory=uuid.uuid4)


FACTS = InterviewFacts(source="acme-ats", stage="First Interview", job_id="job-1")


def test_the_first_enabled_match_by_position_wins() -> None:
    first, second, disabled = P(2), P(1, match={"stage": "other"}), P(0, enabled=False)
    assert matching_due_policy([first, second, disabled], FACTS, "hr") is first


def test_ties_in_position_go_to_the_older_policy() -> None:
    older, newer = P(1), P(1, created_at=T.replace(day=2))
    assert matching_due_policy([newer, older], FACTS, "hr") is older


def test_stage_matches_case_insensitively_and_the_rest_exactly() -> None:
    assert matching_due_policy([P(0, match={"stage": "first INTERVIEW"})], FACTS, "hr")
    assert matching_due_policy([P(0, match={"source": "ACME-ats"})], FACTS, "hr") is None
    assert matching_due_policy([P(0, match={"job_id": "job-1"})], FACTS, "hr")
    assert matching_due_policy([P(0, match={"job_id": "job-2"})], FACTS, "hr") is None
    no_stage = InterviewFacts(source="acme-ats", stage=None, job_id=None)
    assert matching_due_policy([P(0, match={"stage": "x"})], no_stage, "hr") is None


def test_owner_role_counts_for_due_times_only() -> None:
    step = {"action": "a", "owner": {"id": "o", "role": "hr"}, "rule": {"business_days": 1}}
    policy = P(0, match={"owner_role": "recruiter"}, default_step=step)
    assert matching_due_policy([policy], FACTS, "hr") is None
    assert matching_due_policy([policy], FACTS, "recruiter") is policy
    assert matching_default_step_policy([policy], FACTS) is policy


def test_only_policies_with_the_rule_asked_for_count() -> None:
    due_only = P(0)
    step = {"action": "a", "owner": {"id": "o", "role": "hr"}, "rule": {"business_days": 1}}
    step_only = P(1, due_rule=None, default_step=step)
    assert matching_due_policy([due_only, step_only], FACTS, "hr") is due_only
    assert matching_default_step_policy([due_only, step_only], FACTS) is step_only
    assert matching_default_step_policy([due_only], FACTS) is None


VERSIONED = [
    pytest.param("/v1/calendars", lambda c, h: create_calendar(c, h), id="calendar"),
    pytest.param("/v1/deadline-policies", lambda c, h: create_policy(c, h), id="policy"),
    pytest.param("/v1/endpoints", lambda c, h: create_endpoint(c, h), id="endpoint"),
    pytest.param("/v1/reminder-rules", lambda c, h: create_rule(c, h), id="reminder-rule"),
]


@pytest.mark.parametrize(("path", "make"), VERSIONED)
def test_deleting_a_versioned_row_needs_a_fresh_if_match_like_patch(
    client: TestClient,
    admin_headers: Headers,
    path: str,
    make: Callable[[TestClient, Headers], Json],
) -> None:
    row = make(client, admin_headers)
    url = f"{path}/{row['id']}"
    missing = client.delete(url, headers=admin_headers)
    assert missing.status_code == 428
    assert missing.headers["content-type"] == PROBLEM
    assert "If-Match" in missing.json()["detail"]
    stale = client.delete(url, headers={**admin_headers, "If-Match": f'"{uuid.uuid4().hex}-1"'})
    assert stale.status_code == 412
    assert client.get(url, headers=admin_headers).status_code == 200
    current = client.get(url, headers=admin_headers).headers["etag"]
    assert client.delete(url, headers={**admin_headers, "If-Match": current}).status_code == 204
    assert client.get(url, headers=admin_headers).status_code == 404
    unknown = client.delete(f"{path}/{uuid.uuid4()}", headers=admin_headers)
    assert unknown.status_code == 404
